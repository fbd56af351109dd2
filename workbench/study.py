"""Study one model: the workbench's one-model suite on a trained PAL checkpoint or a released audio-LLM, as one
resumable command, ending in a report read verdict-first.

    python -m workbench.study --checkpoint DIR_OR_HUB_ID --data DIR [--out DIR] [--device cpu|cuda]
        [--dtype float32|bfloat16] [--batch-size 8] [--rows 48] [--quick] [--fresh] [--synth N]

DIR_OR_HUB_ID: a PAL checkpoint (``results/checkpoints/<variant>/final``), a released model's transformers folder
(Qwen2-Audio, Voxtral, Audio Flamingo 3, GLM-ASR) or its hub id. --data: an audiofolder with ``tasks.jsonl``
(``--synth N`` first writes N clips of the synthetic test split there when it has none).

Before it starts it prints what it will cost (parameters, tokens per item, weight and activation memory at
--batch-size; :mod:`workbench.model.cost`). Steps (:mod:`workbench.pipeline.study`, :mod:`workbench.pipeline.retrofit`):
accuracy with the answers, attention to audio, logit lens, attribute lens with critical layers, listening heads,
steering gain, the ablation sweep (audio blocked from layer L on), AtP over heads checked by exact patching, and
the paper's claims 1 and 2 as zero-shot retrofits (PLITS@L, LAL@L; out of distribution, said so). Then
``OUT/report.html`` (:mod:`workbench.pipeline.study_report`), checked in headless Chromium when one is installed.

Every step is resumable (:mod:`workbench.pipeline.steps`): interrupt at any time (Ctrl-C) and run the same command
again to continue. A step that fails is recorded in the report and the others go on; rerunning retries it.
"""

from __future__ import annotations

import argparse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m workbench.study",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--checkpoint", required=True, help="PAL checkpoint folder, released model folder or hub id")
    p.add_argument("--data", required=True, help="audiofolder with tasks.jsonl (e.g. data/synth-tiny/test)")
    p.add_argument("--out", default=None, help="output folder (default results/study/<checkpoint name>)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--rows", type=int, default=None, help="task rows per analysis (default 48; --quick 6)")
    p.add_argument("--eval-rows", type=int, default=None, help="rows answered for the accuracy (default: all)")
    p.add_argument("--quick", action="store_true", help="a smoke run: every step shrunk (numbers not meaningful)")
    p.add_argument("--fresh", action="store_true", help="ignore finished steps and redo everything")
    p.add_argument(
        "--synth",
        type=int,
        default=None,
        metavar="N",
        help="when --data has no tasks.jsonl, first write N clips of the synthetic test split there",
    )
    p.add_argument("--no-browser-check", action="store_true", help="skip opening the report in headless Chromium")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: every core)")
    return p


def main(argv: list[str] | None = None) -> int:
    from workbench.pipeline.study_command import run_study_command

    return run_study_command(build_parser().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
