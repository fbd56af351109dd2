"""Shared fixtures for the decoder tests: the real SmolLM2-135M (converted once, cached) and tiny random LMs."""

from __future__ import annotations

import pytest
from tests.model.tiny_models import make_tiny, tiny_hf_configs
from workbench.model.llm import load_hf_model, load_llm


@pytest.fixture(scope="session")
def smollm2():
    """(HookedDecoder, tokenizer) of the packaged SmolLM2-135M-Instruct."""
    return load_llm("smollm2")


@pytest.fixture(scope="session")
def hf_smollm2():
    return load_hf_model("smollm2")


@pytest.fixture(params=list(tiny_hf_configs()))
def tiny_pair(request):
    return (request.param, *make_tiny(request.param))
