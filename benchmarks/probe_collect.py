"""Cost of collecting probe activations vs a plain forward, and memory as N grows (streaming to disk).

Model: the SmolLM2-135M PALModel of configs/pal.yaml preset ``tiny`` (whisper + yamnet + mel, LAL from layer
8), built fresh (untrained connectors/adapters: timing only), fed random encoder tokens (token mode, no encoder
runs) and the fixed probe prompt. Sites: those of probes/category.yaml (every encoder and connector output,
``blocks.{l}.hook_resid_post`` at last_prompt and slot_after for all 30 layers, audio K and V of every LAL
layer), pooled and appended to one file per site.

Prints, measured in this one run:
  time   collect_activations(N) / plain forwards over the same N clips   (target <= 1.3)
  memory peak RSS growth during collection for N and 4N clips             (streaming: about flat)
Usage: python benchmarks/probe_collect.py [--n 32] [--batch 8] [--reps 2] [--threads T]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from workbench.analysis.probes import collect_activations, load_suite, prepare_clips, resolve_sites
from workbench.data.dataset import build_prompt, collate

REPO = Path(__file__).resolve().parents[1]
FRAMES = {"whisper": 50, "yamnet": 10, "mel": 100}  # frames per clip (about 1 s of audio)


class RandomTokenClips:
    """n clips of random encoder tokens (varying length), a 4-class label, the fixed probe question."""

    def __init__(self, model, n: int, seed: int = 0):
        self.tokenizer, self.root, self.n = model.tokenizer, Path("random-tokens"), n
        self.dims = {s.name: s.dim for s in model.pal_cfg.encoders}
        self.seed = seed
        self.rows = [
            {"file_name": f"audio/{i:06d}.wav", "label": "abcd"[i % 4], "question": "What do you hear?"}
            for i in range(n)
        ]
        ids, self.slot_index = build_prompt(self.tokenizer, "What do you hear?")
        self.ids = torch.tensor(ids)
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else 0)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        toks = {}
        for name, dim in self.dims.items():
            T = FRAMES.get(name, 32) - int(torch.randint(0, 5, (1,), generator=g))
            toks[name] = torch.randn(T, dim, generator=g)
        return {
            "input_ids": self.ids,
            "labels": torch.full_like(self.ids, -100),
            "audio_slot": self.slot_index,
            "prompt_len": len(self.ids),
            "audio_tokens": toks,
            "row": self.rows[i],
        }

    def collate_fn(self, items):
        return collate(items, pad_id=self.pad_id)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Peak resident memory above the level at entry, sampled every 5 ms in a thread."""

    def __enter__(self):
        self.base = self.peak = rss_bytes()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.005)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.base) / 2**20


@torch.no_grad()
def plain(model, clips, batch: int) -> None:
    ds = clips.dataset
    for s in range(0, len(ds), batch):
        model(ds.collate_fn([ds[j] for j in range(s, min(s + batch, len(ds)))]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--reps", type=int, default=2, help="interleaved timing repetitions (min is reported)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from workbench.model.pal import PALModel

    cfg = yaml.safe_load((REPO / "configs/pal.yaml").read_text())["presets"]["tiny"]["model"]
    t = time.perf_counter()
    model = PALModel.from_config(cfg, seed=0)
    print(
        f"model: {cfg['llm']} PAL ({', '.join(model.encoder_names)}; LAL from layer "
        f"{cfg['encoders'][0]['integration']['layer']}), built in {time.perf_counter() - t:.1f} s, "
        f"torch threads {torch.get_num_threads()}"
    )
    suite = load_suite(REPO / "probes/category.yaml")
    sites = resolve_sites(suite, model)
    kinds = {}
    for s in sites:
        kinds[s.kind] = kinds.get(s.kind, 0) + 1
    print(
        f"sites: {len(sites)} ({', '.join(f'{k} {v}' for k, v in kinds.items())}); "
        f"{len({s.hook for s in sites})} hooks in one collect call per batch"
    )

    tmp = Path(tempfile.mkdtemp(prefix="probe-collect-"))
    try:
        clips = prepare_clips(RandomTokenClips(model, args.n), "label")
        collect_activations(
            model,
            prepare_clips(RandomTokenClips(model, args.batch), "label", min_per_class=1),
            sites,
            tmp / "warm",
            batch_size=args.batch,
        )  # warm-up (hook order recorded once)
        t_plain, t_coll = [], []
        for r in range(args.reps):
            t = time.perf_counter()
            plain(model, clips, args.batch)
            t_plain.append(time.perf_counter() - t)
            t = time.perf_counter()
            collect_activations(model, clips, sites, tmp / f"t{r}", batch_size=args.batch)
            t_coll.append(time.perf_counter() - t)
        ratio = min(t_coll) / min(t_plain)
        print(
            f"time, N={args.n}, batch {args.batch}: plain forwards {min(t_plain):.2f} s, collect + pool + write "
            f"{min(t_coll):.2f} s -> ratio {ratio:.2f} (target <= 1.3; min of {args.reps} interleaved reps; "
            f"all: plain {[round(x, 2) for x in t_plain]}, collect {[round(x, 2) for x in t_coll]})"
        )

        for n in (args.n, 4 * args.n):
            c = prepare_clips(RandomTokenClips(model, n, seed=1), "label")
            with PeakRSS() as m:
                store = collect_activations(model, c, sites, tmp / f"m{n}", batch_size=args.batch)
            disk = sum(f.stat().st_size for f in (tmp / f"m{n}").iterdir())
            S = len(c.dataset.ids) + 0
            unpooled = n * model.cfg.n_layers * S * model.cfg.d_model * 4
            print(
                f"memory, N={n:4d}: peak RSS growth {m.growth_mb:7.1f} MiB during collection; store on disk "
                f"{disk / 2**20:6.1f} MiB ({store.n} rows x {len(sites)} sites); holding every resid_post in RAM "
                f"unpooled would take {unpooled / 2**20:7.1f} MiB"
            )
            X = store.load(sites[0])
            assert X.shape[0] == n and np.isfinite(X).all()
            shutil.rmtree(tmp / f"m{n}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
