"""pal-workbench: a mechanistic-interpretability workbench for audio-LLMs (PAL, arXiv 2506.10423).

The files at the top of this package are commands (``python -m workbench.<command>``); the library lives in one
folder per stage, in the order a batch passes them (docs/architecture.md):
``data`` → ``encoders`` → ``model`` (connectors, PLITS/LAL integration, decoder; released models) →
``training`` / ``evaluation`` → ``stats`` → ``analysis`` → ``claims`` → ``reporting`` → ``pipeline``, on ``common``.

The handful of names a notebook needs are here (loaded on first use, so a command imports only what it runs)::

    from workbench import load_model, load_for_analysis, write_outputs, repo_root
    model = load_model("results/checkpoints/pal/final")      # or a released audio-LLM's folder / hub id
"""

from __future__ import annotations

import importlib

#: public name -> module that defines it
_EXPORTS = {
    "PALModel": "workbench.model.pal",
    "load_model": "workbench.model.loading",
    "load_llm": "workbench.model.loading",
    "load_for_analysis": "workbench.analysis.core",
    "batches": "workbench.analysis.core",
    "collect": "workbench.analysis.core",
    "write_outputs": "workbench.analysis.core",
    "explain": "workbench.analysis.explain",
    "load_answer_options": "workbench.evaluation.evaluator",
    "load_audio": "workbench.common.audio_io",
    "repo_root": "workbench.common.paths",
    "CLAIMS": "workbench.claims.registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
