"""Turn a run's records (results.json + predictions.jsonl) into report.html, report.md, summary.csv
and an updated results.json.

A pure function of the records and the benchmark's gold answers: every metric and statistic is
recomputed (harness.analysis.recompute), no model is run, so a report can be rebuilt at any time. Both
documents are built from one list of blocks, so they always say the same thing.
"""
from __future__ import annotations

import base64
import csv
import html
import io
import math
import re
from pathlib import Path

from harness.analysis import metrics
from harness.analysis.cost import Costs
from harness.analysis.decision import DecisionConfig
from harness.analysis.recompute import LABELS, analyze
from harness.core.records import write_atomic, write_json
from harness.report import plots

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


# ---- formatting -------------------------------------------------------------------------------

def _num(x, fmt="{:.2f}") -> str:
    return "–" if x is None else fmt.format(x)


def _usd(x) -> str:
    if x is None:
        return "–"
    if x == 0:
        return "$0"
    return f"${x:,.2f}" if abs(x) >= 1 else f"${x:.4f}" if abs(x) >= 1e-4 else f"${x:.2e}"


def _size(b) -> str:
    if b is None:
        return "–"
    if b == 0:
        return "none"
    for unit in ("B", "KB", "MB", "GB"):
        if b < 1024 or unit == "GB":
            return f"{b:.0f} {unit}" if unit == "B" else f"{b:.1f} {unit}"
        b /= 1024


def _ci(m: dict | None) -> str:
    if not m or m.get("mean") is None:
        return "–"
    return f"{m['mean']:.3f} [{m['low']:.3f}, {m['high']:.3f}]"


def _p(p) -> str:
    return "–" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")


def _queries(q) -> str:
    return "never" if q is None else f"{q:,.0f}"


# ---- content ----------------------------------------------------------------------------------

class Doc:
    """Blocks shared by the Markdown and HTML renderers. Text is plain; **x** marks bold."""

    def __init__(self):
        self.blocks: list[tuple] = []

    def h(self, level, text):
        self.blocks.append(("h", level, text))

    def p(self, text, cls=""):
        self.blocks.append(("p", text, cls))

    def ul(self, items):
        if items:
            self.blocks.append(("ul", list(items)))

    def table(self, head, rows, best=None):
        """best: set of (row index, column index) to mark as the best value of its column."""
        self.blocks.append(("table", head, rows, best or set()))

    def img(self, png: bytes, alt: str):
        self.blocks.append(("img", png, alt))


def _label(c, seeds) -> str:
    return c["strategy"] if len(seeds) == 1 else f"{c['strategy']} (seed {c['seed']})"


def _best(rows, col, key, lowest=True) -> set:
    vals = [(i, key(r)) for i, r in enumerate(rows)]
    vals = [(i, v) for i, v in vals if v is not None]
    if not vals:
        return set()
    target = (min if lowest else max)(v for _, v in vals)
    return {(i, col) for i, v in vals if v == target}


def _summary(doc, cells, seeds, primary, diag):
    label = LABELS[primary]
    others = [m for m in metrics.METRICS if m != primary and not (primary == "exact_match" and m == "f1")]
    head = ["Strategy", f"{label[0].upper() + label[1:]} [95% CI]"] + [{"exact_match": "EM", "f1": "F1",
                                                              "contains": "Contains"}[m] for m in others] + \
           ["One-time $", "$ / 1k queries", "Latency p50 s", "Latency p95 s", "Peak memory MB", "Artifact"]
    ok, rows, data = [], [], []
    for c in cells:
        if c["status"] != "ok" or "metrics" not in c:
            rows.append([_label(c, seeds), "failed"] + [""] * (len(head) - 2))
            data.append(None)
            continue
        d = diag.get(c["strategy"]) or {}
        costs = d.get("costs") or {}
        lat = d.get("latency") or {}
        p, a = c.get("prepare") or {}, c.get("answer") or {}
        peak = max([x for x in (p.get("peak_rss_mb"), a.get("peak_rss_mb")) if x is not None], default=None)
        per1k = costs["per_query_usd"] * 1000 if costs.get("per_query_usd") is not None else None
        vals = {"acc": c["metrics"][primary]["mean"], "one": costs.get("one_time_usd"), "per1k": per1k,
                "p50": lat.get("p50", a.get("latency_p50_s")), "p95": lat.get("p95", a.get("latency_p95_s")), "peak": peak,
                "art": p.get("artifact_bytes", 0) if p else None}
        data.append(vals)
        rows.append([_label(c, seeds), _ci(c["metrics"][primary])] + [_num(c["metrics"][m]["mean"], "{:.3f}")
                                                                      for m in others] +
                    [_usd(vals["one"]), _usd(per1k), _num(vals["p50"]), _num(vals["p95"]), _num(peak, "{:.0f}"),
                     _size(vals["art"])])
        ok.append(c)
    best = set()
    n_other = len(others)
    live = [i for i, v in enumerate(data) if v]
    sub = [data[i] for i in live]
    marks = _best(sub, 1, lambda v: v["acc"], lowest=False)
    for col, key in ((2 + n_other, "one"), (3 + n_other, "per1k"), (4 + n_other, "p50"), (5 + n_other, "p95"),
                     (6 + n_other, "peak"), (7 + n_other, "art")):
        marks |= _best(sub, col, lambda v, k=key: v[k])
    best = {(live[i], col) for i, col in marks}
    doc.table(head, rows, best)


