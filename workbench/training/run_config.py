"""Training config: load a preset from a YAML file, check the ``data`` and ``training`` sections.

Layout::

    presets:
      NAME:
        model: {...}        # PALConfig.from_dict (not checked here beyond "is a mapping")
        data: {train, val?, generate?, cache_dir}
        training: {seed, batch_size, grad_accum, mixed_precision, checkpoint_every, log_every, lora?, stages}

Every error is a :class:`ConfigError` naming the file, the preset and the key path.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from workbench.common.constants import TRAINABLE_PARTS
from workbench.common.errors import ConfigError
from workbench.common.paths import PACKAGE_CHECKOUT
from workbench.training.config_identity import NON_SEMANTIC_TRAINING_KEYS as NON_SEMANTIC_TRAINING_KEYS
from workbench.training.config_identity import config_diff as config_diff
from workbench.training.config_identity import config_hash as config_hash
from workbench.training.config_identity import semantic_dict as semantic_dict
from workbench.training.config_identity import to_jsonable as to_jsonable

__all__ = [
    "ConfigError",
    "StageConfig",
    "LoraConfig",
    "DataConfig",
    "TrainingConfig",
    "RunConfig",
    "load_run_config",
    "parse_preset",
    "config_hash",
    "TRAINABLE_PARTS",
    "KNOWN_TASKS",
    "REPO_ROOT",
]

REPO_ROOT = PACKAGE_CHECKOUT
KNOWN_TASKS = ("cls", "qa", "caption")
MIXED_PRECISION = ("no", "bf16", "fp16")
SCHEDULES = ("cosine", "linear", "constant")

TOP_KEYS = {"presets", "name", "description", "variant", "notes"}
PRESET_KEYS = {"model", "data", "training", "eval", "description"}
DATA_KEYS = {"train", "val", "generate", "cache_dir", "num_workers"}
GENERATE_KEYS = {"preset", "n_train", "n_eval", "seed", "workers"}
TRAINING_KEYS = {
    "seed",
    "batch_size",
    "grad_accum",
    "mixed_precision",
    "checkpoint_every",
    "log_every",
    "lora",
    "stages",
    "keep_checkpoints",
    "weight_decay",
    "max_grad_norm",
    "schedule",
    "min_lr_ratio",
    "deterministic",
    "eval_batches",
    "adam_betas",
    "adam_eps",
}
LORA_KEYS = {"rank", "alpha", "dropout", "targets"}
STAGE_KEYS = {"name", "steps", "lr", "warmup", "trainable", "tasks", "schedule", "weight_decay"}


@dataclass
class StageConfig:
    name: str
    steps: int
    lr: float
    warmup: int = 0
    trainable: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    schedule: str = "cosine"
    weight_decay: float = 0.0


@dataclass
class LoraConfig:
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])


@dataclass
class DataConfig:
    train: Path
    val: Path | None = None
    cache_dir: Path | None = None
    generate: dict | None = None
    num_workers: int = 0


@dataclass
class TrainingConfig:
    seed: int
    batch_size: int
    stages: list[StageConfig]
    grad_accum: int = 1
    mixed_precision: str = "no"
    checkpoint_every: int = 50
    keep_checkpoints: int = 2
    log_every: int = 1
    lora: LoraConfig | None = None
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    schedule: str = "cosine"
    min_lr_ratio: float = 0.0
    deterministic: bool = True
    eval_batches: int = 10
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages)

    @property
    def uses_lora(self) -> bool:
        return any("lora" in s.trainable for s in self.stages)


@dataclass
class RunConfig:
    """One resolved preset: ``model`` (raw dict for PALConfig), ``data``, ``training`` and the raw preset."""

    path: Path
    preset: str
    model: dict
    data: DataConfig
    training: TrainingConfig
    raw: dict

    def hash(self) -> str:
        return config_hash(self.raw, self.training.seed)


class _Checker:
    def __init__(self, where: str):
        self.where = where

    def fail(self, key: str, msg: str):
        raise ConfigError(f"{self.where}: {key}: {msg}")

    def mapping(self, obj, key: str, allowed: set[str] | None = None, required: tuple[str, ...] = ()) -> dict:
        if not isinstance(obj, dict):
            self.fail(key, f"expected a mapping, got {type(obj).__name__} ({obj!r})")
        if allowed is not None:
            unknown = sorted(set(obj) - allowed)
            if unknown:
                self.fail(key, f"unknown key(s) {unknown}; allowed: {sorted(allowed)}")
        missing = [r for r in required if r not in obj]
        if missing:
            self.fail(key, f"missing required key(s) {missing}")
        return obj

    def int_(self, obj, key: str, lo: int | None = None) -> int:
        if isinstance(obj, bool) or not isinstance(obj, int):
            if isinstance(obj, str) and obj.strip().lstrip("-").isdigit():
                obj = int(obj)
            else:
                self.fail(key, f"expected an integer, got {obj!r}")
        if lo is not None and obj < lo:
            self.fail(key, f"must be >= {lo}, got {obj}")
        return obj

    def float_(self, obj, key: str, lo: float | None = None, positive: bool = False) -> float:
        if isinstance(obj, bool):
            self.fail(key, f"expected a number, got {obj!r}")
        try:
            val = float(obj)  # YAML reads "1e-3" (no dot) as a string
        except (TypeError, ValueError):
            self.fail(key, f"expected a number, got {obj!r}")
        if positive and not val > 0:
            self.fail(key, f"must be > 0, got {val}")
        if lo is not None and val < lo:
            self.fail(key, f"must be >= {lo}, got {val}")
        return val

    def str_list(self, obj, key: str, choices: tuple[str, ...] | None = None, nonempty: bool = True) -> list[str]:
        if isinstance(obj, str):
            obj = [obj]
        if not isinstance(obj, list) or not all(isinstance(x, str) for x in obj):
            self.fail(key, f"expected a list of strings, got {obj!r}")
        if nonempty and not obj:
            self.fail(key, "must not be empty")
        if choices is not None:
            bad = [x for x in obj if x not in choices]
            if bad:
                self.fail(key, f"unknown value(s) {bad}; choose from {list(choices)}")
        return list(obj)

    def choice(self, obj, key: str, choices: tuple[str, ...]) -> str:
        if obj is False and "no" in choices:  # YAML 1.1 reads a bare `no` as false
            obj = "no"
        if obj not in choices:
            self.fail(key, f"{obj!r} is not one of {list(choices)}")
        return obj


def resolve_path(p: str | os.PathLike, base: Path = REPO_ROOT) -> Path:
    """Absolute path; a relative one is taken relative to the repository root."""
    p = Path(os.path.expanduser(str(p)))
    return p if p.is_absolute() else (base / p)


def _parse_data(c: _Checker, raw_data) -> DataConfig:
    """The ``data`` section: dataset folders, cache, the optional generated data."""
    d = c.mapping(raw_data, "data", DATA_KEYS, required=("train", "cache_dir"))
    for k in ("train", "val", "cache_dir"):
        if k in d and d[k] is not None and not isinstance(d[k], str):
            c.fail(f"data.{k}", f"expected a path string, got {d[k]!r}")
    gen = None
    if d.get("generate") is not None:
        g = c.mapping(d["generate"], "data.generate", GENERATE_KEYS, required=("n_train",))
        gen = {
            "preset": str(g.get("preset", "tiny")),
            "n_train": c.int_(g["n_train"], "data.generate.n_train", 1),
            "n_eval": c.int_(g.get("n_eval", max(1, int(g["n_train"]) // 10)), "data.generate.n_eval", 1),
            "seed": c.int_(g.get("seed", 0), "data.generate.seed"),
            "workers": c.int_(g.get("workers", 1), "data.generate.workers", 1),
        }
    return DataConfig(
        train=resolve_path(d["train"]),
        val=resolve_path(d["val"]) if d.get("val") else None,
        cache_dir=resolve_path(d["cache_dir"]),
        generate=gen,
        num_workers=c.int_(d.get("num_workers", 0), "data.num_workers", 0),
    )


def _parse_lora(c: _Checker, t: dict) -> LoraConfig | None:
    """``training.lora`` (None when absent)."""
    if t.get("lora") is None:
        return None
    lr_ = c.mapping(t["lora"], "training.lora", LORA_KEYS)
    return LoraConfig(
        rank=c.int_(lr_.get("rank", 8), "training.lora.rank", 1),
        alpha=c.float_(lr_.get("alpha", 16), "training.lora.alpha", positive=True),
        dropout=c.float_(lr_.get("dropout", 0.0), "training.lora.dropout", lo=0.0),
        targets=c.str_list(lr_.get("targets", ["q_proj", "v_proj"]), "training.lora.targets"),
    )


def _parse_stages(c: _Checker, stages_raw, schedule: str, wd: float) -> list[StageConfig]:
    """``training.stages``: unique names; ``schedule`` and ``wd`` are the training section's defaults."""
    if not isinstance(stages_raw, list) or not stages_raw:
        c.fail("training.stages", f"expected a non-empty list of stages, got {stages_raw!r}")
    stages, names = [], set()
    for i, s in enumerate(stages_raw):
        key = f"training.stages[{i}]"
        c.mapping(s, key, STAGE_KEYS, required=("name", "steps", "lr", "trainable", "tasks"))
        name = str(s["name"])
        if name in names:
            c.fail(f"{key}.name", f"duplicate stage name {name!r}")
        names.add(name)
        key = f"training.stages[{i}] ({name})"
        st = StageConfig(
            name=name,
            steps=c.int_(s["steps"], f"{key}.steps", 1),
            lr=c.float_(s["lr"], f"{key}.lr", positive=True),
            warmup=c.int_(s.get("warmup", 0), f"{key}.warmup", 0),
            trainable=c.str_list(s["trainable"], f"{key}.trainable", TRAINABLE_PARTS),
            tasks=c.str_list(s["tasks"], f"{key}.tasks", KNOWN_TASKS),
            schedule=c.choice(s.get("schedule", schedule), f"{key}.schedule", SCHEDULES),
            weight_decay=c.float_(s.get("weight_decay", wd), f"{key}.weight_decay", lo=0.0),
        )
        stages.append(st)
    return stages


