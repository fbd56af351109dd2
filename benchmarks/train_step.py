"""Training-step cost of every tiny variant: tokens per second, the split into forward / backward / optimizer,
the gain of running the shared prompt prefix once, and the ratio to a plain ``transformers`` step.

    python benchmarks/train_step.py [--variants baseline,lal] [--reps 4] [--threads 1] [--parallel 2]
    python benchmarks/train_step.py --mode-ratio 5 [--variants baseline] [--reps 3] [--threads 1]

For each variant (its ``configs/VARIANT.yaml`` tiny preset, LoRA enabled as in training) and for the two kinds of
stage (``connector``: only the connector trains, the LLM frozen; ``lora``: connector, adapters and LoRA train), one
fixed batch of 8 training rows (the first 8 rows of the stage's data order, seed 0) is timed for ``--reps``
steps after one warm-up step:

- ``plain``: ``model.loss(batch, share_prefix=False)`` (every row runs its whole prompt);
- ``shared``: ``model.loss(batch)``, the training default: the system turn that every row shares runs once
  (:mod:`workbench.model.shared_prefix`);
- ``hf``: the same LLM as ``transformers.LlamaForCausalLM`` on ``inputs_embeds`` of the same shape as our residual
  sequence (text + PLITS audio slots), the loss at the same answer positions, with the same trainable set (the
  input embeddings for ``connector``; peft LoRA of the same rank and targets for ``lora``): the reference
  ``ratio`` = hf time / our time (> 1: we are faster).

Times are medians over the reps, measured in this one process with ``--threads`` torch threads. ``--parallel N``
runs N copies of this benchmark at once (each with ``--threads``) and prints their summed throughput: on a 2-core
machine, compare ``--threads 2`` with ``--threads 1 --parallel 2``.

``--mode-ratio N``: the cost of the reproducible mode (:mod:`workbench.training.reproducible`: AVX2 code paths of
MKL/ATen/oneDNN, deterministic algorithms) against the default mode at the same thread count, for the ``shared``
training step of each variant and stage. The pins are environment variables read once per process, so each mode
runs in its own subprocess (model, data and timing as above); N repetitions, the two modes interleaved (their
order alternating), the ratio reproducible / default per repetition and its median, min and max printed. A
variant may also be a YAML path (its ``tiny`` preset), e.g. ``tests/training/reproducible/config.yaml``, which
needs no corpus beyond its 6 clips.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

VARIANTS = ("baseline", "delayed", "lal", "ensemble", "pal", "hybrid")


def _batch(variant: str, stage: int):
    from workbench.training.batch_order import StageBatchSampler, prepare_data
    from workbench.training.driver import _encoder_specs, _stage_datasets, default_model_factory
    from workbench.training.run_config import load_run_config

    cfg = load_run_config(variant if variant.endswith(".yaml") else f"configs/{variant}.yaml", "tiny")
    model = default_model_factory(cfg.model, seed=0)
    lc = cfg.training.lora
    model.enable_lora(rank=lc.rank, alpha=lc.alpha, dropout=lc.dropout, targets=list(lc.targets))
    prepare_data(cfg.data, _encoder_specs(model), progress=False)
    st = cfg.training.stages[stage]
    ds = _stage_datasets(cfg, model, "train")[tuple(st.tasks)]
    idx = next(iter(StageBatchSampler(len(ds), cfg.training.batch_size, 0, stage, 0, 1)))
    batch = ds.collate_fn([ds[i] for i in idx])
    batch.pop("row", None)
    model.set_trainable(list(st.trainable))
    model.train()
    return cfg, model, batch, st


def _time_steps(step, reps: int) -> dict[str, float]:
    step()  # warm-up
    parts = {"forward": [], "backward": [], "optimizer": []}
    for _ in range(reps):
        t = step()
        for k, v in t.items():
            parts[k].append(v)
    return {k: statistics.median(v) for k, v in parts.items()}


def _timed_step(loss_fn, params):
    """A training step of ``loss_fn()`` with AdamW on ``params``, returning the time of each part."""
    opt = torch.optim.AdamW(params, lr=1e-6)

    def step():
        t0 = time.perf_counter()
        loss = loss_fn()
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return {"forward": t1 - t0, "backward": t2 - t1, "optimizer": time.perf_counter() - t2}

    return step


def _ours(model, batch, share_prefix: bool):
    return _timed_step(
        lambda: model.loss(batch, share_prefix=share_prefix), [p for p in model.parameters() if p.requires_grad]
    )


def _hf(model, batch, stage, lora_cfg):
    """transformers' Llama on inputs_embeds [B, S, M] (S = our residual length), loss at the same positions."""
    from workbench.model.llm import load_hf_model

    hf = load_hf_model(model.pal_cfg.llm)
    hf.train()
    for p in hf.parameters():
        p.requires_grad_(False)
    layout = model.token_layout(batch)
    B, S = layout.attention_mask.shape
    embeds = torch.randn(B, S, hf.config.hidden_size) * 0.02
    labels_at = torch.zeros(B, S, dtype=torch.bool)
    text_pred = torch.nn.functional.pad(batch["labels"][:, 1:] != -100, (0, 1), value=False)
    labels_at.scatter_(1, layout.text_index, text_pred)
    targets = batch["labels"][:, 1:][batch["labels"][:, 1:] != -100]
    params = []
    if "lora" in stage.trainable:
        from peft import LoraConfig, get_peft_model

        hf = get_peft_model(
            hf,
            LoraConfig(
                r=lora_cfg.rank, lora_alpha=lora_cfg.alpha, lora_dropout=0.0, target_modules=list(lora_cfg.targets)
            ),
        )
        params = [p for p in hf.parameters() if p.requires_grad]
    embeds.requires_grad_(True)
    params.append(embeds)
    base = hf.get_base_model() if hasattr(hf, "get_base_model") else hf
    mask = layout.attention_mask.long()

    def loss_fn():
        hidden = base.model(
            inputs_embeds=embeds, attention_mask=mask, position_ids=layout.position_ids
        ).last_hidden_state
        return torch.nn.functional.cross_entropy(base.lm_head(hidden[labels_at]), targets)

    return _timed_step(loss_fn, params)


