"""Integration cost: PLITS vs LAL on the same LLM (SmolLM2-135M) and the same audio, one training step.

For every (Na audio tokens, Nt text tokens) case this measures a forward + ``loss.backward()`` with only the
connector trainable (``set_trainable(["connectors"])``; the LLM frozen, as in the paper's stage 1) for
PLITS (audio in the residual stream from layer 0) and LAL (audio as keys/values only, from layer 0), and
prints the measured speed-up next to the analytic FLOP ratio, plus the peak memory of the step.

Inputs are identical for both modes: random text ids (seeded), the audio slot after the first 4 text tokens,
labels on the last 4 text tokens, and the same random encoder frames in token mode,
``batch["audio_tokens"]["mel"]`` [B, T = Na, 256] -> MLP connector -> Na tokens.

Analytic FLOPs (`analytic_flops`): matmul multiply-adds x 2, from the model dims (d = d_model, H/G query/KV
heads of width Dh, F = d_mlp, V = vocab, L layers):
  per layer, N query positions, K key positions:
    q, o: 2 * N*d*H*Dh   k, v: 2 * N*d*G*Dh   attention QK^T and PV: 2 * N*K*H*Dh (dense, as computed)
    FFN (SwiGLU: gate, up, down): 3 * N*d*F
  PLITS: every layer has N = K = Na + Nt.
  LAL:   every layer has N = Nt, K = Na + Nt, plus W_K, W_V on the Na audio tokens (2 * Na*d*G*Dh); the
         audio's input RMSNorm is elementwise and, like every other elementwise op (norms, RoPE, softmax,
         SiLU, the loss), is not counted.
  both:  unembedding at the Nt text positions, Nt*d*V (logits are only computed at text positions).
  backward = 2 x forward for both modes (the usual rule). With frozen LLM weights only input gradients are
  needed, so the real factor is nearer 1x for the linears and 2x for attention; any factor common to the
  two modes cancels in the ratio, which is what we compare. The connector (same in both) is not counted.

One fresh subprocess per case loads both models (identical LLM weights and inputs) and
  1. times them: one warm-up step each, then --reps rounds of one PLITS step, one LAL step and one LAL step
     at batch 2B, interleaved (benchmarks/_interleave.py) so that a noisy shared machine slows both modes
     alike; the speed-up is read per round (t_plits / t_lal of the same round) and reported as the median with
     its interquartile range and min-max over the rounds;
  2. measures each mode's peak memory of one step, over what is live before it (model, inputs):
  * "alloc" (CPU, primary): the peak of live tensor bytes during the step, from the profiler's allocator
    events (``profile_memory=True``: every CPU tensor allocation and free, timestamped, summed in order).
    This is the CPU analogue of ``torch.cuda.max_memory_allocated``: exact for tensors, unaffected by the
    other model being resident, by earlier steps, or by what glibc's malloc keeps for reuse.
  * "RSS" (CPU, cross-check): the rise of the peak resident set over the RSS just before the step. The peak is
    VmHWM (the counter behind ``ru_maxrss``) reset through ``/proc/self/clear_refs`` (``ru_maxrss`` cannot be
    reset, and the model-loading peak would mask the step's); before the step, malloc is told to mmap every
    block >= 128 KiB and to return its free pages (`_malloc_release`), so memory freed by earlier steps is
    not reused without showing. It also counts page granularity and library workspaces.
  * CUDA: ``torch.cuda.max_memory_allocated`` minus the bytes allocated before the step.

Compute-bound or not: the worker also times LAL at batch 2B. With an affine cost t(B) = fixed + B*c
(fixed: Python dispatch of ~30 layers x ops, kernel launches, weight reads that do not grow with the rows),
the fixed share of the LAL step is f = 2 - t_lal(2B) / t_lal(B). A case is called compute-bound when
f <= 10% (LAL is the cheaper mode; PLITS runs the same ops on more rows, so its fixed share is smaller);
only then is the measured speed-up held to the analytic ratio (within 15%). This is decided from LAL's own
scaling, not from the PLITS/LAL comparison being judged.

Batch 1 vs batch 8 (measured on the shared 2-core dev machine, Na=128, Nt=32, one thread, torch profiler): at
batch 8 both modes' matmuls run at ~62-66 GFLOP/s and LAL comes within 15% of the analytic ratio; at batch 1 the
LAL step's matmuls have 32 text rows and run at ~42 GFLOP/s (every linear streams its whole weight matrix for
a few rows) while PLITS's 160 rows still run at ~64, and both steps dispatch the same ~18.5k ops (~0.2 s of
non-matmul time, a larger share of the shorter LAL step): fixed(LAL) ~50%, speed-up ~35% under the analytic.

Usage: python benchmarks/integration_cost.py [--na 32 128 512] [--nt 32 128] [--reps 5] [--batch 8]
       [--threads N] [--device cpu|cuda] [--dtype fp32|bf16] [--attn eager|sdpa] [--no-memory] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _interleave import fmt_spread, interleaved, ratio_spread  # noqa: E402
from _step_memory import rss_rise, step_peak_bytes, train_step  # noqa: E402,F401 (step_peak_bytes: the tests)

ENCODER = "mel"
ENC_DIM = 256
SLOT = 4  # audio slot opens after the first SLOT text tokens
N_LABELS = 4  # labels on the last N_LABELS text tokens
COMPUTE_BOUND_FIXED = 0.10  # fixed share of the LAL step at or below this: compute-bound
TOLERANCE = 0.15  # measured speed-up vs analytic ratio, compute-bound cases
MARK = "@@RESULT@@ "


# ---------------------------------------------------------------------------------------------- analytic
@dataclass
class Dims:
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    d_mlp: int
    d_vocab: int
    gated_mlp: bool = True

    @classmethod
    def of(cls, cfg) -> Dims:
        """From a `DecoderConfig` (or anything with these attributes)."""
        return cls(
            cfg.d_model,
            cfg.n_layers,
            cfg.n_heads,
            cfg.n_kv_heads,
            cfg.d_head,
            cfg.d_mlp,
            cfg.d_vocab,
            bool(getattr(cfg, "gated_mlp", True)),
        )


def analytic_flops(
    dims: Dims, n_audio: int, n_text: int, mode: str, *, layer: int = 0, batch: int = 1, bwd_factor: float = 2.0
) -> dict[str, float]:
    """FLOPs (2 x multiply-adds) of one PLITS or LAL step; see the module docstring for what is counted.

    Returns {"forward", "backward", "total", "layers", "unembed", "audio_kv"} (forward parts, "layers"
    including "audio_kv"). ``layer``: the first layer that sees audio (layers before it process text only).
    """
    if mode not in ("plits", "lal"):
        raise ValueError(f"mode must be 'plits' or 'lal', got {mode!r}")
    d, H, G, Dh, F = dims.d_model, dims.n_heads, dims.n_kv_heads, dims.d_head, dims.d_mlp
    ffn_mats = 3 if dims.gated_mlp else 2

    def block(n_q: int, n_k: int) -> int:  # multiply-adds of one layer, n_q query positions, n_k keys
        proj = n_q * d * H * Dh * 2 + n_q * d * G * Dh * 2  # q, o; k, v
        attn = 2 * n_q * n_k * H * Dh
        ffn = ffn_mats * n_q * d * F
        return proj + attn + ffn

    macs_layers, macs_audio_kv = 0, 0
    for l in range(dims.n_layers):
        if l < layer:
            macs_layers += block(n_text, n_text)
        elif mode == "plits":
            macs_layers += block(n_audio + n_text, n_audio + n_text)
        else:
            kv = 2 * n_audio * d * G * Dh
            macs_audio_kv += kv
            macs_layers += block(n_text, n_audio + n_text) + kv
    macs_unembed = n_text * d * dims.d_vocab
    fwd = 2.0 * batch * (macs_layers + macs_unembed)
    return {
        "forward": fwd,
        "backward": bwd_factor * fwd,
        "total": (1 + bwd_factor) * fwd,
        "layers": 2.0 * batch * macs_layers,
        "unembed": 2.0 * batch * macs_unembed,
        "audio_kv": 2.0 * batch * macs_audio_kv,
    }


def flop_ratio(dims: Dims, n_audio: int, n_text: int, layer: int = 0) -> float:
    """Analytic PLITS / LAL FLOPs of a training step (= forward ratio under a common backward factor)."""
    return (
        analytic_flops(dims, n_audio, n_text, "plits", layer=layer)["total"]
        / analytic_flops(dims, n_audio, n_text, "lal", layer=layer)["total"]
    )


# ---------------------------------------------------------------------------------------------- measuring
def pal_config(mode: str, n_audio: int, llm: str = "smollm2", dim: int = ENC_DIM, layer: int = 0) -> dict:
    return {
        "llm": llm,
        "encoders": [
            {
                "name": ENCODER,
                "dim": dim,
                "connector": {"type": "mlp", "n_tokens": n_audio},
                "integration": {"mode": mode, "layer": layer},
            }
        ],
    }


def make_batch(batch: int, n_text: int, n_frames: int, dim: int, vocab: int, seed: int = 0) -> dict:
    """Token-mode batch: random text ids, audio slot after SLOT tokens, labels on the last N_LABELS tokens,
    random frames [B, n_frames, dim]. Deterministic in ``seed`` (so both modes see the same inputs)."""
    if n_text < SLOT + N_LABELS:
        raise ValueError(f"need at least {SLOT + N_LABELS} text tokens, got {n_text}")
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch, n_text), generator=g)
    labels = torch.full_like(ids, -100)
    labels[:, -N_LABELS:] = ids[:, -N_LABELS:]
    frames = torch.randn(batch, n_frames, dim, generator=g)
    return {
        "input_ids": ids,
        "attention_mask": torch.ones(batch, n_text, dtype=torch.long),
        "audio_slot": torch.full((batch,), SLOT),
        "labels": labels,
        "audio_tokens": {ENCODER: frames},
        "audio_token_mask": {ENCODER: torch.ones(batch, n_frames, dtype=torch.bool)},
    }


def to_device(batch: dict, device: str) -> dict:
    return {
        k: ({n: t.to(device) for n, t in v.items()} if isinstance(v, dict) else v.to(device)) for k, v in batch.items()
    }


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def measure_modes(runs: dict, reps: int, device: str = "cpu") -> dict:
    """Time training steps of several (model, batch) runs, interleaved rep by rep (`_interleave.interleaved`) so
    that a noisy shared machine slows all of them alike.

    runs: {name: (model, batch)}, each model with its trainable parts set and its batch on ``device`` (one
    model may appear in several runs). One warm-up step each, then ``reps`` rounds of one step per run.
    Returns {name: {"times": [...], "time_s": median, "loss": loss of the warm-up step}}.
    """
    out = {name: {"loss": train_step(model, batch)} for name, (model, batch) in runs.items()}
    steps = {name: (lambda m=model, b=batch: train_step(m, b)) for name, (model, batch) in runs.items()}
    times = interleaved(steps, reps, warmup=0, sync=lambda: _sync(device))
    for name in out:
        out[name]["times"] = times[name]
        out[name]["time_s"] = statistics.median(times[name])
    return out


# ---------------------------------------------------------------------------------------------- workers
def _load(case: dict, mode: str):
    from workbench.model.pal import PALModel

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[case["dtype"]]
    model = PALModel.from_config(pal_config(mode, case["na"], case["llm"]))
    model.to(device=case["device"], dtype=dtype)
    model.set_attention_implementation(case["attn"])
    model.set_trainable(["connectors"])
    model.eval()  # no dropout anywhere: eval() only makes the step deterministic
    vocab = model.cfg.d_vocab
    batch = to_device(make_batch(case["batch"], case["nt"], case["na"], ENC_DIM, vocab, seed=0), case["device"])
    return model, batch


def case_worker(case: dict) -> dict:
    """Fresh process for one (Na, Nt), both modes loaded.

    1. timing (`measure_modes`): PLITS and LAL at batch B and LAL at 2B (for the fixed-cost estimate),
       interleaved; default malloc settings.
    2. memory, per mode: the RSS rise of one step (CPU; after `_malloc_release`, so the other mode's and the
       earlier steps' freed memory is not reused unseen), then the step's peak tensor bytes (`step_peak_bytes`:
       exact allocator accounting, unaffected by the other model being resident).
    """
    torch.set_num_threads(case["threads"])
    torch.manual_seed(0)
    dev = case["device"]
    loaded = {m: _load(case, m) for m in ("plits", "lal")}
    ml = loaded["lal"][0]
    b2 = to_device(make_batch(2 * case["batch"], case["nt"], case["na"], ENC_DIM, ml.cfg.d_vocab, seed=0), dev)
    out = measure_modes({**loaded, "lal_2B": (ml, b2)}, case["reps"], dev)
    for m, (model, batch) in loaded.items():
        memory = case.get("memory", True)
        out[m]["rss_rise"] = rss_rise(model, batch) if dev == "cpu" and memory else None
        out[m]["peak_bytes"] = step_peak_bytes(model, batch, dev) if memory else None
    out["threads"] = torch.get_num_threads()
    out["dims"] = Dims.of(ml.cfg).__dict__
    return out


def run_case(case: dict) -> dict:
    """{"plits": {...}, "lal": {...}, "lal_2B": {...}, "dims": ...} from a fresh subprocess."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(case)]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=root)
    for line in proc.stdout.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK) :])
    raise RuntimeError(f"worker failed for {case}:\n{proc.stderr[-4000:]}")


