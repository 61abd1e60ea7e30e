"""Turn a run's records (results.json + predictions.jsonl) into report.md, report.html and summary.csv.

Pure function of the records: it never runs a model, so a report can be rebuilt at any time.
"""
from __future__ import annotations

import csv
import html
import io
import json
import re
from pathlib import Path

from . import metrics
from .records import read_jsonl, write_atomic

METRIC_NAMES = {"exact_match": "EM", "f1": "F1", "contains": "Contains"}


def load_run(run_dir: Path) -> tuple[dict, list[dict]]:
    results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    preds = read_jsonl(run_dir / "predictions.jsonl") if (run_dir / "predictions.jsonl").exists() else []
    return results, preds


def _ci(m: dict | None) -> str:
    if not m or m.get("mean") is None:
        return "–"
    return f"{m['mean']:.3f} [{m['low']:.3f}, {m['high']:.3f}]"


def _num(x, fmt="{:.2f}") -> str:
    return "–" if x is None else fmt.format(x)


def _size(b) -> str:
    if not b:
        return "–"
    for unit in ("B", "KB", "MB", "GB"):
        if b < 1024 or unit == "GB":
            return f"{b:.0f} {unit}" if unit == "B" else f"{b:.1f} {unit}"
        b /= 1024


def _label(cell, seeds) -> str:
    return cell["strategy"] if len(seeds) == 1 else f"{cell['strategy']} (seed {cell['seed']})"


def comparisons(cells: list[dict], preds: list[dict]) -> list[dict]:
    """Paired F1 difference of each strategy against zero-shot on the same questions."""
    by = {}
    for p in preds:
        by.setdefault((p["benchmark"], p["seed"], p["strategy"]), {})[p["id"]] = p["f1"]
    out = []
    for c in cells:
        if c["status"] != "ok" or c["strategy"] == "zero-shot":
            continue
        base = by.get((c["benchmark"], c["seed"], "zero-shot"))
        mine = by.get((c["benchmark"], c["seed"], c["strategy"]))
        if not base or not mine:
            continue
        ids = sorted(set(base) & set(mine))
        d = metrics.paired_bootstrap_diff([mine[i] for i in ids], [base[i] for i in ids])
        d.update(strategy=c["strategy"], benchmark=c["benchmark"], seed=c["seed"],
                 significant=d["low"] > 0 or d["high"] < 0)
        out.append(d)
    return out


def break_even(a: dict, b: dict) -> float | None:
    """Queries after which strategy a (higher one-time cost, lower per-query cost) is cheaper than b."""
    fa, fb = a["prepare"]["usd"], b["prepare"]["usd"]
    va, vb = a["answer"]["usd_per_1k_queries"] / 1000, b["answer"]["usd_per_1k_queries"] / 1000
    if fa <= fb:
        return 0.0 if va <= vb else None
    if va >= vb:
        return None
    return (fa - fb) / (vb - va)


def reading(cells: list[dict], comps: list[dict]) -> list[str]:
    """A short plain-language reading of one benchmark's results, every claim backed by a figure."""
    ok = [c for c in cells if c["status"] == "ok"]
    lines = []
    if not ok:
        return ["No strategy finished; see the failures below."]
    best = max(ok, key=lambda c: c["metrics"]["f1"]["mean"])
    f1 = best["metrics"]["f1"]
    lines.append(f"Most accurate by token F1: **{best['strategy']}** with {f1['mean']:.3f} "
                 f"(95% CI {f1['low']:.3f}–{f1['high']:.3f}); gold answer contained in its output for "
                 f"{best['metrics']['contains']['mean']:.1%} of questions.")
    rivals = [c for c in ok if c is not best and c["metrics"]["f1"]["high"] >= f1["low"]]
    if rivals:
        lines.append("Its interval overlaps with " + ", ".join(c["strategy"] for c in rivals) +
                     ": on these questions that lead is not clearly established.")
    for d in comps:
        verdict = "a significant gain" if d["low"] > 0 else ("a significant loss" if d["high"] < 0
                                                             else "no significant difference")
        lines.append(f"{d['strategy']} vs zero-shot, paired F1 difference {d['mean']:+.3f} "
                     f"[{d['low']:+.3f}, {d['high']:+.3f}]: {verdict}.")
    cheapest = min(ok, key=lambda c: c["answer"]["usd_per_1k_queries"])
    dearest = max(ok, key=lambda c: c["answer"]["usd_per_1k_queries"])
    lines.append(f"Per query, {cheapest['strategy']} is cheapest (${cheapest['answer']['usd_per_1k_queries']:.4f} "
                 f"per 1,000 queries, {cheapest['answer']['prompt_tokens_mean']:.0f} prompt tokens) and "
                 f"{dearest['strategy']} dearest (${dearest['answer']['usd_per_1k_queries']:.4f}, "
                 f"{dearest['answer']['prompt_tokens_mean']:.0f} prompt tokens).")
    rag = next((c for c in ok if c["strategy"] == "rag"), None)
    for ft in ok:
        if rag is None or ft["prepare"].get("artifact") != "adapter":
            continue
        q = break_even(ft, rag)
        gap = ft["metrics"]["f1"]["mean"] - rag["metrics"]["f1"]["mean"]
        if q is None:
            cost = f"{ft['strategy']} never becomes cheaper than rag"
        else:
            cost = f"{ft['strategy']} becomes cheaper than rag after {q:,.0f} queries"
        lines.append(f"{cost} (one-time ${ft['prepare']['usd']:.4f} of training against "
                     f"${rag['prepare']['usd']:.4f} of indexing); its F1 is {gap:+.3f} against rag's.")
    return lines


