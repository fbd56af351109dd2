"""What a run's numbers depend on besides seed, data and code: package versions, threads, CPU, vector ISA, device.

Recorded in every ``train_summary.json``, every checkpoint's ``trainer_state.json`` and every evaluation's
``run.json`` (:func:`with_environment`). On one machine, a run with the same seed, data, code, thread count and
ISA reproduces bit for bit; change the thread count (the order of the sums in a matmul) or the ISA torch
dispatches to (AVX-512 vs AVX2 kernels of ATen, MKL and oneDNN) and the numbers drift from the first step (see
docs/guide.md, "Reproducing a run"). :mod:`workbench.training.reproducible` pins what x86 allows.

Paths are written relative to the repository (:func:`repo_relative`), so a summary holds nothing of the machine
that made it.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from workbench.common.paths import PACKAGE_CHECKOUT

__all__ = [
    "run_environment",
    "versions",
    "repo_relative",
    "relative_command",
    "with_environment",
    "resume_mismatches",
    "PINNED_ENV",
    "cpu_model",
    "mkl_branch",
]

REPO_ROOT = PACKAGE_CHECKOUT

#: environment variables that change the numbers a CPU run produces (recorded when set)
PINNED_ENV = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "MKL_CBWR",
    "ATEN_CPU_CAPABILITY",
    "ONEDNN_MAX_CPU_ISA",
    "CUBLAS_WORKSPACE_CONFIG",
)

#: the environment of the reproducible mode (`workbench.training.reproducible`)
REPRO_ENV: dict[str, str] = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "MKL_CBWR": "AVX2",
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}


def pins_in_place(env: dict | None = None) -> bool:
    """Whether every variable of :data:`REPRO_ENV` has its pinned value in ``env`` (default ``os.environ``)."""
    env = os.environ if env is None else env
    return all(env.get(k) == v for k, v in REPRO_ENV.items())


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: MKL's conditional-numerical-reproducibility branch constants (mkl_cbwr_get(MKL_CBWR_BRANCH))
_MKL_BRANCHES = {
    0: "OFF",
    1: "OFF",
    2: "AUTO",
    3: "COMPATIBLE",
    4: "SSE2",
    6: "SSSE3",
    7: "SSE4_1",
    8: "SSE4_2",
    9: "AVX",
    10: "AVX2",
    11: "AVX512_MIC",
    12: "AVX512",
    13: "AVX512_MIC_E1",
    14: "AVX512_E1",
}


def mkl_branch() -> str | None:
    """The code branch MKL (inside torch) runs its reproducibility mode on: ``"OFF"`` (no ``MKL_CBWR``), ``"AVX2"``,
    ``"AUTO"`` (what MKL falls back to, silently, when the asked-for branch is not available: its ISA branches
    exist on Intel processors only), ...; None when torch has no MKL to ask."""
    import ctypes

    import torch

    try:
        lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
        code = int(lib.mkl_serv_cbwr_get(1))  # MKL_CBWR_BRANCH
    except (OSError, AttributeError):
        return None
    return _MKL_BRANCHES.get(code, str(code))


def _version(pkg: str) -> str | None:
    import importlib.metadata as md

    try:
        return md.version(pkg)
    except md.PackageNotFoundError:
        return None


def run_environment(device: str | None = None) -> dict:
    """``{"torch", "transformers", "accelerate", "numpy", "python", "threads", "cpu", "cpu_capability", "device",
    "deterministic_algorithms", "reproducible", "env"}`` of this process, now.

    ``cpu_capability`` is the vector ISA ATen dispatches to (``torch.backends.cpu.get_cpu_capability()``: e.g.
    ``AVX512``, ``AVX2``); ``mkl_cbwr`` MKL's reproducibility branch (:func:`mkl_branch`); ``env`` the :data:`PINNED_ENV` variables that are set; ``reproducible`` whether
    :mod:`workbench.training.reproducible`'s pins, one thread and deterministic algorithms are all in place."""
    import torch

    out = {pkg: _version(pkg) for pkg in ("torch", "transformers", "accelerate", "numpy")}
    out.update(
        python=platform.python_version(),
        threads=torch.get_num_threads(),
        cpu=cpu_model(),
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
        mkl_cbwr=mkl_branch(),
        device=str(device or "cpu"),
    )
    if str(device or "cpu").startswith("cuda") and torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(torch.device(device))
    out["deterministic_algorithms"] = torch.are_deterministic_algorithms_enabled()
    out["reproducible"] = pins_in_place() and out["threads"] == 1 and out["deterministic_algorithms"]
    out["env"] = {k: os.environ[k] for k in PINNED_ENV if k in os.environ}
    return out


def repo_relative(path: str | os.PathLike | None) -> str | None:
    """``path`` relative to the repository when it lies inside it (``results/checkpoints/pal/final``), else as
    given: a path outside the repository (a temporary folder, another disk) has no portable spelling."""
    if path is None:
        return None
    p = Path(path)
    try:
        return Path(os.path.abspath(p)).relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(path)


def relative_command(args: list[str]) -> str:
    """A command line with every absolute path inside the repository made relative."""
    return " ".join(repo_relative(a) if os.path.isabs(a) else a for a in args)


def with_environment(
    info: dict, path_keys: tuple[str, ...] = ("checkpoint", "data"), device: str | None = None
) -> dict:
    """``info`` (an evaluation's ``run.json``) with ``path_keys`` made repository-relative and an ``environment``
    entry (:func:`run_environment`)."""
    out = {
        k: (repo_relative(v) if k in path_keys and isinstance(v, str) and os.path.isabs(v) else v)
        for k, v in info.items()
    }
    out["environment"] = run_environment(device)
    return out


def resume_mismatches(saved: dict | None, now: dict) -> list[str]:
    """What differs between the environment a checkpoint was written in and this one, in the settings that change
    the numbers (thread count, vector ISA, the pinned variables, deterministic algorithms, device). Empty when
    ``saved`` is unknown (a checkpoint from before these were recorded)."""
    if not saved:
        return []
    keys = ("threads", "cpu_capability", "mkl_cbwr", "device", "deterministic_algorithms")
    diffs = [f"{k} {saved.get(k)!r} -> {now.get(k)!r}" for k in keys if saved.get(k) != now.get(k)]
    env_a, env_b = saved.get("env") or {}, now.get("env") or {}
    diffs += [
        f"{k} {env_a.get(k)!r} -> {env_b.get(k)!r}"
        for k in ("MKL_CBWR", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")
        if env_a.get(k) != env_b.get(k)
    ]
    return diffs


def versions() -> dict:
    """Package versions and the git commit, recorded in checkpoints and summaries."""
    import importlib.metadata as md
    import subprocess

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("torch", "accelerate", "transformers", "numpy", "peft", "pal-workbench"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    try:
        out["git_commit"] = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5
            ).stdout.strip()
            or None
        )
    except Exception:
        out["git_commit"] = None
    return out
