"""The report's sections, one small function each, in the order of SECTIONS.

Every section gets the Doc to add blocks to and a Part: one benchmark and seed of an analysed run
(its cells, its scored rows, its analysis). Adding a section is one function and one list entry
(or `register_section(fn, after="latency")` from outside this file).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness.analysis import metrics
from harness.analysis.cost import Costs
from harness.analysis.decision import DecisionConfig
from harness.analysis.recompute import metric_label
from harness.report import plots
from harness.report.render import (
    Doc,
    fmt_ci,
    fmt_num,
    fmt_p,
    fmt_queries,
    fmt_size,
    fmt_usd,
)


@dataclass
class Part:
    """What a section sees: one benchmark and seed of an analysed run."""

    results: dict
    bench: dict            # the run's record of the benchmark (name, task, sizes, source, licence)
    seed: str
    analysis: dict         # results["analysis"]["benchmarks"][name][seed]
    cells: list[dict]
    rows: list[dict]       # scored prediction rows of this benchmark and seed
    primary: str           # headline metric
    decision: DecisionConfig
    png: bool              # figures wanted (HTML); False for the terminal summary

    @property
    def label(self) -> str:
        return metric_label(self.primary)

    @property
    def diag(self) -> dict:
        return self.analysis["strategies"]

    @property
    def seeds(self) -> list:
        return self.results.get("config", {}).get("seeds") or [0]


Section = Callable[[Doc, Part], None]


def recommendation(doc: Doc, part: Part) -> None:
    rec = part.analysis["recommendation"]
    doc.h(3, "Recommendation")
    doc.ul(rec["why"])
    doc.p("**What would change the answer**")
    doc.ul(rec["changes"])


def _label(c, seeds) -> str:
    return c["strategy"] if len(seeds) == 1 else f"{c['strategy']} (seed {c['seed']})"


def _best(rows, col, key, lowest=True) -> set:
    vals = [(i, key(r)) for i, r in enumerate(rows)]
    vals = [(i, v) for i, v in vals if v is not None]
    if not vals:
        return set()
    target = (min if lowest else max)(v for _, v in vals)
    return {(i, col) for i, v in vals if v == target}


def summary(doc: Doc, part: Part) -> None:
    """One row per strategy: headline metric with its CI, the other metrics, costs, latency, memory."""
    doc.h(3, "Summary")
    primary, diag = part.primary, part.diag
    task = part.bench.get("task", "")
    # F1 equals EM when the answer is one label or option: shown once
    others = [m for m in metrics.metric_names(task) if m != primary and not (primary == "exact_match" and m == "f1")]
    head = ["Strategy", f"{part.label[0].upper() + part.label[1:]} [95% CI]"] + \
           [metrics.get_metric(m).label for m in others] + \
           ["One-time $", "$ / 1k queries", "Latency p50 s", "Latency p95 s", "Memory MB (cell)", "Artifact"]
    rows, data = [], []
    for c in part.cells:
        if c["status"] != "ok" or "metrics" not in c:
            rows.append([_label(c, part.seeds), "failed"] + [""] * (len(head) - 2))
            data.append(None)
            continue
        d = diag.get(c["strategy"]) or {}
        costs = d.get("costs") or {}
        lat = d.get("latency") or {}
        p, a = c.get("prepare") or {}, c.get("answer") or {}
        peak = cell_memory_mb(c)
        per1k = costs["per_query_usd"] * 1000 if costs.get("per_query_usd") is not None else None
        vals = {"acc": c["metrics"][primary]["mean"], "one": costs.get("one_time_usd"), "per1k": per1k,
                "p50": lat.get("p50", a.get("latency_p50_s")), "p95": lat.get("p95", a.get("latency_p95_s")),
                "peak": peak, "art": p.get("artifact_bytes", 0) if p else None}
        data.append(vals)
        rows.append([_label(c, part.seeds), fmt_ci(c["metrics"][primary])]
                    + [fmt_num((c["metrics"].get(m) or {}).get("mean"), "{:.3f}") for m in others]
                    + [fmt_usd(vals["one"]), fmt_usd(per1k), fmt_num(vals["p50"]), fmt_num(vals["p95"]),
                       fmt_num(peak, "{:.0f}"), fmt_size(vals["art"])])
    n_other = len(others)
    live = [i for i, v in enumerate(data) if v]
    sub = [data[i] for i in live]
    marks = _best(sub, 1, lambda v: v["acc"], lowest=not metrics.get_metric(primary).higher_is_better)
    for col, key in ((2 + n_other, "one"), (3 + n_other, "per1k"), (4 + n_other, "p50"), (5 + n_other, "p95"),
                     (6 + n_other, "peak"), (7 + n_other, "art")):
        marks |= _best(sub, col, lambda v, k=key: v[k])
    doc.table(head, rows, {(live[i], col) for i, col in marks})
    doc.p(f"Best value of each column in bold. One-time cost is preparation (indexing or training; a model "
          f"reused from another strategy counts with its training); latency is what one query waits at "
          f"generation batch size {part.results.get('config', {}).get('batch_size', '?')}.", "note")
    doc.ul([f"{c['strategy']} {c['status']} (seed {c.get('seed')}): {c.get('error')}"
            for c in part.cells if c["status"] != "ok"])  # failed, or unfinished after an interrupted run


def significance(doc: Doc, part: Part) -> None:
    """Each strategy against the most accurate and against zero-shot, on the same questions."""
    doc.h(3, "Paired significance")
    cmp, primary = part.analysis["comparisons"], part.primary
    if not cmp["rows"]:
        doc.p("Fewer than two strategies finished: nothing to compare.")
        return
    graded = not metrics.get_metric(primary).binary
    doc.p(f"Each strategy against the most accurate ({cmp['best']}) and against zero-shot, on the same "
          f"questions. Exact match: McNemar's exact test on the questions only one side got right; "
          + ("token F1: paired bootstrap (10,000 resamples). " if graded else "")
          + "p-values Holm-corrected across the comparisons of each test; verdict at 5%.")
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
        head += ["F1 difference [95% CI]", "Bootstrap p", "Holm p"]
    head += ["EM difference", "Only it / only other right", "McNemar p", "Holm p", f"Verdict ({part.label})"]
    doc.table(head, rows)
    if not any(r["significant"] for r in cmp["rows"]):
        doc.p("**No significant difference** between any two strategies compared here.")


def _entries(part: Part) -> tuple[list[dict], list[Costs]]:
    dc, entries, costs = part.decision, [], []
    for c in part.cells:
        d = part.diag.get(c["strategy"])
        if not d or not d["costs"] or d["costs"]["per_query_usd"] is None or "metrics" not in c:
            continue
        co = Costs(**d["costs"])
        costs.append(co)
        m = c["metrics"][part.primary]
        entries.append({"strategy": c["strategy"], "acc": m["mean"], "low": m["low"], "high": m["high"],
                        "monthly": co.monthly(dc.monthly_queries, dc.refresh_days),
                        "p95": (d.get("latency") or {}).get("p95")})
    return entries, costs


def _cheaper_past(x: dict, costs: list) -> str:
    """The strategy with the lower per-query cost: the cheaper one once volume passes the crossover."""
    if x["total_queries"] is None and x["monthly_queries"] is None:
        return "–"
    by = {c.strategy: c.per_query_usd for c in costs}
    return x["finetune"] if by[x["finetune"]] < by[x["rag"]] else x["rag"]


def cost(doc: Doc, part: Part) -> None:
    """One-time, per-query and monthly costs, and where RAG and fine-tuning break even."""
    dc, a = part.decision, part.analysis
    _, costs = _entries(part)
    doc.h(3, "Cost and break-even")
    if costs:
        doc.table(["Strategy", "One-time $", "$ / 1k queries", f"$ / month at {dc.monthly_queries:,} queries",
                   "Refresh", "Refresh $"],
                  [[co.strategy, fmt_usd(co.one_time_usd), fmt_usd(co.per_query_usd * 1000),
                    fmt_usd(co.monthly(dc.monthly_queries, dc.refresh_days)), co.refresh_kind,
                    fmt_usd(co.refresh_usd)] for co in costs])
        if a["crossovers"]:
            doc.p("RAG against each fine-tuning method: the total query count after which the two have cost "
                  "the same (one-time cost plus per-query cost), and the monthly volume at which their monthly "
                  + (f"costs meet with a refresh every {dc.refresh_days:g} days (re-index against re-train)."
                     if dc.refresh_days else "costs meet (no refresh: the one-time cost is not repeated)."))
            doc.table(["RAG", "Fine-tuning", "Crossover, total queries", "Crossover, queries / month",
                       "Cheaper past the crossover", "Re-index $", "Re-train $"],
                      [[x["rag"], x["finetune"], fmt_queries(x["total_queries"]), fmt_queries(x["monthly_queries"]),
                        _cheaper_past(x, costs), fmt_usd(x["rag_refresh_usd"]), fmt_usd(x["finetune_refresh_usd"])]
                       for x in a["crossovers"]])
        if part.png:
            top = max(dc.monthly_queries * 100, 10_000)
            vols = [10 ** (i / 20) for i in range(0, int(20 * math.log10(top)) + 1)]
            doc.img(plots.break_even(costs, dc.monthly_queries, dc.refresh_days, vols),
                    "Cost per month against queries per month")
    prices = part.results["analysis"]["prices"]
    doc.p(f"Prices: {prices['machine_kind']} machine at ${prices['usd_per_hour']:g}/hour"
          f" (from {Path(prices['source']).name}); every cost is measured seconds times this price.", "note")


def tradeoffs(doc: Doc, part: Part) -> None:
    """Accuracy against monthly cost and against p95 latency, with the Pareto front."""
    entries, _ = _entries(part)
    if not part.png or len(entries) < 2:
        return
    dc = part.decision
    doc.h(3, "Accuracy against cost and latency")
    doc.img(plots.pareto(entries, "monthly", f"$ per month at {dc.monthly_queries:,} queries"
                         + (f", refresh every {dc.refresh_days:g} d" if dc.refresh_days else ""),
                         part.label, logx=True), "Accuracy against monthly cost")
    lat_entries = [e for e in entries if e["p95"] is not None]
    if lat_entries:
        doc.img(plots.pareto(lat_entries, "p95", "p95 latency, seconds", part.label,
                             vline=dc.latency_target_s, vlabel="latency target"), "Accuracy against p95 latency")
    doc.p("Error bars: 95% bootstrap confidence intervals. The dashed line joins the strategies that no "
          "other strategy beats on both axes.", "note")


def latency(doc: Doc, part: Part) -> None:
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
    if part.png:
        split = {}
        for s in diag:
            us = [r["usage"] for r in part.rows if r["strategy"] == s and isinstance(r.get("usage"), dict)
                  and "latency_seconds" in r["usage"]]
            if us:
                split[s] = ([u["latency_seconds"] - u.get("retrieval_seconds", 0) for u in us],
                            [u.get("retrieval_seconds", 0) for u in us])
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


def samples(doc: Doc, part: Part) -> None:
    doc.blocks.append(("samples", part.cells, part.rows))  # HTML only: a few questions side by side


# ---- measurements a decision needs: single-query latency, throughput, memory, sweeps, learning curves ----

def cell_memory_mb(c: dict) -> float | None:
    """The memory the cell itself needed (harness/engine/footprint.py: the base process plus the cell's rise);
    records from before it was measured fall back on the process's peak, an upper bound."""
    mem = c.get("memory") or {}
    if mem.get("cell_mb") is not None:
        return mem["cell_mb"]
    p, a = c.get("prepare") or {}, c.get("answer") or {}
    return max([x for x in (p.get("peak_rss_mb"), a.get("peak_rss_mb")) if x is not None], default=None)


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
        same = f"{pr['same_as_batched']} / {pr['n']}" if pr.get("n") else "–"
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
              and c["probe"]["same_as_batched"] < c["probe"]["n"]]
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


SECTIONS: list[Section] = [recommendation, summary, significance, cost, tradeoffs, latency, single_query, memory,
                           sweeps, learning_curves, training, forgetting, retrieval, samples]


def register_section(section: Section, after: str | None = None) -> Section:
    """Add a section to every report: at the end, or after the section function named `after`."""
    if section in SECTIONS:
        return section
    names = [s.__name__ for s in SECTIONS]
    SECTIONS.insert(names.index(after) + 1 if after in names else len(SECTIONS), section)
    return section
