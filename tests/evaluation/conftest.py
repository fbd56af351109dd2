"""Fixtures for the evaluation tests: a tiny synthetic corpus, the LLM tokenizer, an answers-CSV writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """20 clips of the tiny preset (about 130 task rows; cls, qa and caption)."""
    from workbench.data.synth import generate

    out = tmp_path_factory.mktemp("evaldata") / "tiny"
    generate(out, n=20, seed=0, preset="tiny", progress=False)
    return out


@pytest.fixture(scope="session")
def tokenizer():
    from workbench.model.llm import load_tokenizer

    try:
        return load_tokenizer()
    except Exception as e:  # pragma: no cover - depends on the offline weights package
        pytest.skip(f"no SmolLM2 tokenizer available: {e}")


def synthetic_answers(n: int, p_correct: float, seed: int, base: pd.DataFrame | None = None) -> pd.DataFrame:
    """A closed-rows answers table (2 tasks x 2 attributes, yes/no answers) with P(correct) = p_correct."""
    rng = np.random.default_rng(seed)
    if base is None:
        base = pd.DataFrame(
            {
                "row_id": [f"r{i:05d}" for i in range(n)],
                "file_name": [f"audio/{i // 2:05d}.wav" for i in range(n)],
                "task": np.where(np.arange(n) % 2 == 0, "cls", "qa"),
                "attribute": np.where(np.arange(n) % 4 < 2, "has_speech", "is_loud"),
                "question": "q?",
                "answer": rng.choice(["yes", "no"], size=n),
            }
        )
    df = base.copy()
    ok = rng.random(len(df)) < p_correct
    df["prediction"] = np.where(ok, df["answer"], np.where(df["answer"] == "yes", "no", "yes"))
    df["correct"] = ok
    df["closed"] = True
    return df
