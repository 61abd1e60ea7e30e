"""`harness gate`: fail CI when a change makes answers worse than a committed baseline's.

Both runs are rescored first, every prediction from its output against the benchmark's own gold
answers (the path `harness report` takes; the benchmark's data must hash to what each run recorded),
so per-line scores stored in predictions.jsonl are never trusted. Then per benchmark and strategy,
on the questions both runs answered (same seed and question id), the paired bootstrap 95% interval
of current minus baseline of a per-question metric. The gate is a
non-inferiority test: it fails when the interval's lower bound is below -margin, that is when the
data cannot rule out a drop larger than the margin; a point estimate below zero alone does not fail.
Latency p95 and cost per query, on the same questions, fail when they rise beyond a given ratio. A
baseline question the current run did not answer fails the strategy (dropping lines cannot hide a
regression).

Exit status: 0 all passed, 1 something failed, 2 the inputs cannot be compared.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from harness.analysis import metrics
from harness.analysis.recompute import read_run, rescore
from harness.core.errors import HarnessError
from harness.core.records import write_atomic
from harness.core.text import terminal

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
    """A run folder or its results.json, with the predictions.jsonl beside it, every line rescored
    from its output against the benchmark's own gold answers (the data hash checked against the one
    the run recorded), exactly as `harness report` rescores it. Stored per-line scores are never read."""
    p = Path(arg)
    run_dir = p.parent if p.name == "results.json" and p.is_file() else p
    results, lines = read_run(p, require_predictions=True)
    rows, _ = rescore(results, lines, run_dir, verified=True)
    return results, rows, run_dir / "results.json"


def scored_against(res: dict, label: str) -> list[str]:
    """Where each benchmark's gold answers came from, for the gate's output."""
    return [f"{label} {b['name']}: scored against {b['gold']['path']} (data sha256 {b['gold']['data_sha256'][:12]})"
            for b in res["benchmarks"] if b.get("gold")]


def _by_cell(rows: list[dict]) -> dict[tuple, dict[tuple, dict]]:
    out: dict[tuple, dict[tuple, dict]] = {}
    for r in rows:
        out.setdefault((r["benchmark"], r["strategy"]), {})[(r["seed"], r["id"])] = r
    return out


def _ratio(new: float | None, old: float | None) -> float | None:
    if new is None or old is None or old <= 0:
        return None
    return new / old


def _usage(q: dict, keys: list, field: str) -> list[float] | None:
    """One usage figure of every paired line, or None when a line lacks it."""
    values = [(q[k].get("usage") or {}).get(field) for k in keys]
    return None if any(v is None for v in values) else [float(v) for v in values]


def _need(values, asked: str | None, q: dict, keys: list, field: str, path: Path):
    """values, or exit 2 when a check the user asked for cannot be made (a line without the figure)."""
    if values is None and asked:
        line = next(q[k]["line"] for k in keys if (q[k].get("usage") or {}).get(field) is None)
        raise HarnessError(f"{path.parent / 'predictions.jsonl'}:{line}: no usage.{field}, which {asked} needs")
    return values


def compare(base: tuple[dict, list[dict], Path], cur: tuple[dict, list[dict], Path], *, margin: float = 0.02,
            metric: str = "f1", max_latency_ratio: float | None = None,
            max_cost_ratio: float | None = None) -> list[Check]:
    """The checks, one per benchmark and strategy of the baseline. base, cur: load_run's rescored runs."""
    if metric not in metrics.METRIC_REGISTRY:
        raise HarnessError(f"unknown metric {metric!r}; use one of {', '.join(metrics.METRIC_REGISTRY)}")
    (b_res, b_rows, b_path), (c_res, c_rows, c_path) = base, cur
    b_by, c_by = _by_cell(b_rows), _by_cell(c_rows)
    # a strategy whose lines carry no results.json cell (external {id, output} lines) counts as ok
    b_status = _status(b_res, b_by, any_ok=True)
    c_status = _status(c_res, c_by, any_ok=False)
    c_benches = _comparable_benchmarks(base, cur, b_status, c_status)
    price = {id(b_res): b_res.get("pricing", {}).get("usd_per_hour", 0.0),
             id(c_res): c_res.get("pricing", {}).get("usd_per_hour", 0.0)}
    checks = []
    groups = sorted(b_status)
    for bench, strat in groups:
        chk = Check(bench, strat)
        checks.append(chk)
        if not _both_answered(chk, b_status, c_status, c_benches):
            continue
        b_q, c_q = b_by.get((bench, strat), {}), c_by.get((bench, strat), {})
        shared = _check_quality(chk, b_q, c_q, metric, margin)
        lat = "--max-latency-ratio" if max_latency_ratio else None
        c_lat = _need(_usage(c_q, shared, "latency_seconds"), lat, c_q, shared, "latency_seconds", c_path)
        b_lat = _need(_usage(b_q, shared, "latency_seconds"), lat, b_q, shared, "latency_seconds", b_path)
        if c_lat is not None and b_lat is not None:
            chk.latency_ratio = _ratio(metrics.percentile(c_lat, 95), metrics.percentile(b_lat, 95))
        cost = "--max-cost-ratio" if max_cost_ratio else None
        c_sec = _need(_usage(c_q, shared, "seconds"), cost, c_q, shared, "seconds", c_path)
        b_sec = _need(_usage(b_q, shared, "seconds"), cost, b_q, shared, "seconds", b_path)
        if c_sec is not None and b_sec is not None:
            chk.cost_ratio = _ratio(sum(c_sec) / len(shared) * price[id(c_res)],
                                    sum(b_sec) / len(shared) * price[id(b_res)])
        if max_latency_ratio and chk.latency_ratio is not None and chk.latency_ratio > max_latency_ratio:
            chk.fail(f"latency p95 x{chk.latency_ratio:.2f} (allowed x{max_latency_ratio:g})")
        if max_cost_ratio and chk.cost_ratio is not None and chk.cost_ratio > max_cost_ratio:
            chk.fail(f"cost per query x{chk.cost_ratio:.2f} (allowed x{max_cost_ratio:g})")
    for bench, strat in sorted(set(c_status) - set(groups)):
        checks.append(Check(bench, strat, status="skipped", reasons=["new in the current run: no baseline"]))
    return checks


