"""The recommendation: which strategy to deploy for a query volume, refresh interval and latency target.

Rule: among the strategies that meet the latency target, keep those whose accuracy is not
significantly below the most accurate of them (paired test, Holm-corrected); of those, the cheapest
per month wins. Then the same rule is rerun under other volumes and refresh intervals to say what
would change the answer.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from harness.analysis import stats
from harness.analysis.cost import Costs, crossover_monthly, refreshes_per_month
from harness.core.errors import ConfigError


@dataclass(frozen=True)
class DecisionConfig:
    monthly_queries: int = 100_000        # a team-internal assistant: about 3,300 questions a day
    refresh_days: float | None = 30       # the documents change monthly: re-index or re-train every 30 days; None or 0: never
    latency_target_s: float | None = None  # p95 seconds a caller may wait; None: no target

    def __post_init__(self):
        q = self.monthly_queries
        if isinstance(q, bool) or not isinstance(q, int) or q < 0:
            raise ConfigError(f"decision.monthly_queries must be an integer >= 0, got {q!r}")
        for name in ("refresh_days", "latency_target_s"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                                  or not math.isfinite(v) or v < 0 or (name == "latency_target_s" and v == 0)):
                raise ConfigError(f"decision.{name} must be a positive number or null, got {v!r}")

    @classmethod
    def from_dict(cls, values: dict | None, where: str = "decision") -> "DecisionConfig":
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**values)

    def describe(self) -> str:
        refresh = f"a knowledge refresh every {self.refresh_days:g} days" if self.refresh_days else "no knowledge refresh"
        target = f"a p95 latency target of {self.latency_target_s:g} s" if self.latency_target_s else "no latency target"
        return f"{self.monthly_queries:,} queries a month, {refresh}, {target}"


def _vs_best(cmp: dict) -> list[dict]:
    """Every strategy's row against the best; zero-shot's is the best's "vs zero-shot" row turned round."""
    rows = [r for r in cmp["rows"] if r["role"] == "vs best"]
    for r in cmp["rows"]:
        if r["strategy"] == cmp["best"] and r["role"] == "vs zero-shot":
            rows.append({**r, "strategy": r["baseline"], "baseline": r["strategy"], "diff": -r["diff"]})
    return rows


def _choose(entries: list[dict], scores: dict, primary: str, dc: DecisionConfig, main: dict | None = None) -> dict:
    fast = [e for e in entries if not dc.latency_target_s or e["p95"] <= dc.latency_target_s]
    pool = fast or entries
    if main and main.get("rows") and {e["strategy"] for e in pool} == set(scores):
        cmp = {**main, "rows": _vs_best(main)}  # the report's own table, same Holm adjustment
    else:  # a latency target removed some: the fastest pool's own best is the reference
        cmp = stats.comparisons({e["strategy"]: scores[e["strategy"]] for e in pool}, primary, zero_shot="\0")
    worse = {r["strategy"] for r in cmp["rows"] if r["significant"] and r["diff"] < 0}
    contenders = [e for e in pool if e["strategy"] not in worse]
    monthly = {e["strategy"]: e["costs"].monthly(dc.monthly_queries, dc.refresh_days) for e in entries}
    winner = min(contenders, key=lambda e: (monthly[e["strategy"]], -e["acc"]))
    return {"winner": winner, "top": next(e for e in pool if e["strategy"] == cmp["best"]), "pool": pool,
            "met_target": bool(fast), "worse": worse, "contenders": contenders, "monthly": monthly, "cmp": cmp}


def _usd(x: float) -> str:
    return f"${x:,.2f}" if x >= 1 else f"${x:.4f}"


