"""The report's sections, one small function each, in the order of SECTIONS.

Every section gets the Doc to add blocks to and a Part: one benchmark of an analysed run at one level.
A run with one seed has one Part per benchmark (level "one": every section). A run with several seeds
has a "pooled" Part (the decision sections, over all seeds: recommendation, serving cost, break-even,
trade-offs) and then one "seed" Part per seed (the per-seed sections: summary, significance, latency,
training, retrieval, answers). A section tests `part.decides` or `part.per_seed` to say where it belongs.
Adding a section is one function and one list entry (or `register_section(fn, after="latency")`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness.analysis import metrics, trust
from harness.analysis.recompute import metric_label
from harness.analysis.serving import cell_model, run_models
from harness.analysis.verdicts import DecisionConfig
from harness.report import plots
from harness.report.render import (
    Doc,
    fmt_ci,
    fmt_num,
    fmt_p,
    fmt_size,
    fmt_usd,
)


@dataclass
class Part:
    """What a section sees: one benchmark of an analysed run, at one level (see the module docstring)."""

    results: dict
    bench: dict            # the run's record of the benchmark (name, task, sizes, source, licence)
    seed: str              # the seed, or "pooled"
    analysis: dict         # results["analysis"]["benchmarks"][name][seed]; {} for the pooled part
    cells: list[dict]      # this seed's cells (pooled: every seed's)
    rows: list[dict]       # scored prediction rows of this benchmark and seed (pooled: every seed's)
    primary: str           # headline metric
    decision: DecisionConfig
    png: bool              # figures wanted (HTML); False for the terminal summary
    level: str = "one"     # one | pooled | seed
    verdict: dict | None = None  # results["analysis"]["decisions"][name]: the decision, pooled over seeds

    @property
    def label(self) -> str:
        return metric_label(self.primary)

    @property
    def diag(self) -> dict:
        return self.analysis.get("strategies") or {}

    @property
    def seeds(self) -> list:
        return self.results.get("config", {}).get("seeds") or [0]

    @property
    def decides(self) -> bool:
        """The decision sections belong here: the only seed, or the pooled part of several."""
        return self.level in ("one", "pooled")

    @property
    def per_seed(self) -> bool:
        return self.level in ("one", "seed")

    @property
    def chosen(self) -> str | None:
        return ((self.verdict or {}).get("verdict") or {}).get("chosen")

    @property
    def models(self) -> dict[str, str]:
        """strategy -> the label of the model it ran on, when the run compares several models (the tables
        then show a Model column beside the strategy); {} for a run on one model."""
        if len(run_models(self.results)) < 2:
            return {}
        return {c["strategy"]: cell_model(c, self.results)[0] for c in self.results.get("cells", [])}


Section = Callable[[Doc, Part], None]

STATUS = {  # verdicts.Row.status -> the summary table's words
    "chosen": "recommended", "reference": "most accurate", "dearer": "within the margin, dearer",
    "cost tie, lower mean": "cost tie, lower mean", "cost tie, more moving parts": "cost tie, more moving parts",
    "non-inferior": "within the margin", "inconclusive": "inconclusive",
    "inferior": "worse by more than the margin", "below the bar": "below the quality bar",
    "over the latency target": "over the latency target", "not priced": "not priced", "no scores": "no scores",
}
OUTCOME = {"non-inferior": "within the margin", "inferior": "below by more than the margin",
           "inconclusive": "inconclusive"}
KIND = {"prompting": "prompting (base model)", "rag": "base model + index", "adapter": "adapter on the base",
        "adapter+rag": "adapter + index", "full": "own full copy", "full+rag": "own full copy + index"}


def inputs(dc: DecisionConfig, machine: dict | None = None) -> str:
    """Every decision input in one line."""
    refresh = f"a refresh every {dc.refresh_days:g} days" if dc.refresh_days else "no refresh"
    bar = f"quality bar {dc.min_quality:g}" if dc.min_quality is not None else "no quality bar"
    target = f"p95 latency target {dc.latency_target_s:g} s" if dc.latency_target_s else "no latency target"
    floor = ("scale to zero (no replica always on)" if not dc.min_replicas else
             f"at least {dc.min_replicas:g} replica{'s' * (dc.min_replicas != 1)} always on")
    where = f" on {machine['name']} (${machine['usd_per_hour']:g}/h)" if machine else ""
    return (f"{dc.monthly_queries:,} queries a month, {refresh}; margin {dc.margin:g}, {bar}, {target}, cost "
            f"tolerance {dc.cost_tolerance:.0%}; serving{where}: {floor}, {dc.target_utilization:.0%} target "
            f"utilization, {dc.hours_per_month:g} hours a month")


def _rows_by_name(part: Part) -> dict:
    return {r["name"]: r for r in ((part.verdict or {}).get("verdict") or {}).get("rows", [])}


def _lat_text(lat: dict | None) -> str:
    if not lat or lat.get("p95_s") is None:
        return "–"
    tag = {"probe": "batch-1", "endpoint": "per request"}.get(lat.get("source"), "batched")
    return f"{lat['p95_s']:.2f} ({tag})"


# ---- the decision ------------------------------------------------------------------------------


def recommendation(doc: Doc, part: Part) -> None:
    """The verdict in words, a row per strategy, and what would change the answer (pooled over seeds)."""
    if not part.decides or not part.verdict:
        return
    v = part.verdict["verdict"]
    seeds = part.verdict.get("seeds") or []
    base = v.get("compared_with") or v["reference"]
    doc.h(3, "Recommendation" + (f" (pooled over seeds {', '.join(map(str, seeds))})" if len(seeds) > 1 else ""))
    doc.ul(v["reasons"] + _reader_disagrees(part))
    ref = v["reference"]
    rows = v["rows"]
    if rows:
        lat = part.verdict.get("latency") or {}
        pooled = len(seeds) > 1
        head = ["Strategy"] + ["Model"] * bool(part.models) + [
                f"{part.label[0].upper() + part.label[1:]} [95% CI" + (" over questions and seeds]" if pooled else "]"),
                f"Difference from {base or 'the most accurate'} [95% CI]",
                f"Against the margin of {part.decision.margin:g}",
                "To settle it", "$ / month", "$ / query", "$ / correct answer", "p95 latency s", "Status"]
        body, mark = [], set()
        for i, r in enumerate(rows):
            e, c = r["estimate"], r["comparison"]
            ci = "–" if e["mean"] is None else f"{e['mean']:.3f} [{e['low']:.3f}, {e['high']:.3f}]"
            diff = (("(reference)" if ref else "(most accurate)") if r["name"] == base else
                    f"{c['diff']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}]" if c else "–")
            if r["name"] == base:
                against = "reference" if ref else "–"
            elif c and (not ref or (r["meets_bar"] and r["meets_latency"])):
                against = OUTCOME.get(c["outcome"], c["outcome"])
            else:
                against = "–"  # fails a requirement: not compared on the margin
            settle = ""
            if c and c["outcome"] == "inconclusive":
                need = c.get("questions_needed")
                settle = (f"~{need:,} questions ({max(need - c['n_questions'], 0):,} more)" if need
                          else "more seeds" if c.get("settles_toward") else "–")
            per_c = r["per_correct_usd"]
            per_c_text = (fmt_usd(per_c) if per_c is not None else
                          "no correct answers" if r["monthly_usd"] is not None and e["mean"] == 0 else "–")
            name = r["name"] + (" (recommended)" if r["status"] == "chosen" else "")
            body.append([name] + [part.models.get(r["name"], "")] * bool(part.models)
                        + [ci, diff, against, settle, fmt_usd(r["monthly_usd"]), fmt_usd(r["per_query_usd"]),
                           per_c_text, _lat_text(lat.get(r["name"])), STATUS.get(r["status"], r["status"])])
            if r["status"] == "chosen":
                mark.add(i)
        doc.table(head, body, mark=mark)
        if not ref and base:
            doc.p(f"No strategy meets the requirements, so none is a reference: the differences are against the most "
                  f"accurate of all, {base}, to be read only (what the verdicts would be if the requirements were "
                  "met).",
                  "note")
        doc.p("Differences are paired, on the questions every strategy answered"
              + (" and pooled over seeds (two-level bootstrap over questions and seeds)" if pooled else "")
              + f". Within the margin: the interval's lower end above -{part.decision.margin:g}; inconclusive: the "
              f"interval holds -{part.decision.margin:g}; 'to settle it' is the number of questions at which the "
              "observed difference and spread would decide it half the time (normal approximation). $ per correct "
              "answer is the monthly cost over queries x the mean score. Latency: the batch-1 probe's p95 where the "
              "run recorded one, else the batched run's (a query's wait for its whole batch).", "note")
        doc.details("Each strategy's verdict in words", html_only=True)
        doc.ul(r["sentence"] for r in rows)
        doc.end_details()
    doc.p("**What would change the answer**")
    doc.ul(v["changes"])


def _label(c, seeds) -> str:
    return c["strategy"] if len(seeds) == 1 else f"{c['strategy']} (seed {c['seed']})"


def _best(rows, col, key, lowest=True) -> set:
    vals = [(i, key(r)) for i, r in enumerate(rows)]
    vals = [(i, v) for i, v in vals if v is not None]
    if not vals:
        return set()
    target = (min if lowest else max)(v for _, v in vals)
    return {(i, col) for i, v in vals if v == target}


def _memory(c: dict) -> tuple[float | None, bool]:
    """The cell's own memory: its rise above its start after freed memory went back to the OS (the Memory
    section's "Cell's rise", engine/footprint.py) when recorded, else the larger of its stages' rises
    (rise_rss_mb), else the process's peak RSS (which can carry an earlier cell's high-water mark).
    Returns (MB, is_rise)."""
    whole = (c.get("memory") or {}).get("rise_mb")
    if whole is not None:
        return whole, True
    p, a = c.get("prepare") or {}, c.get("answer") or {}
    rises = [x for x in (p.get("rise_rss_mb"), a.get("rise_rss_mb")) if x is not None]
    if rises:
        return max(rises), True
    peaks = [x for x in (p.get("peak_rss_mb"), a.get("peak_rss_mb")) if x is not None]
    return (max(peaks) if peaks else None), False


def _reader_disagrees(part: Part) -> list[str]:
    """A warning beside the verdict when a reader's labels (`harness report --labels`) separate two
    strategies that the headline metric scores alike or the other way round: the decision then rests on a
    metric the people who read the answers contradict."""
    lab = part.analysis.get("labels")
    out = []
    for x in trust.headline_conflicts(lab, part.primary) if lab else []:
        st = lab["strategies"]
        how = "scores them the same" if x["metric_order"][part.primary] == 0 else "ranks them the other way round"
        agree = [metric_label(m) for m in x["agree"]]
        out.append(f"**A reader's labels disagree with the {part.label} here**: the reader finds {x['higher']} right "
                   f"more often than {x['lower']} ({st[x['higher']]['reader']['mean']:.3f} against "
                   f"{st[x['lower']]['reader']['mean']:.3f} on the labelled answers; Holm-corrected McNemar p = "
                   f"{x['holm_p']:.3f}), and the {part.label} {how} ({st[x['higher']][part.primary]:.3f} against "
                   f"{st[x['lower']][part.primary]:.3f}). "
                   + (f"{_cap(', '.join(agree))} order{'s' if len(agree) == 1 else ''} them as the reader does: "
                      f"`harness report RUN --metric {x['agree'][0]}` rebuilds the decision on "
                      f"{'it' if len(agree) == 1 else agree[0]}. " if agree
                      else "No computed metric orders them as the reader does. ")
                   + "See \"Against a reader's labels\".")
    return out


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def summary(doc: Doc, part: Part) -> None:
    """One row per strategy of this seed: headline metric with its CI, the other metrics, costs from the
    serving model, latency, memory; the recommended strategy's row highlighted."""
    if not part.per_seed:
        return
    doc.h(3, "Summary")
    primary, diag = part.primary, part.diag
    task = part.bench.get("task", "")
    dec = part.verdict or {}
    costs = dec.get("costs") or {}
    # F1 equals EM when the answer is one label or option: shown once
    others = [m for m in metrics.metric_names(task) if m != primary and not (primary == "exact_match" and m == "f1")
              and any(m in (c.get("metrics") or {}) for c in part.cells)]  # model-based ones only where computed
    probe = any(c.get("probe") for c in part.cells)
    mems = [_memory(c) for c in part.cells]
    rise = any(is_rise for _, is_rise in mems)
    col = 1 + bool(part.models)  # the headline metric's column (a Model column before it in a run of several)
    head = ["Strategy"] + ["Model"] * bool(part.models) + [f"{part.label[0].upper() + part.label[1:]} [95% CI]"] + \
           [metrics.get_metric(m).label for m in others] + \
           ["One-time $", "$ / month", "$ / correct answer", "Latency p50 s", "Latency p95 s"] + \
           (["Batch-1 p95 s"] if probe else []) + \
           ["Memory rise MB" if rise else "Peak RSS MB", "Artifact"]
    rows, data, mark = [], [], set()
    for idx, c in enumerate(part.cells):
        if c["status"] != "ok" or "metrics" not in c or primary not in c["metrics"]:
            rows.append([_label(c, part.seeds)] + [part.models.get(c["strategy"], "")] * bool(part.models)
                        + [c["status"] if c["status"] != "ok" else "failed" if "metrics" not in c
                           else f"no {part.label}"] + [""] * (len(head) - col - 1))
            data.append(None)
            continue
        d = diag.get(c["strategy"]) or {}
        co = costs.get(c["strategy"]) or {}
        lat = d.get("latency") or {}
        p, a = c.get("prepare") or {}, c.get("answer") or {}
        mem, _ = mems[idx]
        acc, month, q = c["metrics"][primary]["mean"], co.get("total_usd"), part.decision.monthly_queries
        correct = month / (q * acc) if month is not None and q and acc else None  # this seed's own accuracy
        vals = {"acc": acc, "one": co.get("one_time_usd"), "month": month,
                "correct": correct, "p50": lat.get("p50", a.get("latency_p50_s")),
                "p95": lat.get("p95", a.get("latency_p95_s")), "probe": (c.get("probe") or {}).get("latency_p95_s"),
                "mem": mem, "art": p.get("artifact_bytes", 0) if p else None}
        data.append(vals)
        name = _label(c, part.seeds) + (" (recommended)" if c["strategy"] == part.chosen else "")
        if c["strategy"] == part.chosen:
            mark.add(idx)
        head_ci = c["metrics"][primary]
        est = (_rows_by_name(part).get(c["strategy"]) or {}).get("estimate") or {}
        if part.level == "one" and est.get("mean") is not None and est.get("n_questions") == head_ci.get("n"):
            head_ci = {"mean": est["mean"], "low": est["low"], "high": est["high"]}  # the recommendation's interval
        rows.append([name] + [part.models.get(c["strategy"], "")] * bool(part.models) + [fmt_ci(head_ci)]
                    + [fmt_num((c["metrics"].get(m) or {}).get("mean"), "{:.3f}") for m in others]
                    + [fmt_usd(vals["one"]), fmt_usd(vals["month"]),
                       "no correct answers" if vals["correct"] is None and vals["month"] is not None and not vals["acc"]
                       else fmt_usd(vals["correct"]), fmt_num(vals["p50"]),
                       fmt_num(vals["p95"])] + ([fmt_num(vals["probe"])] if probe else [])
                    + [fmt_num(mem, "{:.0f}"), fmt_size(vals["art"])])
    n_other = len(others)
    live = [i for i, v in enumerate(data) if v]
    sub = [data[i] for i in live]
    marks = _best(sub, col, lambda v: v["acc"], lowest=not metrics.get_metric(primary).higher_is_better)
    keys = ["one", "month", "correct", "p50", "p95"] + (["probe"] if probe else []) + ["mem", "art"]
    for k, key in enumerate(keys):
        marks |= _best(sub, col + 1 + n_other + k, lambda v, key=key: v[key])
    doc.table(head, rows, {(live[i], col) for i, col in marks}, mark=mark)
    pooled = len(part.seeds) > 1
    served = [n for n, x in ((part.verdict or {}).get("models") or {}).items() if x.get("backend") == "openai"]
    doc.p(f"Best value of each column in bold; the recommended strategy's row highlighted. One-time cost is "
          "preparation (indexing or training; a model or index reused from another strategy counts with its "
          "training or indexing); "
          f"$ / month is the serving-cost model's (see Serving cost{', pooled over seeds' if pooled else ''}). "
          f"Latency p50/p95 is what one query waited in the batched run, whose generation batch was "
          f"{part.results.get('config', {}).get('batch_size', '?')}"
          + (f" (on an endpoint, {', '.join(served)}: each query's own request, any queue at the server included)"
             if served else "")
          + ("; batch-1 p95 is the latency probe's (one query answered alone)" if probe else "")
          + ". " + ("Memory: the rise of resident memory above the cell's start (its own need; see Memory)."
                    if rise else "Memory: the process's peak resident memory during the cell, which includes "
                    "whatever earlier cells left allocated (this run did not record each cell's own rise)."),
          "note")
    doc.ul([f"{c['strategy']} {c['status']} (seed {c.get('seed')}): {c.get('error')}"
            for c in part.cells if c["status"] != "ok"])  # failed, or unfinished after an interrupted run