def run(variants, reps: int, paths=("plain", "shared", "hf")) -> list[dict]:
    rows = []
    for v in variants:
        for stage in (0, 1):
            cfg, model, batch, st = _batch(v, stage)
            tokens = int(model.token_layout(batch).attention_mask.sum())
            res = {}
            steps = {
                "plain": lambda model=model, batch=batch: _ours(model, batch, False),
                "shared": lambda model=model, batch=batch: _ours(model, batch, True),
                "hf": lambda model=model, batch=batch, st=st, cfg=cfg: _hf(model, batch, st, cfg.training.lora),
            }
            for name in paths:
                t = _time_steps(steps[name](), reps)
                res[name] = sum(t.values())
                rows.append(
                    {
                        "variant": v,
                        "stage": st.name,
                        "path": name,
                        **{k: round(x, 3) for k, x in t.items()},
                        "step_s": round(res[name], 3),
                        "tokens_per_s": round(tokens / res[name], 1),
                    }
                )
                print(
                    f"{v:9s} {st.name:9s} {name:6s} fwd {t['forward']:.3f} bwd {t['backward']:.3f} "
                    f"opt {t['optimizer']:.3f} s  = {res[name]:.3f} s/step, {tokens / res[name]:.0f} tokens/s",
                    flush=True,
                )
            if len(res) == 3:
                print(
                    f"{v:9s} {st.name:9s} shared vs plain x{res['plain'] / res['shared']:.2f}; "
                    f"hf / ours(shared) = {res['hf'] / res['shared']:.2f}, "
                    f"hf / ours(plain) = {res['hf'] / res['plain']:.2f}",
                    flush=True,
                )
    return rows


def mode_ratio(variants: str, reps: int, repeats: int, threads: int) -> list[float]:
    """Reproducible / default step time of the ``shared`` path, ``repeats`` interleaved subprocess pairs."""
    from workbench.training.reproducible import REPRO_ENV, pinned_env

    cmd = [
        sys.executable,
        __file__,
        "--variants",
        variants,
        "--reps",
        str(reps),
        "--threads",
        str(threads),
        "--paths",
        "shared",
        "--json",
    ]
    base = {k: v for k, v in os.environ.items() if k not in REPRO_ENV}
    base.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    ratios = []
    for i in range(repeats):
        times, caps = {}, {}
        for mode in ("default", "reproducible") if i % 2 == 0 else ("reproducible", "default"):
            env = pinned_env(base) if mode == "reproducible" else base
            extra = ["--deterministic"] if mode == "reproducible" else []
            out = subprocess.run(cmd + extra, env=env, capture_output=True, text=True, check=True).stdout
            res = json.loads(out.strip().splitlines()[-1])
            times[mode], caps[mode] = sum(r["step_s"] for r in res["rows"]), res["cpu_capability"]
        ratios.append(times["reproducible"] / times["default"])
        print(
            f"repetition {i + 1}: default ({caps['default']}) {times['default']:.3f} s, reproducible "
            f"({caps['reproducible']}) {times['reproducible']:.3f} s per step set; ratio {ratios[-1]:.3f}",
            flush=True,
        )
    print(
        f"reproducible / default step time ({threads} thread(s), {variants}, shared path, both stages): median "
        f"{statistics.median(ratios):.3f}, min {min(ratios):.3f}, max {max(ratios):.3f} over {repeats} repetitions"
    )
    return ratios


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--reps", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--parallel", type=int, default=1, help="run N copies at once and sum their throughput")
    p.add_argument("--paths", default="plain,shared,hf", help="which steps to time (plain, shared, hf)")
    p.add_argument(
        "--mode-ratio",
        type=int,
        default=0,
        metavar="N",
        help="N interleaved repetitions of reproducible vs default mode (subprocesses)",
    )
    p.add_argument("--deterministic", action="store_true", help="torch.use_deterministic_algorithms(True)")
    p.add_argument("--json", action="store_true", help="print the rows as one JSON line at the end")
    a = p.parse_args(argv)
    if a.mode_ratio:
        mode_ratio(a.variants, a.reps, a.mode_ratio, a.threads)
        return 0
    if a.parallel > 1:
        cmd = [sys.executable, __file__, "--variants", a.variants, "--reps", str(a.reps), "--threads", str(a.threads)]
        t0 = time.perf_counter()
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(a.parallel)]
        outs = [pr.communicate()[0] for pr in procs]
        wall = time.perf_counter() - t0
        print(outs[0])
        print(f"{a.parallel} copies x {a.threads} thread(s): {wall:.1f} s wall for {a.parallel} x the work above")
        return 0
    torch.set_num_threads(a.threads)
    if a.deterministic:
        torch.use_deterministic_algorithms(True)
    cap = torch.backends.cpu.get_cpu_capability()
    print(f"torch {torch.__version__}, {a.threads} thread(s), reps {a.reps}, ISA {cap}")
    rows = run(
        [v.strip() for v in a.variants.split(",") if v.strip()],
        a.reps,
        tuple(x.strip() for x in a.paths.split(",") if x.strip()),
    )
    if a.json:
        print(json.dumps({"cpu_capability": cap, "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
