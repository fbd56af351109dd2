"""Fixtures shared by the analysis tests: the tiny 2-layer LLM folder and the SmolLM2 tokenizer (both cached)."""

import pytest

from tests.analysis.fakes import shared_tiny_dir, shared_tokenizer


@pytest.fixture(scope="module")
def tiny_dir():
    return shared_tiny_dir()


@pytest.fixture(scope="module")
def tok():
    return shared_tokenizer()
