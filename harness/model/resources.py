"""Measure a stage: wall and CPU seconds, and peak resident memory sampled while it runs.

A cell's own memory is its rise: the peak above the resident memory it started with, after
`release_memory()` has handed what earlier cells freed back to the OS. The process's peak alone would
carry every earlier cell's high-water mark (the allocator keeps freed pages), so a cell run after
training would show training's memory.
"""
from __future__ import annotations

import json
import math
import struct
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BYTES_PER_ELEMENT = {"float32": 4, "bfloat16": 2, "float16": 2}


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
    start_gpu_mb: float | None = None  # allocated GPU memory when the stage began

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
            if self.start_gpu_mb is not None:
                d["rise_gpu_mb"] = round(max(self.peak_gpu_mb - self.start_gpu_mb, 0.0), 1)
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
        out.start_gpu_mb = torch.cuda.memory_allocated() / 2**20
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


def release_memory() -> None:
    """Collect garbage and return the allocator's free pages to the OS (glibc's malloc_trim; elsewhere
    only the collection), so that resident memory is what is live. Measured on SmolLM2-135M, 2026-12-01:
    after two LoRA training steps on a fresh copy, with every copy dropped and garbage collected, the
    process stayed at 2,221 MB resident; malloc_trim brought it to 979 MB (the loaded base alone: ~930)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl): nothing to trim
        pass
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def tensor_bytes(model) -> int:
    """Bytes of a model's parameters in memory, each storage once (tied weights share one): its weights,
    as its safetensors file counts them (buffers such as rotary tables are recomputed, not stored)."""
    seen, total = set(), 0
    for t in model.parameters():
        key = (t.device, t.untyped_storage().data_ptr())
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
    return total


def safetensors_params(folder) -> int | None:
    """Parameters stored in a model folder's *.safetensors files, read from their headers only (no
    weights loaded; tied weights are stored once). None when there is no such file or it is unreadable."""
    total, files = 0, sorted(Path(folder).glob("*.safetensors"))
    if not files:
        return None
    for f in files:
        try:
            with open(f, "rb") as fh:
                (n,) = struct.unpack("<Q", fh.read(8))
                if n > f.stat().st_size - 8:  # not a safetensors header (reading n bytes would not fit in memory)
                    return None
                header = json.loads(fh.read(n))
            total += sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")
        except (OSError, ValueError, KeyError, TypeError, struct.error):
            return None
    return total


def touch_weights(model) -> None:
    """Read every parameter once, so that memory-mapped weights become resident now."""
    import torch

    with torch.no_grad():
        for t in model.parameters():
            t.sum()
