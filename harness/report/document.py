"""Turn a run's records (results.json + predictions.jsonl) into report.html, report.md, summary.csv
and an updated results.json.

A pure function of the records and the benchmark's gold answers: every metric and statistic is
recomputed (harness/analysis/recompute.py), no model is run, so a report can be rebuilt at any time.
Both documents are built from one Doc (harness/report/render.py) whose sections are the functions
listed in harness/report/sections.py.
"""
from __future__ import annotations

from pathlib import Path

from harness.analysis import metrics
from harness.analysis.decision import DecisionConfig
from harness.analysis.recompute import analyze, metric_label
from harness.core.records import write_atomic, write_json
from harness.report import judging  # noqa: F401 - registers the model-based metrics' section
from harness.report.render import Doc, render_csv, render_html, render_markdown
from harness.report.sections import SECTIONS, Part


def _benchmark(doc: Doc, results: dict, b: dict, rows: list[dict], png: bool) -> None:
    """One benchmark: its header, then every section for each of its seeds."""
    analysis = results["analysis"]
    name = b["name"]
    primary = analysis["primary_metric"][name]
    doc.h(2, name)
    doc.p(f"Task {b.get('task', '?')}: {b.get('test_used', '?')} test questions (of {b.get('test', '?')}), "
          f"{b.get('train', '?')} train questions, {b.get('documents', '?')} documents. Source: "
          f"{b.get('source') or 'local'}; licence {b.get('license') or 'unknown'}. Headline metric: "
          f"{metric_label(primary)}.")
    if analysis.get("headline_notes", {}).get(name):
        doc.p(analysis["headline_notes"][name], "fail")
    per_seed = analysis["benchmarks"][name]
    for seed, a in per_seed.items():
        if len(per_seed) > 1:
            doc.h(2, f"{name}, seed {seed}")
        if a["gold_note"]:
            doc.p(a["gold_note"], "fail")
        part = Part(results=results, bench=b, seed=seed, analysis=a,
                    cells=[c for c in results["cells"] if c["benchmark"] == name and str(c.get("seed")) == seed],
                    rows=[r for r in rows if r["benchmark"] == name and str(r["seed"]) == seed],
                    primary=primary, decision=DecisionConfig.from_dict(analysis["decision"]), png=png)
        for section in SECTIONS:
            section(doc, part)


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
        _benchmark(doc, results, b, rows, png)
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


def write_reports(run_dir: Path, prices=None, decision: dict | None = None, metric: str | None = None) -> dict:
    """Recompute everything from the records and write all four formats; returns the new results.
    metric: the headline metric (default: the run's; see recompute.headline)."""
    run_dir = Path(run_dir)
    results, rows = analyze(run_dir, prices, decision, metric)
    doc = build(results, rows)
    write_atomic(run_dir / "report.md", render_markdown(doc))
    write_atomic(run_dir / "report.html",
                 render_html(doc, f"Comparison report: {results['run'].get('id', run_dir.name)}"))
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