# ---------------------------------------------------------------------------------------------- main
def _mib(b) -> str:
    return "   n/a" if b is None else f"{b / 2**20:6.0f}"


def _saving(p, l) -> str:
    return "  n/a" if p is None or l is None or p <= 0 else f"{100 * (1 - l / p):5.1f}"


def summarize(r: dict, ratio: float) -> dict:
    """One case's reading: the per-round speed-up t_plits / t_lal (median, IQR, min-max), its error against the
    analytic ratio, and the fixed share of the LAL step, f = 2 - t_lal(2B) / t_lal(B) (medians)."""
    speed = ratio_spread(r["plits"]["times"], r["lal"]["times"])
    fixed = 2 - r["lal_2B"]["time_s"] / r["lal"]["time_s"]
    return {"speedup": speed, "analytic": ratio, "rel_err": speed["median"] / ratio - 1, "fixed": fixed}


def _row(na: int, nt: int, r: dict, s: dict, cpu: bool) -> str:
    P, L = r["plits"], r["lal"]
    sp = s["speedup"]
    line = (
        f"{na:4d} {nt:4d} {P['time_s']:7.3f}s {L['time_s']:6.3f}s {sp['median']:6.2f}x "
        f"{sp['q1']:5.2f}-{sp['q3']:<5.2f} {sp['min']:5.2f}-{sp['max']:<5.2f} {s['analytic']:7.2f}x "
        f"{100 * s['rel_err']:+6.1f}% {_mib(P['peak_bytes'])}M {_mib(L['peak_bytes'])}M "
        f"{_saving(P['peak_bytes'], L['peak_bytes'])}"
    )
    if cpu:
        line += f" {_mib(P['rss_rise'])}M {_mib(L['rss_rise'])}M {_saving(P['rss_rise'], L['rss_rise'])}"
    return line + f" {100 * s['fixed']:9.0f}%"


