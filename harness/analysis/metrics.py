"""Scoring by task type, and the statistics of per-question scores (bootstrap confidence intervals).

The scorers and the metric registry live in harness/analysis/scoring.py (pure, copied into exported
lm-eval tasks) and are re-exported here; this module adds what needs the task-type table.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from harness.analysis.scoring import (  # noqa: F401 - the names callers use as metrics.X
    EXTRACTION_RULE,
    METRIC_REGISTRY,
    METRICS,
    SCORERS,
    Metric,
    contains,
    exact_match,
    extract_answer,
    get_metric,
    metric_names,
    normalize,
    register_metric,
    score_choice,
    score_label,
    score_span,
    score_with,
    score_yes_no,
    token_f1,
)
from harness.data.docids import any_match
from harness.data.tasks import task_type


def score(output: str, answers: Sequence[str], question: str = "", task: str = "extractive_qa",
          trace: dict | None = None) -> dict:
    """Per-example metrics of an output, scored as its task type says (harness/data/tasks.py). Yes/no
    and classification have one right answer: EM is accuracy and F1 equals EM."""
    return score_with(task_type(task).scorer, output, answers, question, task, trace)


def primary_metric(task: str) -> str:
    """The headline metric of a task type (harness/data/tasks.py): "f1" for extractive QA,
    "exact_match" (accuracy) for yes/no, classification and multiple choice."""
    return task_type(task).primary_metric


def bootstrap_ci(values: Sequence[float], n_boot: int = 2000, alpha: float = 0.05, seed: int = 0):
    """Mean and percentile bootstrap interval of the mean."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return {"mean": None, "low": None, "high": None, "n": 0}
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return {"mean": float(x.mean()), "low": float(low), "high": float(high), "n": int(x.size)}


def paired_bootstrap_diff(a: Sequence[float], b: Sequence[float], n_boot: int = 2000, seed: int = 0):
    """Mean of a - b over the same examples, with a paired percentile bootstrap interval."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape:
        raise ValueError("paired comparison needs the same examples on both sides")
    return bootstrap_ci(a - b, n_boot=n_boot, seed=seed)


def recall_at(retrieved_doc_ids: Sequence[str], gold: Sequence[str], k: int) -> float | None:
    """1 when a gold document is among the first k retrieved, 0 when not, None without gold documents.
    A gold id naming a whole file ("manual") is found by any of its parts ("manual#p3")."""
    if not gold:
        return None
    return float(any_match(retrieved_doc_ids[:k], gold))


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, float), q)) if len(values) else None
