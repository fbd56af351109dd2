"""Hook overhead of HookedDecoder on SmolLM2-135M, batch 8 x 128 tokens, CPU fp32 (GPU if available).

Prints, measured in this one run: every variant's median forward time, and each ratio read per repetition
(the variants run interleaved, one forward each per round, after a warm-up: benchmarks/_interleave.py), as the
median with its interquartile range and min-max over the rounds:
  ours plain / transformers      (target <= 1.15)
  run_with_cache (all hooks) / ours plain   (target <= 1.5)
  nnsight trace (a few saves) / ours plain
A ratio resolves a target only if its IQR lies on one side of it; on a busy shared machine raise --reps.
Usage: python benchmarks/hook_overhead.py [--reps 9] [--batch 8] [--seq 128]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import torch

from workbench.model.llm import load_hf_model
from workbench.model.loading import load_llm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _interleave import fmt_spread, interleaved, ratio_spread  # noqa: E402

NNSIGHT_BODY = """
def nnsight_forward(wrapped, ids):
    with wrapped.trace(ids):
        a = wrapped.blocks[3].attn.hook_pattern.output.save()
        b = wrapped.blocks[15].hook_resid_post.output.save()
        c = wrapped.blocks[29].mlp.hook_post.output.save()
        out = wrapped.output.save()
    return out
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=9)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    args = p.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, _ = load_llm()
    model.to(device)
    hf = load_hf_model().to(device)
    ids = torch.randint(0, model.cfg.d_vocab, (args.batch, args.seq), generator=torch.Generator().manual_seed(0)).to(
        device
    )

    # nnsight parses the trace body from source: exec it from a real file-like namespace
    import linecache

    from nnsight import NNsight

    fname = "<hook_overhead_nnsight>"
    linecache.cache[fname] = (len(NNSIGHT_BODY), None, NNSIGHT_BODY.splitlines(True), fname)
    ns: dict = {}
    exec(compile(NNSIGHT_BODY, fname, "exec"), ns)
    wrapped = NNsight(model)

    def sdpa(ids):
        model.set_attention_implementation("sdpa")
        try:
            return model(ids)
        finally:
            model.set_attention_implementation("eager")

    variants = {
        "transformers (sdpa)": lambda: hf(ids),
        "ours plain (eager, all hooks idle)": lambda: model(ids),
        "ours plain (sdpa)": lambda: sdpa(ids),
        "ours run_with_cache (all hooks)": lambda: model.run_with_cache(ids),
        "ours nnsight trace (3 saves)": lambda: ns["nnsight_forward"](wrapped, ids),
    }
    with torch.no_grad():
        times = interleaved(variants, args.reps)
    print(
        f"device {device}, batch {args.batch} x {args.seq} tokens, {args.reps} interleaved rounds after a warm-up, "
        f"torch threads {torch.get_num_threads()}"
    )
    for name, t in times.items():
        print(f"  {name:40s} {statistics.median(t) * 1000:8.1f} ms (median)")
    print("ratios, per round: median [IQR, min-max]")
    plain, hf_t = times["ours plain (eager, all hooks idle)"], times["transformers (sdpa)"]
    print(f"ratio ours plain (eager) / transformers: {fmt_spread(ratio_spread(plain, hf_t), 3)}  (target <= 1.15)")
    print(f"ratio ours plain (sdpa)  / transformers: {fmt_spread(ratio_spread(times['ours plain (sdpa)'], hf_t), 3)}")
    print(
        f"ratio run_with_cache / ours plain:       "
        f"{fmt_spread(ratio_spread(times['ours run_with_cache (all hooks)'], plain), 3)}  (target <= 1.5)"
    )
    print(
        f"ratio nnsight trace / ours plain:        "
        f"{fmt_spread(ratio_spread(times['ours nnsight trace (3 saves)'], plain), 3)}"
    )


if __name__ == "__main__":
    main()
