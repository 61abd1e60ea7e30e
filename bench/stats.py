"""The few statistics every measurement reports: median and spread of repeated runs, ratios of
interleaved runs, and the slope of a log-log fit (1.0: linear scaling)."""
from __future__ import annotations

import math
import statistics
from typing import Sequence


def summary(values: Sequence[float]) -> dict:
    """Median of repeated runs and their spread: min, max and (max - min) / median."""
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError("summary of no values")
    med = statistics.median(xs)
    return {"median": med, "min": min(xs), "max": max(xs), "n": len(xs),
            "spread": (max(xs) - min(xs)) / med if med else 0.0, "runs": xs}


def ratio(a: Sequence[float], b: Sequence[float]) -> dict:
    """a / b for runs measured in pairs (A, B, A, B, ...): each pair shares the machine's load at
    that moment, so the per-pair ratios are the figure; their median is the headline."""
    if len(a) != len(b) or not a:
        raise ValueError(f"ratio needs paired runs, got {len(a)} and {len(b)}")
    return summary([x / y for x, y in zip(a, b)])


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]."""
    xs = sorted(values)
    if not xs:
        raise ValueError("percentile of no values")
    pos = (len(xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def loglog_slope(sizes: Sequence[float], times: Sequence[float]) -> float:
    """Least-squares slope of log(time) against log(size): 1 means time grows linearly with
    size, 2 quadratically; below 1, fixed costs still dominate."""
    if len(sizes) != len(times) or len(sizes) < 2:
        raise ValueError("a slope needs at least two (size, time) points")
    xs = [math.log(s) for s in sizes]
    ys = [math.log(t) for t in times]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        raise ValueError("a slope needs at least two different sizes")
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
