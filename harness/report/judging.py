"""The report's sections on the model-based metrics (semantic, judge, faithfulness): how each was
computed, and how far to trust it (agreement with exact match and containment, Cohen's kappa, the
confusion table, a length check, and the answers where judge and containment disagree, with the
judge's reasons). Registered after the significance section; the figures come from
harness/analysis/trust.py through the analysed run (nothing here runs a model)."""
from __future__ import annotations

from harness.analysis import judges, metrics
from harness.analysis.trust import SHORT_GOLD_WORDS, positive
from harness.report.render import Doc, fmt_num
from harness.report.sections import Part, register_section


def _kappa(x) -> str:
    return "undefined (one side constant)" if x is None else f"{x:+.2f} ({_strength(x)})"


def _strength(k) -> str:
    """Landis and Koch's (1977) words for a kappa."""
    if k is None:
        return "undefined"
    for bound, word in ((0.0, "poor"), (0.2, "slight"), (0.4, "fair"), (0.6, "moderate"), (0.8, "substantial")):
        if k <= bound:
            return word
    return "almost perfect"


def judges_trust(doc: Doc, part: Part) -> None:
    """How each model-based metric was computed and how it agrees with the plain references."""
    t = part.analysis.get("trust") or {}
    figs = t.get("metrics") or {}
    if not figs:
        return
    doc.h(3, "How far to trust the model-based metrics")
    how = [f"**{metrics.get_metric(m).label}**: {judges.describe(part.rows, m)}." for m in figs]
    doc.p("These metrics are computed by models during `harness run` and stored per question in predictions.jsonl; "
          "`harness report` reads the stored values and never recomputes them.")
    doc.ul(how)
    gold = t.get("gold_median_words")
    short = gold is not None and gold <= SHORT_GOLD_WORDS
    doc.p(f"Agreement with exact match and containment on the same answers (all strategies pooled). "
          f"Gold answers here have a median of {gold} words: "
          + ("short, so containment is a fair reference and a low kappa is a reason to doubt the metric."
             if short else
             "sentences, so exact match and containment undercount right answers themselves; these figures only "
             "bound the metric. Its agreement on a short-answer benchmark, and on people's labels "
             "(README, \"Choosing a metric\"), say more."))
    rows = []
    for m, f in figs.items():
        for ref, a in f["vs"].items():
            cells = "; ".join(f"{v}: {r}+ / {w}-" for v, (r, w) in a["table"].items())
            rows.append([metrics.get_metric(m).label, metrics.get_metric(ref).label, str(a["n"]),
                         fmt_num(a["metric_rate"], "{:.3f}"), fmt_num(a["reference_rate"], "{:.3f}"),
                         fmt_num(a["agreement"], "{:.3f}"), _kappa(a["kappa"]), cells])
    doc.table(["Metric", "Reference", "Answers", "Metric says right", "Reference says right", "Agreement",
               "Cohen's kappa", "Metric value: reference right+ / wrong-"], rows)
    doc.p("A value above 0.5 counts as right (a judge's \"partially correct\", 0.5, counts as wrong; the last "
          "column keeps it apart). Kappa is agreement beyond chance: 0 is chance, 1 is perfect.", "note")
    lines = []
    for m, f in figs.items():
        ln = f["length"]
        lines.append(f"{metrics.get_metric(m).label}: rank correlation with answer length "
                     f"{fmt_num(ln['spearman'], '{:+.2f}')} "
                     f"(containment's: {fmt_num(ln['spearman_contains'], '{:+.2f}')}); "
                     f"answers it calls right average {fmt_num(ln['words_when_right'], '{:.1f}')} words, "
                     f"wrong {fmt_num(ln['words_when_wrong'], '{:.1f}')}.")
    doc.p("**Length check.** A metric that favours long answers correlates with length clearly more than "
          "containment does. (Position bias applies to judges that compare two answers; these grade one at a time.)")
    doc.ul(lines)
    _disagreements(doc, part, figs)


def _disagreements(doc: Doc, part: Part, figs: dict) -> None:
    """A few answers where the judge (or the semantic metric) and containment disagree, with reasons."""
    m = "judge" if "judge" in figs else next(iter(figs))
    picked = [r for r in part.rows if m in r and "contains" in r and positive(r[m]) != positive(r["contains"])][:6]
    if not picked:
        return
    label = metrics.get_metric(m).label
    rows = []
    for r in picked:
        d = (r.get("judgments") or {}).get(m) or {}
        why = d.get("rationale") or (f"similarity {d['similarity']:.2f}" if "similarity" in d else "")
        rows.append([r["strategy"], r["question"], " | ".join(map(str, r["answers"])), str(r["output"]).strip()[:200],
                     d.get("verdict") or fmt_num(r[m], "{:g}"), "yes" if positive(r["contains"]) else "no", why])
    doc.p(f"**Where {label} and containment disagree** (first {len(rows)}):")
    doc.table(["Strategy", "Question", "Gold", "Answer", label, "Contains gold", "Reason given"], rows)


register_section(judges_trust, after="significance")