def _training_extras(p: dict, benchmark: str) -> str:
    """Phases, task mixture and forgetting, for the methods that have them."""
    out = ""
    if p.get("training_reused_from"):
        out += f"; the model {p['training_reused_from']} trained in this run, reused (one-time cost counted there)"
    if p.get("phases"):
        out += "; phases " + " then ".join(f"{ph['task']} ({ph['examples']} examples)" for ph in p["phases"])
    if p.get("mixture"):
        out += "; mixture " + ", ".join(f"{k} {v}" for k, v in p["mixture"].items())
    if p.get("forgetting") is not None:
        out += (f"; {p['task_a']} accuracy {p['task_a_accuracy_after_a']:.3f} after training on it, "
                f"{p['task_a_accuracy_after_b']:.3f} after {benchmark} (forgetting {p['forgetting']:+.3f})")
    return out


def _table(cells, seeds) -> list[list[str]]:
    head = ["Strategy", "EM", "F1", "Contains", "One-time s", "One-time $", "Artifact",
            "Prompt tok/q", "Out tok/q", "Latency p50 s", "Latency p95 s", "$ / 1k q", "Peak MB"]
    rows = [head]
    for c in cells:
        if c["status"] != "ok":
            rows.append([_label(c, seeds), "failed"] + [""] * (len(head) - 2))
            continue
        p, a, m = c["prepare"], c["answer"], c["metrics"]
        rows.append([
            _label(c, seeds), _ci(m["exact_match"]), _ci(m["f1"]), _ci(m["contains"]),
            _num(p["wall_s"], "{:.1f}"), _num(p["usd"], "{:.4f}"), _size(p.get("artifact_bytes")),
            _num(a["prompt_tokens_mean"], "{:.0f}"), _num(a["output_tokens_mean"], "{:.1f}"),
            _num(a["latency_p50_s"]), _num(a["latency_p95_s"]), _num(a["usd_per_1k_queries"], "{:.4f}"),
            _num(max(p["peak_rss_mb"], a["peak_rss_mb"]), "{:.0f}"),
        ])
    return rows


def _md_table(rows) -> str:
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(out)