def _verdict(na: int, nt: int, r: dict, s: dict) -> str:
    sp, ratio, err, fixed = s["speedup"], s["analytic"], s["rel_err"], s["fixed"]
    if fixed <= COMPUTE_BOUND_FIXED:
        ok = abs(err) <= TOLERANCE
        v = (
            f"compute-bound (fixed share of t_lal {100 * fixed:.0f}% <= {100 * COMPUTE_BOUND_FIXED:.0f}%): "
            f"speed-up {fmt_spread(sp)} vs analytic {ratio:.2f}x, {100 * err:+.1f}% -> "
            f"{'WITHIN' if ok else 'OUTSIDE'} {100 * TOLERANCE:.0f}%"
        )
    else:
        v = (
            f"not compute-bound (fixed share of t_lal {100 * fixed:.0f}% > {100 * COMPUTE_BOUND_FIXED:.0f}%): "
            f"analytic ratio not expected to hold; speed-up {fmt_spread(sp)} vs {ratio:.2f}x ({100 * err:+.1f}%)"
        )
    P, L = r["plits"], r["lal"]
    direction = sp["median"] > 1 and (P["peak_bytes"] is None or (P["peak_bytes"] or 0) > (L["peak_bytes"] or 0))
    return (
        f"Na={na:3d} Nt={nt:3d}: {v}; direction (LAL faster{' and smaller' if P['peak_bytes'] else ''}): "
        f"{'yes' if direction else 'NO'}"
    )


