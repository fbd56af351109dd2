"""Fixtures for the training tests: tiny synthetic data + mel token cache (once per session), configs."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

EXAMPLE = Path(__file__).with_name("example_config.yaml")


@pytest.fixture(scope="session")
def tokenizer():
    from workbench.model.llm import load_tokenizer

    try:
        return load_tokenizer()
    except Exception as e:  # pragma: no cover
        pytest.skip(f"no SmolLM2 tokenizer: {e}")


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    """Tiny-preset train (24 clips) / val (6 clips) + mel tokens, made by the trainer's own prepare_data."""
    from workbench.training.batch_order import prepare_data
    from workbench.training.run_config import load_run_config

    root = tmp_path_factory.mktemp("train-data")
    cfg = load_run_config(EXAMPLE, "tiny")
    cfg.data.train, cfg.data.val, cfg.data.cache_dir = root / "synth" / "train", root / "synth" / "val", root / "cache"
    prepare_data(cfg.data, ["mel"], progress=False)
    return root


def example_dict() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def write_config(tmp: Path, data_root: Path, mutate=None, name: str = "cfg.yaml") -> Path:
    """Copy of the example config with data paths pointing at ``data_root``; ``mutate(doc)`` edits it."""
    doc = copy.deepcopy(example_dict())
    for p in doc["presets"].values():
        p["data"]["train"] = str(data_root / "synth" / "train")
        if "val" in p["data"]:
            p["data"]["val"] = str(data_root / "synth" / "val")
        p["data"]["cache_dir"] = str(data_root / "cache")
    if mutate:
        mutate(doc)
    path = Path(tmp) / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture
def factory(tokenizer):
    """Model factory building the stand-in; ``factory.models`` keeps every model built; ``factory.kw`` extra args."""
    from tests.training.standin import StandInModel

    class F:
        def __init__(self):
            self.models, self.kw = [], {}

        def __call__(self, model_dict, **_):  # (seed=... from the default factory's call)
            m = StandInModel(tokenizer, **{**model_dict, **self.kw})
            self.models.append(m)
            return m

    return F()