def _significance(doc, cmp, primary):
    rows = []
    graded = primary == "f1"
    for r in cmp["rows"]:
        em = r["em"]
        row = [r["strategy"], r["baseline"], str(r["n"])]
        if graded:
            f = r["f1"]
            row += [f"{f['diff']:+.3f} [{f['low']:+.3f}, {f['high']:+.3f}]", _p(f["p"]), _p(f["p_holm"])]
        row += [f"{em['diff']:+.3f}", f"{em['only_a']} / {em['only_b']}", _p(em["p"]), _p(em["p_holm"]), r["verdict"]]
        rows.append(row)
    head = ["Strategy", "Against", "Questions"]
    if graded:
        head += ["F1 difference [95% CI]", "Bootstrap p", "Holm p"]
    head += ["EM difference", "Only it / only other right", "McNemar p", "Holm p", f"Verdict ({LABELS[primary]})"]
    if rows:
        doc.table(head, rows)


def _benchmark(doc, results, b, rows, analysis, png: bool):
    name = b["name"]
    seeds = results.get("config", {}).get("seeds") or [0]
    primary = analysis["primary_metric"][name]
    label = LABELS[primary]
    dc = DecisionConfig.from_dict(analysis["decision"])
    doc.h(2, name)
    doc.p(f"Task {b.get('task', '?')}: {b.get('test_used', '?')} test questions (of {b.get('test', '?')}), "
          f"{b.get('train', '?')} train questions, {b.get('documents', '?')} documents. Source: "
          f"{b.get('source') or 'local'}; licence {b.get('license') or 'unknown'}. Headline metric: {label}.")
    for seed, a in analysis["benchmarks"][name].items():
        cells = [c for c in results["cells"] if c["benchmark"] == name and str(c.get("seed")) == seed]
        brows = [r for r in rows if r["benchmark"] == name and str(r["seed"]) == seed]
        if len(analysis["benchmarks"][name]) > 1:
            doc.h(2, f"{name}, seed {seed}")
        if a["gold_note"]:
            doc.p(a["gold_note"], "fail")
        diag = a["strategies"]
        rec = a["recommendation"]
        doc.h(3, "Recommendation")
        doc.ul(rec["why"])
        doc.p("**What would change the answer**")
        doc.ul(rec["changes"])

        doc.h(3, "Summary")
        _summary(doc, cells, seeds, primary, diag)
        doc.p(f"Best value of each column in bold. One-time cost is preparation (indexing or training; a model "
              f"reused from another strategy counts with its training); latency is what one query waits at "
              f"generation batch size {results.get('config', {}).get('batch_size', '?')}.", "note")
        doc.ul([f"{c['strategy']} {c['status']} (seed {c.get('seed')}): {c.get('error')}"
                for c in cells if c["status"] != "ok"])  # failed, or unfinished after an interrupted run

        doc.h(3, "Paired significance")
        cmp = a["comparisons"]
        if cmp["rows"]:
            doc.p(f"Each strategy against the most accurate ({cmp['best']}) and against zero-shot, on the same "
                  f"questions. Exact match: McNemar's exact test on the questions only one side got right; "
                  + ("token F1: paired bootstrap (10,000 resamples). " if primary == "f1" else "")
                  + "p-values Holm-corrected across the comparisons of each test; verdict at 5%.")
            _significance(doc, cmp, primary)
            sig = [r for r in cmp["rows"] if r["significant"]]
            if not sig:
                doc.p("**No significant difference** between any two strategies compared here.")
        else:
            doc.p("Fewer than two strategies finished: nothing to compare.")

        entries = []
        costs = []
        for c in cells:
            d = diag.get(c["strategy"])
            if not d or not d["costs"] or d["costs"]["per_query_usd"] is None or "metrics" not in c:
                continue
            co = Costs(**d["costs"])
            costs.append(co)
            m = c["metrics"][primary]
            entries.append({"strategy": c["strategy"], "acc": m["mean"], "low": m["low"], "high": m["high"],
                            "monthly": co.monthly(dc.monthly_queries, dc.refresh_days),
                            "p95": (d.get("latency") or {}).get("p95")})
        doc.h(3, "Cost and break-even")
        if costs:
            doc.table(["Strategy", "One-time $", "$ / 1k queries", f"$ / month at {dc.monthly_queries:,} queries",
                       "Refresh", "Refresh $"],
                      [[co.strategy, _usd(co.one_time_usd), _usd(co.per_query_usd * 1000),
                        _usd(co.monthly(dc.monthly_queries, dc.refresh_days)), co.refresh_kind,
                        _usd(co.refresh_usd)] for co in costs])
            if a["crossovers"]:
                doc.p("RAG against each fine-tuning method: the total query count after which the two have cost "
                      "the same (one-time cost plus per-query cost), and the monthly volume at which their monthly "
                      + (f"costs meet with a refresh every {dc.refresh_days:g} days (re-index against re-train)."
                         if dc.refresh_days else "costs meet (no refresh: the one-time cost is not repeated)."))
                doc.table(["RAG", "Fine-tuning", "Crossover, total queries", "Crossover, queries / month",
                           "Cheaper past the crossover", "Re-index $", "Re-train $"],
                          [[x["rag"], x["finetune"], _queries(x["total_queries"]), _queries(x["monthly_queries"]),
                            _cheaper_past(x, costs), _usd(x["rag_refresh_usd"]), _usd(x["finetune_refresh_usd"])]
                           for x in a["crossovers"]])
            if png:
                top = max(dc.monthly_queries * 100, 10_000)
                vols = [10 ** (i / 20) for i in range(0, int(20 * math.log10(top)) + 1)]
                doc.img(plots.break_even(costs, dc.monthly_queries, dc.refresh_days, vols),
                        "Cost per month against queries per month")
        doc.p(f"Prices: {analysis['prices']['machine_kind']} machine at ${analysis['prices']['usd_per_hour']:g}/hour"
              f" (from {Path(analysis['prices']['source']).name}); every cost is measured seconds times this price.",
              "note")

        if png and len(entries) > 1:
            doc.h(3, "Accuracy against cost and latency")
            doc.img(plots.pareto(entries, "monthly", f"$ per month at {dc.monthly_queries:,} queries"
                                 + (f", refresh every {dc.refresh_days:g} d" if dc.refresh_days else ""),
                                 label, logx=True), "Accuracy against monthly cost")
            lat_entries = [e for e in entries if e["p95"] is not None]
            if lat_entries:
                doc.img(plots.pareto(lat_entries, "p95", "p95 latency, seconds", label,
                                     vline=dc.latency_target_s, vlabel="latency target"),
                        "Accuracy against p95 latency")
            doc.p("Error bars: 95% bootstrap confidence intervals. The dashed line joins the strategies that no "
                  "other strategy beats on both axes.", "note")

        doc.h(3, "Latency")
        lat_rows = [[s, _num(d["latency"]["p50"]), _num(d["latency"]["p95"]), _num(d["latency"]["retrieval_p50"], "{:.4f}"),
                     _num(d["latency"]["retrieval_p95"], "{:.4f}"), _num(d["latency"]["generation_p50"]),
                     _num(d["latency"]["generation_p95"])] for s, d in diag.items() if d.get("latency")]
        if lat_rows:
            doc.table(["Strategy", "p50 s", "p95 s", "Retrieval p50 s", "Retrieval p95 s", "Generation p50 s",
                       "Generation p95 s"], lat_rows)
            if png:
                split = {}
                for s in diag:
                    us = [r["usage"] for r in brows if r["strategy"] == s and isinstance(r.get("usage"), dict)
                          and "latency_seconds" in r["usage"]]
                    if us:
                        split[s] = ([u["latency_seconds"] - u.get("retrieval_seconds", 0) for u in us],
                                    [u.get("retrieval_seconds", 0) for u in us])
                doc.img(plots.latency(split), "Per-query latency, generation and retrieval")
        else:
            doc.p("No per-query timing in predictions.jsonl.")

        trained = [c for c in cells if c["status"] == "ok" and (c.get("prepare") or {}).get("loss_curve")]
        if trained:
            doc.h(3, "Training")
            doc.ul(_training_line(c) for c in trained)
            curves = {}
            for c in trained:
                p = c["prepare"]
                if p.get("training_reused_from"):
                    continue
                users = [x["strategy"] for x in trained if x["prepare"].get("training_reused_from") == c["strategy"]]
                curves[c["strategy"] + (f" (also {', '.join(users)})" if users else "")] = p
            if png and curves:
                doc.img(plots.losses(curves), "Training loss curves")

        forgot = [c for c in cells if c["status"] == "ok" and c.get("forgetting")]
        if forgot:
            doc.h(3, "Forgetting")
            doc.p("A general task the strategy was not trained on, scored on the base model and on the tuned "
                  "model (lm-eval bridge); a negative change is knowledge lost by fine-tuning.")
            rows = []
            for c in forgot:
                f = c["forgetting"]
                if "error" in f:
                    rows.append([c["strategy"], f.get("task", ""), "", "", f"check failed: {f['error']}", ""])
                else:
                    rows.append([c["strategy"], f"{f['task']} ({f.get('metric', '')})", _num(f["base"], "{:.3f}"),
                                 _num(f["tuned"], "{:.3f}"), _num(f["delta"], "{:+.3f}"), str(f.get("n", ""))])
            doc.table(["Strategy", "Task (metric)", "Base", "Tuned", "Change", "n"], rows)

        rag = {s: d["retrieval"] for s, d in diag.items() if d.get("retrieval")}
        if rag:
            doc.h(3, "Retrieval diagnostics")
            ks = sorted({k for r in rag.values() for k in r["recall"]}, key=lambda k: int(k.split("@")[1]))
            doc.table(["Strategy"] + ks + [f"{label} when gold retrieved (n)", f"{label} when gold missed (n)"],
                      [[s] + [_num(r["recall"].get(k)) for k in ks] +
                       [f"{_num(r['acc_gold_retrieved'], '{:.3f}')} ({r['n_gold_retrieved']})",
                        f"{_num(r['acc_gold_missed'], '{:.3f}')} ({r['n_gold_missed']})"] for s, r in rag.items()])
            if png:
                doc.img(plots.retrieval(rag, label), "Recall at k and accuracy by retrieval outcome")
        doc.blocks.append(("samples", cells, brows))  # HTML only: a few questions side by side


