"""Released audio-LLMs of transformers 5.x (Qwen2-Audio, Voxtral, Audio Flamingo 3, GLM-ASR) as hooked PAL
models: ``PALModel.from_pretrained(folder_or_hub_id)`` dispatches here (`loading.load_released`)."""

from workbench.model.pal_checkpoint import register_checkpoint_kind
from workbench.model.released.loading import is_hub_id, is_released_source, load_released
from workbench.model.released.registry import (
    SUPPORTED_ARCHITECTURES,
    ReleasedModelError,
    UnsupportedReleasedArchitecture,
)

register_checkpoint_kind("released", is_released_source, load_released)

__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "ReleasedModelError",
    "UnsupportedReleasedArchitecture",
    "is_hub_id",
    "is_released_source",
    "load_released",
]
