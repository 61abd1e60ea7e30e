"""How far to trust a model-based metric: its agreement with plain references, and a length check.

A judge-style metric (semantic, judge, faithfulness) is held against exact match and containment on
the same answers: raw agreement, Cohen's kappa (agreement beyond what the two marginal rates give by
chance) and the confusion table. On a benchmark with short gold answers (names, dates) containment is
a fair reference, so a low kappa there is a reason to doubt the judge; on sentence-length gold
answers EM and containment themselves undercount, and the figures only bound the judge. The length
check is the rank correlation of the metric with the answer's length in words, beside containment's:
a judge that prefers long answers shows a clearly higher correlation than the reference. Pure
Python and numpy: recomputed by every report from the stored per-question values.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from harness.analysis.scoring import METRIC_REGISTRY

REFERENCES = ("exact_match", "contains")
JUDGED = tuple(m for m, spec in METRIC_REGISTRY.items() if spec.stored)  # semantic, judge, faithfulness
SHORT_GOLD_WORDS = 4  # median gold answer length (words) up to which EM and containment are fair references


def positive(value: float) -> bool:
    """A per-question value read as right (1) or wrong (0): above one half. A judge's "partially
    correct" (0.5) counts as wrong here; the confusion table keeps it apart."""
    return value > 0.5


def cohen_kappa(a: Sequence[int], b: Sequence[int]) -> float | None:
    """Cohen's kappa of two binary ratings of the same items; None when chance agreement is 1 (both
    raters gave one same label to everything: kappa is undefined)."""
    if len(a) != len(b):
        raise ValueError("kappa needs two ratings of the same items")
    n = len(a)
    if n == 0:
        return None
    po = sum(x == y for x, y in zip(a, b)) / n
    pa, pb = sum(a) / n, sum(b) / n
    pe = pa * pb + (1 - pa) * (1 - pb)
    if pe >= 1:
        return None
    return (po - pe) / (1 - pe)


def agreement(values: Sequence[float], reference: Sequence[float]) -> dict:
    """Agreement of a metric's per-question values with a binary reference (EM or containment).

    table: {metric value: [reference right, reference wrong]}, metric values best first (a judge has
    three: 1, 0.5, 0); kappa and agreement on the metric read as right/wrong (`positive`)."""
    a = [int(positive(v)) for v in values]
    b = [int(positive(v)) for v in reference]
    table: dict[str, list[int]] = {}
    for v, r in sorted(zip(values, b), key=lambda x: -x[0]):
        row = table.setdefault(f"{v:g}", [0, 0])
        row[0 if r else 1] += 1
    n = len(a)
    return {"n": n, "agreement": sum(x == y for x, y in zip(a, b)) / n if n else None,
            "kappa": cohen_kappa(a, b), "metric_rate": sum(a) / n if n else None,
            "reference_rate": sum(b) / n if n else None, "table": table}


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), float)
    ranks[order] = np.arange(len(x), dtype=float)
    for v in np.unique(x):  # ties share their mean rank
        idx = x == v
        ranks[idx] = ranks[idx].mean()
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation; None with fewer than 3 items or a constant side."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.all(x == x[0]) or np.all(y == y[0]):
        return None
    rx, ry = _ranks(x), _ranks(y)
    return float(np.corrcoef(rx, ry)[0, 1])


def figures(rows: Sequence[dict], metrics: Sequence[str]) -> dict:
    """Trust figures of each stored metric over `rows` (scored prediction rows of one benchmark and
    seed, all strategies pooled): agreement with EM and containment, the length check, and the gold
    answers' median length (are EM and containment fair references here?)."""
    gold_words = sorted(len(a.split()) for r in rows for a in (r.get("answers") or [])[:1])
    out = {"gold_median_words": gold_words[len(gold_words) // 2] if gold_words else None, "metrics": {}}
    for m in metrics:
        have = [r for r in rows if m in r and all(ref in r for ref in REFERENCES)]
        if not have:
            continue
        vals = [float(r[m]) for r in have]
        words = [len(str(r.get("output", "")).split()) for r in have]
        out["metrics"][m] = {
            "n": len(have),
            "vs": {ref: agreement(vals, [float(r[ref]) for r in have]) for ref in REFERENCES},
            "length": {"spearman": spearman(vals, words),
                       "spearman_contains": spearman([float(r["contains"]) for r in have], words),
                       "words_when_right": _mean([w for w, v in zip(words, vals) if positive(v)]),
                       "words_when_wrong": _mean([w for w, v in zip(words, vals) if not positive(v)])},
            "binary": METRIC_REGISTRY[m].binary if m in METRIC_REGISTRY else None,
        }
    return out


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None