def _cheaper_past(x: dict, costs: list) -> str:
    """The strategy with the lower per-query cost: the cheaper one once volume passes the crossover."""
    if x["total_queries"] is None and x["monthly_queries"] is None:
        return "–"
    by = {c.strategy: c.per_query_usd for c in costs}
    return x["finetune"] if by[x["finetune"]] < by[x["rag"]] else x["rag"]


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


def build(results: dict, rows: list[dict], png: bool = True) -> Doc:
    doc = Doc()
    run, env, model = results.get("run", {}), results.get("environment", {}), results.get("model", {})
    doc.h(1, f"Comparison report: {run.get('id', '?')}")
    where = env.get("gpu") or (f"{env.get('cpu')}, {env.get('cores')} cores" if env.get("cpu") else "?")
    doc.p(f"Model **{model.get('name', '?')}** on {env.get('device', '?')} ({where}), dtype {env.get('dtype', '?')}; "
          f"git {str(env.get('git_commit'))[:10]}{' (dirty)' if env.get('git_dirty') else ''}; "
          f"started {run.get('started', '?')}. Decision inputs: "
          f"{DecisionConfig.from_dict(results['analysis']['decision']).describe()}.")
    for b in results["benchmarks"]:
        _benchmark(doc, results, b, rows, results["analysis"], png)
    doc.h(2, "How to read the figures")
    doc.ul([
        f"Answers are scored after extraction ({results.get('answer_extraction', metrics.EXTRACTION_RULE)}). EM "
        "and F1 use SQuAD normalisation; Contains asks whether a normalised gold answer appears in the raw output. "
        "Brackets: 95% bootstrap confidence intervals.",
        "Every figure is recomputed from predictions.jsonl and the benchmark's gold answers by `harness report`; "
        "costs are measured seconds (or tokens, for hosted models) times the price table.",
        "Recommendation rule: among strategies meeting the latency target, those not significantly less accurate "
        "than the best (Holm-corrected paired test at 5%) compete on cost per month; the cheapest wins.",
    ])
    return doc


