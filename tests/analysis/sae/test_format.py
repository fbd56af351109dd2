"""Our SAE folders in SAELens's on-disk format.

Matched against SAELens **6.54.12** (the PyPI wheel ``sae_lens-6.54.12-py3-none-any.whl``; source at
github.com/decoderesearch/SAELens, formerly jbloomAus/SAELens):
- ``sae_lens/constants.py``: ``SAE_CFG_FILENAME = "cfg.json"``, ``SAE_WEIGHTS_FILENAME = "sae_weights.safetensors"``;
- ``sae_lens/loading/pretrained_sae_loaders.py``: ``sae_lens_disk_loader`` -> ``get_sae_lens_config_from_disk``
  (json.load of cfg.json) and ``read_sae_components_from_disk`` (every tensor of the safetensors file, cast to
  ``cfg["dtype"]``); ``handle_config_defaulting`` applies the pre-6.0 renames unless ``metadata.sae_lens_version``
  >= 6.0.0;
- ``sae_lens/saes/sae.py``: ``SAE.load_from_disk`` -> ``SAEConfig.from_dict`` (class by ``architecture`` via
  ``sae_lens/registry.py``, dataclass fields filtered, ``metadata`` -> ``SAEMetadata``), then
  ``load_state_dict(state_dict, assign=True)`` (strict: exactly the module's parameters);
  ``SAEConfig`` fields ``d_in, d_sae, dtype, device, apply_b_dec_to_input, normalize_activations,
  reshape_activations, metadata``; ``initialize_weights``: ``W_enc`` [d_in, d_sae], ``W_dec`` [d_sae, d_in],
  ``b_dec`` [d_in]; ``process_sae_in``: ``x - b_dec * apply_b_dec_to_input``;
- ``sae_lens/saes/topk_sae.py``: ``TopKSAEConfig`` adds ``k``, ``rescale_acts_by_decoder_norm``; architecture
  ``"topk"``; parameter ``b_enc`` [d_sae]; ``encode`` = TopK(pre) with ``TopK``: top-k then ReLU, zeros elsewhere;
  ``decode`` = ``feats @ W_dec + b_dec``;
- ``sae_lens/saes/jumprelu_sae.py``: architecture ``"jumprelu"``; parameters ``threshold`` [d_sae] and ``b_enc``;
  ``encode`` = ``relu(pre) * (pre > threshold)``.

SAELens itself cannot be imported beside transformer-lens 4 (``No module named
'transformer_lens.HookedTransformer'``), so the default test re-states those rules here, written from the source
above and independent of our loader. ``test_saelens_itself_loads_our_folder`` runs the real
``SAE.load_from_disk`` in a subprocess whose PYTHONPATH (``SAELENS_PYTHONPATH``) holds sae_lens 6.54.12 with
transformer-lens 3.9.0 (installed with ``pip install --no-deps --target`` outside the project venv); it is slow and
runs only where that path is given.
"""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open

from workbench.analysis.sae.model import SparseAutoencoder
from workbench.analysis.sae.saelens_format import load_sae, save_sae

TOPK_FIELDS = {
    "d_in",
    "d_sae",
    "dtype",
    "device",
    "apply_b_dec_to_input",
    "normalize_activations",
    "reshape_activations",
    "metadata",
    "architecture",
    "k",
    "rescale_acts_by_decoder_norm",
}
JUMPRELU_FIELDS = TOPK_FIELDS - {"k", "rescale_acts_by_decoder_norm"}


def _sae(arch, seed=0):
    sae = SparseAutoencoder(8, 24, 3, arch, seed=seed, hook_name="connectors.whisper.hook_out", model_name="baseline")
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed + 1)
        for p in (sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec):
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        if arch == "batchtopk":
            sae.threshold.copy_(torch.rand(24, generator=g) * 0.3)
    return sae


def _saelens_encode(cfg, t, x):
    """SAELens's inference maths, from the source named in the module docstring."""
    sae_in = x - t["b_dec"] * cfg["apply_b_dec_to_input"]
    pre = sae_in @ t["W_enc"] + t["b_enc"]
    if cfg["architecture"] == "topk":
        vals, idx = torch.topk(pre, k=cfg["k"], dim=-1, sorted=False)
        return torch.zeros_like(pre).scatter_(-1, idx, vals.relu())
    return pre.relu() * (pre > t["threshold"]).to(pre.dtype)