def significance(doc: Doc, part: Part) -> None:
    """Each strategy against the most accurate and against zero-shot, on the same questions."""
    if not part.per_seed:
        return
    doc.h(3, "Paired significance")
    cmp, primary = part.analysis["comparisons"], part.primary
    if not cmp["rows"]:
        doc.p("Fewer than two strategies finished: nothing to compare.")
        return
    tested = cmp.get("tested") or {"em": "exact_match", "f1": "f1" if not metrics.get_metric(primary).binary else None}
    graded = tested["f1"] is not None
    em_label = "exact match" if tested["em"] == "exact_match" else metric_label(tested["em"])
    f1_label = metric_label(tested["f1"]) if graded else ""
    means = cmp.get("means") or {}
    ties = [n for n in means if n != cmp["best"] and means[n] == means.get(cmp["best"])]
    best = cmp["best"] + (f"; tied with {', '.join(ties)}" if ties else "")
    doc.p(f"Each strategy against the most accurate ({best}) and against zero-shot, on the same "
          f"questions. {em_label[0].upper() + em_label[1:]}: McNemar's exact test on the questions only one side "
          "got right; " + (f"{f1_label}: paired bootstrap (10,000 resamples). " if graded else "")
          + "p-values Holm-corrected across the comparisons of each test; verdict at 5%. These tests ask whether "
          "two strategies differ at all; 'no significant difference' does not mean 'as good' (the recommendation "
          "asks instead whether a drop larger than the margin is ruled out).")
    rows = []
    for r in cmp["rows"]:
        em = r["em"]
        row = [r["strategy"], r["baseline"], str(r["n"])]
        if graded:
            f = r["f1"]
            row += [f"{f['diff']:+.3f} [{f['low']:+.3f}, {f['high']:+.3f}]", fmt_p(f["p"]), fmt_p(f["p_holm"])]
        row += [f"{em['diff']:+.3f}", f"{em['only_a']} / {em['only_b']}", fmt_p(em["p"]), fmt_p(em["p_holm"]),
                r["verdict"]]
        rows.append(row)
    head = ["Strategy", "Against", "Questions"]
    if graded:
        head += [f"{metrics.get_metric(tested['f1']).label} difference [95% CI]", "Bootstrap p", "Holm p"]
    head += [f"{metrics.get_metric(tested['em']).label} difference", "Only it / only other right", "McNemar p",
             "Holm p", f"Verdict ({part.label})"]
    doc.table(head, rows)
    if not any(r["significant"] for r in cmp["rows"]):
        doc.p("**No significant difference** between any two strategies compared here.")