# ---- renderers --------------------------------------------------------------------------------

def _md_cell(x: str) -> str:
    return x.replace("|", "\\|").replace("\n", " ")


def render_markdown(doc: Doc) -> str:
    out = []
    for blk in doc.blocks:
        kind = blk[0]
        if kind == "h":
            out += ["#" * blk[1] + " " + blk[2], ""]
        elif kind == "p":
            out += [blk[1], ""]
        elif kind == "ul":
            out += [f"- {x}" for x in blk[1]] + [""]
        elif kind == "table":
            _, head, rows, best = blk
            out.append("| " + " | ".join(_md_cell(h) for h in head) + " |")
            out.append("|" + "---|" * len(head))
            for i, r in enumerate(rows):
                out.append("| " + " | ".join(f"**{_md_cell(x)}**" if (i, j) in best and x else _md_cell(x)
                                             for j, x in enumerate(r)) + " |")
            out.append("")
        elif kind == "img":
            out += [f"*Figure in report.html: {blk[2]}.*", ""]
    return "\n".join(out)


def _inline(text: str) -> str:
    """Escape, then turn **x** into bold: the markup is added after escaping, so text cannot inject any."""
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(text))
    return re.sub(r"`([^`<>]+)`", r"<code>\1</code>", text)


def _samples_html(cells, brows) -> str:
    e = html.escape
    ok = [c for c in cells if c["status"] == "ok" and "metrics" in c]
    by = {(r["strategy"], r["id"]): r for r in brows}
    qids = list(dict.fromkeys(r["id"] for r in brows))[:8]
    if not qids:
        return ""
    out = ["<h3>Sample answers</h3><div class=wide><table><thead><tr><th>Question</th><th>Gold</th>"
           + "".join(f"<th>{e(c['strategy'])}</th>" for c in ok) + "</tr></thead><tbody>"]
    for qid in qids:
        q = next(r for r in brows if r["id"] == qid)
        tds = []
        for c in ok:
            r = by.get((c["strategy"], qid))
            cls = ' class="hit"' if r and r["f1"] > 0.5 else ""
            tds.append(f"<td{cls}>{e(r['extracted']) if r else ''}</td>")
        out.append(f"<tr><td>{e(q['question'])}</td><td>{e(' | '.join(map(str, q['answers'])))}</td>{''.join(tds)}</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


STYLE = (
    "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;color:#222}"
    "h2{border-bottom:2px solid #4c78a8;padding-bottom:.2em;margin-top:2em}h3{margin-top:1.6em}"
    "table{border-collapse:collapse;margin:.5em 0 1em;font-size:13px}"
    "th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}"
    "th{background:#f3f3f3}td.best{font-weight:bold;background:#fff4d6}td.hit{background:#e3f4e3}"
    "td small{color:#666;white-space:nowrap}.fail{color:#a00}.note{color:#555;font-size:12.5px}"
    ".wide{overflow-x:auto}img{max-width:100%;height:auto;display:block;margin:.5em 0 1em}"
    "ul.rec li{margin:.2em 0}"
)


def render_html(doc: Doc, title: str) -> str:
    e = html.escape
    body = []
    for blk in doc.blocks:
        kind = blk[0]
        if kind == "samples":
            body.append(_samples_html(blk[1], blk[2]))
        elif kind == "h":
            body.append(f"<h{blk[1]}>{_inline(blk[2])}</h{blk[1]}>")
        elif kind == "p":
            cls = f" class={blk[2]}" if blk[2] else ""
            body.append(f"<p{cls}>{_inline(blk[1])}</p>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{_inline(x)}</li>" for x in blk[1]) + "</ul>")
        elif kind == "table":
            _, head, rows, best = blk
            t = ["<div class=wide><table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr></thead><tbody>"]
            for i, r in enumerate(rows):
                tds = []
                for j, x in enumerate(r):
                    x = re.sub(r" (\[[^\]]*\])$", r" <small>\1</small>", e(x))
                    tds.append(f"<td class=best>{x}</td>" if (i, j) in best and x else f"<td>{x}</td>")
                t.append("<tr>" + "".join(tds) + "</tr>")
            t.append("</tbody></table></div>")
            body.append("".join(t))
        elif kind == "img":
            data = base64.b64encode(blk[1]).decode("ascii")
            body.append(f'<img alt="{e(blk[2])}" src="data:image/png;base64,{data}">')
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{e(title)}</title>"
            f"<meta http-equiv=Content-Security-Policy content=\"{CSP}\">"
            f"<meta name=viewport content=\"width=device-width,initial-scale=1\">"
            f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n")


