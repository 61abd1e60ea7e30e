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
from harness.analysis.recompute import analyze, metric_label
from harness.analysis.serving import cell_model, run_models
from harness.analysis.verdicts import DecisionConfig
from harness.core.records import write_atomic, write_json
from harness.report import judging  # noqa: F401 - registers the model-based metrics' section
from harness.report.render import Doc, render_csv, render_html, render_markdown
from harness.report.sections import SECTIONS, Part, inputs


def _benchmark(doc: Doc, results: dict, b: dict, rows: list[dict], png: bool) -> None:
    """One benchmark: its header, then every section: once for a run with one seed; with several, the
    decision sections pooled over the seeds, then each seed's own sections below."""
    analysis = results["analysis"]
    name = b["name"]
    primary = analysis["primary_metric"][name]
    dc = DecisionConfig.from_dict(analysis["decision"])
    verdict = (analysis.get("decisions") or {}).get(name)
    doc.h(2, name)
    doc.p(f"Task {b.get('task', '?')}: {b.get('test_used', '?')} test questions (of {b.get('test', '?')}), "
          f"{b.get('train', '?')} train questions, {b.get('documents', '?')} documents. Source: "
          f"{b.get('source') or 'local'}; licence {b.get('license') or 'unknown'}. Headline metric: "
          f"{metric_label(primary)}." + _gold_source(b))
    if analysis.get("headline_notes", {}).get(name):
        doc.p(analysis["headline_notes"][name], "fail")
    skipped = b.get("skipped_documents") or []
    if skipped:
        doc.p(f"{len(skipped)} document file{'s' * (len(skipped) > 1)} could not be read and "
              f"{'were' if len(skipped) > 1 else 'was'} left out: "
              + "; ".join(f"{f} ({why})" for f, why in skipped[:10]) + ("; ..." if len(skipped) > 10 else "")
              + " (all in results.json).", "note")
    per_seed = analysis["benchmarks"][name]
    parts = []
    if len(per_seed) > 1:
        parts.append(Part(results=results, bench=b, seed="pooled", analysis={},
                          cells=[c for c in results["cells"] if c["benchmark"] == name],
                          rows=[r for r in rows if r["benchmark"] == name], primary=primary, decision=dc, png=png,
                          level="pooled", verdict=verdict))
    for seed, a in per_seed.items():
        parts.append(Part(results=results, bench=b, seed=seed, analysis=a,
                          cells=[c for c in results["cells"] if c["benchmark"] == name and str(c.get("seed")) == seed],
                          rows=[r for r in rows if r["benchmark"] == name and str(r["seed"]) == seed],
                          primary=primary, decision=dc, png=png, level="seed" if len(per_seed) > 1 else "one",
                          verdict=verdict))
    for part in parts:
        if part.level == "seed":
            doc.h(2, f"{name}, seed {part.seed}")
        if part.analysis.get("gold_note"):
            doc.p(part.analysis["gold_note"], "fail")
        for section in SECTIONS:
            section(doc, part)


def _gold_source(b: dict) -> str:
    """Which benchmark folder the predictions were scored against (recompute.rescore's `gold`)."""
    gold = b.get("gold") or {}
    if not gold.get("path"):
        return ""
    check = "the data hash the run recorded" if gold.get("verified") else "no data hash recorded to check it against"
    return f" Gold answers from {gold['path']} (data sha256 {gold['data_sha256'][:12]}; {check})."


def _model_line(label: str, m: dict, results: dict) -> str:
    """'**big**: endpoint NAME at URL, for rag, zero-shot' or '**small**: local smollm2-135m, for lora'."""
    who = list(dict.fromkeys(c["strategy"] for c in results.get("cells", []) if cell_model(c, results)[0] == label))
    n = m.get("max_concurrency")
    where = (f"endpoint {m.get('name')} at {m.get('base_url')}, at most {n} request{'s' * (n != 1)} in flight"
             if m.get("backend") == "openai" else f"local {m.get('name', label)}")
    return f"**{label}**: {where}, for {', '.join(who) or 'no strategy'}"