def cost(doc: Doc, part: Part) -> None:
    """Monthly serving cost of each strategy with every input, and what each deployment holds."""
    if not part.decides or not part.verdict:
        return
    dec = part.verdict
    m, hosted = dec["machine"], dec.get("hosted")
    hosted_for = dec.get("hosted_for") or []
    costs = {n: c for n, c in (dec.get("costs") or {}).items() if c}
    facts = dec.get("facts") or {}
    doc.h(3, "Serving cost")
    doc.p(_pricing_basis(part, m))
    _hosted(doc, part, hosted or {}, hosted_for, m)
    models = dec.get("models") or {}
    if costs:
        head = ["Strategy"] + ["Model"] * bool(part.models) + [
                "Served by", "Throughput q/s", "Busy h / month", "Replicas (avg)", "Answering $",
                "Refresh $", "$ / month", "$ / query", "$ / correct answer", "One-time $"]
        body = [_cost_row(part, n, c, m, models.get(n) or {}) for n, c in costs.items()]
        doc.table(head, body, mark={i for i, n in enumerate(costs) if n == part.chosen})
        batch = next((f.get("batch_size") for f in facts.values() if f and f.get("batch_size")), None)
        doc.p("Throughput: queries answered per second of answering wall time in the batched run"
              + (f" (generation batch {batch})" if batch else "") + ", not 1 / latency. Busy hours = queries / "
              "(3,600 x throughput); replicas (avg) = max(floor, busy hours / (hours x utilization)): an autoscaler's "
              "month average. Refresh: refreshes a month x measured preparation seconds at the machine's price.",
              "note")
        chosen = part.chosen or (part.verdict["verdict"] or {}).get("reference")
        if chosen and chosen in costs:
            doc.p(f"**How {chosen}'s monthly cost is computed**")
            doc.ul(costs[chosen].get("describe") or [])
        doc.details("Every strategy's monthly cost in words", html_only=True)
        doc.ul(f"{n}: " + " ".join(c.get("describe") or []) for n, c in costs.items())
        doc.end_details()
    _deployments(doc, part, costs, m)


