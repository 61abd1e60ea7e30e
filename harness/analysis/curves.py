"""Sweep validation scores and learning-curve points, recomputed from the outputs the run recorded
(results.json keeps every point's outputs by question id), so a scoring change reaches them as it
reaches the main predictions. Pure: no model, no torch."""
from __future__ import annotations

from harness.analysis import metrics
from harness.analysis.training_flags import training_flags


def _score(outputs: dict, examples: dict, primary: str) -> dict | None:
    vals = []
    for qid, out in outputs.items():
        ex = examples.get(qid)
        if ex is None or not isinstance(out, str):
            return None  # a question the benchmark no longer has: keep what the run recorded
        vals.append(metrics.score(out, ex.answers, ex.input, ex.task)[primary])
    return metrics.bootstrap_ci(vals)


def rescore_cell(cell: dict, examples: dict | None, primary: str) -> None:
    """Update in place: each sweep point's `validation`, each learning-curve point's `metric` ("all"
    takes the cell's own), and the training flags from the loss curves. `examples`: id -> Example
    (None when the benchmark could not be loaded: recorded values stay)."""
    judged = metrics.get_metric(primary).stored  # a model computes it during the run: points have no values of it
    sweep = cell.get("sweep")
    if isinstance(sweep, dict) and examples is not None and not judged:  # judged: the run's selection scores stay
        for p in sweep.get("points") or []:
            score = _score(p.get("outputs") or {}, examples, primary)
            if score is not None:
                p["validation"] = score
    curve = cell.get("learning_curve")
    if isinstance(curve, dict):
        for p in curve.get("points") or []:
            if p.get("from_cell"):
                p["metric"] = (cell.get("metrics") or {}).get(primary)
            elif judged:
                p["metric"] = None  # shown as not computed, never another metric's value under this one's name
            elif examples is not None and p.get("outputs"):
                score = _score(p["outputs"], examples, primary)
                if score is not None:
                    p["metric"] = score
    prep = cell.get("prepare") or {}
    if prep.get("loss_curve"):
        prep["training_flags"] = training_flags(prep["loss_curve"], prep.get("eval_loss") or [], prep.get("steps"))
