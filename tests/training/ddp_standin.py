"""What ``torchrun`` launches in ``test_multiprocess.py``: :func:`workbench.training.driver.train` with the stand-in
model, which records the rows of every training batch it sees.

    torchrun --standalone --nproc_per_node 2 -m tests.training.ddp_standin --config CFG --out OUT [--max-steps N]
             [--resume]       # = python -m workbench.train ... with the stand-in model
    torchrun --standalone --nproc_per_node 2 -m tests.training.ddp_standin --alone

Each process writes the rows it trained on to ``OUT-rows-rank{R}.json`` (beside ``OUT``, so ``OUT`` holds only what
the trainer writes). ``--alone`` builds ``accelerate.Accelerator()`` as the trainer did before it formed CPU groups
(each process alone) and runs the trainer's launch check on it: exit 2 and the error message.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from tests.training.standin import StandInModel


class RecordingStandIn(StandInModel):
    """The stand-in; ``rows`` holds, per training micro-batch, its rows as ``[answer-token sum, audio-token sum]``
    (a clip's audio tokens identify it; the answer tokens its task row)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.rows: list[list[list[float]]] = []

    def loss(self, batch):
        if self.training:
            labels = batch["labels"].clamp(min=0).sum(1)
            audio = batch["audio_tokens"][self.encoder_names[0]].double().sum((1, 2))
            self.rows.append(sorted([int(a), round(float(b), 3)] for a, b in zip(labels, audio)))
        return super().loss(batch)


def rows_file(out: Path, rank: int) -> Path:
    return out.parent / f"{out.name}-rows-rank{rank}.json"


def _alone() -> int:
    from accelerate import Accelerator

    from workbench.training.launch import LaunchError, check_launch

    try:
        check_launch(Accelerator())
    except LaunchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv=None) -> int:
    """``--alone``, or ``python -m workbench.train ARGS`` (its own printing and exit code) with the stand-in."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--alone"]:
        return _alone()
    import workbench.training.driver as driver
    from workbench.model.llm import load_tokenizer
    from workbench.train import main as train_main

    tok = load_tokenizer()
    built = []

    def factory(model_dict, **_):
        built.append(RecordingStandIn(tok, **model_dict))
        return built[-1]

    driver.default_model_factory = factory
    rc = train_main(["--preset", "tiny", "--no-progress", *argv])
    out = Path(argv[argv.index("--out") + 1])
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    if built:
        rows_file(out, rank).write_text(json.dumps(built[0].rows))
    return rc


if __name__ == "__main__":
    sys.exit(main())