def _pricing_basis(part: Part, m: dict) -> str:
    """The machine, volume, replica floor, utilization and refresh every monthly cost stands on, in words."""
    dc = part.decision
    spec = ", ".join(x for x in (f"{m['vcpus']} vCPU" if m.get("vcpus") else "",
                                 f"{m['gpus']} GPU" if m.get("gpus") else "",
                                 f"{m['memory_gb']:g} GB RAM" if m.get("memory_gb") else "",
                                 f"{m['gpu_memory_gb']:g} GB GPU memory" if m.get("gpu_memory_gb") else "") if x)
    prices = part.results["analysis"]["prices"]
    floor = ("no replica is kept on when idle (scale to zero: only busy time / utilization is paid)"
             if not dc.min_replicas else f"{dc.min_replicas:g} replica{'s are' if dc.min_replicas != 1 else ' is'} "
             f"always on ({dc.min_replicas:g} x {dc.hours_per_month:g} h x ${m['usd_per_hour']:g}/h = "
             f"{fmt_usd(dc.min_replicas * dc.hours_per_month * m['usd_per_hour'])} a month, paid even with no traffic)")
    return (f"Each strategy is priced as its own deployment on **{m['name']}** (${m['usd_per_hour']:g}/hour"
            + (f"; {spec}" if spec else "") + f"; from {Path(prices['source']).name}), the machine the run's "
            f"timings stand for. At {dc.monthly_queries:,} queries a month, {floor}; replicas are added for the "
            f"volume at the measured throughput, sized for {dc.target_utilization:.0%} average utilization. "
            + (f"A refresh every {dc.refresh_days:g} days re-runs the preparation (re-index and/or re-train) at its "
               f"measured time." if dc.refresh_days else "No refresh: preparation is paid once (one-time $).")
            + " Monthly $ = max(floor, busy hours / utilization x $/hour) + refreshes; $ per correct answer = "
              "monthly $ / (queries x mean score).")


def _cost_row(part: Part, n: str, c: dict, m: dict, model: dict) -> list[str]:
    """One strategy's line of the serving-cost table; model: what answered it (decision's models entry)."""
    a, rf = c.get("answering"), c["refresh"]
    if a and "queries_per_s" in a:
        served = f"{m['name']}, {'the floor' if a['bound'] == 'floor' else 'the volume'} decides"
        qps, busy, reps = f"{a['queries_per_s']:.3g}", f"{a['busy_hours']:,.1f}", f"{a['replicas']:.2f}"
    elif a:
        served = (f"endpoint {model.get('name')} (per token)"
                  if model.get("backend") == "openai" else f"hosted {a['model']} (per token)")
        qps = busy = reps = "–"
        if c.get("retrieval"):
            r = c["retrieval"]
            served += f" + retrieval on {m['name']}"
            qps, busy = f"{r['queries_per_s']:.3g} (retrieval)", f"{r['busy_hours']:,.1f}"
            reps = f"{r['replicas']:.2f}"
    elif model.get("backend") == "openai":  # the reason is the paragraph above
        served = f"endpoint {model.get('name')}: not priced (no hosted: price)"
        qps = busy = reps = "–"
    else:
        served, qps, busy, reps = "not priced: " + (c.get("missing") or "?"), "–", "–", "–"
    ans_text = fmt_usd(a["usd"] if a else None)
    if a and c.get("retrieval"):
        ans_text += f" + {fmt_usd(c['retrieval']['usd'])} retrieval"
    refresh = (f"{fmt_usd(rf['usd'])} ({rf['per_month']:.2f} x {rf['seconds']:,.0f} s)"
               if rf["per_month"] and rf["seconds"] else "$0")
    per_c = c.get("per_correct_usd")
    return ([n + (" (recommended)" if n == part.chosen else "")]
            + [part.models.get(n, "")] * bool(part.models) + [served, qps, busy, reps, ans_text,
             refresh, fmt_usd(c.get("total_usd")), fmt_usd(c.get("per_query_usd")),
             fmt_usd(per_c) if per_c is not None
             else ("no correct answers" if c.get("accuracy") == 0 else "–"),
             fmt_usd(c.get("one_time_usd"))])


def _hosted(doc: Doc, part: Part, hosted: dict, hosted_for: list, m: dict) -> None:
    """Per-token prices: for each model they apply to, what they are and to which strategies; and each
    model answered by an endpoint that has no price (its strategies are not priced)."""
    dec = part.verdict or {}
    models = dec.get("models") or {}
    records = run_models(part.results)
    for label, h in hosted.items():
        who = [n for n in hosted_for if (models.get(n) or {}).get("label", label) == label]  # priced cells only
        rec = records.get(label) or {}
        prices = (f"${h['input_usd_per_1m']:g} per million prompt tokens and ${h['output_usd_per_1m']:g} per million "
                  "output tokens")
        if rec.get("backend") == "openai":
            doc.p(f"Model {label} is answered by the endpoint {rec.get('name')} at {rec.get('base_url')}, priced per "
                  f"token at the hosted price for {h['model']}: {prices}, applied to the prompt and output tokens the "
                  f"server reported for {', '.join(who) or 'no strategy of this run'}. A RAG on it still needs a "
                  f"machine of ours for its embedder and index ({m['name']}, priced on the retrieval throughput "
                  "measured); indexing is machine time. Its answers, token counts and latencies are the endpoint's, as "
                  "measured from this run's machine (a remote API's latency includes the network).")
            continue
        doc.p(f"Hosted prices for model {h['model']}: {prices}, applied to the measured "
              f"token counts of {', '.join(who) or 'no strategy of this run'}"
              + (f" (the provider serves {', '.join(h['serves'])}; the other strategies run on {m['name']})"
                 if h.get("serves") else "")
              + ". A hosted RAG still needs a machine for its embedder and index (priced on the retrieval "
              "throughput measured); training and indexing are machine time. The answers, scores, token counts and "
              f"latencies are the ones measured with {rec.get('name') or label} on this run's machine, not the "
              "provider's.")
    source = Path(part.results["analysis"]["prices"]["source"]).name
    for label, rec in records.items():
        if rec.get("backend") == "openai" and label not in hosted:
            who = [n for n, x in models.items() if x.get("label") == label and (dec.get("costs") or {}).get(n)]
            if who:
                doc.p(f"Model {label} is answered by the endpoint {rec.get('name')} at {rec.get('base_url')}, and "
                      f"{source} has no hosted: price for {rec.get('name')}: {', '.join(who)} "
                      f"{'is' if len(who) == 1 else 'are'} not priced, so the recommendation cannot weigh "
                      f"{'its' if len(who) == 1 else 'their'} cost (add `{rec.get('name')}: {{input_per_1m: ..., "
                      "output_per_1m: ...}` under hosted: and rebuild the report with --prices).", "fail")


