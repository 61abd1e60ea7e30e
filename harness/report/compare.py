"""`harness compare RUN_A RUN_B`: paired differences between two runs of the same benchmark.

Both runs are rescored from their records (no model), then each strategy that both ran is compared
question by question: B minus A, McNemar's exact test on exact match, a paired bootstrap on F1 for
extractive QA, Holm-corrected across the strategies compared.
"""
from __future__ import annotations

from pathlib import Path

from harness.analysis import metrics, stats
from harness.analysis.recompute import analyze, metric_label
from harness.core.errors import HarnessError
from harness.core.records import write_atomic
from harness.report.render import Doc, fmt_p, render_html, render_markdown


def compare(run_a: Path, run_b: Path, prices=None) -> Doc:
    ra, rows_a = analyze(Path(run_a), prices)
    rb, rows_b = analyze(Path(run_b), prices)
    shared = [b["name"] for b in ra["benchmarks"] if b["name"] in {x["name"] for x in rb["benchmarks"]}]
    if not shared:
        raise HarnessError(f"{run_a} and {run_b} share no benchmark: nothing to compare")
    bench_a = {b["name"]: b for b in ra["benchmarks"]}
    bench_b = {b["name"]: b for b in rb["benchmarks"]}
    for name in shared:
        ha, hb = (_data_hash(x[name]) for x in (bench_a, bench_b))
        if ha and hb and ha != hb:
            raise HarnessError(f"benchmark {name!r} differs between the runs (data sha256 {ha[:12]} in {run_a}, "
                               f"{hb[:12]} in {run_b}): the questions or gold answers are not the same")
    doc = Doc()
    doc.h(1, f"Comparison of runs {ra['run'].get('id', run_a)} (A) and {rb['run'].get('id', run_b)} (B)")
    doc.p(f"A: {run_a}; B: {run_b}. Differences are B minus A on the same questions.")
    for name in shared:
        ids_a = {r["id"] for r in rows_a if r["benchmark"] == name}
        ids_b = {r["id"] for r in rows_b if r["benchmark"] == name}
        if ids_a != ids_b:
            raise HarnessError(f"benchmark {name}: the runs answered different questions ({len(ids_a - ids_b)} only "
                               f"in A, {len(ids_b - ids_a)} only in B); a paired comparison needs the same ids")
        primary = ra["analysis"]["primary_metric"][name]
        graded = not metrics.get_metric(primary).binary

        def by_cell(rows):
            out = {}
            for r in rows:
                if r["benchmark"] == name:
                    out.setdefault((r["strategy"], r["seed"]), {})[r["id"]] = r
            return out

        ca, cb = by_cell(rows_a), by_cell(rows_b)
        keys = [k for k in ca if k in cb]
        results = [(k, stats.compare_pair(cb[k], ca[k], graded)) for k in keys]
        test = "f1" if graded else "em"
        for r, p in zip(results, stats.holm([x[test]["p"] for _, x in results])):
            r[1][test]["p_holm"] = p
        doc.h(2, name)
        doc.p(f"Scored against {_source(bench_a[name])} (A) and {_source(bench_b[name])} (B).")
        rows = []
        for (strategy, seed), x in results:
            t = x[test]
            mean_a = sum(v[primary] for v in ca[(strategy, seed)].values()) / len(ca[(strategy, seed)])
            mean_b = sum(v[primary] for v in cb[(strategy, seed)].values()) / len(cb[(strategy, seed)])
            ci = f" [{t['low']:+.3f}, {t['high']:+.3f}]" if graded else f" ({t['only_a']} / {t['only_b']})"
            verdict = ("no significant difference" if t["p_holm"] >= stats.ALPHA
                       else "B better" if t["diff"] > 0 else "B worse")
            rows.append([strategy, str(seed), str(x["n"]), f"{mean_a:.3f}", f"{mean_b:.3f}",
                         f"{t['diff']:+.3f}{ci}", fmt_p(t["p"]), fmt_p(t["p_holm"]), verdict])
        label = metric_label(primary)
        doc.table(["Strategy", "Seed", "Questions", f"A {label}", f"B {label}",
                   "B − A " + ("[95% CI]" if graded else "(only B / only A right)"),
                   "Bootstrap p" if graded else "McNemar p", "Holm p", "Verdict"], rows)
        only = sorted({k[0] for k in ca} ^ {k[0] for k in cb})
        if only:
            doc.p("Ran in one of the two only: " + ", ".join(only) + ".")
    return doc


def _data_hash(b: dict) -> str | None:
    """The data a run's benchmark was answered on (recorded) or scored against (gold)."""
    return b.get("data_sha256") or (b.get("gold") or {}).get("data_sha256")


def _source(b: dict) -> str:
    gold = b.get("gold") or {}
    if not gold.get("path"):
        return "the gold answers in predictions.jsonl (benchmark not found)"
    return f"{gold['path']} (data sha256 {gold['data_sha256'][:12]})"


def write_compare(doc: Doc, out: Path) -> None:
    out = Path(out)
    text = render_html(doc, "Run comparison") if out.suffix.lower() in (".html", ".htm") else render_markdown(doc)
    write_atomic(out, text)
