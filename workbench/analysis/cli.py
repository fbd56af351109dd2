"""One way every analysis CLI (``python -m workbench.{ablate,attention,logit_lens,patch,probe,ask,...}``) reports bad
input: ``error: <message>`` on stderr and exit code 2, the message naming the file or value and the fix.

Bad input is what the analyses raise for it: a missing checkpoint or dataset (FileNotFoundError), an unknown
encoder, attribute or hook name (KeyError), a value out of range or a model that cannot run the analysis
(ValueError and its subclasses: AblationError, PatchingError, ProbeError, AudioError, ConfigError, ...), a layer
or head index out of range (IndexError). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

__all__ = ["BAD_INPUT", "run_cli", "fail"]

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