def _parse_training(c: _Checker, raw_training) -> TrainingConfig:
    """The ``training`` section: optimiser, schedule, stages, LoRA, checkpointing."""
    t = c.mapping(raw_training, "training", TRAINING_KEYS, required=("batch_size", "stages"))
    lora = _parse_lora(c, t)
    schedule = c.choice(t.get("schedule", "cosine"), "training.schedule", SCHEDULES)
    wd = c.float_(t.get("weight_decay", 0.0), "training.weight_decay", lo=0.0)
    stages = _parse_stages(c, t["stages"], schedule, wd)
    betas = t.get("adam_betas", [0.9, 0.999])
    if not isinstance(betas, (list, tuple)) or len(betas) != 2:
        c.fail("training.adam_betas", f"expected two numbers, got {betas!r}")
    mgn = t.get("max_grad_norm", 1.0)
    training = TrainingConfig(
        seed=c.int_(t.get("seed", 0), "training.seed"),
        batch_size=c.int_(t["batch_size"], "training.batch_size", 1),
        stages=stages,
        grad_accum=c.int_(t.get("grad_accum", 1), "training.grad_accum", 1),
        mixed_precision=c.choice(t.get("mixed_precision", "no"), "training.mixed_precision", MIXED_PRECISION),
        checkpoint_every=c.int_(t.get("checkpoint_every", 50), "training.checkpoint_every", 1),
        keep_checkpoints=c.int_(t.get("keep_checkpoints", 2), "training.keep_checkpoints", 1),
        log_every=c.int_(t.get("log_every", 1), "training.log_every", 1),
        lora=lora,
        weight_decay=wd,
        max_grad_norm=None if mgn is None else c.float_(mgn, "training.max_grad_norm", positive=True),
        schedule=schedule,
        min_lr_ratio=c.float_(t.get("min_lr_ratio", 0.0), "training.min_lr_ratio", lo=0.0),
        deterministic=bool(t.get("deterministic", True)),
        eval_batches=c.int_(t.get("eval_batches", 10), "training.eval_batches", 0),
        adam_betas=(
            c.float_(betas[0], "training.adam_betas[0]", lo=0.0),
            c.float_(betas[1], "training.adam_betas[1]", lo=0.0),
        ),
        adam_eps=c.float_(t.get("adam_eps", 1e-8), "training.adam_eps", positive=True),
    )
    if training.uses_lora and training.lora is None:
        bad = [s.name for s in stages if "lora" in s.trainable]
        c.fail(
            "training.lora",
            f"stage(s) {bad} train 'lora' but the training section has no lora: {{rank, alpha, dropout, targets}}",
        )
    return training


