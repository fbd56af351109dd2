"""Where an encoder's frame tokens enter a `PALModel` (`EncoderSlot`, with its ``encoders.{name}.hook_out``).

LAL's per-layer adapter and gate live with the rest of LAL in `workbench.model.audio.lal`."""

from __future__ import annotations

import torch
from torch import nn
from transformer_lens.hook_points import HookPoint

from workbench.model.pal_config import ConfigError, EncoderSpec

__all__ = ["EncoderSlot"]


class EncoderSlot(nn.Module):
    """Where encoder ``name``'s frame tokens enter: ``hook_out`` [B, T, D_enc], ``hook_mask`` [B, T] bool (real
    frames).

    The frozen encoder itself is kept outside the module tree (not in the state dict, never trained,
    loaded only when waveforms must be encoded); token-cache batches skip it entirely.
    """

    def __init__(self, spec: EncoderSpec):
        super().__init__()
        self.spec = spec
        self.hook_out = HookPoint()
        self.hook_mask = HookPoint()
        self.__dict__["_impl"] = None

    def encoder(self):
        if self.__dict__["_impl"] is None:
            from workbench.encoders import load_encoder

            enc = load_encoder(self.spec.name, **self.spec.options)
            if self.spec.dim is not None and enc.dim != self.spec.dim:
                raise ConfigError(
                    f"encoder {self.spec.name!r} gives {enc.dim}-d tokens but the config says dim {self.spec.dim}"
                )
            self.__dict__["_impl"] = enc
        return self.__dict__["_impl"]

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.hook_out(tokens), self.hook_mask(mask)
