"""Linear probes on a tiny random PALModel where the answer is known by construction.

The encoder tokens of each clip are one-hot(label) @ E + noise, so ``encoders.mel.hook_out`` carries the
label linearly (probe ~100%, control ~chance), while the residual stream at the text token before the audio
slot cannot see the audio (causal mask) and the text is the same for every clip (probe ~chance).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from tests.model.tiny_models import D_MEL, build, enc_spec, tiny_llama_checkpoint
from workbench.analysis.probes import (
    ActivationStore,
    ProbeError,
    ProbeSuite,
    Site,
    collect_activations,
    control_labels,
    fit_probes,
    load_suite,
    prepare_clips,
    resolve_sites,
    run_suite,
)
from workbench.data.dataset import build_prompt, collate

CLASSES = ["low", "mid", "high"]
N_CLIPS = 60
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: intra-op threads only add contention on a shared CPU (several x slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tok():
    from workbench.model.llm import load_tokenizer

    return load_tokenizer("smollm2")


@pytest.fixture(scope="module")
def model(tmp_path_factory, tok):
    d = tiny_llama_checkpoint(tmp_path_factory.mktemp("tiny_llama"))
    return build(d, tok, enc_spec(mode="lal", layer=1, adapter=True, gate=True))


class ModTokenizer:
    """The SmolLM2 tokenizer (chat template included) with ids folded into the tiny model's 97-token vocab."""

    def __init__(self, tok, vocab=97):
        self.tok, self.vocab = tok, vocab

    def __call__(self, text, add_special_tokens=False):
        ids = self.tok(text, add_special_tokens=add_special_tokens)["input_ids"]
        return {"input_ids": [i % self.vocab for i in ids]}

    def __getattr__(self, name):
        return getattr(self.tok, name)


