"""`harness gate`: fail CI when a change makes answers worse than a committed baseline's.

Per benchmark and strategy, on the questions both runs answered (same seed and question id), the
paired bootstrap 95% interval of current minus baseline of a per-question metric. The gate is a
non-inferiority test: it fails when the interval's lower bound is below -margin, that is when the
data cannot rule out a drop larger than the margin; a point estimate below zero alone does not fail.
Latency p95 and cost per query, on the same questions, fail when they rise beyond a given ratio.

Exit status: 0 all passed, 1 something failed, 2 the inputs cannot be compared.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from harness.analysis import metrics
from harness.analysis.recompute import read_run
from harness.core.errors import HarnessError
from harness.core.records import write_atomic

N_BOOT = 2000
SEED = 0  # the interval is part of a CI verdict: the same inputs must always give the same verdict


@dataclass
class Check:
    benchmark: str
    strategy: str
    n: int = 0
    baseline: float | None = None
    current: float | None = None
    diff: dict | None = None
    changed: int | None = None
    latency_ratio: float | None = None
    cost_ratio: float | None = None
    status: str = "passed"  # passed / failed / skipped
    reasons: list[str] = field(default_factory=list)

    def fail(self, why: str) -> None:
        self.status = "failed"
        self.reasons.append(why)


def load_run(arg: str) -> tuple[dict, list[dict], Path]:
    """A run folder or its results.json, with the predictions.jsonl beside it."""
    results, rows = read_run(Path(arg), require_predictions=True)
    p = Path(arg)
    return results, [r for _, r in rows], p / "results.json" if p.is_dir() else p


def _by_cell(rows: list[dict]) -> dict[tuple, dict[tuple, dict]]:
    out: dict[tuple, dict[tuple, dict]] = {}
    for r in rows:
        out.setdefault((r["benchmark"], r["strategy"]), {})[(r["seed"], r["id"])] = r
    return out


def _ratio(new: float | None, old: float | None) -> float | None:
    if new is None or old is None or old <= 0:
        return None
    return new / old


def compare(base: tuple[dict, list[dict], Path], cur: tuple[dict, list[dict], Path], *, margin: float = 0.02,
            metric: str = "f1", max_latency_ratio: float | None = None,
            max_cost_ratio: float | None = None) -> list[Check]:
    if metric not in metrics.METRIC_REGISTRY:
        raise HarnessError(f"unknown metric {metric!r}; use one of {', '.join(metrics.METRIC_REGISTRY)}")
    (b_res, b_rows, b_path), (c_res, c_rows, c_path) = base, cur
    b_benches = {c["benchmark"] for c in b_res["cells"]}
    c_benches = {c["benchmark"] for c in c_res["cells"]}
    if not b_benches & c_benches:
        raise HarnessError(f"different benchmarks: baseline {b_path} ran {', '.join(sorted(b_benches)) or 'none'}, "
                           f"current {c_path} ran {', '.join(sorted(c_benches)) or 'none'}")
    b_data = {b["name"]: b.get("data_sha256") for b in b_res.get("benchmarks", [])}
    c_data = {b["name"]: b.get("data_sha256") for b in c_res.get("benchmarks", [])}
    for name in b_benches & c_benches:
        if b_data.get(name) and c_data.get(name) and b_data[name] != c_data[name]:
            raise HarnessError(f"benchmark {name!r} differs between the runs (data sha256 {b_data[name][:12]} "
                               f"against {c_data[name][:12]}): the questions are not the same")
    b_by, c_by = _by_cell(b_rows), _by_cell(c_rows)
    price = {id(b_res): b_res.get("pricing", {}).get("usd_per_hour", 0.0),
             id(c_res): c_res.get("pricing", {}).get("usd_per_hour", 0.0)}
    checks = []
    groups = sorted({(c["benchmark"], c["strategy"]) for c in b_res["cells"]})
    for bench, strat in groups:
        chk = Check(bench, strat)
        checks.append(chk)
        b_cells = [c for c in b_res["cells"] if (c["benchmark"], c["strategy"]) == (bench, strat)]
        c_cells = [c for c in c_res["cells"] if (c["benchmark"], c["strategy"]) == (bench, strat)]
        if not any(c.get("status") == "ok" for c in b_cells):
            chk.status = "skipped"
            chk.reasons.append("the baseline has no result for it (failed or unfinished): not gated")
            continue
        if bench not in c_benches:
            chk.fail(f"benchmark {bench} is missing from the current run")
            continue
        if not c_cells:
            chk.fail("strategy missing from the current run")
            continue
        bad = [c for c in c_cells if c.get("status") != "ok"]
        if bad:
            chk.fail(f"{bad[0].get('status')} in the current run: {bad[0].get('error')}")
            continue
        b_q, c_q = b_by.get((bench, strat), {}), c_by.get((bench, strat), {})
        shared = sorted(set(b_q) & set(c_q), key=str)
        if not shared:
            raise HarnessError(f"{strat} on {bench}: the runs share no question ids (with the same seed); "
                               f"nothing to compare")
        try:
            cur_v = [float(c_q[k][metric]) for k in shared]
            base_v = [float(b_q[k][metric]) for k in shared]
        except (KeyError, TypeError, ValueError):
            stored = metrics.get_metric(metric).stored
            why = f" (computed by a model during `harness run --metrics {metric}`)" if stored else ""
            raise HarnessError(f"{strat} on {bench}: predictions.jsonl rows lack a numeric {metric!r}{why}") from None
        chk.n = len(shared)
        chk.baseline, chk.current = sum(base_v) / len(shared), sum(cur_v) / len(shared)
        chk.diff = metrics.paired_bootstrap_diff(cur_v, base_v, n_boot=N_BOOT, seed=SEED)
        chk.changed = sum(c_q[k].get("output") != b_q[k].get("output") for k in shared)
        if chk.diff["low"] < -margin:
            chk.fail(f"{metric} may have dropped by more than {margin:g}: {chk.diff['mean']:+.3f} "
                     f"[{chk.diff['low']:+.3f}, {chk.diff['high']:+.3f}]")

        def usage(q, k, f):
            return float((q[k].get("usage") or {}).get(f, 0.0))

        chk.latency_ratio = _ratio(metrics.percentile([usage(c_q, k, "latency_seconds") for k in shared], 95),
                                   metrics.percentile([usage(b_q, k, "latency_seconds") for k in shared], 95))
        c_cost = sum(usage(c_q, k, "seconds") for k in shared) / len(shared) * price[id(c_res)]
        b_cost = sum(usage(b_q, k, "seconds") for k in shared) / len(shared) * price[id(b_res)]
        chk.cost_ratio = _ratio(c_cost, b_cost)
        if max_latency_ratio and chk.latency_ratio is not None and chk.latency_ratio > max_latency_ratio:
            chk.fail(f"latency p95 x{chk.latency_ratio:.2f} (allowed x{max_latency_ratio:g})")
        if max_cost_ratio and chk.cost_ratio is not None and chk.cost_ratio > max_cost_ratio:
            chk.fail(f"cost per query x{chk.cost_ratio:.2f} (allowed x{max_cost_ratio:g})")
    for bench, strat in sorted({(c["benchmark"], c["strategy"]) for c in c_res["cells"]} - set(groups)):
        checks.append(Check(bench, strat, status="skipped", reasons=["new in the current run: no baseline"]))
    return checks


def table(checks: list[Check], metric: str) -> str:
    def f(x, fmt="{:.3f}"):
        return "-" if x is None else fmt.format(x)

    head = ["benchmark", "strategy", "n", f"base {metric}", f"curr {metric}", "diff [95% CI]", "changed",
            "p95 x", "cost x", "result"]
    rows = [head]
    for c in checks:
        d = c.diff
        ci = "-" if d is None else f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"
        rows.append([c.benchmark, c.strategy, str(c.n or "-"), f(c.baseline), f(c.current), ci, f(c.changed, "{}"),
                     f(c.latency_ratio, "{:.2f}"), f(c.cost_ratio, "{:.2f}"), c.status.upper()])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    for c in checks:
        for why in c.reasons:
            lines.append(f"{c.status}: {c.strategy} on {c.benchmark}: {why}")
    return "\n".join(lines)


def junit_xml(checks: list[Check], metric: str, margin: float) -> str:
    suite = ET.Element("testsuite", name="harness gate", tests=str(len(checks)),
                       failures=str(sum(c.status == "failed" for c in checks)),
                       skipped=str(sum(c.status == "skipped" for c in checks)))
    for c in checks:
        case = ET.SubElement(suite, "testcase", classname=f"gate.{c.benchmark}", name=c.strategy, time="0")
        detail = (f"{metric}: baseline {c.baseline}, current {c.current}, difference {c.diff}, margin {margin}; "
                  f"changed answers {c.changed}; latency p95 ratio {c.latency_ratio}; cost ratio {c.cost_ratio}")
        if c.status == "failed":
            ET.SubElement(case, "failure", message="; ".join(c.reasons)).text = detail
        elif c.status == "skipped":
            ET.SubElement(case, "skipped", message="; ".join(c.reasons))
        else:
            ET.SubElement(case, "system-out").text = detail
    root = ET.Element("testsuites")
    root.append(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def gate(baseline: str, current: str, *, margin: float = 0.02, metric: str = "f1",
         max_latency_ratio: float | None = None, max_cost_ratio: float | None = None,
         junit: str | None = None, out=print) -> int:
    if not margin >= 0:
        raise HarnessError(f"--margin must be >= 0, got {margin}")
    for name, r in (("--max-latency-ratio", max_latency_ratio), ("--max-cost-ratio", max_cost_ratio)):
        if r is not None and not r > 0:
            raise HarnessError(f"{name} must be > 0, got {r}")
    checks = compare(load_run(baseline), load_run(current), margin=margin, metric=metric,
                     max_latency_ratio=max_latency_ratio, max_cost_ratio=max_cost_ratio)
    out(table(checks, metric))
    failed = [c for c in checks if c.status == "failed"]
    out(f"\ngate {'FAILED' if failed else 'passed'}: {len(failed)} failed, "
        f"{sum(c.status == 'passed' for c in checks)} passed, {sum(c.status == 'skipped' for c in checks)} skipped "
        f"(non-inferiority margin {margin:g} on {metric})")
    if junit:
        write_atomic(Path(junit), junit_xml(checks, metric, margin))
    return 1 if failed else 0
