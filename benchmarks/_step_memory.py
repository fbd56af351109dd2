"""One training step (`train_step`) and its memory on CPU or CUDA, for benchmarks/integration_cost.py (see its docstring, point 2).

* `step_peak_bytes`: the peak of live tensor bytes during one step above what is live before it (CPU: the
  profiler's allocator events summed in order; CUDA: max_memory_allocated);
* `rss_rise`: the rise of the peak resident set (VmHWM, reset through /proc/self/clear_refs) over the RSS before
  one step, after telling glibc's malloc to mmap large blocks and return free pages (`_malloc_release`).
"""

from __future__ import annotations

import gc

import torch


def train_step(model, batch: dict) -> float:
    """One forward + backward (grads of the trainable parts only); returns the loss."""
    model.zero_grad(set_to_none=True)
    loss = model.loss(batch)
    loss.backward()
    return float(loss.detach())


def step_peak_bytes(model, batch: dict, device: str) -> int:
    """Peak of tensor bytes allocated during one step above what is live before it (see module docstring)."""
    model.zero_grad(set_to_none=True)
    gc.collect()
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        train_step(model, batch)
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated() - base)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        train_step(model, batch)
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    live = peak = 0
    for e in events:
        live += e.nbytes()
        peak = max(peak, live)
    return int(peak)


# ---------------------------------------------------------------------------------------------- RSS (Linux)
def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _malloc_release() -> bool:
    """glibc only: fix the mmap threshold at 128 KiB (every large block is mmapped and unmapped on free, none
    is kept in the heap for reuse) and give the heap's free pages back, so RSS follows live memory."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD (also turns off glibc's dynamic threshold)
        libc.mallopt(-1, 128 * 1024)  # M_TRIM_THRESHOLD
        libc.malloc_trim(0)
        return True
    except (OSError, AttributeError):
        return False


def rss_rise(model, batch: dict) -> int | None:
    """Rise of the peak RSS (VmHWM, reset) over the RSS before one step, after releasing malloc's free pages."""
    model.zero_grad(set_to_none=True)
    gc.collect()
    if not (_malloc_release() and _reset_hwm()):
        return None
    rss0 = _status_kib("VmRSS")
    train_step(model, batch)
    hwm = _status_kib("VmHWM")
    return None if rss0 is None or hwm is None else (hwm - rss0) * 1024
