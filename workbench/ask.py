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
from pathlib import Path

import pandas as pd

from workbench.analysis.cli import run_cli
from workbench.analysis.inputs import DEFAULT_CHECKPOINT


def _attention_table(ex) -> pd.DataFrame:
    lay = ex.attention_layers[ex.attention_layers.uniform_mass > 0]
    return lay.pivot_table(index="layer", columns="encoder", values=["mass", "ratio"]).round(4)


def _lens_table(ex) -> pd.DataFrame:
    lens = ex.lens.pivot_table(index="layer", columns="condition", values=["prob", "rank"])
    lens.columns = [f"{v}_{c}" for v, c in lens.columns]
    return lens.round(4).astype({c: int for c in lens.columns if c.startswith("rank")})


def main(argv: list[str] | None = None) -> int:
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
    a = p.parse_args(argv)

    import torch

    torch.set_num_threads(min(torch.get_num_threads(), 4))
    return run_cli(lambda: _run(a))


def _run(a) -> int:
    from workbench.analysis.explain import explain
    from workbench.common.audio_io import load_audio
    from workbench.model.pal import PALModel

    load_audio(a.clip, mono=False)  # fail on a bad clip before loading the model
    model = PALModel.from_pretrained(a.checkpoint)
    if not (a.explain or a.html or a.csv_dir):
        print(model.ask(a.clip, a.question, max_new_tokens=a.max_new_tokens))
        return 0
    ex = explain(model, a.clip, a.question, max_new_tokens=a.max_new_tokens)
    print(ex.answer)
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print("\nattention of the answer to each encoder's audio (mean over heads; ratio = mass / uniform attention):")
        print(_attention_table(ex).to_string())
        print(
            f"\nlogit lens of the first answer token {ex.lens.answer_token.iloc[0]!r} (prob, rank; audio vs audio cut):"
        )
        print(_lens_table(ex).to_string())
    if a.csv_dir:
        from workbench.common.paths import atomic_write_bytes

        for name in ("attention", "attention_layers", "lens", "token_attention", "time_attention"):
            atomic_write_bytes(Path(a.csv_dir) / f"ask_{name}.csv", getattr(ex, name).to_csv(index=False).encode())
        print(f"\nwrote {a.csv_dir}/ask_*.csv")
    if a.html:
        print(f"\nwrote {ex.write_html(a.html)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
