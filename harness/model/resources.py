"""Measure a stage: wall and CPU seconds, and peak resident memory sampled while it runs."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass


def rss_bytes() -> int:
    """This process's resident memory now (psutil: Linux, macOS and Windows alike)."""
    import psutil

    return psutil.Process().memory_info().rss


@dataclass
class Measured:
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0      # the process's highest resident memory during the stage
    start_rss_mb: float | None = None  # resident memory when the stage began (what earlier stages left)
    peak_gpu_mb: float | None = None

    @property
    def rise_mb(self) -> float | None:
        """What the stage itself needed: its peak above the memory it started with."""
        return None if self.start_rss_mb is None else max(self.peak_rss_mb - self.start_rss_mb, 0.0)

    def as_dict(self) -> dict:
        d = {"wall_s": round(self.wall_s, 3), "cpu_s": round(self.cpu_s, 3),
             "peak_rss_mb": round(self.peak_rss_mb, 1)}
        if self.rise_mb is not None:
            d["rise_rss_mb"] = round(self.rise_mb, 1)
        if self.peak_gpu_mb is not None:
            d["peak_gpu_mb"] = round(self.peak_gpu_mb, 1)
        return d


@contextmanager
def measure(interval: float = 0.02):
    """Peak RSS is the process's, model weights included: what the machine must provide. The rise
    above the starting RSS is what this stage added, apart from what earlier stages left resident."""
    import torch

    out = Measured()
    peak = [rss_bytes()]
    out.start_rss_mb = peak[0] / 2**20
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