def parse_preset(raw: dict, where: str, path: Path | None = None, preset: str = "") -> RunConfig:
    """A preset's parsed dict -> `RunConfig`; every bad value is a ConfigError naming ``where`` and its key."""
    c = _Checker(where)
    c.mapping(raw, "preset", PRESET_KEYS, required=("model", "data", "training"))
    c.mapping(raw["model"], "model")
    data = _parse_data(c, raw["data"])
    training = _parse_training(c, raw["training"])
    return RunConfig(
        path=Path(path) if path else Path("<dict>"),
        preset=preset,
        model=raw["model"],
        data=data,
        training=training,
        raw=copy.deepcopy(raw),
    )


def read_config_file(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    c = _Checker(str(path))
    c.mapping(doc, "<top level>", TOP_KEYS, required=("presets",))
    c.mapping(doc["presets"], "presets")
    if not doc["presets"]:
        c.fail("presets", "no presets defined")
    return doc


def available_presets(path: str | os.PathLike) -> list[str]:
    return list(read_config_file(path)["presets"])


def load_run_config(path: str | os.PathLike, preset: str, seed: int | None = None) -> RunConfig:
    """Read ``path``, pick ``presets[preset]``, check it. ``seed`` overrides ``training.seed``."""
    path = Path(path)
    doc = read_config_file(path)
    if preset not in doc["presets"]:
        raise ConfigError(f"{path}: unknown preset {preset!r}; available presets: {sorted(doc['presets'])}")
    raw = copy.deepcopy(doc["presets"][preset])
    if seed is not None and isinstance(raw, dict) and isinstance(raw.get("training"), dict):
        raw["training"]["seed"] = int(seed)
    return parse_preset(raw, f"{path} [preset {preset}]", path, preset)
