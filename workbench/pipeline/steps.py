"""A resumable sequence of named steps: each finished step leaves a marker, and a re-run skips it.

    steps = [Step("corpus", "generate the test split", make_corpus, params={"n": 120}, outputs=[data / "tasks.jsonl"]),
             Step("encode", "encode it once", encode, deps=["corpus"])]
    results = Pipeline("results/demo").run(steps)

A step counts as done when ``ROOT/.steps/<name>.json`` exists, records the same parameters and the same
finish times of the steps it depends on (``deps``), and every file in ``outputs`` exists. Markers are
written atomically after the step returns, so a step interrupted half-way (Ctrl-C, a crash, a kill) has
no marker and runs again next time; steps write their own files atomically
(:func:`workbench.common.paths.atomic_write_bytes`), so no output is ever half-written. A step that re-runs gets a
new finish time, which makes every step depending on it run again too.

``Pipeline(root, keep_going=True)`` does not stop at a failing step: it records the failure in
``ROOT/.steps/<name>.failed.json`` (no marker, so the step runs again next time), skips the steps that depend on
it, and goes on; ``pipeline.failed`` then maps each failed or skipped step to its message. A step that later
succeeds removes its failure record.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.common.paths import atomic_write_bytes

__all__ = ["Step", "Pipeline", "StepFailed"]


class StepFailed(RuntimeError):
    """A step raised; the message names the step and how to resume."""


@dataclass
class Step:
    """One unit of resumable work.

    name: unique marker name (``[a-z0-9_-]``). title: what the progress line says. run: does the work and
    returns a small JSON-able summary (kept in the marker; the pipeline returns it). params: everything the
    result depends on besides upstream steps (a change re-runs the step). outputs: files that must exist.
    deps: names of earlier steps whose re-run invalidates this one. always: run on every call (cheap steps that
    read whatever the others left, such as a report).
    """

    name: str
    title: str
    run: Callable[[], Any]
    params: dict = field(default_factory=dict)
    outputs: Sequence[str | os.PathLike] = ()
    deps: Sequence[str] = ()
    always: bool = False


def _key(params: dict, upstream: dict[str, str]) -> str:
    blob = json.dumps({"params": params, "upstream": upstream}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Pipeline:
    """Runs steps in order under ``root`` (markers in ``root/.steps``); ``fresh=True`` ignores old markers."""

    def __init__(self, root: str | os.PathLike, fresh: bool = False, stream=None, keep_going: bool = False):
        self.root = Path(root)
        self.marker_dir = self.root / ".steps"
        self.fresh = fresh
        self.stream = stream or sys.stdout
        self.keep_going = keep_going
        self.failed: dict[str, str] = {}

    def failure(self, name: str) -> Path:
        return self.marker_dir / f"{name}.failed.json"

    def read_failure(self, name: str) -> dict | None:
        """The failure record of step ``name`` from its last run (None: it did not fail)."""
        try:
            return json.loads(self.failure(name).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def _record_failure(self, step: Step, message: str) -> None:
        self.failed[step.name] = message
        record = {"name": step.name, "title": step.title, "error": message, "when": f"{time.time():.6f}"}
        atomic_write_bytes(self.failure(step.name), (json.dumps(record, indent=1) + "\n").encode())
        self._say(f"      FAILED: {message}")

    def marker(self, name: str) -> Path:
        return self.marker_dir / f"{name}.json"

    def read_marker(self, name: str) -> dict | None:
        try:
            return json.loads(self.marker(name).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def _say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def _execute(self, step: Step, head: str, outputs: list[Path]) -> tuple[Any, float] | None:
        """Announce (``head``) and run one step -> (summary, seconds); None when it failed (or did not write
        ``outputs``) under ``keep_going`` (the failure recorded), else `StepFailed`."""
        t0 = time.time()
        try:  # a Ctrl-C right after the step's line is announced belongs to this step
            self._say(f"{head} ...")
            summary = step.run()
        except KeyboardInterrupt:
            self._say(
                f"\ninterrupted during step {step.name!r}; finished steps are kept: run the same command "
                f"again to continue from this step"
            )
            raise
        except Exception as e:
            if self.keep_going:
                self._record_failure(step, f"{type(e).__name__}: {e}")
                return None
            raise StepFailed(
                f"step {step.name!r} ({step.title}) failed: {type(e).__name__}: {e}. Steps before it "
                f"are kept; fix the cause and run the same command again to continue"
            ) from e
        seconds = time.time() - t0
        lost = [str(p) for p in outputs if not p.exists()]
        if lost:
            if self.keep_going:
                self._record_failure(step, f"finished but did not write {lost}")
                return None
            raise StepFailed(f"step {step.name!r} finished but did not write {lost}")
        return summary, seconds

    def _mark_done(self, step: Step, key: str, outputs: list[Path], summary: Any, seconds: float) -> str:
        """Write the step's marker (its failure record removed) -> its finish stamp."""
        stamp = f"{time.time():.6f}"
        record = {
            "name": step.name,
            "title": step.title,
            "key": key,
            "params": step.params,
            "deps": list(step.deps),
            "summary": summary,
            "seconds": round(seconds, 2),
            "finished": stamp,
            "outputs": [str(p) for p in outputs],
        }
        atomic_write_bytes(self.marker(step.name), (json.dumps(record, indent=1, default=str) + "\n").encode())
        self.failure(step.name).unlink(missing_ok=True)
        return stamp

    def run(self, steps: Sequence[Step]) -> dict[str, Any]:
        """Run (or skip) every step in order -> {name: summary}. A failing step raises `StepFailed`."""
        names = [s.name for s in steps]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate step names in {names}")
        finished: dict[str, str] = {}
        results: dict[str, Any] = {}
        t_all = time.time()
        for i, step in enumerate(steps, 1):
            missing_deps = [d for d in step.deps if d not in finished]
            failed_deps = [d for d in missing_deps if d in self.failed]
            if failed_deps:
                self._say(f"[{i}/{len(steps)}] {step.title}: skipped")
                self._record_failure(step, f"not run: it needs step(s) {failed_deps}, which failed")
                continue
            if missing_deps:
                raise ValueError(f"step {step.name!r} depends on {missing_deps}, which do not run before it")
            key = _key(step.params, {d: finished[d] for d in step.deps})
            old = None if self.fresh else self.read_marker(step.name)
            outputs = [Path(p) for p in step.outputs]
            head = f"[{i}/{len(steps)}] {step.title}"
            if not step.always and old is not None and old.get("key") == key and all(p.exists() for p in outputs):
                self._say(f"{head}: done earlier ({old.get('seconds', 0):.0f} s then), reused")
                finished[step.name] = old["finished"]
                results[step.name] = old.get("summary")
                continue
            done = self._execute(step, head, outputs)
            if done is None:
                continue
            summary, seconds = done
            finished[step.name] = self._mark_done(step, key, outputs, summary, seconds)
            results[step.name] = summary
            self._say(f"      done in {seconds:.0f} s (total {time.time() - t_all:.0f} s)")
        return results