def _comparable_benchmarks(base: tuple, cur: tuple, b_status: dict, c_status: dict) -> set[str]:
    """The current run's benchmarks, after checking that the runs share one and that every shared one has
    the same data in both (exit 2 otherwise)."""
    (b_res, _, b_path), (c_res, _, c_path) = base, cur
    b_benches = {b for b, _ in b_status} | {b["name"] for b in b_res["benchmarks"]}
    c_benches = {b for b, _ in c_status} | {b["name"] for b in c_res["benchmarks"]}
    if not b_benches & c_benches:
        raise HarnessError(f"different benchmarks: baseline {b_path} ran {', '.join(sorted(b_benches)) or 'none'}, "
                           f"current {c_path} ran {', '.join(sorted(c_benches)) or 'none'}")
    b_data = {b["name"]: b.get("data_sha256") for b in b_res["benchmarks"]}
    c_data = {b["name"]: b.get("data_sha256") for b in c_res["benchmarks"]}
    for name in sorted(b_benches & c_benches):
        if b_data.get(name) != c_data.get(name):
            raise HarnessError(f"benchmark {name!r} differs between the runs (data sha256 {str(b_data[name])[:12]} "
                               f"against {str(c_data[name])[:12]}): the questions are not the same")
    return c_benches


def _both_answered(chk: Check, b_status: dict, c_status: dict, c_benches: set[str]) -> bool:
    """Whether both runs have results for chk's strategy; if not, chk is skipped (no baseline result) or
    failed (missing or failed in the current run)."""
    key = (chk.benchmark, chk.strategy)
    if b_status[key] != "ok":
        chk.status = "skipped"
        chk.reasons.append("the baseline has no result for it (failed or unfinished): not gated")
    elif chk.benchmark not in c_benches:
        chk.fail(f"benchmark {chk.benchmark} is missing from the current run")
    elif key not in c_status:
        chk.fail("strategy missing from the current run")
    elif c_status[key] != "ok":
        chk.fail(c_status[key])
    else:
        return True
    return False


def _check_quality(chk: Check, b_q: dict, c_q: dict, metric: str, margin: float) -> list:
    """The paired difference of the metric on the questions both runs answered (returned), and a failure when
    it may have dropped by more than the margin or when baseline questions went unanswered."""
    bench, strat = chk.benchmark, chk.strategy
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
    chk.changed = sum(c_q[k]["output"] != b_q[k]["output"] for k in shared)
    missing = len(set(b_q) - set(c_q))
    if missing:
        chk.fail(f"{missing} of the baseline's {len(b_q)} questions have no answer in the current run")
    if chk.diff["low"] < -margin:
        chk.fail(f"{metric} may have dropped by more than {margin:g}: {chk.diff['mean']:+.3f} "
                 f"[{chk.diff['low']:+.3f}, {chk.diff['high']:+.3f}]")
    return shared


def _status(res: dict, by: dict, any_ok: bool) -> dict[tuple, str]:
    """(benchmark, strategy) -> "ok", or why it has no result. any_ok: one seed's ok cell is enough
    (the baseline); otherwise every seed's cell must be ok (the current run)."""
    cells: dict[tuple, list[dict]] = {}
    for c in res["cells"]:
        cells.setdefault((c["benchmark"], c["strategy"]), []).append(c)
    out: dict[tuple, str] = {}
    for key, cs in cells.items():
        bad = [c for c in cs if c["status"] != "ok"]
        ok = len(bad) < len(cs) if any_ok else not bad
        out[key] = "ok" if ok else f"{bad[0]['status']} in the current run: {bad[0].get('error')}"
    for key in by:
        out.setdefault(key, "ok")
    return out


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
        # names come from records: characters XML 1.0 cannot hold (ESC, NUL) shown escaped, so the file parses
        case = ET.SubElement(suite, "testcase", classname=terminal(f"gate.{c.benchmark}", newlines=False),
                             name=terminal(c.strategy, newlines=False), time="0")
        detail = (f"{metric}: baseline {c.baseline}, current {c.current}, difference {c.diff}, margin {margin}; "
                  f"changed answers {c.changed}; latency p95 ratio {c.latency_ratio}; cost ratio {c.cost_ratio}")
        why = terminal("; ".join(c.reasons), newlines=False)
        if c.status == "failed":
            ET.SubElement(case, "failure", message=why).text = detail
        elif c.status == "skipped":
            ET.SubElement(case, "skipped", message=why)
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
    base, cur = load_run(baseline), load_run(current)
    checks = compare(base, cur, margin=margin, metric=metric,
                     max_latency_ratio=max_latency_ratio, max_cost_ratio=max_cost_ratio)
    for line in scored_against(base[0], "baseline") + scored_against(cur[0], "current"):
        out(line)
    out(table(checks, metric))
    failed = [c for c in checks if c.status == "failed"]
    out(f"\ngate {'FAILED' if failed else 'passed'}: {len(failed)} failed, "
        f"{sum(c.status == 'passed' for c in checks)} passed, {sum(c.status == 'skipped' for c in checks)} skipped "
        f"(non-inferiority margin {margin:g} on {metric})")
    if junit:
        write_atomic(Path(junit), junit_xml(checks, metric, margin))
    return 1 if failed else 0
