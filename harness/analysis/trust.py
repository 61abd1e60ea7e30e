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


# -- against people's labels --------------------------------------------------------------------------
# A reader's labels of the run's own answers: the one reference that says whether a sentence answer is
# right. A labelled set (a few hundred answers a team reads once) tells which metric to trust on this
# benchmark: its per-answer agreement with the reader, and whether it orders the strategies as the
# reader does. Labels are keyed by question id and answer text, so they hold for any run, strategy or
# seed that gave the same answer, and an answer nobody read is left out (never guessed).
LABEL_METRICS = ("exact_match", "f1", "contains", "semantic", "judge")


def read_labels(path) -> dict[tuple[str, str], int]:
    """People's labels of answers, a JSONL file: one {"id": question id, "output": the answer as
    predictions.jsonl has it, "right": true or false} per line; other keys ("strategy", "note") are kept
    for people and ignored here. Returns (id, output stripped) -> 0/1. A line that is not such an
    object, or labels one answer twice in two ways, is a DataError naming the file and line."""
    import json
    from pathlib import Path

    from harness.core.errors import DataError

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the labels file ({exc.__class__.__name__}: {exc})", p) from None
    out: dict[tuple[str, str], int] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise DataError(f"not JSON ({exc})", p, n) from None
        if not isinstance(row, dict):
            raise DataError("a label is an object {\"id\", \"output\", \"right\"}", p, n)
        missing = [k for k in ("id", "output", "right") if k not in row]
        if missing:
            raise DataError(f"missing {', '.join(missing)} (a label is {{\"id\", \"output\", \"right\"}})", p, n)
        if not isinstance(row["id"], str) or not isinstance(row["output"], str):
            raise DataError("\"id\" and \"output\" must be strings", p, n)
        if not isinstance(row["right"], bool):
            raise DataError(f"\"right\" must be true or false, not {row['right']!r}", p, n)
        key = (row["id"], row["output"].strip())
        if key in out and out[key] != int(row["right"]):
            raise DataError(f"answer {row['output'].strip()[:60]!r} to {row['id']} is labelled both right and wrong",
                            p, n)
        out[key] = int(row["right"])
    if not out:
        raise DataError("no labels in the file", p)
    return out


def auc(values: Sequence[float], labels: Sequence[int]) -> float | None:
    """The chance that a right answer (by the labels) gets a higher value than a wrong one, ties half:
    how well the metric separates them at any threshold. None without both kinds."""
    pos = [v for v, y in zip(values, labels) if y]
    neg = [v for v, y in zip(values, labels) if not y]
    if not pos or not neg:
        return None
    wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


def against_labels(rows: Sequence[dict], labels: dict[tuple[str, str], int],
                   metrics: Sequence[str] = LABEL_METRICS, alpha: float = 0.05) -> dict:
    """Each metric held against the reader's labels on the labelled answers of `rows` (one benchmark
    and seed): per answer (kappa on the metric read as right/wrong, AUC), and per strategy (the
    reader's rate of right answers beside each metric's mean on the same answers), with the strategy
    pairs the reader separates (McNemar's exact test on the labels, Holm-corrected, at `alpha`) and
    whether each metric orders them the same way."""
    from harness.analysis.metrics import bootstrap_ci
    from harness.analysis.stats import holm, mcnemar_exact

    rows = [r for r in rows if (r["id"], str(r.get("output", "")).strip()) in labels]
    y = [labels[(r["id"], str(r.get("output", "")).strip())] for r in rows]
    present = [m for m in metrics if rows and all(m in r for r in rows)]
    out = {"answers": len(rows), "right": sum(y), "metrics": {}, "strategies": {}, "pairs": []}
    for m in present:
        vals = [float(r[m]) for r in rows]
        a = [int(positive(v)) for v in vals]
        out["metrics"][m] = {"kappa": cohen_kappa(a, y), "agreement": sum(p == q for p, q in zip(a, y)) / len(y),
                             "auc": auc([_underlying(r, m) for r in rows], y), "says_right": sum(a) / len(a)}
    by: dict[str, dict[str, tuple[dict, int]]] = {}
    for r, lab in zip(rows, y):
        by.setdefault(r["strategy"], {})[r["id"]] = (r, lab)
    for s, got in by.items():
        out["strategies"][s] = {"n": len(got), "reader": bootstrap_ci([lab for _, lab in got.values()]),
                                **{m: sum(float(r[m]) for r, _ in got.values()) / len(got) for m in present}}
    names = list(by)
    pairs = []
    for i, a_name in enumerate(names):
        for b_name in names[i + 1:]:
            ids = sorted(set(by[a_name]) & set(by[b_name]))
            if not ids:
                continue
            la, lb = [by[a_name][q][1] for q in ids], [by[b_name][q][1] for q in ids]
            test = mcnemar_exact(la, lb)
            order = {m: _sign(sum(float(by[a_name][q][0][m]) - float(by[b_name][q][0][m]) for q in ids))
                     for m in present}
            pairs.append({"a": a_name, "b": b_name, "n": len(ids), "reader_diff": test["diff"],
                          "only_a": test["only_a"], "only_b": test["only_b"], "p": test["p"],
                          "reader_order": _sign(test["diff"]), "metric_order": order})
    for pair, p in zip(pairs, holm([x["p"] for x in pairs])):
        pair["holm_p"] = p
        pair["separated"] = p < alpha and pair["reader_order"] != 0
    out["pairs"] = pairs
    for m in present:
        sep = [x for x in pairs if x["separated"]]
        out["metrics"][m]["pairs_as_reader"] = sum(x["metric_order"][m] == x["reader_order"] for x in pairs)
        out["metrics"][m]["separated_as_reader"] = sum(x["metric_order"][m] == x["reader_order"] for x in sep)
        out["metrics"][m]["separated_reversed"] = sum(x["metric_order"][m] == -x["reader_order"] for x in sep)
    out["separated"] = sum(x["separated"] for x in pairs)
    return out


def _underlying(row: dict, metric: str) -> float:
    """The score a metric thresholds, where the row keeps it: semantic's cosine similarity (so its AUC
    is over every threshold, not only the shipped one); else the metric's value."""
    sim = ((row.get("judgments") or {}).get(metric) or {}).get("similarity") if metric == "semantic" else None
    return float(sim) if isinstance(sim, (int, float)) else float(row[metric])


def _sign(x: float, eps: float = 1e-12) -> int:
    return 0 if abs(x) <= eps else (1 if x > 0 else -1)


def headline_conflicts(labels: dict, primary: str) -> list[dict]:
    """The strategy pairs the reader separates (against_labels) that the headline metric does not order
    as the reader does (scores them the same or the other way round), each with the metrics that do."""
    out = []
    for x in labels.get("pairs") or []:
        if not x.get("separated") or primary not in x["metric_order"]:
            continue
        if x["metric_order"][primary] != x["reader_order"]:
            hi, lo = (x["a"], x["b"]) if x["reader_order"] > 0 else (x["b"], x["a"])
            out.append({**x, "higher": hi, "lower": lo,
                        "agree": [m for m, o in x["metric_order"].items() if o == x["reader_order"]]})
    return out
