"""One way every analysis CLI (``python -m workbench.{ablate,attention,logit_lens,patch,probe,ask,...}``) reports bad
input: ``error: <message>`` on stderr and exit code 2, the message naming the file or value and the fix.

The several-checkpoints CLIs (``attribute_lens``, ``listening_heads``, ``steer``) share their arguments
(`analysis_parser`) and their loop over checkpoints (`run_per_checkpoint`) from here, so no command imports
another.

Bad input is what the analyses raise for it: a missing checkpoint or dataset (FileNotFoundError), an unknown
encoder, attribute or hook name (KeyError), a value out of range or a model that cannot run the analysis
(ValueError and its subclasses: AblationError, PatchingError, ProbeError, AudioError, ConfigError, ...), a layer
or head index out of range (IndexError). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

__all__ = [
    "BAD_INPUT",
    "run_cli",
    "fail",
    "analysis_parser",
    "checkpoints_of",
    "committed_checkpoints",
    "run_per_checkpoint",
    "variant_first",
]

BAD_INPUT: tuple[type[BaseException], ...] = (FileNotFoundError, KeyError, ValueError, IndexError)


def fail(message: str) -> int:
    """Print ``error: message`` to stderr; returns the bad-input exit code 2."""
    print(f"error: {message}", file=sys.stderr)
    return 2


def run_cli(body: Callable[[], int | None]) -> int:
    """Run a CLI body; bad input (:data:`BAD_INPUT`) -> :func:`fail`. Returns the body's exit code (None = 0)."""
    try:
        rc = body()
    except BAD_INPUT as e:
        # KeyError's str() is the repr of its argument: print the message itself
        return fail(e.args[0] if isinstance(e, KeyError) and e.args and isinstance(e.args[0], str) else str(e))
    return 0 if rc is None else int(rc)


# ---------------------------------------------------------------------------------------- several checkpoints
#: where the several-checkpoints CLIs (attribute_lens, listening_heads, steer) write by default
DEFAULT_OUT = "results/analyses"


def committed_checkpoints(root: str = "results/checkpoints") -> list:
    """Every ``ROOT/VARIANT/final`` with a config.json, sorted by variant."""
    from pathlib import Path

    return sorted(p for p in Path(root).glob("*/final") if (p / "config.json").exists())


def analysis_parser(prog: str, doc: str, n: int = 48):
    """Arguments shared by the several-checkpoints CLIs (attribute lens, listening heads, steering)."""
    import argparse

    from workbench.analysis.core import BACKENDS

    p = argparse.ArgumentParser(
        prog=prog, description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--checkpoint",
        action="append",
        default=None,
        help="checkpoint folder, released model folder or hub id (repeat for several; default every "
        "results/checkpoints/*/final)",
    )
    p.add_argument("--data", default=None, help="audiofolder (default data/synth-tiny/val; generated if missing)")
    p.add_argument("--n", type=int, default=n, help=f"task rows (seeded random subset; default {n})")
    p.add_argument(
        "--silence",
        choices=("encoder", "zeros"),
        default="encoder",
        help="silence: the model's own encoding of a silent clip of the same length (default) or zero tokens",
    )
    p.add_argument("--backend", choices=BACKENDS, default="transformer_lens")
    p.add_argument("--out-dir", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--no-png", action="store_true", help="skip the PNG export")
    return p


def checkpoints_of(a) -> list:
    """The ``--checkpoint`` values (folders or hub ids), or every committed checkpoint; an error when none."""
    from pathlib import Path

    cks = [Path(c) for c in a.checkpoint] if a.checkpoint else committed_checkpoints()
    if not cks:
        raise FileNotFoundError(
            "no checkpoints: pass --checkpoint DIR (a PAL checkpoint or a released model folder) "
            "or train the tiny variants (./run retrain)"
        )
    return cks


def variant_first(frames):
    """Frames (each with a ``variant`` column) concatenated, ``variant`` as the first column."""
    import pandas as pd

    df = pd.concat(list(frames), ignore_index=True)
    return df[["variant", *[c for c in df.columns if c != "variant"]]]


def run_per_checkpoint(a, body: Callable[[str, object, object], None]) -> int:
    """The several-checkpoints runner: for each of `checkpoints_of(a)`, load the model and ``a.n`` rows of
    ``a.data`` (`workbench.analysis.inputs.load_for_analysis`) and call ``body(variant, model, dataset)``; bad
    input anywhere -> `fail` (exit 2). Returns 0 when every checkpoint ran."""

    def loop() -> None:
        from workbench.analysis.core import load_for_analysis
        from workbench.common.paths import variant_of

        for ck in checkpoints_of(a):
            model, ds = load_for_analysis(ck, a.data, a.n, seed=a.seed)
            body(variant_of(ck), model, ds)
            del model

    return run_cli(loop)