class FakeDataset:
    """Duck-typed AudioTaskDataset in token mode: 2 task rows per clip (different questions), the clip's
    label in the row, encoder tokens = one-hot(label) @ E + 0.3 noise, 3..7 valid frames."""

    def __init__(self, tok, n=N_CLIPS, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.tokenizer, self.root, self.pad_id = ModTokenizer(tok), Path("fake-dataset"), 0
        E = torch.randn(len(CLASSES), D_MEL, generator=g) * 2
        self.tokens, self.rows, clips = {}, [], []
        for c in range(n):
            label = c % len(CLASSES)
            T = 3 + c % 5
            x = E[label][None].expand(T, -1) + 0.3 * torch.randn(T, D_MEL, generator=g)
            fn = f"audio/{c:04d}.wav"
            self.tokens[fn] = x
            clip = {
                "file_name": fn,
                "pitch_class": CLASSES[label],
                "loud": float(label) + 0.1 * c / n,
                "instrument": None,
            }
            clips.append(clip)
            for q in ("Is it high?", "What is the pitch class of this sound?"):
                self.rows.append({**clip, "question": q, "answer": CLASSES[label]})
        self.report = SimpleNamespace(clips=clips)

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        row = self.rows[i]
        ids, slot = build_prompt(self.tokenizer, row["question"])
        ids = torch.tensor(ids)
        return {
            "input_ids": ids,
            "labels": torch.full_like(ids, -100),
            "audio_slot": slot,
            "prompt_len": len(ids),
            "audio_tokens": {"mel": self.tokens[row["file_name"]]},
            "row": row,
        }

    def collate_fn(self, items):
        return collate(items, pad_id=self.pad_id)


@pytest.fixture(scope="module")
def data(tok):
    return FakeDataset(tok)


SITES = {
    "encoders": "all",
    "connectors": "all",
    "resid": {"layers": "all", "positions": ["before_slot", "last_prompt", "slot_after"]},
    "audio_kv": {"layers": "all", "which": ["k"]},
}


def test_probe_finds_the_planted_label_and_nothing_where_it_cannot_be(model, data, tmp_path):
    suite = ProbeSuite(name="t", attribute="pitch_class", sites=SITES, folds=4, bootstrap=200)
    df, fig = run_suite(suite, model, data, out_dir=tmp_path)
    by = df.set_index("site")
    chance = 1 / len(CLASSES)
    assert set(df["n"]) == {N_CLIPS}  # one row per clip (2 task rows each)
    assert list(by.index) == ["encoders.mel.hook_out", "connectors.mel.hook_out"] + [
        f"blocks.{layer}.hook_resid_post@{p}" for p in ("before_slot", "last_prompt", "slot_after") for layer in (0, 1)
    ] + ["blocks.1.attn.hook_audio_k"]
    enc = by.loc["encoders.mel.hook_out"]
    assert enc["value"] >= 0.95 and enc["ci_low"] > 0.85
    assert enc["control"] < chance + 0.2, enc["control"]
    assert enc["selectivity"] > 0.5
    assert by.loc["blocks.1.attn.hook_audio_k", "value"] >= 0.9  # keys of the audio tokens carry it too
    for layer in (0, 1):  # before the slot: causally blind to audio, same text for every clip
        v = by.loc[f"blocks.{layer}.hook_resid_post@before_slot", "value"]
        assert v < chance + 0.15, v
    # text after the slot at layer 0 (LAL starts at layer 1) sees no audio either
    assert by.loc["blocks.0.hook_resid_post@last_prompt", "value"] < chance + 0.15
    assert np.allclose(df["majority"], chance, atol=0.05)
    assert (df["ci_low"] <= df["value"]).all() and (df["value"] <= df["ci_high"]).all()
    assert np.allclose(df["selectivity"], df["value"] - df["control"])
    for col in (
        "site",
        "kind",
        "layer",
        "attribute",
        "metric",
        "value",
        "ci_low",
        "ci_high",
        "majority",
        "control",
        "selectivity",
        "n",
    ):
        assert col in df
    assert (tmp_path / "probe_t.csv").exists() and (tmp_path / "probe_t.html").exists()
    assert not (tmp_path / ".probe_t_activations").exists()  # temporary store removed
    assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text and fig.layout.annotations


def test_regression_probe_reports_r2(model, data):
    suite = ProbeSuite(name="r", attribute="loud", task="regression", sites={"encoders": "all"}, folds=3, bootstrap=100)
    df, _ = run_suite(suite, model, data)
    row = df.iloc[0]
    assert row["metric"] == "r2" and row["value"] > 0.9 and row["control"] < 0.3 and row["majority"] <= 0.0


def test_streamed_store_reads_back_what_was_pooled(model, data, tmp_path):
    clips = prepare_clips(data, "pitch_class")
    assert clips.dataset[0]["input_ids"].tolist() == clips.dataset[5]["input_ids"].tolist()  # fixed question
    sites = resolve_sites(SITES, model)
    small = collect_activations(model, clips, sites, tmp_path / "b7", batch_size=7)
    big = collect_activations(model, clips, sites, tmp_path / "b60", batch_size=60)
    half = collect_activations(model, clips, sites, tmp_path / "f16", batch_size=16, dtype="float16")
    files = sorted(p.name for p in (tmp_path / "b7").iterdir())
    assert "manifest.json" in files and "clips.csv" in files and len(files) == len(sites) + 2
    reopened = ActivationStore(tmp_path / "b7")
    assert reopened.n == N_CLIPS and [s.name for s in reopened.sites] == [s.name for s in sites]
    # independent reference for the encoder site: mean of the planted tokens over the valid frames
    ref = torch.stack([data.tokens[f].mean(0) for f in clips.file_names]).numpy()
    assert np.allclose(reopened.load("encoders.mel.hook_out"), ref, atol=1e-5)
    for s in sites:
        a, b = reopened.load(s), big.load(s)
        assert a.shape == (N_CLIPS, small.dims[s.name]) and a.dtype == np.float32
        assert np.allclose(a, b, atol=1e-4), s.name  # batch size does not change what is stored
        assert np.allclose(half.load(s), a, rtol=2e-3, atol=2e-3)
        assert (tmp_path / "b7" / reopened.files[s.name]).stat().st_size == N_CLIPS * a.shape[1] * 4
    # fitting from the reopened store = fitting from the one just written
    kw = dict(task="classification", folds=3, seed=1, bootstrap=50)
    d1 = fit_probes(reopened, clips.labels, clips.identities, **kw)
    d2 = fit_probes(small, clips.labels, clips.identities, **kw)
    assert d1.equals(d2)


def test_nnsight_backend_stores_the_same(model, data, tmp_path):
    clips = prepare_clips(data, "pitch_class", n=8)
    sites = resolve_sites(
        {"encoders": "all", "resid": {"layers": [1], "positions": ["last_prompt"]}, "audio_kv": {"layers": [1]}}, model
    )
    a = collect_activations(model, clips, sites, tmp_path / "tl", batch_size=4)
    b = collect_activations(model, clips, sites, tmp_path / "nn", batch_size=4, backend="nnsight")
    for s in sites:
        assert np.allclose(a.load(s), b.load(s), atol=1e-5), s.name


def test_control_task_keeps_identity_and_distribution():
    labels = np.array(["a"] * 300 + ["b"] * 100, dtype=object)
    ids = np.array([f"clip{i // 2}" for i in range(400)])  # 2 rows per identity
    c = control_labels(labels, ids, "random_identity", seed=0)
    assert all(c[2 * i] == c[2 * i + 1] for i in range(200))
    assert 0.65 < np.mean(c == "a") < 0.85
    assert sorted(control_labels(labels, ids, "shuffle", seed=0)) == sorted(labels)


def test_rounding_noise_on_identical_inputs_is_not_signal(tmp_path):
    """Clips with identical text give activations that differ only by batch-dependent rounding; standardising
    would turn that noise into features. Here the noise is made to follow the label: still chance."""
    rng = np.random.default_rng(0)
    y = np.array(CLASSES * 20, dtype=object)
    base = rng.normal(size=(1, 32)) * 50
    signal = (y[:, None] == np.array(CLASSES)[None]).astype(float) @ rng.normal(size=(3, 32))
    site = Site("blocks.0.hook_resid_post@last_prompt", "blocks.0.hook_resid_post", "resid", 0, "last_prompt")
    for scale, expect_chance in ((3e-7, True), (1e-2, False)):
        store = ActivationStore(tmp_path / str(scale), [site])
        store.append({site.name: base * (1 + scale * signal)})
        store.close({"task": "classification"})
        v = fit_probes(store, y, folds=4, bootstrap=0)["value"].iloc[0]
        assert (v < 0.5) if expect_chance else (v > 0.95), (scale, v)


def test_bad_inputs_give_clear_errors(model, data, tmp_path):
    with pytest.raises(ProbeError, match=r"'nope'.*fake-dataset.*columns available: file_name, pitch_class"):
        prepare_clips(data, "nope")
    with pytest.raises(ProbeError, match=r"'instrument' is null for every clip.*default preset"):
        prepare_clips(data, "instrument")
    with pytest.raises(ProbeError, match=r"unknown encoder\(s\) \['whisper'\].*\['mel'\]"):
        resolve_sites({"encoders": ["whisper"]}, model)
    with pytest.raises(ProbeError, match=r"unknown hook name 'blocks.0.hook_nope'"):
        resolve_sites({"hooks": ["blocks.0.hook_nope"]}, model)
    with pytest.raises(ProbeError, match=r"layer 5 is out of range: this model has 2 layers, valid 0..1"):
        resolve_sites({"resid": {"layers": [0, 5]}}, model)
    with pytest.raises(ProbeError, match=r"layer.*out of range"):
        resolve_sites({"hooks": ["blocks.7.hook_resid_post"]}, model)
    with pytest.raises(ProbeError, match=r"layer\(s\) \[0\] have no LAL audio.*\[1\]"):
        resolve_sites({"audio_kv": {"layers": [0, 1]}}, model)
    with pytest.raises(ProbeError, match=r"unknown position\(s\) \['first'\]"):
        resolve_sites({"resid": {"positions": ["first"]}}, model)
    with pytest.raises(ProbeError, match=r"unknown site group\(s\) \['resids'\]"):
        ProbeSuite.from_dict({"attribute": "x", "sites": {"resids": {}}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("attribute: pitch_class\nfold: 3\nsites: {encoders: all}\n")
    with pytest.raises(ProbeError, match=r"bad.yaml: unknown key\(s\) \['fold'\]"):
        load_suite(bad)
    with pytest.raises(ProbeError, match="incomplete|not an activation store"):
        ActivationStore(tmp_path)


def test_shipped_suites_load_and_resolve(model):
    paths = sorted((REPO / "probes").glob("*.yaml"))
    names = {p.stem for p in paths}
    assert {"category", "pitch", "direction", "count", "loudness", "word", "instrument"} <= names
    for p in paths:
        suite = load_suite(p)
        assert suite.attribute
        assert resolve_sites(suite, model)  # every shipped suite fits a 2-layer LAL model ("all" layers)


def test_cli_runs_suites_and_reports_a_bad_one(model, data, tmp_path, monkeypatch, capsys):
    import workbench.analysis.probes as probes_lib
    import workbench.probe as cli

    calls = []

    def fake_load(checkpoint, data_dir, n, **kw):
        calls.append((checkpoint, data_dir, n))
        return model, data

    monkeypatch.setattr(probes_lib, "load_for_analysis", fake_load)  # run_probe_command reads it there
    good = tmp_path / "good.yaml"
    good.write_text(
        "attribute: pitch_class\nsites: {encoders: all, resid: {layers: [1], positions: [last_prompt]}}\n"
        "folds: 3\nbootstrap: 50\n"
    )
    bad = tmp_path / "inst.yaml"
    bad.write_text("attribute: instrument\nsites: {encoders: all}\n")
    out = tmp_path / "out"
    rc = cli.main(
        [str(bad), str(good), "--checkpoint", "ck", "--data", "dd", "--n", "30", "--out-dir", str(out), "--no-progress"]
    )
    io = capsys.readouterr()
    assert rc == 2 and "'instrument' is null for every clip" in io.err  # the bad suite is reported...
    assert calls == [("ck", "dd", None)]  # --n counts clips, applied after the one-row-per-clip dedupe
    df = pd.read_csv(out / "probe_good.csv")  # ...and the good one still runs
    assert set(df["n"]) == {30} and list(df["site"]) == [
        "encoders.mel.hook_out",
        "blocks.1.hook_resid_post@last_prompt",
    ]
    assert "good (pitch_class, accuracy, n=30" in io.out


def test_cli_reports_a_missing_suite(capsys):
    from workbench.probe import main

    assert main(["probes/does_not_exist.yaml"]) == 2
    assert "no probe suite" in capsys.readouterr().err