def _deployments(doc: Doc, part: Part, costs: dict, machine: dict) -> None:
    deps = {n: c["deployment"] for n, c in costs.items() if c.get("deployment")}
    if not deps:
        return
    facts = (part.verdict or {}).get("facts") or {}
    doc.p("**What each deployment holds**")
    cap = machine.get("gpu_memory_gb") if machine.get("kind") == "gpu" else machine.get("memory_gb")
    head = ["Strategy", "Holds", "Base weights", "Own full copy", "Adapter", "Embedder", "Index", "Total",
            "Can share a base", f"Fits {machine['name']}" + (f" ({cap:g} GB)" if cap else "")]
    body = []
    for n, d in deps.items():
        kind = (facts.get(n) or {}).get("kind", "")
        rag = kind in ("rag", "adapter+rag", "full+rag")
        served = ((part.verdict or {}).get("models", {}).get(n) or {}).get("backend") == "openai"
        holds = ("its index and embedder; the model is at its endpoint" if rag else "nothing: the model is at its "
                 "endpoint") if served else KIND.get(kind, kind)
        body.append([n, holds, fmt_size(d["base_bytes"]), fmt_size(d["own_weights_bytes"]),
                     fmt_size(d["adapter_bytes"]),
                     ("not recorded" if rag and not d["embedder_bytes"] else fmt_size(d["embedder_bytes"])),
                     fmt_size(d["index_bytes"]), fmt_size(d["total_bytes"]),
                     "yes" if d["shares_base"] else "no (its own copy of every weight)",
                     "–" if d["fits"] is None else "yes" if d["fits"] else "no"])
    doc.table(head, body)
    doc.p("Bytes of weights, adapters, embedder and index only (the KV cache and activations need more). "
          "Strategies that can share a base (prompting, RAG, adapters) could be served from one base deployment "
          "holding every adapter; a full fine-tune needs its own. Each is priced alone above.", "note")


def break_even_words(sides: list[dict]) -> str:
    """serving.sides in words: '1,549,603 (lora-rag cheaper above)' where the cheaper changes, 'same cost up to
    2,291,563 (both at the always-on floor); zero-shot cheaper above' where they are equal over a range,
    'never' when one is cheaper at every volume."""
    def span(s):
        return ("at every volume" if s["low"] == 0 and s["high"] is None else f"up to {s['high']:,.0f}"
                if s["low"] == 0 else f"above {s['low']:,.0f}" if s["high"] is None
                else f"from {s['low']:,.0f} to {s['high']:,.0f}")

    if len(sides) == 1 and sides[0]["cheaper"] is not None:
        return "never"
    out = []
    for i, s in enumerate(sides):
        prev = sides[i - 1] if i else None
        nxt = sides[i + 1] if i + 1 < len(sides) else None
        if s["cheaper"] is None:
            why = "both at the always-on floor" if s["same"] == "floor" else "the same $ per query"
            out.append(f"same cost {span(s)} ({why})")
        elif prev is not None and prev["cheaper"] is None:
            out.append(f"{s['cheaper']} cheaper above")
        elif prev is not None:
            out.append(f"{s['low']:,.0f} ({s['cheaper']} cheaper above)")
        elif nxt is not None and nxt["cheaper"] is None:
            out.append(f"{s['cheaper']} cheaper below {s['high']:,.0f}")
    return "; ".join(out)


def _regions(regions: list[dict], tol: float) -> str:
    """'within 10% below 114,070; lora cheaper above': where the decision sees a cost difference."""
    out = []
    for r in regions:
        what = f"within {tol:.0%}" if r["cheaper"] is None else f"{r['cheaper']} cheaper"
        if r["low"] == 0 and r["high"] is None:
            out.append(f"{what} at every volume")
        elif r["low"] == 0:
            out.append(f"{what} below {r['high']:,.0f}")
        elif r["high"] is None:
            out.append(f"{what} above {r['low']:,.0f}")
        else:
            out.append(f"{what} from {r['low']:,.0f} to {r['high']:,.0f}")
    return "; ".join(out)


def break_even(doc: Doc, part: Part) -> None:
    """Where the cheaper of two strategies changes with the volume, on the serving-cost model."""
    if not part.decides or not part.verdict:
        return
    dec, dc = part.verdict, part.decision
    curves = dec.get("curves") or {}
    if not curves:
        return
    doc.h(3, "Break-even")
    v = dec.get("verdict") or {}
    focus = part.chosen or v.get("reference") or v.get("compared_with")
    if focus in curves:
        rows = []
        for other in curves:
            if other == focus:
                continue
            pair = next((x for x in dec.get("apart") or [] if {x["a"], x["b"]} == {focus, other}), None)
            side = next((x for x in dec.get("sides") or [] if {x["a"], x["b"]} == {focus, other}), None)
            rows.append([other, f"{fmt_usd(plots.curve_at(curves[focus], dc.monthly_queries))} against "
                                f"{fmt_usd(plots.curve_at(curves[other], dc.monthly_queries))}",
                         break_even_words(side["sides"]) if side else "–",
                         _regions(pair["regions"], dc.cost_tolerance) if pair else "–"])
        doc.p(f"{focus} against each other strategy, every other input held. Break-even: the monthly volumes at "
              "which the cheaper of the two changes; \"same cost\": equal to the cent over the whole range (both "
              "at the always-on floor, or the same $ per query), with who is cheaper past it; \"never\": one is "
              f"cheaper at every volume. The decision counts costs within {dc.cost_tolerance:.0%} of "
              "each other as equal, so the last column is where the cost difference can matter; accuracy decides "
              "first (see Recommendation).")
        doc.table(["Against", f"$ / month now, {focus} against it ({dc.monthly_queries:,} queries)",
                   "Break-even, queries / month", f"More than {dc.cost_tolerance:.0%} apart"], rows)
    if part.png:
        top = max(dc.monthly_queries * 100, 10_000)
        bottom = max(1.0, dc.monthly_queries / 1000)  # from a thousandth of the volume to a hundred times it
        vols = [10 ** (i / 20) for i in range(int(20 * math.log10(bottom)), int(20 * math.log10(top)) + 1)]
        doc.img(plots.break_even(curves, dc.monthly_queries, vols, part.chosen),
                "Monthly cost against queries per month")
        doc.p("Flat parts: the always-on floor (min_replicas x hours x $/hour); rising parts: replicas added for "
              "the volume, or per-token prices. Refreshes add a constant.", "note")


def tradeoffs(doc: Doc, part: Part) -> None:
    """Accuracy against monthly cost and against p95 latency, with the Pareto front (pooled over seeds)."""
    if not part.decides or not part.verdict or not part.png:
        return
    dc, dec = part.decision, part.verdict
    lat = dec.get("latency") or {}
    entries = []
    for r in dec["verdict"]["rows"]:
        e = r["estimate"]
        if e["mean"] is None or r["monthly_usd"] is None:
            continue
        entries.append({"strategy": r["name"], "acc": e["mean"], "low": e["low"], "high": e["high"],
                        "monthly": r["monthly_usd"], "p95": (lat.get(r["name"]) or {}).get("p95_s"),
                        "chosen": r["name"] == part.chosen})
    if len(entries) < 2:
        return
    doc.h(3, "Accuracy against cost and latency")
    bar = dict(hline=dc.min_quality, hlabel="quality bar") if dc.min_quality is not None else {}
    doc.img(plots.pareto(entries, "monthly", f"$ per month at {dc.monthly_queries:,} queries"
                         + (f", refresh every {dc.refresh_days:g} d" if dc.refresh_days else ""),
                         part.label, logx=True, **bar), "Accuracy against monthly cost")
    lat_entries = [e for e in entries if e["p95"] is not None]
    if lat_entries:
        sources = {(lat.get(e["strategy"]) or {}).get("source") for e in lat_entries}
        what = ("batch-1 probe" if sources == {"probe"} else "batched run" if sources == {"batched"}
                else "batched run or endpoint requests" if sources == {"batched", "endpoint"}
                else "batch-1 probe where recorded, else batched run"
                + (" or endpoint requests" if "endpoint" in sources else ""))
        doc.img(plots.pareto(lat_entries, "p95", f"p95 latency, seconds ({what})", part.label,
                             vline=dc.latency_target_s, vlabel="latency target", **bar), "Accuracy against p95 latency")
    doc.p("Error bars: 95% bootstrap confidence intervals"
          + (" over questions and seeds" if len(dec.get("seeds") or []) > 1 else "")
          + ". The dashed line joins the strategies that no other strategy beats on both axes; the star is "
          "the recommended strategy.", "note")


