"""What every measurement shares: the options it runs under, the model and benchmark it loads,
and timing of interleaved runs."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable

BF16_WORTH_IT = 0.25  # bf16 / fp32 probe matmul speed below which bf16 prefill is not measured


@dataclass(frozen=True)
class Options:
    model: str = "smollm2-135m"
    benchmark: str = "squadshifts_nyt"
    device: str = "cpu"
    reps: int = 2          # interleaved repetitions of each side of a comparison
    scale: float = 1.0     # multiplies question / example counts (--quick: smaller)
    dry_run: bool = False  # tiny fixture model: checks the code paths, measures nothing meaningful
    bf16: str = "auto"     # prefill in bf16 too: on, off, or auto (only where bf16 matmul is fast)

    def n(self, full: int, least: int = 2) -> int:
        """A count scaled by --quick / --dry-run, never below `least`."""
        return max(least, int(round(full * self.scale)))


def use_all_cores() -> int:
    """torch's default is one thread per physical core; on shared CI machines it can come up as 1."""
    import torch

    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(n)
    return n


def load_benchmark_only(opts: Options):
    from harness.data.benchmark import load_benchmark

    use_all_cores()
    return load_benchmark(opts.benchmark)


def load(opts: Options):
    from harness.data.benchmark import load_benchmark
    from harness.model.runtime import Runtime

    use_all_cores()
    return Runtime(opts.model, device=opts.device, progress=False), load_benchmark(opts.benchmark)


_INDEXES: dict = {}


def embed_index(embedder: str, device: str):
    """One harness Index (one MiniLM load) per process; build() replaces its contents."""
    from harness.methods.retrieval import Index

    if (embedder, device) not in _INDEXES:
        _INDEXES[embedder, device] = Index(embedder, device=device)
    return _INDEXES[embedder, device]


def build_chunks(index, chunks) -> None:
    """Index exactly these chunks with the harness's Index: each chunk becomes one whole document
    (id = its position), so the text embedded is the chunk's and hits map back by doc id."""
    from harness.core.types import Document

    docs = [Document(id=str(i), text=ch.text) for i, ch in enumerate(chunks)]
    index.build(docs, words=10**9, overlap=0)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def timed(fn: Callable, device: str = "cpu"):
    """(seconds, result) of one call."""
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


def interleaved(sides: dict[str, Callable], reps: int, device: str = "cpu") -> tuple[dict, dict]:
    """Run each side once per repetition, in turn (A, B, A, B ...), so that a burst of load from
    other processes lands on both. Returns seconds per side and each side's last result."""
    seconds = {k: [] for k in sides}
    last = {}
    for _ in range(reps):
        for name, fn in sides.items():
            dt, last[name] = timed(fn, device)
            seconds[name].append(dt)
    return seconds, last