def report(rows: list, cpu: bool, t0: float) -> None:
    """Print the table and the verdicts of [(na, nt, worker result, analytic ratio)]."""
    d = Dims(**rows[0][2]["dims"])
    print(
        f"LLM dims: d_model {d.d_model}, layers {d.n_layers}, heads {d.n_heads} (kv {d.n_kv_heads}) x {d.d_head}, "
        f"d_mlp {d.d_mlp} ({'SwiGLU' if d.gated_mlp else 'GELU'}), vocab {d.d_vocab}\n"
    )
    head = (
        f"{'Na':>4} {'Nt':>4} {'t_plits':>8} {'t_lal':>7} {'speedup':>7} {'IQR':>11} {'min-max':>11} "
        f"{'analytic':>8} {'rel.err':>7} {'alloc P':>7} {'alloc L':>7} {'save%':>5}"
    )
    head += f" {'RSS P':>7} {'RSS L':>7} {'save%':>5}" if cpu else ""
    head += f" {'fixed(LAL)':>10}"
    print(head + "\n" + "-" * len(head))
    summaries = [summarize(r, ratio) for _, _, r, ratio in rows]
    for (na, nt, r, _), s in zip(rows, summaries):
        print(_row(na, nt, r, s, cpu))
    print()
    for (na, nt, r, _), s in zip(rows, summaries):
        print(_verdict(na, nt, r, s))
    best_speed = max(s["speedup"]["median"] for s in summaries)
    saves = [1 - r["lal"]["peak_bytes"] / r["plits"]["peak_bytes"] for _, _, r, _ in rows if r["plits"]["peak_bytes"]]
    mem = f", {100 * max(saves):.1f}% less peak memory (alloc)" if saves else ""
    print(
        f"\nbest here: {best_speed:.2f}x speed-up{mem}; paper (v2): up to 247.5% higher throughput (3.48x), "
        f"up to 64.1% less memory. total {time.perf_counter() - t0:.0f} s"
    )
    print(
        "speedup: median over rounds of t_plits/t_lal of the same round (IQR, min-max: its spread); "
        "fixed(LAL) = 2 - t_lal(2B)/t_lal(B): the share of the LAL step that does not grow with the batch"
    )