# ---- one seed's diagnostics ---------------------------------------------------------------------


def latency(doc: Doc, part: Part) -> None:
    if not part.per_seed:
        return
    doc.h(3, "Latency")
    diag = part.diag
    rows = [[s, fmt_num(d["latency"]["p50"]), fmt_num(d["latency"]["p95"]),
             fmt_num(d["latency"]["retrieval_p50"], "{:.4f}"), fmt_num(d["latency"]["retrieval_p95"], "{:.4f}"),
             fmt_num(d["latency"]["generation_p50"]), fmt_num(d["latency"]["generation_p95"])]
            for s, d in diag.items() if d.get("latency")]
    if not rows:
        doc.p("No per-query timing in predictions.jsonl.")
        return
    doc.table(["Strategy", "p50 s", "p95 s", "Retrieval p50 s", "Retrieval p95 s", "Generation p50 s",
               "Generation p95 s"], rows)
    lat = (part.verdict or {}).get("latency") or {}
    used = sorted({(x or {}).get("source") for x in lat.values()} - {None, "endpoint"})
    served = sorted(n for n, x in lat.items() if (x or {}).get("source") == "endpoint")
    doc.p(f"Batched run: what one query waited for its whole batch (generation batch "
          f"{part.results.get('config', {}).get('batch_size', '?')}), so it measures throughput more than the wait "
          "of a single user. "
          + (f"On an endpoint ({', '.join(served)}): each query's own request, from sending it to its last token, "
             "including any queue at the server and retry waits; the recommendation holds latency targets against "
             "these. " if served else "")
          + ("The recommendation holds latency targets against the batch-1 probe (one query answered alone)."
             if used == ["probe"] else
             "The recommendation holds latency targets against these batched figures: this run recorded no batch-1 "
             "latency probe." if used == ["batched"] else
             "The recommendation uses the batch-1 probe where a strategy recorded one, these batched figures elsewhere."
             if used else ""), "note")
    if part.png:
        split = {}
        for s in diag:
            us = [r["usage"] for r in part.rows if r["strategy"] == s and isinstance(r.get("usage"), dict)
                  and "latency_seconds" in r["usage"]]
            if us:
                split[s] = ([u["latency_seconds"] - u.get("retrieval_seconds", 0) for u in us],
                            [u.get("retrieval_seconds", 0) for u in us])
        if split:
            doc.img(plots.latency(split), "Per-query latency, generation and retrieval")


def _training_line(c) -> str:
    p = c["prepare"]
    curve = p["loss_curve"]
    out = (f"{c['strategy']}: {p.get('train_examples', '?')} examples, {p.get('steps', '?')} steps, "
           f"{p.get('train_tokens', 0):,} tokens at {p.get('train_tokens_per_s')} tokens/s")
    if p.get("trainable_params"):
        out += f", {p['trainable_params']:,} of {p['total_params']:,} parameters trainable"
    out += f"; train loss {curve[0]:.3f} → {curve[-1]:.3f}"
    if p.get("eval_loss"):
        out += f", held-out loss by epoch {', '.join(f'{x:.3f}' for x in p['eval_loss'])}"
    if p.get("training_reused_from"):
        out += f"; the model {p['training_reused_from']} trained in this run, reused"
    if p.get("phases"):
        out += "; phases " + " then ".join(f"{ph['task']} ({ph['examples']} examples)" for ph in p["phases"])
    if p.get("mixture"):
        out += "; mixture " + ", ".join(f"{k} {v}" for k, v in p["mixture"].items())
    if p.get("forgetting") is not None:
        out += (f"; {p['task_a']} accuracy {p['task_a_accuracy_after_a']:.3f} after training on it, "
                f"{p['task_a_accuracy_after_b']:.3f} after {c['benchmark']} (forgetting {p['forgetting']:+.3f})")
    return out + "."


def training(doc: Doc, part: Part) -> None:
    if not part.per_seed:
        return
    trained = [c for c in part.cells if c["status"] == "ok" and (c.get("prepare") or {}).get("loss_curve")]
    if not trained:
        return
    doc.h(3, "Training")
    doc.ul(_training_line(c) for c in trained)
    _training_flags(doc, trained)
    curves = {}
    for c in trained:
        p = c["prepare"]
        if p.get("training_reused_from"):
            continue
        users = [x["strategy"] for x in trained if x["prepare"].get("training_reused_from") == c["strategy"]]
        curves[c["strategy"] + (f" (also {', '.join(users)})" if users else "")] = p
    if part.png and curves:
        doc.img(plots.losses(curves), "Training loss curves")


def forgetting(doc: Doc, part: Part) -> None:
    if not part.per_seed:
        return
    forgot = [c for c in part.cells if c["status"] == "ok" and c.get("forgetting")]
    if not forgot:
        return
    doc.h(3, "Forgetting")
    doc.p("A general task the strategy was not trained on, scored on the base model and on the tuned "
          "model (lm-eval bridge); a negative change is knowledge lost by fine-tuning.")
    rows = []
    for c in forgot:
        f = c["forgetting"]
        if "error" in f:
            rows.append([c["strategy"], f.get("task", ""), "", "", f"check failed: {f['error']}", ""])
        else:
            rows.append([c["strategy"], f"{f['task']} ({f.get('metric', '')})", fmt_num(f["base"], "{:.3f}"),
                         fmt_num(f["tuned"], "{:.3f}"), fmt_num(f["delta"], "{:+.3f}"), str(f.get("n", ""))])
    doc.table(["Strategy", "Task (metric)", "Base", "Tuned", "Change", "n"], rows)


def retrieval(doc: Doc, part: Part) -> None:
    if not part.per_seed:
        return
    rag = {s: d["retrieval"] for s, d in part.diag.items() if d.get("retrieval")}
    if not rag:
        return
    label = part.label
    doc.h(3, "Retrieval diagnostics")
    ks = sorted({k for r in rag.values() for k in r["recall"]}, key=lambda k: int(k.split("@")[1]))
    doc.table(["Strategy"] + ks + [f"{label} when gold retrieved (n)", f"{label} when gold missed (n)"],
              [[s] + [fmt_num(r["recall"].get(k)) for k in ks] +
               [f"{fmt_num(r['acc_gold_retrieved'], '{:.3f}')} ({r['n_gold_retrieved']})",
                f"{fmt_num(r['acc_gold_missed'], '{:.3f}')} ({r['n_gold_missed']})"] for s, r in rag.items()])
    if part.png:
        doc.img(plots.retrieval(rag, label), "Recall at k and accuracy by retrieval outcome")


