"""The resumable step runner behind the demo: skip finished steps, re-run what changed, survive interrupts."""

import io
import json

import pytest

from workbench.pipeline.steps import Pipeline, Step, StepFailed


class Recorder:
    """Steps that write one file each and log every run."""

    def __init__(self, root):
        self.root = root
        self.runs = []

    def step(self, name, deps=(), params=None, interrupt=False, fail=False):
        path = self.root / f"{name}.txt"

        def run():
            self.runs.append(name)
            if interrupt:
                raise KeyboardInterrupt
            if fail:
                raise ValueError("bad input")
            path.write_text(name)
            return {"wrote": str(path)}

        return Step(name, f"make {name}", run, params=params or {}, outputs=[path], deps=deps)


def _pipeline(tmp_path, **kw):
    return Pipeline(tmp_path / "run", stream=io.StringIO(), **kw)


def test_second_run_reuses_finished_steps(tmp_path):
    rec = Recorder(tmp_path)
    steps = [rec.step("a"), rec.step("b", deps=["a"])]
    first = _pipeline(tmp_path).run(steps)
    assert rec.runs == ["a", "b"] and first["b"] == {"wrote": str(tmp_path / "b.txt")}
    p = _pipeline(tmp_path)
    again = p.run(steps)
    assert rec.runs == ["a", "b"], "nothing should run twice"
    assert again == first
    assert "reused" in p.stream.getvalue()


def test_changed_params_rerun_the_step_and_its_dependents_only(tmp_path):
    rec = Recorder(tmp_path)
    _pipeline(tmp_path).run([rec.step("a"), rec.step("b", deps=["a"]), rec.step("c")])
    rec.runs.clear()
    _pipeline(tmp_path).run([rec.step("a", params={"n": 2}), rec.step("b", deps=["a"]), rec.step("c")])
    assert rec.runs == ["a", "b"]


def test_missing_output_reruns_and_fresh_ignores_markers(tmp_path):
    rec = Recorder(tmp_path)
    steps = [rec.step("a"), rec.step("b")]
    _pipeline(tmp_path).run(steps)
    (tmp_path / "b.txt").unlink()
    rec.runs.clear()
    _pipeline(tmp_path).run(steps)
    assert rec.runs == ["b"]
    rec.runs.clear()
    _pipeline(tmp_path, fresh=True).run(steps)
    assert rec.runs == ["a", "b"]


def test_interrupt_keeps_finished_steps_and_resumes_at_the_interrupted_one(tmp_path):
    rec = Recorder(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        _pipeline(tmp_path).run([rec.step("a"), rec.step("b", interrupt=True), rec.step("c")])
    markers = tmp_path / "run" / ".steps"
    assert (markers / "a.json").exists() and not (markers / "b.json").exists()
    assert json.loads((markers / "a.json").read_text())["summary"] == {"wrote": str(tmp_path / "a.txt")}
    rec.runs.clear()
    _pipeline(tmp_path).run([rec.step("a"), rec.step("b"), rec.step("c")])
    assert rec.runs == ["b", "c"]


def test_failure_names_the_step_and_the_fix(tmp_path):
    rec = Recorder(tmp_path)
    with pytest.raises(StepFailed, match=r"step 'b' \(make b\) failed: ValueError: bad input.*run the same command"):
        _pipeline(tmp_path).run([rec.step("a"), rec.step("b", fail=True)])
    assert (tmp_path / "run" / ".steps" / "a.json").exists()


def test_a_step_that_does_not_write_its_outputs_fails(tmp_path):
    step = Step("x", "make x", lambda: None, outputs=[tmp_path / "never.txt"])
    with pytest.raises(StepFailed, match="did not write"):
        _pipeline(tmp_path).run([step])


def test_bad_step_lists_are_refused(tmp_path):
    rec = Recorder(tmp_path)
    with pytest.raises(ValueError, match="duplicate"):
        _pipeline(tmp_path).run([rec.step("a"), rec.step("a")])
    with pytest.raises(ValueError, match="depends on"):
        _pipeline(tmp_path).run([rec.step("b", deps=["a"]), rec.step("a")])


def test_an_always_step_runs_every_time(tmp_path):
    rec = Recorder(tmp_path)
    steps = [rec.step("a"), rec.step("b", deps=["a"])]
    steps[1].always = True
    _pipeline(tmp_path).run(steps)
    rec.runs.clear()
    _pipeline(tmp_path).run(steps)
    assert rec.runs == ["b"]


def test_keep_going_records_a_failure_skips_its_dependents_and_retries_it_next_time(tmp_path):
    rec = Recorder(tmp_path)
    steps = [rec.step("a", fail=True), rec.step("b", deps=["a"]), rec.step("c")]
    pipe = _pipeline(tmp_path, keep_going=True)
    results = pipe.run(steps)
    assert rec.runs == ["a", "c"] and set(results) == {"c"}
    assert set(pipe.failed) == {"a", "b"} and "ValueError: bad input" in pipe.failed["a"]
    assert "failed" in pipe.read_failure("b")["error"] and pipe.read_marker("a") is None
    rec.runs.clear()
    fixed = [rec.step("a"), rec.step("b", deps=["a"]), rec.step("c")]
    pipe = _pipeline(tmp_path, keep_going=True)
    pipe.run(fixed)
    assert rec.runs == ["a", "b"] and pipe.failed == {}  # c reused; a and b retried
    assert pipe.read_failure("a") is None and pipe.read_failure("b") is None
