"""Models with answers known by construction, for the attribute lens, listening heads and attribution patching.

Weights of the tiny random Llama-based PAL models (tests/model/tiny_models.py) are edited so that what the
analysis must find is planted: a layer from which the attribute is decodable, heads that copy audio, a model
whose every effect is linear, a saturated attention softmax.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from tests.analysis.fakes import FakeDataset, shared_tokenizer
from tests.model.tiny_models import build, enc_spec, make_tiny

OPTIONS = {"pitch_class": ["low", "high", "medium"]}
OPTION_IDS = {"pitch_class": {"low": 10, "high": 17, "medium": 24}}  # FakeDataset's first answer tokens


@functools.lru_cache(maxsize=None)
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

    model = build(three_layer_dir(), shared_tokenizer(),
                  enc_spec(n=1, mode="lal", layer=k, gate=True))
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