CSV_HEAD = ["benchmark", "strategy", "seed", "status", "exact_match", "exact_match_low", "exact_match_high",
            "f1", "f1_low", "f1_high", "contains", "prepare_wall_s", "prepare_usd", "artifact_bytes",
            "prompt_tokens_mean", "output_tokens_mean", "latency_p50_s", "latency_p95_s",
            "usd_per_1k_queries", "peak_rss_mb", "error",
            # added with the decision report; older readers of this file see the same first columns
            "primary_metric", "accuracy", "accuracy_low", "accuracy_high", "one_time_usd", "usd_per_month",
            "refresh", "refresh_usd"]


def render_csv(results: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_HEAD)
    a = results["analysis"]
    dc = DecisionConfig.from_dict(a["decision"])
    for c in results["cells"]:
        if c["status"] != "ok" or "metrics" not in c:
            w.writerow([c["benchmark"], c["strategy"], c.get("seed"), c["status"]] + [""] * 16
                       + [c.get("error") or ""] + [""] * 8)
            continue
        primary = a["primary_metric"][c["benchmark"]]
        d = a["benchmarks"][c["benchmark"]][str(c.get("seed"))]["strategies"].get(c["strategy"], {})
        co = Costs(**d["costs"]) if d.get("costs") else None
        lat = d.get("latency") or {}
        m, p, ans = c["metrics"], c.get("prepare") or {}, c.get("answer") or {}
        peak = max([x for x in (p.get("peak_rss_mb"), ans.get("peak_rss_mb")) if x is not None], default="")
        per1k = co.per_query_usd * 1000 if co and co.per_query_usd is not None else ""
        w.writerow([c["benchmark"], c["strategy"], c.get("seed"), "ok",
                    m["exact_match"]["mean"], m["exact_match"]["low"], m["exact_match"]["high"],
                    m["f1"]["mean"], m["f1"]["low"], m["f1"]["high"], m["contains"]["mean"],
                    p.get("wall_s", ""),
                    p["wall_s"] * a["prices"]["usd_per_hour"] / 3600 if p.get("wall_s") is not None else "",
                    p.get("artifact_bytes", 0) if p else "", ans.get("prompt_tokens_mean", ""),
                    ans.get("output_tokens_mean", ""), lat.get("p50", ""), lat.get("p95", ""), per1k, peak, "",
                    primary, m[primary]["mean"], m[primary]["low"], m[primary]["high"],
                    co.one_time_usd if co else "",
                    co.monthly(dc.monthly_queries, dc.refresh_days) if co and co.per_query_usd is not None else "",
                    co.refresh_kind if co else "", co.refresh_usd if co else ""])
    return buf.getvalue()