# ---- every answer ------------------------------------------------------------------------------

GETS_IT = 0.5  # a strategy "gets" a question when its headline score is at least this: right for EM/accuracy,
#                at least half the token overlap for F1 (a partial answer a reader could still use)


def _group_name(right: tuple[str, ...], names: list[str]) -> str:
    if not right:
        return "No strategy gets it"
    if len(right) == len(names):
        return "Every strategy gets it"
    if len(right) == 1:
        return f"Only {right[0]} gets it"
    wrong = [n for n in names if n not in right]
    if len(wrong) < len(right):
        return f"All but {', '.join(wrong)} get it"
    return f"{', '.join(right)} get it; the others do not"


def _sources(rs: list[dict]) -> str:
    lists = {r["strategy"]: r.get("sources") or [] for r in rs if r.get("sources")}
    if not lists:
        return ""

    def one(src):  # several chunks of one document: the document once
        firsts = [s for i, s in enumerate(src) if s["id"] not in {x["id"] for x in src[:i]}]
        return ", ".join(f"{s['id']}{' (gold)' if s['gold'] else ''}"
                         + (f" \u201c{s['title'][:60]}\u201d" if s.get("title") else "") for s in firsts)
    distinct = {tuple(s["id"] for s in v) for v in lists.values()}
    if len(distinct) == 1:
        return one(next(iter(lists.values())))
    return "; ".join(f"{n}: {one(v)}" for n, v in lists.items())


def answers(doc: Doc, part: Part) -> None:
    """Every question with each strategy's answer and score and the retrieved sources, grouped by which
    strategies get it; the groups where strategies disagree first. Collapsible (<details>) in the HTML;
    the Markdown has the group counts."""
    if not part.per_seed:
        return
    ok = [c["strategy"] for c in part.cells if c["status"] == "ok" and "metrics" in c]
    by = {(r["strategy"], r["id"]): r for r in part.rows if r["strategy"] in ok}
    qids = list(dict.fromkeys(r["id"] for r in part.rows if r["strategy"] in ok))
    if not qids or not ok:
        return
    primary, label = part.primary, part.label
    groups: dict[tuple[str, ...], list[str]] = {}
    for q in qids:
        right = tuple(n for n in ok if (by.get((n, q)) or {}).get(primary, 0.0) >= GETS_IT)
        groups.setdefault(right, []).append(q)
    order = sorted(groups, key=lambda g: (len(g) in (0, len(ok)), len(g) == len(ok), -len(groups[g]),
                                          [n not in g for n in ok]))
    doc.h(3, "Answers, question by question")
    doc.p(f"A strategy gets a question when its {label} is at least {GETS_IT:g}. Groups where the strategies "
          "disagree come first, largest first; each answer is shown as scored (after extraction) with its "
          f"{label} in brackets; sources are the retrieved documents, the gold ones marked.")
    doc.table(["Group", "Questions"], [[_group_name(g, ok), str(len(groups[g]))] for g in order])
    doc.p("In report.html each group opens to its questions: each strategy's answer and the retrieved sources.",
          "note")
    if part.png:  # the report (not the terminal summary): the questions themselves, folded, HTML only
        for g in order:
            doc.details(f"{_group_name(g, ok)}: {len(groups[g])} question{'s' * (len(groups[g]) != 1)}", html_only=True)
            body = []
            for q in groups[g]:
                rs = [by[(n, q)] for n in ok if (n, q) in by]
                first = rs[0]
                cells = []
                for n in ok:
                    r = by.get((n, q))
                    cells.append("" if r is None else f"{r.get('extracted', r['output'])} [{r.get(primary, 0.0):.2f}]")
                body.append([first["question"], " | ".join(map(str, first["answers"]))] + cells + [_sources(rs)])
            doc.table(["Question", "Gold"] + ok + ["Retrieved sources"], body)
            doc.end_details()


# ---- measurements a decision needs: single-query latency, throughput, memory, sweeps, learning curves ----

def _ms(x) -> str:
    return fmt_num(None if x is None else x * 1000, "{:.1f}")


def single_query(doc: Doc, part: Part) -> None:
    """The latency probe (one query at a time) beside throughput at the run's batch size."""
    cells = [c for c in part.cells if c["status"] == "ok" and (c.get("probe") or (c.get("answer") or {})
                                                                .get("queries_per_s"))]
    if not cells:
        return
    bs = part.results.get("config", {}).get("batch_size", "?")
    doc.h(3, "Single-query latency and throughput")
    rows = []
    for c in cells:
        pr, a = c.get("probe") or {}, c.get("answer") or {}
        same = f"{pr['same_as_batched']} / {pr['n']}" if pr.get("n") and "same_as_batched" in pr else "–"
        rows.append([c["strategy"], fmt_num(pr.get("latency_p50_s")), fmt_num(pr.get("latency_p95_s")),
                     _ms(pr.get("ttft_p50_s")), _ms(pr.get("ttft_p95_s")), _ms(pr.get("decode_s_per_token")),
                     _ms(pr.get("retrieval_p50_s")), same, fmt_num(a.get("queries_per_s")),
                     fmt_num(a.get("output_tokens_per_s"), "{:.1f}"), fmt_num(a.get("latency_p50_s"))])
    doc.table(["Strategy", "Latency p50 s", "Latency p95 s", "TTFT p50 ms", "TTFT p95 ms", "Decode ms / token",
               "Retrieval p50 ms", "Same answer as batched", f"Queries / s at batch {bs}",
               f"Output tokens / s at batch {bs}", "Batched wait p50 s"], rows)
    n = max((c.get("probe") or {}).get("n", 0) for c in cells)
    notes = []
    if n:
        notes.append(f"**Single query (the latency probe).** The same {n} test questions for every strategy (the "
                     f"{n} with the smallest sha256 of 'probe:' + id), each sent alone after the batched run, as one "
                     "user would: end-to-end latency of the strategy's whole answer call (retrieval, prompt, prefill, "
                     "decoding); time to first token (TTFT), the prefill of a batch of one (add retrieval for what a "
                     "streaming user waits before the first token); decode time per output token after the first. "
                     "No KV cache is kept between queries, so every query prefills the system prompt (and few-shot "
                     f"demonstrations) again. With {n} values, p95 interpolates between the largest two. A latency "
                     "target is a property of one query: hold it against these columns.")
    notes.append(f"**Throughput.** Queries and generated tokens per second of answering wall time at generation "
                 f"batch size {bs}, retrieval included: what the number of machines for a query volume is computed "
                 "from. It is not 1 / latency: a batch answers many queries in about the time of one.")
    notes.append(f"**Batched wait** is what a question waited for the whole batch of up to {bs} it was answered in "
                 "(the summary's latency): neither a user's latency nor a throughput.")
    differ = [c["strategy"] for c in cells if (c.get("probe") or {}).get("n")
              and c["probe"].get("same_as_batched", c["probe"]["n"]) < c["probe"]["n"]]
    if differ:
        notes.append(f"Answering alone changed some greedy answers of {', '.join(differ)}: batched and single "
                     "computations add floating-point numbers in another order, which can flip a near-tied token.")
    doc.ul(notes)