def build(results: dict, rows: list[dict], png: bool = True) -> Doc:
    doc = Doc()
    run, env, model = results.get("run", {}), results.get("environment", {}), results.get("model", {})
    a = results["analysis"]
    doc.h(1, f"Comparison report: {run.get('id', '?')}")
    where = env.get("gpu") or (f"{env.get('cpu')}, {env.get('cores')} cores" if env.get("cpu") else "?")
    seeds = results.get("config", {}).get("seeds") or [0]
    models = run_models(results)
    what = (f"Model **{model.get('name', '?')}**" if len(models) < 2 else
            f"{len(models)} models ({'; '.join(_model_line(label, m, results) for label, m in models.items())}), "
            "local work")
    doc.p(f"{what} on {env.get('device', '?')} ({where}), dtype {env.get('dtype', '?')}; "
          f"git {str(env.get('git_commit'))[:10]}{' (dirty)' if env.get('git_dirty') else ''}; "
          f"started {run.get('started', '?')}; seed{'s' * (len(seeds) > 1)} {', '.join(map(str, seeds))}. "
          f"Decision inputs: {inputs(DecisionConfig.from_dict(a['decision']), a['prices']['machine'])}.")
    for b in results["benchmarks"]:
        if b.get("synthetic"):
            doc.p(synthetic_warning(b), "fail")
    for b in results["benchmarks"]:
        _benchmark(doc, results, b, rows, png)
    doc.h(2, "How to read the figures")
    doc.ul([
        f"Answers are scored after extraction ({results.get('answer_extraction', metrics.EXTRACTION_RULE)}). EM "
        "and F1 use SQuAD normalisation; Contains asks whether a normalised gold answer appears in the raw output. "
        "Brackets: 95% bootstrap confidence intervals.",
        "Every figure is recomputed from predictions.jsonl and the benchmark's gold answers by `harness report`; "
        "costs come from the serving-cost model (README: the cost model) over the run's measured throughput, "
        "preparation time and tokens, at the prices of the price table.",
        "Recommendation rule: strategies that meet the quality bar and the latency target are compared with the "
        "most accurate of them; those whose paired 95% interval rules out a drop larger than the margin compete "
        "on monthly cost; costs within the tolerance count as equal, and then the more accurate wins, then the one "
        "with fewer moving parts. 'No significant difference' alone never makes a strategy a contender.",
    ] + (["Several seeds: the recommendation, costs and trade-offs are pooled (each strategy's mean over seeds, "
          "intervals from resampling questions and seeds); each seed's own tables follow under its own heading."]
         if len(seeds) > 1 else []))
    return doc


def synthetic_warning(b: dict) -> str:
    """The line a report on generated questions opens with (benchmark.json "synthetic", written by
    `harness synth`)."""
    syn = b["synthetic"] if isinstance(b.get("synthetic"), dict) else {}
    how = f" by {syn['model']}" if syn.get("model") else ""
    kept = (f", {syn['kept']} of {syn['generated']} generated pairs kept by its filters"
            if isinstance(syn.get("kept"), int) and isinstance(syn.get("generated"), int) else "")
    return (f"**Synthetic questions.** The questions of {b['name']} were generated from its documents{how} "
            f"(`harness synth`{kept}), not written by your users. The scores below measure how well each "
            "strategy answers questions a model could write about single passages; read a sample of them "
            "before trusting the decision.")


def write_reports(run_dir: Path, prices=None, decision: dict | None = None, metric: str | None = None,
                  labels=None) -> dict:
    """Recompute everything from the records and write all four formats; returns the new results.
    metric: the headline metric (default: the run's; see recompute.headline); labels: a file of people's
    labels of answers (analysis/trust.read_labels)."""
    run_dir = Path(run_dir)
    results, rows = analyze(run_dir, prices, decision, metric, labels)
    doc = build(results, rows)
    # every format rendered before any is written: a record that breaks one leaves all as they were
    texts = {"report.md": render_markdown(doc),
             "report.html": render_html(doc, f"Comparison report: {results.get('run', {}).get('id', run_dir.name)}"),
             "summary.csv": render_csv(results)}
    for name, text in texts.items():
        write_atomic(run_dir / name, text)
    write_json(run_dir / "results.json", results)
    return results


def console_table(run_dir: Path) -> str:
    """The summary tables as plain text, for the terminal after a run."""
    results, rows = analyze(Path(run_dir))
    doc = build(results, rows, png=False)
    lines, name, last = [], None, None
    for blk in doc.blocks:
        if blk[0] == "p" and blk[1].startswith("**Synthetic questions.**"):
            lines.append(blk[1].replace("**", "").replace("`", ""))
        if blk[0] == "h" and blk[1] == 2:
            name = blk[2]
        if blk[0] == "table" and "Latency p95 s" in blk[1] and "One-time $" in blk[1]:
            head, body = blk[1], blk[2]
            keep = [0, 1, head.index("One-time $"), head.index("$ / month"), head.index("Latency p95 s")]
            t = [[r[i] if i < len(r) else "" for i in keep] for r in [head] + body]
            widths = [max(len(r[i]) for r in t) for i in range(len(keep))]
            lines.append(str(name))
            lines += ["  ".join(x.ljust(wd) for x, wd in zip(r, widths)) for r in t]
        if blk[0] == "ul" and last and last.startswith("Recommendation"):
            last = None  # only the reasons, the first list under the heading
            said = [x for x in blk[1][:3] if not x.startswith("How this is decided")]
            said = said[:2] if "No strategy" in said[0] else said[:1]
            lines.append("Recommendation: " + " ".join(said).replace("**", ""))
        if blk[0] == "h":
            last = blk[2]
    return "\n".join(lines)
