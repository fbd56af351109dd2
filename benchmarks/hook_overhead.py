"""Hook overhead of HookedDecoder on SmolLM2-135M, batch 8 x 128 tokens, CPU fp32 (GPU if available).

Prints, measured in this one run (median of --reps timed forwards after a warm-up):
  ours plain / transformers      (target <= 1.15)
  run_with_cache (all hooks) / ours plain   (target <= 1.5)
  nnsight trace (a few saves) / ours plain
Usage: python benchmarks/hook_overhead.py [--reps 5] [--batch 8] [--seq 128]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from workbench.model.llm import load_hf_model
from workbench.model.loading import load_llm

NNSIGHT_BODY = '''
def nnsight_forward(wrapped, ids):
    with wrapped.trace(ids):
        a = wrapped.blocks[3].attn.hook_pattern.output.save()
        b = wrapped.blocks[15].hook_resid_post.output.save()
        c = wrapped.blocks[29].mlp.hook_post.output.save()
        out = wrapped.output.save()
    return out
'''


def timed(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    args = p.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, _ = load_llm()
    model.to(device)
    hf = load_hf_model().to(device)
    ids = torch.randint(0, model.cfg.d_vocab, (args.batch, args.seq), generator=torch.Generator().manual_seed(0)).to(device)

    # nnsight parses the trace body from source: exec it from a real file-like namespace
    import linecache

    from nnsight import NNsight

    fname = "<hook_overhead_nnsight>"
    linecache.cache[fname] = (len(NNSIGHT_BODY), None, NNSIGHT_BODY.splitlines(True), fname)
    ns: dict = {}
    exec(compile(NNSIGHT_BODY, fname, "exec"), ns)
    wrapped = NNsight(model)

    rows = {}
    with torch.no_grad():
        rows["transformers (sdpa)"] = timed(lambda: hf(ids), args.reps)
        rows["ours plain (eager, all hooks idle)"] = timed(lambda: model(ids), args.reps)
        model.set_attention_implementation("sdpa")
        rows["ours plain (sdpa)"] = timed(lambda: model(ids), args.reps)
        model.set_attention_implementation("eager")
        rows["ours run_with_cache (all hooks)"] = timed(lambda: model.run_with_cache(ids), args.reps)
        rows["ours nnsight trace (3 saves)"] = timed(lambda: ns["nnsight_forward"](wrapped, ids), args.reps)
    print(f"device {device}, batch {args.batch} x {args.seq} tokens, median of {args.reps}, torch threads {torch.get_num_threads()}")
    for name, t in rows.items():
        print(f"  {name:40s} {t * 1000:8.1f} ms")
    base = rows["ours plain (eager, all hooks idle)"]
    print(f"ratio ours plain (eager) / transformers: {base / rows['transformers (sdpa)']:.3f}  (target <= 1.15)")
    print(f"ratio ours plain (sdpa)  / transformers: {rows['ours plain (sdpa)'] / rows['transformers (sdpa)']:.3f}")
    print(f"ratio run_with_cache / ours plain:       {rows['ours run_with_cache (all hooks)'] / base:.3f}  (target <= 1.5)")
    print(f"ratio nnsight trace / ours plain:        {rows['ours nnsight trace (3 saves)'] / base:.3f}")


if __name__ == "__main__":
    main()
