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


def _order(x: int) -> str:
    return {1: ">", -1: "<", 0: "="}[x]


def reader_labels(doc: Doc, part: Part) -> None:
    """Every metric held against people's labels of this run's answers (`harness report --labels`):
    per strategy, per answer and per pair of strategies; the verdict in words follows the figures."""
    lab = part.analysis.get("labels")
    if not lab:
        return
    doc.h(3, "Against a reader's labels")
    figs, strategies, pairs = lab["metrics"], lab["strategies"], lab["pairs"]
    if not lab["answers"]:
        doc.p(f"None of this run's answers is labelled in {lab['source']} ({lab['count']} labels): labels hold "
              "for the exact answer text they were given to.")
        return
    names = list(figs)
    doc.p(f"{lab['answers']} of this run's answers were read and labelled right or wrong by a person "
          f"({lab['source']}; {lab['right']} right). Each metric against those labels, on the same answers: "
          "the reader's rate of right answers is the reference, and the figures say which metric to trust here.")
    rows = []
    for s, f in strategies.items():
        r = f["reader"]
        rows.append([s, str(f["n"]), f"{r['mean']:.3f} [{r['low']:.3f}, {r['high']:.3f}]"]
                    + [f"{f[m]:.3f}" for m in names])
    doc.table(["Strategy", "Answers labelled", "Reader: right [95% CI]"]
              + [metrics.get_metric(m).label for m in names], rows)
    sep = lab["separated"]
    rows = []
    for m in names:
        f = figs[m]
        rows.append([metrics.get_metric(m).label, _kappa(f["kappa"]), fmt_num(f["auc"], "{:.2f}"),
                     fmt_num(f["says_right"], "{:.3f}"), f"{f['pairs_as_reader']} of {len(pairs)}",
                     f"{f['separated_as_reader']} of {sep}" + (f" ({f['separated_reversed']} reversed)"
                                                                if f["separated_reversed"] else "")])
    doc.table(["Metric", "Cohen's kappa with the reader", "AUC", "Says right", "Strategy pairs ordered as the reader",
               "Pairs the reader separates, ordered alike"], rows)
    doc.p("Kappa: the metric read as right/wrong (above 0.5) against the labels, beyond chance. AUC: the chance "
          "that a right answer gets a higher score than a wrong one, at any threshold (0.5 is chance; semantic's "
          "score is its cosine similarity, before the threshold). A pair is ordered "
          "as the reader when the metric's mean on the pair's common answers differs in the reader's direction "
          "(or both are equal). The reader separates a pair when McNemar's exact test on the labels, "
          "Holm-corrected over the pairs, gives p < 0.05.", "note")
    rows = [[f"{x['a']} vs {x['b']}", str(x["n"]), f"{x['only_a']} / {x['only_b']}",
             "<0.001" if x["holm_p"] < 0.001 else f"{x['holm_p']:.3f}",
             _order(x["reader_order"])] + [_order(x["metric_order"][m]) for m in names] for x in pairs]
    doc.table(["Pair (a vs b)", "Questions", "Reader: only a / only b right", "Holm p", "Reader"]
              + [metrics.get_metric(m).label for m in names], rows)
    doc.ul(_reader_verdict(figs, pairs, sep))


def _reader_verdict(figs: dict, pairs: list[dict], sep: int) -> list[str]:
    """The sentences the figures above support, nothing more."""
    label = {m: metrics.get_metric(m).label for m in figs}
    out = []
    if not sep:
        out.append(f"The reader's labels separate none of the {len(pairs)} pairs of strategies at 5%: on these "
                   "answers no metric can be shown to rank the strategies as the reader does, nor to rank them "
                   "otherwise. More labelled answers, or strategies further apart, would settle it.")
    else:
        seps = [x for x in pairs if x["separated"]]
        what = ", ".join(" above ".join((x["a"], x["b"]) if x["reader_order"] > 0 else (x["b"], x["a"])) for x in seps)
        groups = {"order {it} as the reader does": [m for m, f in figs.items() if f["separated_as_reader"] == sep],
                  "reverse {some}": [m for m, f in figs.items() if f["separated_reversed"]],
                  "score {them} the same": [m for m, f in figs.items() if f["separated_as_reader"] < sep
                                            and not f["separated_reversed"]]}
        it, some, them = ("it", "it", "the two") if sep == 1 else ("every one", "some", "some pairs")
        said = [f"{', '.join(label[m] for m in ms)} " + verb.format(it=it, some=some, them=them).replace(
                    " ", "s " if len(ms) == 1 else " ", 1) for verb, ms in groups.items() if ms]
        out.append(f"The reader separates {'one pair' if sep == 1 else f'{sep} pairs'} of the {len(pairs)} ({what}): "
                   + "; ".join(said) + ".")
    k = {m: f["kappa"] for m, f in figs.items() if f["kappa"] is not None}
    if k:
        best = max(k, key=k.get)
        others = ", ".join(f"{label[m]} {v:+.2f}" for m, v in k.items() if m != best)
        out.append(f"Per answer, {label[best]} comes closest to the reader (kappa {k[best]:+.2f}, "
                   f"{_strength(k[best])})" + (f"; {others}" if others else "") + ".")
    u = {m: f["auc"] for m, f in figs.items() if f["auc"] is not None}
    if u:
        best = max(u, key=u.get)
        out.append(f"At any threshold, {label[best]} separates right from wrong answers best (AUC {u[best]:.2f}"
                   + "".join(f", {label[m]} {v:.2f}" for m, v in u.items() if m != best) + ").")
    return out


register_section(judges_trust, after="significance")
register_section(reader_labels, after="judges_trust")