def _args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--na", type=int, nargs="+", default=[32, 128, 512])
    p.add_argument("--nt", type=int, nargs="+", default=[32, 128])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    p.add_argument(
        "--attn", default="eager", choices=["eager", "sdpa"], help="attention implementation (workbench default: eager)"
    )
    p.add_argument("--llm", default="smollm2")
    p.add_argument("--no-memory", action="store_true", help="time only (skip the RSS and allocator measurements)")
    p.add_argument("--json", help="also write every case's raw times and summary to this file")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = _args(argv)
    if args.worker:
        print(MARK + json.dumps(case_worker(json.loads(args.worker))), flush=True)
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device visible")
    base = {
        "llm": args.llm,
        "threads": args.threads,
        "device": args.device,
        "dtype": args.dtype,
        "attn": args.attn,
        "batch": args.batch,
        "reps": args.reps,
        "memory": not args.no_memory,
    }
    dev_name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(
        f"torch {torch.__version__}, device {args.device} ({dev_name}), dtype {args.dtype}, threads {args.threads}, "
        f"attention {args.attn}, batch {args.batch}, {args.reps} interleaved rounds after a warm-up"
    )
    print("per case: one fresh process loads both modes, times them interleaved, then measures each one's memory")
    print("step = forward + loss.backward(), connector trainable, LLM frozen; audio from layer 0 in both modes")
    print(
        "memory: "
        + (
            "peak tensor bytes (cuda max_memory_allocated)"
            if args.device == "cuda"
            else "alloc = peak live tensor bytes in the step (profiler allocator events); RSS = peak RSS rise"
        )
        + "; analytic = PLITS/LAL matmul FLOPs (backward = 2x forward in both)"
    )
    t0 = time.perf_counter()
    rows = []
    for nt in args.nt:
        for na in args.na:
            r = run_case(dict(base, na=na, nt=nt))
            rows.append((na, nt, r, flop_ratio(Dims(**r["dims"]), na, nt)))
            print(f"  done Na={na} Nt={nt} ({time.perf_counter() - t0:.0f} s)", flush=True)
    report(rows, args.device == "cpu", t0)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{"na": na, "nt": nt, "raw": r, **summarize(r, ratio)} for na, nt, r, ratio in rows], f)


if __name__ == "__main__":
    main()
