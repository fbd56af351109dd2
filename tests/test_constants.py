"""One home for shared names (workbench.common.constants, workbench.common.errors); the old import paths still give them."""

from pathlib import Path

import pytest

from workbench.common import constants, errors

ROOT = Path(__file__).resolve().parents[1]


def test_old_names_are_the_shared_objects():
    from workbench.analysis import core
    from workbench.model import pal, pal_config
    from workbench.pipeline import demo
    from workbench.training import driver as train
    from workbench.training import run_config

    assert demo.VARIANTS is train.VARIANTS is constants.VARIANTS
    assert pal.TRAINABLE_PARTS is run_config.TRAINABLE_PARTS is constants.TRAINABLE_PARTS
    assert demo.TOKEN_CACHE == core.DEFAULT_CACHE == constants.TOKEN_CACHE
    assert pal_config.ConfigError is run_config.ConfigError is errors.ConfigError


def test_variants_have_configs_and_committed_checkpoints():
    for v in constants.VARIANTS:
        assert (ROOT / "configs" / f"{v}.yaml").is_file(), v
        assert (ROOT / "results" / "checkpoints" / v / "final" / "config.json").is_file(), v


def test_one_except_catches_model_and_run_config_errors(tmp_path):
    from workbench.model.pal_config import PALConfig
    from workbench.training.run_config import ConfigError, load_run_config

    with pytest.raises(ConfigError, match="insertion"):
        PALConfig.from_dict({"insertion": "middle", "encoders": [{"name": "mel"}]}).validate()
    bad = tmp_path / "bad.yaml"
    bad.write_text("nonsense_key: 1\n")
    with pytest.raises(ConfigError):
        load_run_config(bad, "tiny")
