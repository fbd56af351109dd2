"""Many training runs on a small machine: each run (train, then evaluate on every test split) in its own
single-threaded process, a few at a time; resumable, reusing what exists.

By default every job runs in the reproducible mode (:mod:`workbench.training.reproducible`: the AVX2 pins in the
environment of its training and evaluation processes, ``--reproducible`` for training), so its numbers are the
same on any x86 CPU with AVX2; ``Job(reproducible=False)`` runs with the machine's own kernels.

On a 2-core CPU, two single-thread processes train two runs in about the time one two-thread process trains
one of them (torch's intra-op threads gain little on these small matrices: see ``benchmarks/train_step.py``).

A job is evaluated on test splits (:data:`workbench.training.runs.TEST_SPLITS`) or, with ``eval_data``, on an
audiofolder of the user's (its split named by :func:`workbench.training.runs.custom_split`), all of it or its
first ``max_rows`` task rows. A job is done when every one of its evaluations' ``answers.csv`` exists in its
folder (weights are not needed then, so the committed logs and evaluations of runs whose weights are not committed still count as done on a fresh clone).
A job with ``final/`` is only evaluated; one with training checkpoints resumes (``--resume``); a job whose
config hash and seed equal those of a finished run elsewhere (``reuse`` folders) copies that run's logs and
evaluations instead of training again (with ``max_rows``: its weights are evaluated on those rows instead, when they
are there), and records where they came from in ``reused_from.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from workbench.common.paths import atomic_write_bytes
from workbench.training.runs import TEST_SPLITS, custom_split, eval_answers, eval_dir

__all__ = ["Job", "job_state", "run_jobs", "ensure_test_splits", "RUN_FILES"]

#: what a finished run keeps besides its evaluations (copied when a run is reused)
RUN_FILES = ("train_log.csv", "val_log.csv", "train_summary.json", "config.yaml")


@dataclass
class Job:
    """One training run: ``config`` (YAML file) ``preset`` at training seed ``seed`` into ``out``; evaluated on
    ``splits`` (names of :data:`workbench.training.runs.TEST_SPLITS`), or on the audiofolder ``eval_data`` instead
    when given; ``max_rows``: only the first N task rows; ``reproducible``: the pinned mode."""

    name: str
    config: Path
    preset: str
    seed: int
    out: Path
    splits: Sequence[str] = field(default_factory=lambda: tuple(TEST_SPLITS))
    reuse: Sequence[Path] = ()
    reproducible: bool = True
    eval_data: Path | None = None
    max_rows: int | None = None

    def evaluations(self) -> dict[str, tuple[Path, Path]]:
        """{split: (audiofolder, answers CSV)}: ``eval_data`` alone when given, else each of ``splits``."""
        if self.eval_data is not None:
            s = custom_split(self.eval_data)
            return {s: (Path(self.eval_data), self.out / eval_dir(s) / "answers.csv")}
        return {s: (TEST_SPLITS[s][0], eval_answers(self.out, s)) for s in self.splits}

    def missing_evals(self) -> list[str]:
        return [s for s, (_, csv) in self.evaluations().items() if not csv.is_file()]


def job_state(job: Job) -> str:
    """ "done", "evaluate" (final/ there, some split missing), "resume" (checkpoints there), or "train"."""
    if not job.missing_evals():
        return "done"
    if (job.out / "final" / "config.json").is_file():
        return "evaluate"
    ck = job.out / "checkpoints"
    if ck.is_dir() and any(p.name.startswith("step-") for p in ck.iterdir()):
        return "resume"
    return "train"


def ensure_test_splits(splits: Sequence[str], progress: bool = False) -> None:
    """Generate each named test split of the tiny corpus if it is not there (deterministic from its data seed)."""
    from workbench.data.synth import generate

    for s in splits:
        folder, n, data_seed = TEST_SPLITS[s]
        if not (folder / "tasks.jsonl").is_file():
            generate(folder, n, seed=data_seed, split="test", preset="tiny", progress=progress)


def prepare_all(jobs: Sequence[Job], progress: bool = False) -> None:
    """Before the runs start (so that parallel runs never write the same token-cache entries): generate the test
    splits, and the training data of every config, and encode them and every other evaluation folder with every
    encoder the configs name."""
    from workbench.encoders import encoders_for
    from workbench.encoders.cache import encode_dataset
    from workbench.training.batch_order import prepare_data
    from workbench.training.run_config import load_run_config

    ensure_test_splits(sorted({s for j in jobs for s in j.evaluations() if s in TEST_SPLITS}), progress)
    folders = sorted({folder for j in jobs for folder, _ in j.evaluations().values()})
    seen: dict[tuple, None] = {}
    for j in jobs:
        cfg = load_run_config(j.config, j.preset)
        specs = tuple((e["name"], tuple(sorted((e.get("options") or {}).items()))) for e in cfg.model["encoders"])
        key = (str(cfg.data.train), str(cfg.data.val), str(cfg.data.cache_dir), specs)
        if key in seen:
            continue
        seen[key] = None
        prepare_data(cfg.data, [(n, dict(o)) for n, o in specs], progress=progress)
        built = encoders_for([(n, dict(o)) for n, o in specs])
        for folder in folders:
            encode_dataset(folder, built, cfg.data.cache_dir, progress=progress)


def _config_identity(config: Path, preset: str, seed: int) -> str:
    from workbench.training.run_config import load_run_config

    return load_run_config(config, preset, seed=seed).hash()


def _reusable(job: Job) -> Path | None:
    """A finished run among ``job.reuse`` with the same config hash (the seed is part of it)."""
    want = _config_identity(job.config, job.preset, job.seed)
    for run in job.reuse:
        summary = Path(run) / "train_summary.json"
        if not summary.is_file():
            continue
        s = json.loads(summary.read_text())
        if s.get("completed") and s.get("config_hash") == want:
            return Path(run)
    return None


def _copy_run(src: Path, dst: Path, splits: Sequence[str]) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
    for s in splits:
        d = src / eval_dir(s)
        if d.is_dir() and not (dst / eval_dir(s)).exists():
            shutil.copytree(d, dst / eval_dir(s))
    atomic_write_bytes(dst / "reused_from.json", json.dumps({"run": str(src)}, indent=1).encode())


def _evaluate_command(job: Job, checkpoint: Path, split: str) -> list[str]:
    """``python -m workbench.evaluate`` of ``checkpoint`` on ``split``'s folder into the job's answers CSV."""
    data, answers = job.evaluations()[split]
    return [
        sys.executable,
        "-m",
        "workbench.evaluate",
        "--checkpoint",
        str(checkpoint),
        "--data",
        str(data),
        "--out",
        str(answers),
        "--no-progress",
    ] + (["--max-rows", str(job.max_rows)] if job.max_rows is not None else [])


def _commands(job: Job, state: str) -> list[list[str]]:
    py = [sys.executable, "-m"]
    cmds = []
    if state in ("train", "resume"):
        cmds.append(
            py
            + [
                "workbench.train",
                "--config",
                str(job.config),
                "--preset",
                job.preset,
                "--seed",
                str(job.seed),
                "--out",
                str(job.out),
                "--no-progress",
            ]
            + (["--resume"] if state == "resume" else [])
            + (["--reproducible"] if job.reproducible else [])
        )
    for s, (_, answers) in job.evaluations().items():
        if state == "done":
            break
        if state in ("train", "resume") or not answers.is_file():
            cmds.append(_evaluate_command(job, job.out / "final", s))
    return cmds


def _run_job(job: Job, threads: int) -> tuple[Job, str, float]:
    t0 = time.time()
    src = _reusable(job) if job.reuse else None
    if src is not None and src.resolve() != job.out.resolve():
        _copy_run(src, job.out, list(job.evaluations()) if job.max_rows is None else [])  # all rows: theirs
        if not job.missing_evals():
            return job, f"reused {src}", time.time() - t0
        if not (job.out / "final").exists() and (src / "final" / "config.json").is_file():  # evaluate src's weights
            cmds = [_evaluate_command(job, src / "final", s) for s in job.missing_evals()]
            return _run_commands(job, cmds, threads, t0, f"reused {src}, evaluated")
    state = job_state(job)
    if state == "done":
        return job, "done (kept)", 0.0
    return _run_commands(job, _commands(job, state), threads, t0, state)


def _run_commands(job: Job, cmds: list[list[str]], threads: int, t0: float, what: str) -> tuple[Job, str, float]:
    job.out.mkdir(parents=True, exist_ok=True)
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        PYTHONUNBUFFERED="1",
        TOKENIZERS_PARALLELISM="false",
    )
    if job.reproducible:
        from workbench.training.reproducible import pinned_env

        env = pinned_env(env)  # evaluations too; training re-checks them (--reproducible)
    with open(job.out / "job.log", "a") as logf:
        for cmd in cmds:
            logf.write(f"$ {' '.join(cmd)}\n")
            logf.flush()
            rc = subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env).returncode
            if rc != 0:
                raise RuntimeError(
                    f"{job.name}: `{' '.join(cmd)}` failed with exit code {rc}; see {job.out / 'job.log'}"
                )
    return job, what, time.time() - t0


def run_jobs(
    jobs: Sequence[Job], parallel: int = 2, threads: int = 1, log: Callable[[str], None] = print, progress: bool = False
) -> list[tuple[str, str, float]]:
    """Run ``jobs`` ``parallel`` at a time (each process with ``threads`` torch threads); returns
    [(name, what happened, seconds)]. A failed job is reported and the others go on; raises at the end if any
    failed (rerun the same command to continue: finished jobs are kept). ``progress``: progress bars while the
    data are prepared (the runs themselves log to their ``job.log``)."""
    todo = [j for j in jobs if job_state(j) != "done"]
    if todo:
        prepare_all(todo, progress=progress)
    log(
        f"{len(jobs)} runs: {len(jobs) - len(todo)} done, {len(todo)} to do, {parallel} at a time x {threads} thread(s)"
    )
    results, failed = [], []
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        futs = {pool.submit(_run_job, j, threads): j for j in todo}
        for i, fut in enumerate(as_completed(futs), 1):
            j = futs[fut]
            try:
                _, what, dt = fut.result()
                results.append((j.name, what, dt))
                log(f"[{i}/{len(todo)}] {j.name}: {what} ({dt / 60:.1f} min) -> {j.out}")
            except Exception as e:  # noqa: BLE001 - reported, the other runs go on
                failed.append(j.name)
                log(f"[{i}/{len(todo)}] {j.name}: FAILED: {e}")
    if failed:
        raise RuntimeError(f"{len(failed)} run(s) failed: {failed}; fix the cause and rerun (finished runs are kept)")
    return results
