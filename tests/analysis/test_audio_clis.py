"""The CLIs of the attribute lens, listening heads and steering on a tiny model: outputs written, bad input exits 2
with a message naming the fix."""

import json

import pandas as pd
import pytest

from tests.analysis.fakes import FakeDataset
from tests.analysis.tiny_pal import model


@pytest.fixture()
def setup(tok, tmp_path, monkeypatch):
    import workbench.analysis.audio_conditions as AC
    import workbench.analysis.core as core

    (tmp_path / "answer_options.json").write_text(json.dumps({"pitch_class": ["low", "high", "medium"]}))
    ds = FakeDataset(tok, tmp_path, n=6)
    monkeypatch.setattr(AC, "_first_token", lambda ds, q, option: 10 + len(option))  # tiny vocab (97 ids)
    monkeypatch.setattr(core, "load_for_analysis", lambda *a, **k: (k.get("model") or model("lal"), ds))
    return tmp_path / "out"


def test_attribute_lens_cli(setup, capsys):
    from workbench.attribute_lens import main

    args = ["--checkpoint", "x/lal/final", "--silence", "zeros", "--out-dir", str(setup), "--no-png"]
    assert main(args) == 0
    s = pd.read_csv(setup / "attribute_lens.csv")
    assert set(s["variant"]) == {"lal"} and set(s["condition"]) == {"audio", "silence", "blocked"}
    assert (setup / "attribute_lens.html").is_file() and (setup / "attribute_lens_items.csv").is_file()
    assert main(args + ["--attribute", "colour"]) == 2
    assert "unknown attribute 'colour'" in capsys.readouterr().err


def test_listening_heads_cli(setup, capsys):
    from workbench.listening_heads import main

    args = ["--checkpoint", "x/lal/final", "--silence", "zeros", "--out-dir", str(setup), "--no-png", "--draws", "2"]
    assert main(args + ["--k", "2"]) == 0
    assert len(pd.read_csv(setup / "listening_heads.csv")) == 16
    assert set(pd.read_csv(setup / "listening_ablation.csv")["condition"]) == {"top-k", "random", "top_minus_random"}
    assert main(args + ["--k", "99"]) == 2
    assert "--k between 1 and 16" in capsys.readouterr().err


def test_steer_cli(setup, capsys):
    from workbench.steer import main

    args = ["--checkpoint", "x/lal/final", "--silence", "zeros", "--out-dir", str(setup), "--no-png", "--k", "2"]
    assert main(args + ["--alphas=-1,1"]) == 0
    t = pd.read_csv(setup / "steering.csv")
    assert set(t["mode"]) == {"resid", "heads"} and (t["split"] == "gain").sum() == 4
    assert main(args + ["--alphas", "1,nan"]) == 2
    assert "alpha must be a finite number" in capsys.readouterr().err