def write_reports(run_dir: Path, prices=None, decision: dict | None = None) -> dict:
    """Recompute everything from the records and write all four formats; returns the new results."""
    run_dir = Path(run_dir)
    results, rows = analyze(run_dir, prices, decision)
    doc = build(results, rows)
    write_atomic(run_dir / "report.md", render_markdown(doc))
    write_atomic(run_dir / "report.html", render_html(doc, f"Comparison report: {results['run'].get('id', run_dir.name)}"))
    write_atomic(run_dir / "summary.csv", render_csv(results))
    write_json(run_dir / "results.json", results)
    return results


def console_table(run_dir: Path) -> str:
    """The summary tables as plain text, for the terminal after a run."""
    results, rows = analyze(Path(run_dir))
    doc = build(results, rows, png=False)
    lines, name, last = [], None, None
    for blk in doc.blocks:
        if blk[0] == "h" and blk[1] == 2:
            name = blk[2]
        if blk[0] == "table" and "Latency p95 s" in blk[1] and "One-time $" in blk[1]:
            head, body = blk[1], blk[2]
            keep = [0, 1, head.index("One-time $"), head.index("$ / 1k queries"), head.index("Latency p95 s")]
            t = [[r[i] if i < len(r) else "" for i in keep] for r in [head] + body]
            widths = [max(len(r[i]) for r in t) for i in range(len(keep))]
            lines.append(str(name))
            lines += ["  ".join(x.ljust(wd) for x, wd in zip(r, widths)) for r in t]
        if blk[0] == "ul" and last == "Recommendation":
            lines.append("Recommendation: " + " ".join(blk[1][:2]).replace("**", ""))
        if blk[0] == "h":
            last = blk[2]
    return "\n".join(lines)