def render_markdown(results: dict, preds: list[dict]) -> str:
    env, model = results["environment"], results["model"]
    seeds = results["config"]["seeds"]
    out = [f"# Comparison report: {results['run']['id']}", ""]
    out.append(f"Model **{model['name']}** on {env['device']}"
               + (f" ({env['gpu']})" if env.get("gpu") else f" ({env['cpu']}, {env['cores']} cores)")
               + f", dtype {env['dtype']}; git {str(env.get('git_commit'))[:10]}"
               + (" (dirty)" if env.get("git_dirty") else "") + f"; started {results['run']['started']}.")
    out.append("")
    for b in results["benchmarks"]:
        cells = [c for c in results["cells"] if c["benchmark"] == b["name"]]
        comps = comparisons(cells, preds)
        out += [f"## {b['name']}", "",
                f"{b['test_used']} test questions (of {b['test']}), {b['train']} train questions, "
                f"{b['documents']} documents. Source: {b.get('source') or 'local'}; licence {b.get('license') or 'unknown'}.",
                "", "### Reading", ""]
        out += [f"- {line}" for line in reading(cells, comps)]
        out += ["", "### Accuracy, cost and latency", "", _md_table(_table(cells, seeds)), ""]
        rag_cells = [c for c in cells if c.get("retrieval")]
        for c in rag_cells:
            rec = ", ".join(f"{k} {v:.2f}" for k, v in c["retrieval"].items() if v is not None)
            out.append(f"Retrieval ({c['strategy']}): {rec} (gold document among the retrieved chunks).")
        trained = [c for c in cells if c["status"] == "ok" and c["prepare"].get("steps")]
        for c in trained:
            p = c["prepare"]
            out.append(f"Training ({c['strategy']}): {p['train_examples']} examples, {p['steps']} steps, "
                       f"{p['train_tokens']:,} tokens at {p['train_tokens_per_s']} tokens/s, "
                       f"{p['trainable_params']:,} of {p['total_params']:,} parameters trainable; "
                       f"train loss {p['loss_curve'][0]:.3f} → {p['final_train_loss']:.3f}"
                       + (f", held-out loss by epoch {', '.join(f'{x:.3f}' for x in p['eval_loss'])}" if p["eval_loss"] else "")
                       + _training_extras(p, c["benchmark"]) + ".")
        failed = [c for c in cells if c["status"] != "ok"]
        if failed:
            out += ["", "### Failures", ""]
            out += [f"- {c['strategy']} (seed {c['seed']}): {c['error']}" for c in failed]
        out.append("")
    out += ["## How to read the figures", "",
            f"- EM and F1 use SQuAD normalisation on the extracted answer ({results['answer_extraction']}); "
            "Contains asks whether a normalised gold answer appears inside the raw output. Brackets: 95% bootstrap CI.",
            f"- One-time cost is preparation (indexing or training) wall time, priced at "
            f"${results['pricing']['usd_per_hour']}/hour; $ / 1k q prices the measured answering wall time per query.",
            f"- Latency is what one query waits at generation batch size {results['config']['batch_size']}: "
            "the wall time of its batch plus its share of retrieval. Peak MB is the process's resident memory, model included.",
            "- Per-example outputs are in predictions.jsonl; every figure here is computed from results.json and that file.",
            ""]
    return "\n".join(out)


def render_csv(results: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["benchmark", "strategy", "seed", "status", "exact_match", "exact_match_low", "exact_match_high",
                "f1", "f1_low", "f1_high", "contains", "prepare_wall_s", "prepare_usd", "artifact_bytes",
                "prompt_tokens_mean", "output_tokens_mean", "latency_p50_s", "latency_p95_s",
                "usd_per_1k_queries", "peak_rss_mb", "error"])
    for c in results["cells"]:
        if c["status"] != "ok":
            w.writerow([c["benchmark"], c["strategy"], c["seed"], c["status"]] + [""] * 16 + [c["error"]])
            continue
        m, p, a = c["metrics"], c["prepare"], c["answer"]
        w.writerow([c["benchmark"], c["strategy"], c["seed"], "ok",
                    m["exact_match"]["mean"], m["exact_match"]["low"], m["exact_match"]["high"],
                    m["f1"]["mean"], m["f1"]["low"], m["f1"]["high"], m["contains"]["mean"],
                    p["wall_s"], p["usd"], p.get("artifact_bytes", 0), a["prompt_tokens_mean"],
                    a["output_tokens_mean"], a["latency_p50_s"], a["latency_p95_s"],
                    a["usd_per_1k_queries"], max(p["peak_rss_mb"], a["peak_rss_mb"]), ""])
    return buf.getvalue()


