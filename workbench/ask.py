"""CLI: ask a model a question about your own recording (workbench.model.inference, workbench.analysis.explain).

    python -m workbench.ask [--checkpoint results/checkpoints/pal/final] CLIP.wav "Is there speech?"
        [--explain] [--html OUT.html] [--max-new-tokens 32] [--csv-dir DIR]

--checkpoint: a trained PAL checkpoint folder, or a released audio-LLM (a transformers folder such as
Qwen2-Audio-7B-Instruct's, or its hub id), asked in its own chat template.
CLIP: any file libsndfile reads (wav, flac, ogg, mp3 ...), any sample rate and channel count (mixed down to
mono, resampled to the model's audio rate). Prints the answer. ``--explain`` also prints the answer's attention to each
encoder's audio per layer and the logit lens of its first token; ``--html`` writes a page with the playable
clip, its spectrogram and that attention mapped onto the clip's time axis (implies ``--explain``);
``--csv-dir`` writes the explanation's tables as CSV there.
"""

from __future__ import annotations

import argparse

from workbench.analysis.cli import run_cli
from workbench.analysis.inputs import DEFAULT_CHECKPOINT


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m workbench.ask", description=__doc__.split("\n\n")[0])
    p.add_argument("clip", help="audio file (any rate, any channel count)")
    p.add_argument("question", help="the question to ask about the clip (quote it)")
    p.add_argument(
        "--checkpoint",
        default=str(DEFAULT_CHECKPOINT),
        help=f"PAL checkpoint or released model folder / hub id (default {DEFAULT_CHECKPOINT})",
    )
    p.add_argument("--explain", action="store_true", help="print attention to audio per layer and the logit lens")
    p.add_argument("--html", default=None, help="write the explanation page here (implies --explain)")
    p.add_argument("--csv-dir", default=None, help="write the explanation's tables as CSV here (implies --explain)")
    p.add_argument("--max-new-tokens", type=int, default=32)
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    from workbench.analysis.explain import run_ask_command

    return run_cli(lambda: run_ask_command(a))


if __name__ == "__main__":
    raise SystemExit(main())
