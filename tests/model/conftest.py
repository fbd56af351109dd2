"""Shared fixtures for the decoder tests: the real SmolLM2-135M (converted once, cached) and tiny random LMs."""

from __future__ import annotations

import pytest

from tests.model.tiny_models import make_tiny, tiny_hf_configs, tiny_llama_checkpoint
from workbench.model.llm import load_hf_model, load_tokenizer
from workbench.model.loading import load_llm


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


@pytest.fixture(scope="module")
def tiny_llama_dir(tmp_path_factory):
    """(folder, transformers model) of a 2-layer random Llama checkpoint (`tiny_models.tiny_llama_checkpoint`)."""
    return tiny_llama_checkpoint(tmp_path_factory.mktemp("tiny_llama"))


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("smollm2")