def memory(doc: Doc, part: Part) -> None:
    """The memory each cell needed, and the bytes each strategy's deployment must hold."""
    cells = [c for c in part.cells if c["status"] == "ok" and (c.get("memory") or c.get("deployment"))]
    if not cells:
        return
    doc.h(3, "Memory")
    rows = []
    for c in cells:
        m = c.get("memory") or {}
        rows.append([c["strategy"], fmt_num(m.get("cell_mb"), "{:.0f}"), fmt_num(m.get("base_mb"), "{:.0f}"),
                     fmt_num(m.get("rise_mb"), "{:.0f}"), fmt_num(m.get("prepare_rise_mb"), "{:.0f}"),
                     fmt_num(m.get("answer_rise_mb"), "{:.0f}"), fmt_num(m.get("reused_mb") or None, "{:.0f}")])
    doc.table(["Strategy", "Cell MB", "Base process MB", "Cell's rise MB", "Preparation rise MB", "Answering rise MB",
               "Reused model MB"], rows)
    doc.p("Resident memory each cell needed: the process with the base model loaded (what every cell starts "
          "from), plus the cell's own rise above its start (training copies and optimizer state, embedder and "
          "index, activations and KV cache), plus a model trained by an earlier cell that this one answers with. "
          "Measured as a rise, in one process: before each cell, memory freed by earlier cells is returned to the "
          "OS, so no cell inherits an earlier cell's high-water mark. Stages of a cached cell keep the memory "
          "measured when they were computed.", "note")
    dep = [(c["strategy"], c["deployment"]) for c in cells if c.get("deployment")]
    if dep:
        doc.table(["Strategy", "Base weights", "Own full copy", "Adapter", "Embedder", "Index + text", "Total",
                   "Shares a base deployment"],
                  [[s, fmt_size(d["base_bytes"]), fmt_size(d["own_weights_bytes"]), fmt_size(d["adapter_bytes"]),
                    fmt_size(d["embedder_bytes"]), fmt_size(d["index_bytes"]), fmt_size(d["total_bytes"]),
                    "yes" if d["shares_base"] else "no"] for s, d in dep])
        doc.p("What one serving replica must hold, in the run's dtype: a full fine-tune holds its own copy of every "
              "weight; adapters load beside a base model that several strategies can share; RAG adds the embedding "
              "model, the vectors, the chunk table and the documents' text. The KV cache and activations come on top.",
              "note")


def sweeps(doc: Doc, part: Part) -> None:
    """Every sweep point's validation score, and which one answered the test questions."""
    swept = [c for c in part.cells if c["status"] == "ok" and isinstance(c.get("sweep"), dict)]
    if not swept:
        return
    doc.h(3, "Sweeps, selected on validation")
    for c in swept:
        sw = c["sweep"]
        label = metric_label(sw.get("metric", part.primary))
        pts = sw["points"]
        means = [p["validation"].get("mean") for p in pts]
        rows = [[", ".join(f"{k}={v}" for k, v in p["options"].items()), fmt_ci(p["validation"]),
                 fmt_num(p.get("prepare_s"), "{:.1f}"), fmt_num(p.get("answer_s"), "{:.1f}"),
                 "selected, answered test" if i == sw["selected"] else ""] for i, p in enumerate(pts)]
        doc.table([f"{c['strategy']}: point", f"{label} on validation [95% CI]", "Prepare s", "Validation answering s",
                   ""], rows, {(sw["selected"], 0), (sw["selected"], 4)})
        v = sw["validation"]
        test = (c.get("metrics") or {}).get(sw.get("metric", part.primary))
        text = (f"{c['strategy']}: {len(pts)} points, each prepared on {sw['train_examples']} train examples and "
                f"scored on {v['n']} validation questions carved from the train split ({v['rule']}); no test question "
                f"was seen in selection. The selected point then answered the test questions as it was prepared (not "
                f"retrained with the validation questions): its test {label} is {fmt_ci(test)}, the figure in the "
                f"summary. The sweep took {sw['seconds']:.0f} s of machine time in all; the one-time cost in the "
                "summary is the selected point's preparation alone, what a refresh costs.")
        best = max(range(len(means)), key=lambda i: -1 if means[i] is None else means[i])
        if means[best] is not None and means[best] > (means[sw["selected"]] or 0):
            text += (f" Rescored with today's scoring, point {best + 1} now leads on validation; the run selected "
                     f"point {sw['selected'] + 1}.")
        doc.p(text, "note")


def learning_curves(doc: Doc, part: Part) -> None:
    """Accuracy on test against the number of training examples (0: the untuned base model)."""
    curved = [c for c in part.cells if c["status"] == "ok" and isinstance(c.get("learning_curve"), dict)]
    if not curved:
        return
    doc.h(3, "Learning curves")
    rows, plot = [], {}
    for c in curved:
        for p in c["learning_curve"]["points"]:
            m, size, whole = p.get("metric") or {}, p["train_examples"], p.get("from_cell")
            src = (c.get("prepare") or {}) if whole else p  # "all" is the cell itself
            steps, secs = src.get("steps"), src.get("train_seconds")
            rows.append([c["strategy"], f"{size}" + (" (all)" if whole else ""), fmt_ci(m or None),
                         fmt_num(steps, "{:.0f}"), fmt_num(secs, "{:.0f}")])
            if m.get("mean") is not None:
                plot.setdefault(c["strategy"], []).append((size, m["mean"], m["low"], m["high"]))
    doc.table(["Strategy", "Train examples", f"{part.label} on test [95% CI]", "Steps", "Training s"], rows)
    if part.png and plot:
        doc.img(plots.learning_curves(plot, part.label), "Accuracy on test against train examples")
    doc.p("Each size trains on the first n train examples of one order seeded by the run's seed (nested sets), "
          "with the strategy's settings unchanged, and answers the same test questions; 0 is the strategy's own "
          "prompt (and retrieval) answered by the untuned base model. A curve still rising at its last point says "
          "more labelled data would likely help; a flat one, that the method, not the data, is the limit.", "note")


def _training_flags(doc: Doc, trained: list[dict]) -> None:
    from harness.analysis.training_flags import MIN_STEPS, assessed, training_flags

    lines = []
    for c in trained:
        p = c["prepare"]
        if p.get("training_reused_from"):
            continue
        flags = training_flags(p["loss_curve"], p.get("eval_loss") or [], p.get("steps"))
        note = assessed(p.get("eval_loss") or [])
        text = "; ".join(f["text"] for f in flags) or "no flag: the loss flattened and held-out loss did not rise"
        lines.append(f"{c['strategy']}: " + text + (f" ({note})" if note else "") + ".")
    if lines:
        doc.p(f"**Under-training and over-fitting flags** (from the loss curves: fewer than {MIN_STEPS} steps; "
              "training loss still falling over the last quarter; held-out loss rising or still falling by epoch):")
        doc.ul(lines)


SECTIONS: list[Section] = [recommendation, summary, significance, cost, break_even, tradeoffs, latency, single_query,
                           memory, sweeps, learning_curves, training, forgetting, retrieval, answers]


def register_section(section: Section, after: str | None = None) -> Section:
    """Add a section to every report: at the end, or after the section function named `after`."""
    if section in SECTIONS:
        return section
    names = [s.__name__ for s in SECTIONS]
    SECTIONS.insert(names.index(after) + 1 if after in names else len(SECTIONS), section)
    return section