def recommend(entries: list[dict], scores: dict, primary: str, metric_label: str, dc: DecisionConfig,
              cmp: dict | None = None) -> dict:
    """entries: one per ok strategy with keys strategy, acc, low, high, p95 (s), costs (Costs).
    scores: strategy -> question id -> per-question scores; cmp: stats.comparisons of the benchmark
    (its Holm-adjusted "vs zero-shot" test qualifies the winner). Returns the winner and plain-language lines."""
    entries = [e for e in entries if e["costs"] is not None and e["costs"].per_query_usd is not None
               and e["p95"] is not None]
    if not entries:
        return {"winner": None, "why": ["No strategy finished with measured costs and latency: nothing to recommend."],
                "changes": []}
    ch = _choose(entries, scores, primary, dc, cmp)
    w, top, m = ch["winner"], ch["top"], ch["monthly"]
    c: Costs = w["costs"]
    why = [f"For {dc.describe()}: **{w['strategy']}**."]
    if not ch["met_target"]:
        fastest = min(entries, key=lambda e: e["p95"])
        why.append(f"No strategy meets the latency target: the fastest, {fastest['strategy']}, has a p95 of "
                   f"{fastest['p95']:.2f} s; the choice below ignores the target.")
    if w is top:
        why.append(f"It is the most accurate{' within the latency target' if dc.latency_target_s else ''}: "
                   f"{metric_label} {w['acc']:.3f} (95% CI {w['low']:.3f}–{w['high']:.3f}).")
    else:
        row = next(r for r in ch["cmp"]["rows"] if r["strategy"] == w["strategy"])
        why.append(f"Its {metric_label} of {w['acc']:.3f} (95% CI {w['low']:.3f}–{w['high']:.3f}) is not "
                   f"significantly below the most accurate, {top['strategy']} at {top['acc']:.3f} (paired difference "
                   f"{row['diff']:+.3f}, Holm-adjusted p = {row['p_holm']:.2f}), and it costs less: "
                   f"{_usd(m[w['strategy']])} a month against {_usd(m[top['strategy']])}.")
    r = refreshes_per_month(dc.refresh_days)
    why.append(f"It costs {_usd(m[w['strategy']])} a month: {_usd(c.per_query_usd * dc.monthly_queries)} answering "
               f"({_usd(c.per_query_usd * 1000)} per 1,000 queries)"
               + (f" plus {_usd(c.refresh_usd * r)} for {r:.1f} refreshes ({c.refresh_kind}, {_usd(c.refresh_usd)} each)"
                  if c.refresh_kind != "none" and r else "") + f"; its p95 latency is {w['p95']:.2f} s.")
    others = [e for e in ch["contenders"] if e is not w]
    if others:
        why.append("Equally accurate within the statistics but dearer at this volume: " + ", ".join(
            f"{e['strategy']} ({_usd(m[e['strategy']])}/month)" for e in sorted(others, key=lambda e: m[e['strategy']])) + ".")
    if ch["worse"]:
        why.append("Significantly less accurate than " + top["strategy"] + ": " + ", ".join(sorted(ch["worse"])) + ".")
    slow = [e for e in entries if e not in ch["pool"]]
    if slow:
        why.append("Over the latency target: " + ", ".join(f"{e['strategy']} (p95 {e['p95']:.2f} s)" for e in slow) + ".")
    zs = next((r for r in (cmp or {}).get("rows", []) if r["strategy"] == w["strategy"] and r["baseline"] == "zero-shot"), None)
    if zs is not None and not zs["significant"]:
        why.append(f"Caution: its gain over zero-shot ({zs['diff']:+.3f}, Holm-adjusted p = {zs['p_holm']:.2f}) is not "
                   "significant, so on these questions no method has shown that it is worth its cost.")

    changes = []
    for e in others:
        q = crossover_monthly(w["costs"], e["costs"], dc.refresh_days)
        if q is not None:
            side = "above" if (e["costs"].per_query_usd or 0) < c.per_query_usd else "below"
            changes.append(f"{side.capitalize()} {q:,.0f} queries a month {e['strategy']} becomes cheaper than "
                           f"{w['strategy']} at the same refresh interval.")
    scenarios = [("monthly_queries", dc.monthly_queries * 10, f"{dc.monthly_queries * 10:,} queries a month"),
                 ("monthly_queries", dc.monthly_queries // 10, f"{dc.monthly_queries // 10:,} queries a month"),
                 ("refresh_days", 1, "a refresh every day"), ("refresh_days", None, "no refresh at all")]
    for key, value, label in scenarios:
        if getattr(dc, key) == value:
            continue
        alt = _choose(entries, scores, primary, dataclasses.replace(dc, **{key: value}), cmp)["winner"]
        if alt is not w:
            changes.append(f"With {label}, {alt['strategy']} would win instead.")
    better_slow = [e for e in slow if e["acc"] > w["acc"]]
    for e in sorted(better_slow, key=lambda e: e["p95"]):
        alt = _choose(entries, scores, primary, dataclasses.replace(dc, latency_target_s=e["p95"]), cmp)["winner"]
        if alt is not w:
            changes.append(f"A latency target of {e['p95']:.2f} s or more would let {alt['strategy']} win.")
            break
    if not changes:
        changes.append(f"{w['strategy']} stays the choice at ten times more or fewer queries, with daily or no refreshes.")
    return {"winner": w["strategy"], "why": why, "changes": changes,
            "monthly_usd": {k: v for k, v in m.items()}}
