"""Bad input to the decoder and the loader gets an error that says what is wrong and what to do."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file
from transformers import BertConfig

from tests.model.tiny_models import make_tiny
from workbench.model.decoder import HookedDecoder
from workbench.model.decoder_config import DecoderConfig, UnsupportedArchitectureError
from workbench.model.weights import MissingWeightsError


def test_unknown_architecture():
    with pytest.raises(UnsupportedArchitectureError, match="model_type 'bert' is not supported.*llama, qwen2, gpt2"):
        DecoderConfig.from_hf_config(BertConfig())


def test_checkpoint_folder_with_missing_tensors(tmp_path):
    hf, _ = make_tiny("llama_gqa_llama3_rope")
    hf.config.save_pretrained(tmp_path)
    state = {k: v.contiguous() for k, v in hf.state_dict().items() if "layers.2.mlp.down_proj" not in k}
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(MissingWeightsError, match=r"missing 1 tensor.*layers\.2\.mlp\.down_proj\.weight"):
        HookedDecoder.from_pretrained(tmp_path)
    # the complete folder loads and matches
    save_file({k: v.contiguous() for k, v in hf.state_dict().items()}, str(tmp_path / "model.safetensors"))
    model = HookedDecoder.from_pretrained(tmp_path)
    ids = torch.randint(0, 97, (1, 5))
    assert torch.allclose(model(ids), hf(ids).logits, atol=1e-5)


def test_missing_shard_and_non_checkpoint_folder(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "model-00001-of-00002.safetensors"}})
    )
    with pytest.raises(FileNotFoundError, match="model-00001-of-00002.safetensors"):
        HookedDecoder.from_pretrained(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        HookedDecoder.from_pretrained(empty)


def test_layer_out_of_range():
    _, model = make_tiny("gpt2")
    with pytest.raises(IndexError, match="layer 3 is out of range: this model has 3 layers"):
        model.check_layer(3)
    with pytest.raises(IndexError, match="stop_at_layer 7"):
        model(torch.zeros(1, 2, dtype=torch.long), stop_at_layer=7)


def test_prompt_longer_than_context():
    _, model = make_tiny("gpt2")  # n_positions = 64
    with pytest.raises(ValueError, match="model's context is 64 positions"):
        model(torch.zeros(1, 65, dtype=torch.long))
    model(torch.zeros(1, 64, dtype=torch.long))  # exactly the context is fine


def test_bad_token_ids_and_shapes():
    _, model = make_tiny("qwen2_bias")
    with pytest.raises(ValueError, match="outside the vocabulary 0..96"):
        model(torch.tensor([[5, 97]]))
    with pytest.raises(ValueError, match=r"input_ids must be \[batch, seq\]"):
        model(torch.tensor([5, 6]))
    with pytest.raises(ValueError, match="attention_mask has shape"):
        model(torch.tensor([[5, 6]]), attention_mask=torch.ones(1, 3))
