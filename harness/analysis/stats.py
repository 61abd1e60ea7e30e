"""Paired significance tests between strategies answering the same questions.

Exact match is a 0/1 outcome per question: McNemar's exact test looks only at the discordant
questions (one strategy right, the other wrong) and asks whether the split between them could be a
fair coin. F1 is graded: a paired bootstrap of the per-question differences gives an interval and a
p-value. Several comparisons are made per benchmark, so p-values are Holm-adjusted within each family.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

ALPHA = 0.05


def binom_cdf_half(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), exactly (integer sums, one division)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n


def mcnemar_exact(a: Sequence[float], b: Sequence[float]) -> dict:
    """Two-sided exact McNemar test on paired 0/1 outcomes.

    only_a: questions a gets right and b wrong; only_b the reverse. p = min(1, 2 P(X <= min)) with
    X ~ Binomial(only_a + only_b, 1/2); no discordant pair at all gives p = 1.
    """
    if len(a) != len(b):
        raise ValueError("paired comparison needs the same examples on both sides")
    only_a = sum(1 for x, y in zip(a, b) if x >= 0.5 > y)
    only_b = sum(1 for x, y in zip(a, b) if y >= 0.5 > x)
    n = only_a + only_b
    p = 1.0 if n == 0 else min(1.0, 2 * binom_cdf_half(min(only_a, only_b), n))
    diff = (sum(x >= 0.5 for x in a) - sum(y >= 0.5 for y in b)) / len(a) if len(a) else 0.0
    return {"test": "mcnemar_exact", "n": len(a), "only_a": only_a, "only_b": only_b, "diff": diff, "p": p}


def paired_bootstrap(a: Sequence[float], b: Sequence[float], n_boot: int = 10000, seed: int = 0,
                     alpha: float = ALPHA) -> dict:
    """Mean of a - b with a paired percentile bootstrap interval and a two-sided bootstrap p-value.

    p = 2 min(share of resampled means <= 0, share >= 0), each share counted with the +1 correction
    so that p is never 0 from a finite number of resamples; identical outputs give p = 1.
    """
    x, y = np.asarray(a, float), np.asarray(b, float)
    if x.shape != y.shape:
        raise ValueError("paired comparison needs the same examples on both sides")
    d = x - y
    if d.size == 0:
        return {"test": "paired_bootstrap", "n": 0, "diff": 0.0, "low": 0.0, "high": 0.0, "p": 1.0}
    if not d.any():
        return {"test": "paired_bootstrap", "n": int(d.size), "diff": 0.0, "low": 0.0, "high": 0.0, "p": 1.0}
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    le = (np.count_nonzero(means <= 0) + 1) / (n_boot + 1)
    ge = (np.count_nonzero(means >= 0) + 1) / (n_boot + 1)
    return {"test": "paired_bootstrap", "n": int(d.size), "diff": float(d.mean()), "low": float(low),
            "high": float(high), "p": float(min(1.0, 2 * min(le, ge)))}


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order (step-down, kept monotone, capped at 1)."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def compare_pair(a: dict[str, dict], b: dict[str, dict], graded: bool, seed: int = 0,
                 binary_metric: str = "exact_match", graded_metric: str = "f1") -> dict:
    """Paired tests of a against b over the question ids both answered.

    a, b: question id -> per-question scores. McNemar on `binary_metric` (key "em"); graded: also a
    paired bootstrap of `graded_metric` (key "f1"). The keys name the two test families."""
    ids = sorted(set(a) & set(b))
    out = {"n": len(ids), "em": mcnemar_exact([a[i][binary_metric] for i in ids],
                                              [b[i][binary_metric] for i in ids])}
    if graded:
        out["f1"] = paired_bootstrap([a[i][graded_metric] for i in ids], [b[i][graded_metric] for i in ids], seed=seed)
    return out


def tested_metrics(primary: str) -> tuple[str, str | None]:
    """(metric McNemar tests, metric the bootstrap tests or None) for a headline metric: a binary
    headline (exact match, semantic) is McNemar's; a graded one (F1, judge) is bootstrapped, beside
    McNemar on exact match."""
    from harness.analysis.scoring import METRIC_REGISTRY

    m = METRIC_REGISTRY.get(primary)
    if m is None or not m.binary:
        return "exact_match", primary
    return primary, None


def comparisons(scores: dict[str, dict[str, dict]], primary: str, zero_shot: str = "zero-shot",
                seed: int = 0, alpha: float = ALPHA) -> dict:
    """Every strategy against the most accurate one and against zero-shot, on shared question ids.

    scores: strategy -> question id -> per-question scores. primary: "f1" or "exact_match", the
    metric that picks the best strategy and whose test decides the verdict. Holm correction runs over
    all comparisons of this call, separately for the McNemar and the bootstrap family.
    """
    if not scores:
        return {"best": None, "primary": primary, "rows": []}
    mean = {s: sum(v[primary] for v in q.values()) / max(len(q), 1) for s, q in scores.items()}
    best = max(mean, key=lambda s: (mean[s], s == zero_shot))
    binary_metric, graded_metric = tested_metrics(primary)
    graded = graded_metric is not None
    pairs = [(s, best, "vs best") for s in scores if s not in (best, zero_shot)]
    if zero_shot in scores and zero_shot != best:  # each pair once: zero-shot's own "vs best" is the best's
        pairs += [(s, zero_shot, "vs zero-shot") for s in scores if s != zero_shot]  # "vs zero-shot"
    rows = [{"strategy": s, "baseline": base, "role": role,
             **compare_pair(scores[s], scores[base], graded, seed, binary_metric, graded_metric or "f1")}
            for s, base, role in pairs]
    for key in ("em", "f1"):
        fam = [r for r in rows if key in r]
        for r, p in zip(fam, holm([r[key]["p"] for r in fam])):
            r[key]["p_holm"] = p
            r[key]["significant"] = p < alpha
    for r in rows:
        t = r["f1"] if graded else r["em"]
        r["primary_test"] = "f1" if graded else "em"
        r["diff"] = t["diff"]
        r["p_holm"] = t["p_holm"]
        r["significant"] = t["significant"]
        r["verdict"] = ("no significant difference" if not t["significant"]
                        else "significantly better" if t["diff"] > 0 else "significantly worse")
    return {"best": best, "primary": primary, "means": mean, "rows": rows,
            "tested": {"em": binary_metric, "f1": graded_metric}}
