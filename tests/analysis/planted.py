"""Models with answers known by construction, for the attribute lens, listening heads and attribution patching.

Weights of the tiny random Llama-based PAL models (tests/model/tiny_models.py) are edited so that what the
analysis must find is planted: a layer from which the attribute is decodable, heads that copy audio, a model
whose every effect is linear, a saturated attention softmax.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import save_file

from tests.analysis.fakes import FakeDataset, shared_tokenizer
from tests.model.tiny_models import build, enc_spec, make_tiny

OPTIONS = {"pitch_class": ["low", "high", "medium"]}
OPTION_IDS = {"pitch_class": {"low": 10, "high": 17, "medium": 24}}  # FakeDataset's first answer tokens


@functools.cache
def three_layer_dir():
    """The tiny random Llama (GQA 8 heads / 2 KV heads, d_model 64, vocab 97) with all 3 layers, saved."""
    folder = Path(tempfile.mkdtemp(prefix="pal-planted-3l-"))
    hf, _ = make_tiny("llama_gqa_llama3_rope")
    hf.config.save_pretrained(folder)
    save_file({k: v.contiguous() for k, v in hf.state_dict().items()}, str(folder / "model.safetensors"))
    return folder, hf


def fake_dataset(n=6, seed=0):
    return FakeDataset(shared_tokenizer(), Path(tempfile.gettempdir()), n=n, seed=seed)


@torch.no_grad()
def planted_lens_model(k: int, dataset):
    """A 3-layer LAL@k model on which the right option of every row of ``dataset`` is exactly tied with the
    others at the last prompt position up to layer k - 1 (residual 0 there) and the unique top-1 from layer k on.

    All MLP outputs and all attention outputs except layer k's are zero; the last prompt token's embedding is
    zero; layer k's audio gate (+30) puts every head's attention on the audio token, and layer k's W_O is
    solved so that its output at the last prompt position is a direction whose option logits are e_right."""
    from workbench.analysis.core import collect, last_prompt_index

    model = build(three_layer_dir(), shared_tokenizer(), enc_spec(n=1, mode="lal", layer=k, gate=True))
    for block in model.blocks:
        block.mlp.down_proj.weight.zero_()
        block.attn.o_proj.weight.zero_()
    for q in dataset.prompts.values():
        model.embed.weight[int(q[-1])] = 0
    for name, gate in model.lal_gates.items():
        gate.fill_(30.0 if name.endswith(f"_L{k}") else -30.0)
    idx = list(range(len(dataset)))
    batch = dataset.collate_fn([dataset[i] for i in idx])
    _, acts = collect(model, batch, [f"blocks.{k}.attn.hook_z"])
    layout = model.token_layout(batch)
    last = layout.text_index.gather(1, last_prompt_index(batch)[:, None])[:, 0]
    z = acts[f"blocks.{k}.attn.hook_z"][torch.arange(len(idx)), last].flatten(1)  # [n, H*D]
    opts = OPTIONS["pitch_class"]
    w_u = model.unembed.weight[[OPTION_IDS["pitch_class"][o] for o in opts]].double()  # [3, M]
    targets = []
    for i in idx:
        e = torch.zeros(3, dtype=torch.float64)
        e[opts.index(dataset.rows[i]["answer"])] = 1.0
        y = torch.linalg.pinv(w_u) @ e  # option logits of y: e (min-norm solution)
        targets.append(y / model.ln_final.weight.double())
    t = torch.stack(targets) * 20  # [n, M]
    w_o = t.T @ torch.linalg.pinv(z.double().T)  # W_O z_i = t_i
    model.blocks[k].attn.o_proj.weight.copy_(w_o.float())
    return model


@torch.no_grad()
def linearize(model, keep_queries: Sequence[int] = ()):
    """Make every effect on the logits linear (affine): MLP outputs zero, queries zero (uniform attention, so the
    pattern cannot change) except in ``keep_queries`` layers, and every RMSNorm a fixed scale (eps 1e8, weight
    x 1e4: x * rsqrt(mean(x^2) + 1e8) = x * 1e-4 to 1e-8 relative)."""
    for l, block in enumerate(model.blocks):
        block.mlp.down_proj.weight.zero_()
        if l not in keep_queries:
            block.attn.q_proj.weight.zero_()
        for norm in (block.ln1, block.ln2):
            norm.eps = 1e8
            norm.weight.mul_(1e4)
    model.ln_final.eps = 1e8
    model.ln_final.weight.mul_(1e4)
    return model


@torch.no_grad()
def saturated_lal_model(clean, corrupt, query_scale: float = 1000.0):
    """LAL@1 model, linear everywhere except layer 1's attention softmax, which is saturated (queries x
    ``query_scale``), and whose W_V is projected off the audio inputs of both batches (audio values exactly 0):
    patching the clean audio K/V into the corrupted run changes only the pattern."""
    from tests.analysis.tiny_pal import fresh_model
    from workbench.analysis.core import collect

    torch.manual_seed(0)  # build() draws the adapters and gates from the global generator
    model = linearize(fresh_model("lal"), keep_queries=(1,))
    model.blocks[1].attn.q_proj.weight.mul_(query_scale)
    ys = []
    for b in (clean, corrupt):
        _, acts = collect(model, b, ["connectors.mel.hook_out"])
        x = model.lal_adapters["mel_L1"](acts["connectors.mel.hook_out"])
        ys.append(model.blocks[1].ln1.normalize(x).flatten(0, 1))
    q, _ = torch.linalg.qr(torch.cat(ys).double().T)  # [M, r] orthonormal basis of the audio inputs
    w = model.blocks[1].attn.v_proj.weight.double()  # [G*D, M]
    model.blocks[1].attn.v_proj.weight.copy_((w - (w @ q) @ q.T).float())
    return model
