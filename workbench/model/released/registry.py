"""The released audio-LLM classes of `transformers` 5.x that load as hooked PAL models, and what differs
between them: the audio tower's kind, how many tower frames make one LLM token, and how many audio tokens a
clip of F valid mel frames gives (the same counts the processors use to expand the audio placeholder).

All four are PLITS@0 models: tower -> projector -> ``masked_scatter`` into the input embeddings at the
placeholder tokens. One tower window (30 s for the released checkpoints) is supported per clip.
"""

from __future__ import annotations

from dataclasses import dataclass


class ReleasedModelError(ValueError):
    """A released-model folder or hub id that cannot be loaded; the message says why and the fix."""


class UnsupportedReleasedArchitecture(ReleasedModelError):
    """config.json names an architecture this loader does not know."""


def require_parts(parts: dict[str, dict], state: dict, source: str, what: str = "") -> dict[str, dict]:
    """``parts`` unchanged if every part ({"tower", "projector", "text"} or a subset) got weights; else
    `ReleasedModelError` naming the empty part and a few of the keys seen. ``what``: e.g. " of Granite Speech"."""
    for part, got in parts.items():
        if not got:
            raise ReleasedModelError(
                f"{source}: no {part} weights{what} in the safetensors files "
                f"(keys seen: {sorted(state)[:4]}...). Is the download complete?"
            )
    return parts


def conv_frames(n_mel_frames):
    """Tower frames after the two Whisper-style convolutions (the second has stride 2): (F - 1) // 2 + 1."""
    return (n_mel_frames - 1) // 2 + 1


@dataclass(frozen=True)
class Architecture:
    """What the loader must know about one released class.

    key: the encoder name (hook prefix ``encoders.{key}.``); tower: "whisper" (LayerNorm pre-norm blocks,
    learned positions) or "glm" (rotary, partial RoPE); pool: tower averages pairs of frames before its last
    norm; masked: the tower's attention ignores frames past the clip; stack: tower frames concatenated into
    one projector input (Voxtral, GLM-ASR: 4); all_frames: every frame of the window is an audio token
    (Voxtral), else only those covering the clip; text_prefix: where the text model sits in the state dict.
    """

    cls: str
    key: str
    tower: str
    pool: bool
    masked: bool
    stack: int
    all_frames: bool
    tower_module: str
    projector: str
    loader: str = ""  # a module of its own with ``load(folder, source, **kw)`` (classes beyond the first four)

    def valid_frames(self, n_mel_frames, n_window_frames: int):
        """Valid tower output frames for F valid mel frames (tensor or int)."""
        if self.all_frames:
            return n_mel_frames * 0 + n_window_frames
        n = conv_frames(n_mel_frames)
        return (n - 2) // 2 + 1 if self.pool else n

    def n_tokens(self, n_mel_frames, n_window_frames: int):
        """Audio tokens (placeholder count) for F valid mel frames of a window of ``n_window_frames`` frames."""
        frames = self.valid_frames(n_mel_frames, n_window_frames)
        return (frames - self.stack) // self.stack + 1


ARCHITECTURES: dict[str, Architecture] = {
    a.cls: a
    for a in (
        Architecture(
            "Qwen2AudioForConditionalGeneration",
            "qwen2_audio",
            "whisper",
            pool=True,
            masked=True,
            stack=1,
            all_frames=False,
            tower_module="qwen2_audio",
            projector="Qwen2AudioMultiModalProjector",
        ),
        Architecture(
            "VoxtralForConditionalGeneration",
            "voxtral",
            "whisper",
            pool=False,
            masked=False,
            stack=4,
            all_frames=True,
            tower_module="voxtral",
            projector="VoxtralMultiModalProjector",
        ),
        Architecture(
            "AudioFlamingo3ForConditionalGeneration",
            "audioflamingo3",
            "whisper",
            pool=True,
            masked=True,
            stack=1,
            all_frames=False,
            tower_module="audioflamingo3",
            projector="AudioFlamingo3MultiModalProjector",
        ),
        Architecture(
            "GlmAsrForConditionalGeneration",
            "glmasr",
            "glm",
            pool=False,
            masked=False,
            stack=4,
            all_frames=False,
            tower_module="glmasr",
            projector="GlmAsrMultiModalProjector",
        ),
        *(
            Architecture(
                cls,
                "qwen2_5_omni",
                "omni",
                pool=True,
                masked=True,
                stack=1,
                all_frames=False,
                tower_module="qwen2_5_omni",
                projector="",
                loader="workbench.model.released.qwen2_5_omni",
            )
            for cls in (
                "Qwen2_5OmniThinkerForConditionalGeneration",
                "Qwen2_5OmniForConditionalGeneration",
                "Qwen2_5OmniModel",
            )
        ),
        Architecture(
            "GraniteSpeechForConditionalGeneration",
            "granite_speech",
            "conformer",
            pool=False,
            masked=False,
            stack=1,
            all_frames=False,
            tower_module="granite_speech",
            projector="GraniteSpeechEncoderProjector",
            loader="workbench.model.released.granite_speech",
        ),
    )
}
SUPPORTED_ARCHITECTURES = tuple(ARCHITECTURES)


def architecture_of(config: dict, source: str) -> Architecture:
    """The `Architecture` named by a config.json dict, or `UnsupportedReleasedArchitecture` listing ours."""
    names = config.get("architectures") or []
    for name in names:
        if name in ARCHITECTURES:
            return ARCHITECTURES[name]
    raise UnsupportedReleasedArchitecture(
        f"{source}: config.json names architecture(s) {names or '(none)'} (model_type "
        f"{config.get('model_type')!r}); released audio-LLMs that load as PAL models: "
        f"{', '.join(SUPPORTED_ARCHITECTURES)}. For a text-only LLM use it as `llm:` of a PAL config; "
        "for a workbench checkpoint pass the folder written by `python -m workbench.train`."
    )
