"""Measure a stage: wall and CPU seconds, and peak resident memory sampled while it runs."""
from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class Measured:
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0
    peak_gpu_mb: float | None = None

    def as_dict(self) -> dict:
        d = {"wall_s": round(self.wall_s, 3), "cpu_s": round(self.cpu_s, 3),
             "peak_rss_mb": round(self.peak_rss_mb, 1)}
        if self.peak_gpu_mb is not None:
            d["peak_gpu_mb"] = round(self.peak_gpu_mb, 1)
        return d


@contextmanager
def measure(interval: float = 0.02):
    """Peak RSS is the process's, model weights included: what the machine must provide."""
    import torch

    out = Measured()
    peak = [rss_bytes()]
    stop = threading.Event()

    def sample():
        while not stop.wait(interval):
            peak[0] = max(peak[0], rss_bytes())

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    w0, c0 = time.perf_counter(), time.process_time()
    try:
        yield out
    finally:
        if cuda:
            torch.cuda.synchronize()
        out.wall_s = time.perf_counter() - w0
        out.cpu_s = time.process_time() - c0
        stop.set()
        thread.join()
        out.peak_rss_mb = max(peak[0], rss_bytes()) / 2**20
        if cuda:
            out.peak_gpu_mb = torch.cuda.max_memory_allocated() / 2**20
