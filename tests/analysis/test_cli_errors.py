"""Every analysis CLI reports bad input the same way (workbench.analysis.cli): `error: ...` and exit code 2."""

from __future__ import annotations

import importlib

import pytest

from workbench.analysis.cli import run_cli

CLIS = {"ablate": ["--layer", "8"], "attention": [], "logit_lens": [], "probe": ["probes/pitch.yaml"], "patch": []}


@pytest.mark.parametrize("name", list(CLIS))
def test_missing_checkpoint_is_reported_with_exit_code_2(name, tmp_path, capsys):
    missing = tmp_path / "no-such-run" / "final"
    main = importlib.import_module(f"workbench.{name}").main
    assert main([*CLIS[name], "--checkpoint", str(missing), "--out-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(missing) in err and "Traceback" not in err


def test_ask_reports_a_missing_clip(tmp_path, capsys):
    from workbench.ask import main

    assert main([str(tmp_path / "nothing.wav"), "what is it?"]) == 2
    assert "nothing.wav" in capsys.readouterr().err


def test_runner_unwraps_key_errors_and_keeps_bugs_loud(capsys):
    def unknown():
        raise KeyError("unknown encoder 'x': this model's encoders are ['whisper']")

    assert run_cli(unknown) == 2
    assert capsys.readouterr().err == "error: unknown encoder 'x': this model's encoders are ['whisper']\n"
    assert run_cli(lambda: None) == 0 and run_cli(lambda: 3) == 3

    def bug():
        raise RuntimeError("a bug keeps its traceback")

    with pytest.raises(RuntimeError):
        run_cli(bug)


@pytest.mark.parametrize("name", ["attribute_lens", "listening_heads", "steer"])
def test_audio_analysis_clis_report_a_missing_checkpoint(name, tmp_path, capsys):
    missing = tmp_path / "gone" / "final"
    main = importlib.import_module(f"workbench.{name}").main
    assert main(["--checkpoint", str(missing), "--out-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(missing) in err