def _svg_f1(cells) -> str:
    """Horizontal bars of F1 with their 95% CI as whiskers."""
    ok = [c for c in cells if c["status"] == "ok"]
    if not ok:
        return ""
    w, row, left = 560, 28, 130
    top = max(c["metrics"]["f1"]["high"] for c in ok) or 1.0
    scale = (w - left - 70) / top  # room for the value printed after the whisker
    parts = [f'<svg width="{w}" height="{row * len(ok) + 30}" role="img" aria-label="F1 by strategy">']
    for i, c in enumerate(ok):
        m = c["metrics"]["f1"]
        y = 10 + i * row
        parts.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">{html.escape(c["strategy"])}</text>')
        parts.append(f'<rect x="{left}" y="{y + 3}" width="{m["mean"] * scale:.1f}" height="16" fill="#4c78a8"/>')
        x1, x2 = left + m["low"] * scale, left + m["high"] * scale
        parts.append(f'<line x1="{x1:.1f}" x2="{x2:.1f}" y1="{y + 11}" y2="{y + 11}" stroke="#222" stroke-width="2"/>')
        parts.append(f'<text x="{x2 + 6:.1f}" y="{y + 15}">{m["mean"]:.3f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(results: dict, preds: list[dict]) -> str:
    seeds = results["config"]["seeds"]
    e = html.escape
    body = [f"<h1>Comparison report: {e(results['run']['id'])}</h1>"]
    env, model = results["environment"], results["model"]
    body.append(f"<p>Model <b>{e(model['name'])}</b> on {e(env['device'])} "
                f"({e(env.get('gpu') or env['cpu'])}), dtype {e(env['dtype'])}; started {e(results['run']['started'])}.</p>")
    for b in results["benchmarks"]:
        cells = [c for c in results["cells"] if c["benchmark"] == b["name"]]
        comps = comparisons(cells, preds)
        body.append(f"<h2>{e(b['name'])}</h2><p>{b['test_used']} test questions, {b['train']} train questions, "
                    f"{b['documents']} documents.</p><h3>Reading</h3><ul>")
        for line in reading(cells, comps):
            text = e(line).replace("**", "")
            body.append(f"<li>{text}</li>")
        body.append("</ul><h3>Token F1 with 95% CI</h3>" + _svg_f1(cells))
        rows = _table(cells, seeds)
        body.append("<h3>Accuracy, cost and latency</h3><table><thead><tr>"
                    + "".join(f"<th>{e(h)}</th>" for h in rows[0]) + "</tr></thead><tbody>")
        for r in rows[1:]:
            cells_html = [re.sub(r" (\[[^\]]*\])$", r" <small>\1</small>", e(x)) for x in r]
            body.append("<tr>" + "".join(f"<td>{x}</td>" for x in cells_html) + "</tr>")
        body.append("</tbody></table>")
        for c in cells:
            if c.get("retrieval"):
                rec = ", ".join(f"{k} {v:.2f}" for k, v in c["retrieval"].items() if v is not None)
                body.append(f"<p>Retrieval ({e(c['strategy'])}): {e(rec)}</p>")
            if c["status"] != "ok":
                body.append(f"<p class=fail>{e(c['strategy'])} failed: {e(c['error'])}</p>")
        body.append("<h3>Sample answers</h3><table><thead><tr><th>Question</th><th>Gold</th>"
                    + "".join(f"<th>{e(c['strategy'])}</th>" for c in cells if c["status"] == "ok")
                    + "</tr></thead><tbody>")
        by = {(p["strategy"], p["seed"], p["id"]): p for p in preds if p["benchmark"] == b["name"]}
        first = [p for p in preds if p["benchmark"] == b["name"]]
        qids = list(dict.fromkeys(p["id"] for p in first))[:8]
        for qid in qids:
            q = next(p for p in first if p["id"] == qid)
            tds = []
            for c in cells:
                if c["status"] != "ok":
                    continue
                p = by.get((c["strategy"], c["seed"], qid))
                cls = ' class="hit"' if p and p["f1"] > 0.5 else ""
                tds.append(f"<td{cls}>{e(p['extracted']) if p else ''}</td>")
            body.append(f"<tr><td>{e(q['question'])}</td><td>{e(' | '.join(q['answers']))}</td>{''.join(tds)}</tr>")
        body.append("</tbody></table>")
    body.append(f"<p class=note>EM and F1 on the extracted answer ({e(results['answer_extraction'])}); "
                f"latency at generation batch size {results['config']['batch_size']}; prices at "
                f"${results['pricing']['usd_per_hour']}/hour.</p>")
    style = ("body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}"
             "table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:4px 8px;"
             "text-align:left;vertical-align:top}th{background:#f3f3f3}td.hit{background:#e3f4e3}"
             "td small{color:#666;white-space:nowrap}.fail{color:#a00}.note{color:#555}svg text{font:12px system-ui,sans-serif}")
    return (f"<!doctype html><html><head><meta charset=utf-8><title>{e(results['run']['id'])}</title>"
            f"<meta http-equiv=Content-Security-Policy content=\"default-src 'none'; style-src 'unsafe-inline'\">"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")


def write_reports(run_dir: Path) -> None:
    results, preds = load_run(run_dir)
    write_atomic(run_dir / "report.md", render_markdown(results, preds))
    write_atomic(run_dir / "report.html", render_html(results, preds))
    write_atomic(run_dir / "summary.csv", render_csv(results))


def console_table(run_dir: Path) -> str:
    results, _ = load_run(run_dir)
    lines = []
    for b in results["benchmarks"]:
        cells = [c for c in results["cells"] if c["benchmark"] == b["name"]]
        rows = _table(cells, results["config"]["seeds"])
        keep = [0, 1, 2, 3, 4, 7, 10, 11]
        rows = [[r[i] if i < len(r) else "" for i in keep] for r in rows]
        widths = [max(len(r[i]) for r in rows) for i in range(len(keep))]
        lines.append(f"{b['name']} ({b['test_used']} test questions)")
        for r in rows:
            lines.append("  ".join(x.ljust(wd) for x, wd in zip(r, widths)))
    return "\n".join(lines)
