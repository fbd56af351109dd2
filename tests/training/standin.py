"""A small stand-in for ``workbench.model.pal.PALModel`` with the same training interface.

Parameters: ``llm.*`` (frozen base: embedding, q_proj, v_proj, head), ``connectors.{encoder}`` (audio
tokens -> d), ``adapters.gate``, and after ``enable_lora`` ``llm.{target}.lora_A/lora_B``. The vocabulary is
folded (``id % vocab``) to keep it small. Test hooks: ``fail_at_call`` (NaN loss or an exception at the
k-th ``loss`` call) and ``seen`` (a fingerprint of every batch, to compare data orders).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

PART_PREFIX = {"connectors": "connectors.", "adapters": "adapters."}


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float):
        super().__init__()
        self.base = base
        self.lora_A = nn.Parameter(torch.randn(rank, base.in_features) * 0.1)
        self.lora_B = nn.Parameter(torch.randn(base.out_features, rank) * 0.01)
        self.scale = alpha / rank
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return self.base(x) + self.scale * (self.drop(x) @ self.lora_A.T @ self.lora_B.T)


class StandInModel(nn.Module):
    def __init__(
        self, tokenizer=None, encoders=("mel",), d_audio=256, d=32, vocab=512, fail_at_call=None, fail_kind="nan", **_
    ):
        super().__init__()
        self.tokenizer = tokenizer
        self.encoder_names = list(encoders)
        self.vocab = vocab
        self.llm = nn.ModuleDict(
            {
                "embed": nn.Embedding(vocab, d),
                "q_proj": nn.Linear(d, d),
                "v_proj": nn.Linear(d, d),
                "head": nn.Linear(d, vocab),
            }
        )
        self.connectors = nn.ModuleDict({n: nn.Linear(d_audio, d) for n in self.encoder_names})
        self.adapters = nn.ModuleDict({"gate": nn.Linear(d, d)})
        self.config = {"encoders": self.encoder_names, "d_audio": d_audio, "d": d, "vocab": vocab}
        self.fail_at_call, self.fail_kind = fail_at_call, fail_kind
        self.calls = 0
        self.seen: list[int] = []
        for p in self.parameters():
            p.requires_grad_(False)

    # ---- interface -------------------------------------------------------------------------------
    def enable_lora(self, rank, alpha, dropout, targets):
        for t in targets:
            self.llm[t] = LoRALinear(self.llm[t], rank, alpha, dropout)
        for n, p in self.named_parameters():
            if "lora_" in n:
                p.requires_grad_(False)

    @staticmethod
    def part_of(name: str) -> str | None:
        if "lora_" in name:
            return "lora"
        for part, pre in PART_PREFIX.items():
            if name.startswith(pre):
                return part
        return None

    def set_trainable(self, parts):
        names = []
        for n, p in self.named_parameters():
            on = self.part_of(n) in parts
            p.requires_grad_(on)
            if on:
                names.append(n)
        return names

    def forward(self, batch):
        if self.training:  # validation batches are not recorded
            self.seen.append(int(batch["input_ids"].sum()) * 1000003 + int(batch["labels"].clamp(min=0).sum()))
        h = self.llm["embed"](batch["input_ids"] % self.vocab)
        audio = 0
        for n in self.encoder_names:
            tok, mask = batch["audio_tokens"][n], batch["audio_token_mask"][n].float()
            pooled = (tok * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
            audio = audio + self.connectors[n](pooled)
        h = h + self.adapters["gate"](torch.tanh(audio))[:, None, :]
        h = h + torch.tanh(self.llm["q_proj"](h)) * self.llm["v_proj"](h)
        return self.llm["head"](h)

    def loss(self, batch):
        self.calls += self.training  # counts training micro-batches only
        logits = self(batch)
        labels = batch["labels"]
        labels = torch.where(labels == -100, labels, labels % self.vocab)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, self.vocab), labels[:, 1:].reshape(-1), ignore_index=-100)
        if self.fail_at_call is not None and self.calls == self.fail_at_call:
            if self.fail_kind == "nan":
                return loss * float("nan")
            raise RuntimeError(f"simulated crash at loss call {self.calls}")
        return loss

    def trainable_state_dict(self):
        return {
            n: p.detach().clone()
            for n, p in self.named_parameters()
            if p.requires_grad or "lora_" in n or self.part_of(n) is not None
        }

    def load_trainable_state_dict(self, sd):
        own = dict(self.named_parameters())
        unknown = sorted(set(sd) - set(own))
        if unknown:
            raise KeyError(f"unknown parameters {unknown}")
        with torch.no_grad():
            for n, t in sd.items():
                own[n].copy_(t)

    def save_pretrained(self, path):
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps(self.config))
        save_file({k: v.contiguous() for k, v in self.trainable_state_dict().items()}, str(path / "model.safetensors"))