@pytest.mark.parametrize("arch", ["topk", "batchtopk"])
def test_files_have_saelens_names_shapes_and_maths(arch, tmp_path):
    sae = _sae(arch)
    save_sae(sae, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} >= {"cfg.json", "sae_weights.safetensors"}
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    expected_arch = "topk" if arch == "topk" else "jumprelu"
    assert cfg["architecture"] == expected_arch
    assert set(cfg) == (TOPK_FIELDS if arch == "topk" else JUMPRELU_FIELDS)
    assert cfg["normalize_activations"] == "none" and cfg["reshape_activations"] == "none"
    assert cfg["dtype"] == "float32" and cfg["apply_b_dec_to_input"] is True
    assert int(cfg["metadata"]["sae_lens_version"].split(".")[0]) >= 6  # skips handle_pre_6_0_config
    assert cfg["metadata"]["hook_name"] == "connectors.whisper.hook_out"
    with safe_open(str(tmp_path / "sae_weights.safetensors"), framework="pt") as f:
        t = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    names = {"W_enc", "b_enc", "W_dec", "b_dec"} | ({"threshold"} if expected_arch == "jumprelu" else set())
    assert set(t) == names  # load_state_dict is strict: no more, no fewer
    assert t["W_enc"].shape == (8, 24) and t["W_dec"].shape == (24, 8) and t["b_enc"].shape == (24,)
    assert t["b_dec"].shape == (8,)
    x = torch.randn(16, 8, generator=torch.Generator().manual_seed(5))
    ref = _saelens_encode(cfg, t, x)
    with torch.no_grad():
        assert torch.allclose(sae.encode(x), ref, atol=1e-6)
        assert torch.allclose(sae.decode(ref), ref @ t["W_dec"] + t["b_dec"], atol=1e-6)
        back = load_sae(tmp_path)
        assert torch.equal(back.encode(x), sae.encode(x))


def test_folding_the_input_scale_keeps_the_features(tmp_path):
    sae = _sae("topk")
    x = torch.randn(10, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        before = sae.encode(x * 4.0)
        recon = sae.decode(before) / 4.0
        sae.fold_input_scale(4.0)
        assert torch.allclose(sae.encode(x), before, atol=1e-5)
        assert torch.allclose(sae.decode(sae.encode(x)), recon, atol=1e-5)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="cfg.json"):
        load_sae(tmp_path)
    with pytest.raises(ValueError, match="threshold"):
        save_sae(SparseAutoencoder(4, 8, 2, "batchtopk"), tmp_path / "x")  # no threshold estimated yet


SAELENS_CHECK = r"""
import sys, json, torch
from sae_lens import SAE
from safetensors.torch import load_file
sae = SAE.load_from_disk(sys.argv[1])
x = torch.load(sys.argv[2])
with torch.no_grad():
    f = sae.encode(x); r = sae.decode(f)
torch.save({"f": f, "r": r, "cls": type(sae).__name__}, sys.argv[3])
"""


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("SAELENS_PYTHONPATH"), reason="set SAELENS_PYTHONPATH to a sae_lens 6.x path")
@pytest.mark.parametrize("arch", ["topk", "batchtopk"])
def test_saelens_itself_loads_our_folder(arch, tmp_path):
    sae = _sae(arch)
    save_sae(sae, tmp_path / "sae")
    x = torch.randn(16, 8, generator=torch.Generator().manual_seed(9))
    torch.save(x, tmp_path / "x.pt")
    env = {**os.environ, "PYTHONPATH": os.environ["SAELENS_PYTHONPATH"]}
    subprocess.run(
        [sys.executable, "-c", SAELENS_CHECK, str(tmp_path / "sae"), str(tmp_path / "x.pt"), str(tmp_path / "out.pt")],
        check=True,
        env=env,
        cwd=tmp_path,
    )
    out = torch.load(tmp_path / "out.pt")
    assert out["cls"] == ("TopKSAE" if arch == "topk" else "JumpReLUSAE")
    with torch.no_grad():
        assert torch.allclose(out["f"], sae.encode(x), atol=1e-6)
        assert torch.allclose(out["r"], sae(x), atol=1e-6)
