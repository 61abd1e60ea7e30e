"""Decision rules: which strategy to deploy, with reasons that follow from the numbers.

The numbers (pooled means with their intervals, each candidate's paired difference from the reference with
its outcome, and the questions that would settle an inconclusive one) come from
harness.analysis.noninferiority, which defines them and how seeds are pooled.

Definitions (Δ: a candidate's mean score minus the reference's, on the same questions; [L, U]: its
paired-bootstrap 95% interval; δ: decision.margin, absolute, on the headline metric's scale):

* reference: the strategy with the highest pooled mean among those that meet the requirements
  (quality bar and latency target).
* non-inferior ("within the margin of the most accurate"): L > -δ; inferior ("below the most accurate by
  more than the margin"): U < -δ; inconclusive otherwise, with the questions that would settle it.
  These are noninferiority.outcome of the candidate's comparison with the reference (defined there, with
  what each one does and does not say).
* quality bar (decision.min_quality): a strategy meets it when its pooled mean >= the bar; when its
  interval's lower end is below the bar the reasons say so. No strategy meeting it is an answer.
* latency target (decision.latency_target_s): p95 seconds <= target; an unmeasured p95 does not meet a set target.
* choice: among the reference and the non-inferior candidates with a monthly cost, those costing at
  most (1 + cost_tolerance) x the cheapest count as equally cheap; of those the highest pooled mean
  wins, and on equal means the one with fewer moving parts (prompting 0 < an index or a training 1 < both 2).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.analysis import serving
from harness.analysis.noninferiority import (
    ALPHA,
    N_BOOT,
    SEED,
    Comparison,
    Estimate,
    non_inferiority,
    outcome,
    pooled_mean,
)
from harness.analysis.serving import HOURS_PER_MONTH, MIN_REPLICAS, TARGET_UTILIZATION
from harness.analysis.serving import moving_parts as kind_moving_parts
from harness.core.errors import ConfigError, from_fields


@dataclass(frozen=True)
class DecisionConfig:
    """The run's `decision:` block (harness.engine.config validates it; the CLI's decision flags override it)."""

    monthly_queries: int = 100_000          # a team-internal assistant: about 3,300 questions a day
    refresh_days: float | None = 30         # the documents change monthly: re-index or re-train every 30 days;
    #                                         null: never
    latency_target_s: float | None = None   # p95 seconds a caller may wait; null: no target
    margin: float = 0.02                    # absolute, headline metric: the largest drop from the best we accept
    #                                         (the gate's default)
    min_quality: float | None = None        # the bar a strategy's pooled mean must reach; null: no bar
    cost_tolerance: float = 0.10            # monthly costs within 10% of the cheapest count as equal: below the
    #                                         precision of price lists and of throughput measured on one machine
    min_replicas: float = MIN_REPLICAS      # machines always on; 0: scale to zero (pay busy time / utilization)
    target_utilization: float = TARGET_UTILIZATION  # see harness.analysis.serving: twice the average load as
    #                                                 headroom for peaks
    hours_per_month: float = HOURS_PER_MONTH
    measured_on: str | None = None          # machine name in prices.yaml the run's timings stand for;
    #                                         null: by environment

    def __post_init__(self):
        q = self.monthly_queries
        if isinstance(q, bool) or not isinstance(q, int) or q < 0:
            raise ConfigError(f"decision.monthly_queries must be an integer >= 0, got {q!r}")
        for name, positive in (("refresh_days", True), ("latency_target_s", True), ("min_quality", False)):
            v = getattr(self, name)
            if v is not None and (not _num(v) or v < 0 or (positive and v == 0 and name == "latency_target_s")):
                raise ConfigError(f"decision.{name} must be a number >= 0 or null, got {v!r}")
        for name in ("margin", "cost_tolerance", "min_replicas"):
            v = getattr(self, name)
            if not _num(v) or v < 0:
                raise ConfigError(f"decision.{name} must be a number >= 0, got {v!r}")
        if not _num(self.target_utilization) or not 0 < self.target_utilization <= 1:
            raise ConfigError(f"decision.target_utilization must be in (0, 1], got {self.target_utilization!r}")
        if not _num(self.hours_per_month) or not 0 < self.hours_per_month <= 744:
            raise ConfigError(f"decision.hours_per_month must be in (0, 744], got {self.hours_per_month!r}")
        if self.measured_on is not None and not isinstance(self.measured_on, str):
            raise ConfigError(f"decision.measured_on must be a machine name, got {self.measured_on!r}")

    @classmethod
    def from_dict(cls, values: Mapping | None, where: str = "decision") -> DecisionConfig:
        return from_fields(cls, dict(values or {}), f"{where}: unknown key(s)")


def _num(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


# ----------------------------------------------------------------------------------------------
# The rule


@dataclass(frozen=True)
class Candidate:
    """One strategy: scores {seed: {qid: score}} (or {qid: score}), its monthly $ (None: not priced),
    kind (prompting | rag | adapter | adapter+rag | full | full+rag) or moving_parts, p95 / p50 latency s."""

    name: str
    scores: Mapping
    monthly_usd: float | None = None
    kind: str | None = None
    moving_parts: int | None = None
    p95_s: float | None = None
    p50_s: float | None = None
    latency_source: str | None = None   # "probe" (batch-1 latency probe) | "batched" (the run's batched answering)

    @classmethod
    def of(cls, value: Candidate | Mapping) -> Candidate:
        if isinstance(value, Candidate):
            return value
        return from_fields(cls, value, "unknown candidate field(s)")

    @property
    def parts(self) -> int:
        if self.moving_parts is not None:
            return self.moving_parts
        return kind_moving_parts(self.kind) if self.kind else 0


@dataclass
class Row:
    """One strategy's line of the verdict table. status: chosen | reference (most accurate, not chosen,
    never left so: it becomes one of the next three) | dearer (within the margin, > tolerance dearer) |
    cost tie, lower mean | cost tie, more moving parts | non-inferior (only when nothing is chosen) |
    inconclusive | inferior | below the bar | over the latency target | not priced | no scores.
    sentence: the row's verdict in words, with its numbers."""

    name: str
    estimate: Estimate
    comparison: Comparison | None
    meets_bar: bool
    meets_latency: bool
    monthly_usd: float | None
    per_query_usd: float | None
    per_correct_usd: float | None
    moving_parts: int
    p95_s: float | None
    status: str = ""
    sentence: str = ""


@dataclass
class Verdict:
    chosen: str | None
    reference: str | None
    reasons: list[str]
    rows: list[Row]
    changes: list[str]
    settings: dict
    metric: str
    compared_with: str | None = None  # what the rows' comparisons are against: the reference, or when no strategy
    #                                   meets the requirements the most accurate of all (for reading only)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class _Stats:
    """Estimates and comparisons, computed once and reused by every scenario of 'what would change'."""

    def __init__(self, cands: list[Candidate], margin: float, n_boot: int, seed: int):
        self.cands = {c.name: c for c in cands}
        self.margin, self.n_boot, self.seed = margin, n_boot, seed
        self.est = {c.name: pooled_mean(c.scores, n_boot, seed) for c in cands}
        self._cmp: dict[tuple[str, str], Comparison] = {}

    def cmp(self, a: str, b: str) -> Comparison:
        if (a, b) not in self._cmp:
            self._cmp[(a, b)] = non_inferiority(self.cands[a].scores, self.cands[b].scores, self.margin,
                                                names=(a, b), n_boot=self.n_boot, seed=self.seed)
        return self._cmp[(a, b)]


LATENCY_SOURCES = {
    "probe": "batch-1 probe: one query answered alone",
    "batched": "batched run: one query's wait for its whole batch",
    "endpoint": "endpoint requests: each query's own request, any queue at the server included",
}


def _lat(c: Candidate) -> str:
    """A candidate's p95 latency with the measurement it comes from."""
    if c.p95_s is None:
        return "not measured"
    tag = {"probe": "batch-1", "batched": "batched", "endpoint": "per request"}.get(c.latency_source or "")
    return f"{c.p95_s:.2f} s" + (f", {tag}" if tag else "")


def _same(x: float, y: float) -> bool:
    return math.isclose(x, y, rel_tol=0, abs_tol=1e-12)


def _decide(st: _Stats, cfg: DecisionConfig, costs: Mapping[str, float | None],
            force: Mapping[str, str] | None = None) -> dict:
    """The rule, on cached statistics. force: name -> outcome to assume (for 'what would change')."""
    force = force or {}
    names = [n for n in st.cands if st.est[n].mean is not None]
    bar = {n: cfg.min_quality is None or st.est[n].mean >= cfg.min_quality for n in names}
    lat = {n: cfg.latency_target_s is None or (st.cands[n].p95_s is not None
                                                and st.cands[n].p95_s <= cfg.latency_target_s) for n in names}
    ok = [n for n in names if bar[n] and lat[n]]
    ref = max(ok, key=lambda n: (st.est[n].mean, -st.cands[n].parts, _neg(n))) if ok else None
    outcomes = {}
    for n in ok:
        if n != ref:
            c = st.cmp(n, ref)
            outcomes[n] = force.get(n) or outcome(c.low, c.high, cfg.margin)
    contenders = [n for n in ok if (n == ref or outcomes[n] == "non-inferior") and costs.get(n) is not None]
    chosen, tied, cheapest = None, [], None
    if contenders:
        cheapest = min(costs[n] for n in contenders)
        tied = [n for n in contenders if costs[n] <= cheapest * (1 + cfg.cost_tolerance)]
        best_mean = max(st.est[n].mean for n in tied)
        top = [n for n in tied if _same(st.est[n].mean, best_mean)]
        chosen = min(top, key=lambda n: (st.cands[n].parts, costs[n], n))
    return {"names": names, "bar": bar, "lat": lat, "ok": ok, "ref": ref, "outcomes": outcomes,
            "contenders": contenders, "tied": tied, "cheapest": cheapest, "chosen": chosen}


def _neg(name: str) -> tuple:
    return tuple(-ord(ch) for ch in name)  # on a full tie, the alphabetically first name


def _a_month(x: float | None) -> str:
    return "not priced" if x is None else f"{_usd(x)} a month"


def _usd(x: float | None) -> str:
    if x is None:
        return "not priced"
    if x == math.inf:
        return "infinite (no correct answers)"
    return serving.usd(x)


def _ci(e: Estimate) -> str:
    return (f"{e.mean:.3f} (95% CI {e.low:.3f}–{e.high:.3f}, {e.n_questions} questions, "
            f"{e.n_seeds} seed{'s' * (e.n_seeds != 1)})")


def _diff(c: Comparison) -> str:
    return f"{c.diff:+.3f} (95% CI {c.low:+.3f} to {c.high:+.3f})"


def recommend(candidates: Sequence[Candidate | Mapping], config: DecisionConfig | Mapping | None = None, *,
              metric: str = "score", cost_at: Callable[..., Mapping[str, float | None]] | None = None,
              n_boot: int = N_BOOT, seed: int = SEED) -> Verdict:
    """The recommendation, its reasons as sentences, a row per strategy, and what would change it.

    candidates: Candidate or dicts with its fields. config: DecisionConfig or the `decision:` dict.
    metric: the headline metric's label for the sentences ("token F1"). cost_at: optional
    callable(monthly_queries=, refresh_days=, usd_per_hour_scale=) -> {name: monthly $ or None}; with it,
    candidates' monthly_usd may be left None (taken from cost_at at the config's values) and the volume,
    refresh interval and machine price at which the answer flips are searched."""
    cfg = config if isinstance(config, DecisionConfig) else DecisionConfig.from_dict(config)
    cands = [Candidate.of(c) for c in candidates]
    if len({c.name for c in cands}) != len(cands):
        raise ValueError("candidate names must be unique")
    base_costs = {c.name: c.monthly_usd for c in cands}
    if cost_at is not None:
        at = dict(cost_at(monthly_queries=cfg.monthly_queries, refresh_days=cfg.refresh_days, usd_per_hour_scale=1.0))
        base_costs = {n: (base_costs[n] if base_costs[n] is not None else at.get(n)) for n in base_costs}
    st = _Stats(cands, cfg.margin, n_boot, seed)
    d = _decide(st, cfg, base_costs)
    settings = {"margin": cfg.margin, "min_quality": cfg.min_quality, "cost_tolerance": cfg.cost_tolerance,
                "latency_target_s": cfg.latency_target_s, "monthly_queries": cfg.monthly_queries,
                "refresh_days": cfg.refresh_days, "alpha": ALPHA, "n_boot": n_boot, "seed": seed}
    rows = _rows(st, cfg, d, base_costs, metric)
    reasons = _reasons(st, cfg, d, base_costs, metric, rows)
    changes = _changes(st, cfg, d, base_costs, cost_at)
    return Verdict(d["chosen"], d["ref"], reasons, rows, changes, settings, metric, _base(st, d))


def _base(st: _Stats, d: dict) -> str | None:
    """The reference, or with none (no strategy meets the requirements) the most accurate of all."""
    if d["ref"] or not d["names"]:
        return d["ref"]
    return max(d["names"], key=lambda n: (st.est[n].mean, -st.cands[n].parts, _neg(n)))


def _rows(st: _Stats, cfg: DecisionConfig, d: dict, costs, metric: str) -> list[Row]:
    rows = []
    base = _base(st, d)
    for n, c in st.cands.items():
        e = st.est[n]
        cost = costs.get(n)
        q = cfg.monthly_queries
        per_q = cost / q if cost is not None and q else None
        per_c = None
        if cost is not None and q and e.mean is not None:
            per_c = math.inf if e.mean <= 0 else cost / (q * e.mean)
        cmp = st.cmp(n, base) if base and n != base and e.mean is not None else None
        r = Row(n, e, cmp, bool(d["bar"].get(n)), bool(d["lat"].get(n)), cost, per_q, per_c, c.parts, c.p95_s)
        if e.mean is None:
            r.status, r.sentence = "no scores", f"{n}: no scored questions."
        elif not (r.meets_latency and r.meets_bar):
            fails = []
            if not r.meets_latency:
                fails.append(f"p95 latency {_lat(c)}, over the target of {cfg.latency_target_s:g} s")
            if not r.meets_bar:
                fails.append(f"{metric} {e.mean:.3f}, below the quality bar of {cfg.min_quality:g}")
            r.status = "over the latency target" if not r.meets_latency else "below the bar"
            r.sentence = f"{n}: " + "; ".join(fails) + "."
        elif n == d["ref"]:
            r.status = "reference"
            r.sentence = f"{n}: the most accurate strategy that meets the requirements, {metric} {_ci(e)}."
        else:
            o = d["outcomes"][n]
            r.status = o
            if o == "non-inferior":
                r.sentence = (f"{n}: difference from {d['ref']} {_diff(cmp)}; the interval lies above -{cfg.margin:g}, "
                              f"so it is within the margin of the most accurate (it may still be up to "
                              f"{cfg.margin:g} worse).")
            elif o == "inferior":
                r.sentence = (f"{n}: difference from {d['ref']} {_diff(cmp)}; the whole interval lies below "
                              f"-{cfg.margin:g}: less accurate by more than the margin.")
            else:
                r.sentence = (f"{n}: difference from {d['ref']} {_diff(cmp)}; the interval reaches below "
                              f"-{cfg.margin:g} "
                              f"and above it: not shown to be within the margin, nor to be worse by more than it. "
                              + _needed(cmp))
        if n == d["chosen"]:
            r.status = "chosen"
        elif n in d["tied"]:
            r.status = ("cost tie, lower mean" if not _same(e.mean, st.est[d["chosen"]].mean)
                        else "cost tie, more moving parts")
        elif n in d["contenders"]:
            r.status = "dearer"
        elif r.status in ("reference", "non-inferior") and cost is None:
            r.status = "not priced"
        rows.append(r)
    return rows


def _needed(c: Comparison) -> str:
    if c.questions_needed is None:
        if c.settles_toward is None:
            return "Its difference sits exactly on the margin: no number of questions is expected to settle it."
        return ("The variance between seeds alone keeps the interval wider than the distance to the margin: "
                "more seeds, not only more questions, would be needed.")
    more = max(c.questions_needed - c.n_questions, 0)
    toward = "within the margin" if c.settles_toward == "non-inferior" else "worse by more than the margin"
    tail = (f"about {c.questions_needed:,} questions in all ({more:,} more)" if more else
            f"about {c.questions_needed:,} questions by the normal approximation, no more than the "
            f"{c.n_questions:,} asked: it sits at the edge, where the bootstrap and normal intervals differ")
    return (f"If the observed difference and spread hold, {tail} would show it {toward} "
            f"(half the time; {c.questions_needed_80:,} for an 80% chance)." if c.questions_needed_80 else
            f"If the observed difference and spread hold, {tail} would show it {toward}.")


def _rules(cfg: DecisionConfig, metric: str = "score", st: _Stats | None = None) -> str:
    """The rule in plain words, with this run's margin, bar, latency target and cost tolerance."""
    bar = (f"reach the quality bar of {cfg.min_quality:g} {metric}" if cfg.min_quality is not None else
           "meet no quality bar (none is set: the choice is the best of these strategies, not a judgement that "
           "its answers are good enough)")
    lat = (f"answer within a p95 latency of {cfg.latency_target_s:g} s" if cfg.latency_target_s
           else "meet no latency target (none is set)")
    out = (f"How this is decided: a strategy must {bar} and {lat}. The most accurate of those is the reference. "
           f"Another counts as within the margin of it only when the 95% interval of their paired difference stays "
           f"above -{cfg.margin:g} {metric}: the data rule out a drop larger than {cfg.margin:g} (it may still be "
           f"up to {cfg.margin:g} worse). Among the reference and those within the margin, monthly costs within "
           f"{cfg.cost_tolerance:.0%} of the cheapest count as equal; of equal costs the higher measured {metric} "
           f"wins, then the one with fewer moving parts (no index and no training, then one of them, then both).")
    if cfg.latency_target_s and st is not None:
        src: dict[str, list[str]] = {}
        for n, c in st.cands.items():
            src.setdefault(c.latency_source or "unknown", []).append(n)
        parts = [f"{LATENCY_SOURCES.get(k, 'source not recorded')} for {', '.join(v)}" for k, v in src.items()]
        out += " Latency held against the target: p95 of the " + "; of the ".join(parts) + "."
    return out


def _days(x: float) -> str:
    return f"{x:.3g} day" + ("" if x == 1 else "s")


def _load(cfg: DecisionConfig) -> str:
    refresh = f"a refresh every {_days(cfg.refresh_days)}" if cfg.refresh_days else "no refresh"
    return f"{cfg.monthly_queries:,} queries a month and {refresh}"


def _reasons(st: _Stats, cfg: DecisionConfig, d: dict, costs, metric: str, rows: list[Row]) -> list[str]:
    if not d["names"]:
        return ["No strategy has scored questions: nothing to recommend.", _rules(cfg, metric, st)]
    if d["chosen"] is None:
        return _why_nothing_chosen(st, cfg, d, metric) + [_rules(cfg, metric, st)]
    row = next(r for r in rows if r.name == d["chosen"])
    return ([_headline(st, cfg, d["chosen"], costs, metric, row), _rules(cfg, metric, st),
             _against_reference(st, cfg, d, costs, metric)]
            + _cost_ties(st, cfg, d, costs, metric) + _the_others(st, cfg, d, costs))


def _why_nothing_chosen(st: _Stats, cfg: DecisionConfig, d: dict, metric: str) -> list[str]:
    if d["ok"]:
        return [f"No strategy can be recommended: {d['ref']} and every strategy within the margin of it "
                "lack a monthly cost (a throughput or a price is missing: see Serving cost)."]
    out = ["No strategy can be recommended: none meets the requirements."]
    lat_ok = [n for n in d["names"] if d["lat"][n]]
    if cfg.min_quality is not None:
        out += _short_of_bar(st, cfg, d, metric, lat_ok)
    slow_ok = [n for n in d["names"] if d["bar"][n] and not d["lat"][n]] if cfg.min_quality is not None else []
    if slow_ok:
        out.append("Reaching the bar but over the p95 latency target of "
                   f"{cfg.latency_target_s:g} s: " + ", ".join(f"{n} ({_lat(st.cands[n])})" for n in slow_ok) + ".")
    if not lat_ok:
        out.append(_short_of_latency(st, cfg, d))
    return out


def _short_of_bar(st: _Stats, cfg: DecisionConfig, d: dict, metric: str, lat_ok: list[str]) -> list[str]:
    """How far the strategy closest to the quality bar (within the latency target when any is) falls short."""
    close = max(lat_ok or d["names"], key=lambda n: st.est[n].mean)
    e = st.est[close]
    if e.mean >= cfg.min_quality:
        return []
    out = [f"None reaches the quality bar of {cfg.min_quality:g} {metric}"
           + (" among those within the latency target" if lat_ok and len(lat_ok) < len(d["names"]) else "")
           + f"; the closest, {close}, scores {_ci(e)}: {cfg.min_quality - e.mean:.3f} short."]
    top = max(d["names"], key=lambda n: st.est[n].mean)
    if e.mean < st.est[top].mean < cfg.min_quality:  # (one over it and the target: said next)
        out.append(f"Over the latency target, {top} scores {st.est[top].mean:.3f}, "
                   f"{cfg.min_quality - st.est[top].mean:.3f} short of the bar.")
    return out


def _short_of_latency(st: _Stats, cfg: DecisionConfig, d: dict) -> str:
    """None meets the latency target: how far the fastest is over it."""
    timed = [n for n in d["names"] if st.cands[n].p95_s is not None]
    if not timed:
        return f"No strategy has a measured p95 latency to hold against the target of {cfg.latency_target_s:g} s."
    fast = min(timed, key=lambda n: st.cands[n].p95_s)
    return (f"None meets the p95 latency target of {cfg.latency_target_s:g} s; the fastest, {fast}, "
            f"has a p95 of {_lat(st.cands[fast])}, {st.cands[fast].p95_s - cfg.latency_target_s:.2f} s over.")


def _headline(st: _Stats, cfg: DecisionConfig, w: str, costs, metric: str, row: Row) -> str:
    """The chosen strategy with its score, monthly cost, cost per query and per correct answer."""
    return (f"For {_load(cfg)}: **{w}**, {metric} {_ci(st.est[w])}, {_usd(costs[w])} a month "
            f"({_usd(row.per_query_usd)} per query, {_usd(row.per_correct_usd)} per correct answer"
            + (f", counting {metric} as the share of an answer that is correct"
               if metric not in ("accuracy", "exact match") else "") + ").")


def _against_reference(st: _Stats, cfg: DecisionConfig, d: dict, costs, metric: str) -> str:
    w, ref = d["chosen"], d["ref"]
    ties = [n for n in d["ok"] if n != ref and _same(st.est[n].mean, st.est[ref].mean)]
    names = " and ".join([", ".join(ties[:-1]), ties[-1]] if len(ties) > 1 else ties)
    tied = (f", tied with {names} at {st.est[ref].mean:.3f} (of equal scores the one with fewer moving parts, then "
            "the first by name, is the reference)") if ties else ""
    if w == ref:
        return f"{w} is the most accurate strategy that meets the requirements{tied}."
    return (f"The most accurate that meets the requirements is {ref}, {metric} {_ci(st.est[ref])}, "
            f"{_a_month(costs.get(ref))}{tied}. {w} differs from it by {_diff(st.cmp(w, ref))}: the interval lies "
            f"above -{cfg.margin:g}, so {w} is within the margin (it may be up to {cfg.margin:g} worse, not shown to "
            "be as good).")


def _cost_ties(st: _Stats, cfg: DecisionConfig, d: dict, costs, metric: str) -> list[str]:
    """The strategies as cheap as the chosen one (within the tolerance), and what broke the tie."""
    w = d["chosen"]
    tied = [n for n in d["tied"] if n != w]
    if not tied:
        return []
    mean = st.est[w].mean
    out = [f"Costs within {cfg.cost_tolerance:.0%} of the cheapest ({_usd(d['cheapest'])}) count as equal: "
           + ", ".join(f"{n} at {_usd(costs[n])}" for n in [w] + tied) + "."]
    lower = [n for n in tied if not _same(st.est[n].mean, mean)]
    same = [n for n in tied if _same(st.est[n].mean, mean)]
    if lower:
        out.append(f"Of those, {w} has the highest measured {metric} ({mean:.3f} against "
                   + ", ".join(f"{n} {st.est[n].mean:.3f}" for n in lower)
                   + "); this ordering is of point estimates, not a significant difference.")
    if same:
        out.append(f"{w} and {', '.join(same)} have the same measured {metric} ({mean:.3f}); {w} has fewer "
                   f"moving parts ({st.cands[w].parts} against "
                   + ", ".join(f"{n} {st.cands[n].parts}" for n in same) + ")."
                   if any(st.cands[n].parts > st.cands[w].parts for n in same) else
                   f"{w} and {', '.join(same)} have the same measured {metric} and moving parts; {w} costs least.")
    return out


def _the_others(st: _Stats, cfg: DecisionConfig, d: dict, costs) -> list[str]:
    """Why each other strategy was not chosen, grouped by reason; a caution when the chosen one's interval
    reaches below the bar."""
    w, ref = d["chosen"], d["ref"]
    out: list[str] = []
    dearer = [n for n in d["contenders"] if n not in d["tied"]]
    if dearer:
        out.append(f"Also within the margin but more than {cfg.cost_tolerance:.0%} dearer: "
                   + ", ".join(f"{n} ({_usd(costs[n])})" for n in sorted(dearer, key=lambda n: costs[n])) + ".")
    incon = [n for n, o in d["outcomes"].items() if o == "inconclusive"]
    if incon:
        out.append("Not shown to be within the margin of " + ref + " (inconclusive, so it does not compete on cost): "
                   + "; ".join(f"{n}, {_diff(st.cmp(n, ref))}" for n in incon) + ".")
    inferior = [n for n, o in d["outcomes"].items() if o == "inferior"]
    if inferior:
        out.append(f"Below {ref} by more than the margin (whole interval under -{cfg.margin:g}): "
                   + "; ".join(f"{n}, {_diff(st.cmp(n, ref))}" for n in inferior) + ".")
    unpriced = [n for n in d["ok"] if costs.get(n) is None and (n == ref or d["outcomes"].get(n) == "non-inferior")]
    if unpriced:
        out.append("Within the margin but without a monthly cost, so not compared on cost: "
                   + ", ".join(unpriced) + ".")
    low_bar = [n for n in d["names"] if not d["bar"][n]]
    if low_bar:
        out.append(f"Below the quality bar of {cfg.min_quality:g}: "
                   + ", ".join(f"{n} ({st.est[n].mean:.3f})" for n in low_bar) + ".")
    e = st.est[w]
    if cfg.min_quality is not None and e.low < cfg.min_quality:
        out.append(f"Caution: {w}'s mean reaches the bar of {cfg.min_quality:g}, but its interval goes down to "
                   f"{e.low:.3f}: these questions do not show that it meets the bar.")
    slow = [n for n in d["names"] if not d["lat"][n]]
    if slow:
        out.append(f"Over the p95 latency target of {cfg.latency_target_s:g} s: "
                   + ", ".join(f"{n} ({_lat(st.cands[n])})" for n in slow) + ".")
    return out


# ----------------------------------------------------------------------------------------------
# What would change the answer


def _search(choice: Callable[[float], str | None], x0: float, lo: float, hi: float, steps_per_decade: int = 8,
            tol: float = 1e-4) -> dict[str, tuple[float, str | None] | None]:
    """Nearest x above and below x0 (within [lo, hi], log scale) where choice(x) differs from choice(x0):
    walk a geometric grid outward, then bisect the bracket to relative tolerance tol."""
    c0 = choice(x0)
    out: dict[str, tuple[float, str | None] | None] = {"up": None, "down": None}
    for key, end in (("up", hi), ("down", lo)):
        if x0 <= 0 or end <= 0 or (key == "up" and end <= x0) or (key == "down" and end >= x0):
            continue
        n = max(1, math.ceil(abs(math.log10(end / x0)) * steps_per_decade))
        prev = x0
        for i in range(1, n + 1):
            x = x0 * (end / x0) ** (i / n)
            if choice(x) != c0:
                a, b = prev, x  # choice(a) == c0, choice(b) != c0
                while abs(b - a) > tol * max(abs(a), abs(b)):
                    m = math.sqrt(a * b)
                    if choice(m) == c0:
                        a = m
                    else:
                        b = m
                out[key] = (b, choice(b))
                break
            prev = x
    return out


def _changes(st: _Stats, cfg: DecisionConfig, d: dict, costs, cost_at) -> list[str]:
    w = d["chosen"]
    out = _if_settled(st, cfg, d, costs) + _margin_changes(st, cfg, d, costs) + _requirement_changes(st, cfg, d, costs)
    if cost_at is None:
        return out or [f"No change of margin, bar or latency target examined here changes the answer "
                       f"({w or 'no strategy'})."]
    if not d["ok"]:  # nothing meets the requirements: no volume, refresh or price makes one meet them
        return out + ["No query volume, refresh interval or machine price changes this: costs only decide between "
                      "strategies that meet the requirements."]
    return out + _CostScenarios(st, cfg, w, cost_at).changes()


def _if_settled(st: _Stats, cfg: DecisionConfig, d: dict, costs) -> list[str]:
    """Statistics: a cheaper candidate that would win if it alone were shown within the margin."""
    w = d["chosen"]
    out = []
    for n, o in d["outcomes"].items():
        if o != "inconclusive" or costs.get(n) is None:
            continue
        c = st.cmp(n, d["ref"])
        if c.settles_toward == "non-inferior" and _decide(st, cfg, costs, force={n: "non-inferior"})["chosen"] == n:
            cost_w = _usd(costs.get(w)) if w else "-"
            out.append(f"{n} ({_a_month(costs[n])} against {cost_w}) would be chosen if more questions showed it "
                       f"within the margin. {_needed(c)}")
    return out


def _margin_changes(st: _Stats, cfg: DecisionConfig, d: dict, costs) -> list[str]:
    """The nearest margin, above and below today's, at which the choice changes."""
    if not d["ref"]:
        return []
    w = d["chosen"]
    out = []
    lows = sorted({-st.cmp(n, d["ref"]).low for n in d["outcomes"]})
    for t in [t for t in lows if t >= cfg.margin]:
        alt = _decide(st, dataclasses.replace(cfg, margin=t + 1e-9), costs)["chosen"]
        if alt != w:
            out.append(f"A margin above {t:.3f} (now {cfg.margin:g}) would make it {alt or 'no strategy'}"
                       + (f" ({_a_month(costs.get(alt))}): its interval reaches down to {-t:+.3f}."
                          if alt else "."))
            break
    for t in reversed([t for t in lows if t < cfg.margin]):
        alt = _decide(st, dataclasses.replace(cfg, margin=max(t, 0.0)), costs)["chosen"]
        if alt != w:
            out.append(f"A margin of {max(t, 0):.3f} or less (now {cfg.margin:g}) would make it "
                       f"{alt or 'no strategy'}: "
                       f"{w}'s interval reaches down to {-t:+.3f}.")
            break
    return out


def _requirement_changes(st: _Stats, cfg: DecisionConfig, d: dict, costs) -> list[str]:
    """The loosest latency target and quality bar that would let a strategy now failing them change the choice."""
    w = d["chosen"]
    out = []
    if cfg.latency_target_s is not None:
        slow = sorted((n for n in d["names"] if not d["lat"][n] and st.cands[n].p95_s is not None),
                      key=lambda n: st.cands[n].p95_s)
        for n in slow:
            alt = _decide(st, dataclasses.replace(cfg, latency_target_s=st.cands[n].p95_s), costs)
            if alt["chosen"] != w:
                out.append(f"A p95 latency target of {st.cands[n].p95_s:.2f} s or more "
                           f"(now {cfg.latency_target_s:g} s) "
                           f"would make it {alt['chosen'] or 'no strategy'}.")
                break
    if cfg.min_quality is not None:
        below = sorted((n for n in d["names"] if not d["bar"][n]), key=lambda n: -st.est[n].mean)
        for n in below:
            alt = _decide(st, dataclasses.replace(cfg, min_quality=st.est[n].mean), costs)
            if alt["chosen"] != w:
                out.append(f"A quality bar of {st.est[n].mean:.3f} or less (now {cfg.min_quality:g}) would make it "
                           f"{alt['chosen'] or 'no strategy'}.")
                break
    return out


class _CostScenarios:
    """The query volume, refresh interval and machine price at which the choice flips, each searched from
    today's value (cost_at prices every strategy at other values; the statistics stay those of the run)."""

    def __init__(self, st: _Stats, cfg: DecisionConfig, chosen: str | None, cost_at):
        self.st, self.cfg, self.w, self.cost_at = st, cfg, chosen, cost_at
        self.label = chosen or "no strategy"

    def changes(self) -> list[str]:
        return self.volume() + self.refresh() + self.price()

    def costs_at(self, **kw) -> dict:
        cfg = self.cfg
        args = {"monthly_queries": cfg.monthly_queries, "refresh_days": cfg.refresh_days, "usd_per_hour_scale": 1.0,
                **kw}
        return dict(self.cost_at(**args))

    def pick(self, **kw) -> str | None:
        return _decide(self.st, self.cfg, self.costs_at(**kw))["chosen"]

    def fmt(self, name, **kw) -> str:
        cs, w = self.costs_at(**kw), self.w
        return (f"{name or 'no strategy'} ({_usd(cs.get(name)) if name else '–'} against "
                f"{_usd(cs.get(w)) if w else '–'} for {self.label})")

    def volume(self) -> list[str]:
        q0 = self.cfg.monthly_queries
        if q0 <= 0:
            return []
        out = []
        found = _search(lambda q: self.pick(monthly_queries=q), q0, q0 / 1000, q0 * 1000)
        for key, word in (("up", "or more"), ("down", "or fewer")):
            if found[key]:
                q, alt = found[key]
                out.append(f"At about {q:,.0f} queries a month {word} (now {q0:,}): "
                           f"{self.fmt(alt, monthly_queries=q)}.")
        if not found["up"] and not found["down"]:
            out.append(f"The choice stays {self.label} from {q0 / 1000:,.0f} to {q0 * 1000:,.0f} queries a month.")
        return out

    def refresh(self) -> list[str]:
        r0, w = self.cfg.refresh_days, self.w
        out = []
        if not r0:
            for r in (1, 7, 30):
                alt = self.pick(refresh_days=r)
                if alt != w:
                    out.append(f"With a refresh every {r} day{'s' * (r > 1)} (now none): "
                               f"{self.fmt(alt, refresh_days=r)}.")
                    break
            return out
        never = self.pick(refresh_days=None)
        if never != w:
            out.append(f"With no refresh at all: {self.fmt(never, refresh_days=None)}.")
        found = _search(lambda r: self.pick(refresh_days=r), r0, 0.25, 3650)
        for key, word in (("down", "or more often"), ("up", "or less often")):
            if found[key]:
                r, alt = found[key]
                out.append(f"With a refresh every {_days(r)} {word} (now {_days(r0)}): "
                           f"{self.fmt(alt, refresh_days=r)}.")
        if never == w and not found["up"] and not found["down"]:
            out.append(f"The choice stays {self.label} with a refresh from every 0.25 to every 3,650 days, and with "
                       "none.")
        return out

    def price(self) -> list[str]:
        out = []
        found = _search(lambda k: self.pick(usd_per_hour_scale=k), 1.0, 0.01, 100)
        for key, word in (("up", "higher"), ("down", "lower")):
            if found[key]:
                k, alt = found[key]
                out.append(f"At {k:.4g} times today's machine price ({word}): {self.fmt(alt, usd_per_hour_scale=k)}.")
        if not (found["up"] or found["down"]):
            out.append(f"The choice stays {self.label} from 0.01 to 100 times today's machine price.")
        return out


# ----------------------------------------------------------------------------------------------
# From a run's records: one call for the report


@dataclass
class Decision:
    """decide()'s answer: the verdict, each strategy's measured facts and monthly cost (all inputs kept),
    the machine and hosted prices used (hosted_for: the strategies the hosted prices apply to), each
    strategy's latency with its source, and the break-even volumes between every two priced strategies (and, per
    pair, which is cheaper or whether both cost the same at each volume: serving.sides)."""

    verdict: Verdict
    facts: dict
    costs: dict
    machine: Any
    hosted: Any                                    # model label -> serving.Hosted: the per-token prices applied
    break_even: list[dict] = field(default_factory=list)
    latency: dict = field(default_factory=dict)
    hosted_for: list = field(default_factory=list)
    config: Any = None
    seeds: list = field(default_factory=list)
    curves: dict = field(default_factory=dict)     # name -> serving.CostCurve: monthly $ as a function of volume
    apart: list = field(default_factory=list)      # per pair: volumes where one is cheaper beyond cost_tolerance
    models: dict = field(default_factory=dict)     # name -> {label, name, backend[, base_url]}: what answered it
    sides: list = field(default_factory=list)      # per pair: from 0 on, the volumes where each is cheaper or both same

    def to_dict(self) -> dict:
        """Plain JSON data (non-finite numbers become null: JSON has no infinity)."""
        return _json_safe(dataclasses.asdict(self))


def _json_safe(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def cell_latency(cells: Sequence[Mapping]) -> dict:
    """p50 / p95 seconds a query waits, over a strategy's ok cells (its seeds), with the measurement used:
    the batch-1 latency probe (cell["probe"]: latency_p50_s, latency_p95_s, ttft_*) when every seed recorded
    one, else the batched run's per-query latency (cell["answer"]: latency_p50_s, latency_p95_s). The slowest
    seed's figure: a target must hold whichever seed is deployed."""
    ok = [c for c in cells if c.get("status") == "ok"]
    probes = [c.get("probe") for c in ok]
    if ok and all(isinstance(p, Mapping) and p.get("latency_p95_s") is not None for p in probes):
        def worst(key):
            vals = [p.get(key) for p in probes if p.get(key) is not None]
            return max(vals) if vals else None
        return {"source": "probe", "p50_s": worst("latency_p50_s"), "p95_s": worst("latency_p95_s"),
                "ttft_p50_s": worst("ttft_p50_s"), "ttft_p95_s": worst("ttft_p95_s"),
                "n": min(p.get("n") or 0 for p in probes) or None}
    ans = [c.get("answer") or {} for c in ok]
    p95 = [a["latency_p95_s"] for a in ans if a.get("latency_p95_s") is not None]
    p50 = [a["latency_p50_s"] for a in ans if a.get("latency_p50_s") is not None]
    batch = [(c.get("config") or {}).get("batch_size") for c in ok]
    return {"source": "batched" if p95 else None, "p50_s": max(p50) if p50 else None,
            "p95_s": max(p95) if p95 else None, "ttft_p50_s": None, "ttft_p95_s": None, "n": None,
            "batch_size": next((b for b in batch if b), None)}


def pool_facts(per_seed_facts: Sequence) -> Any:
    """One strategy's facts over its seeds: throughput n / sum(1 / qps_i) (total questions over total seconds,
    every seed answering the same questions), preparation and tokens averaged, sizes the largest."""
    fs = [f for f in per_seed_facts if f is not None]
    if not fs:
        return None
    if len(fs) == 1:
        return fs[0]
    qps = [f.queries_per_s for f in fs]
    rqps = [f.retrieval_queries_per_s for f in fs]

    def mean(xs):
        xs = [x for x in xs if x is not None]
        return sum(xs) / len(xs) if xs else None

    return serving.Facts(name=fs[0].name, kind=fs[0].kind, base_bytes=fs[0].base_bytes,
                 artifact_bytes=max(f.artifact_bytes for f in fs), index_bytes=max(f.index_bytes for f in fs),
                 embedder_bytes=max(f.embedder_bytes for f in fs),
                 queries_per_s=len(qps) / sum(1 / q for q in qps) if all(qps) else None,
                 batch_size=fs[0].batch_size, prepare_s=mean([f.prepare_s for f in fs]) or 0.0,
                 refresh_s=mean([f.refresh_s for f in fs]), prompt_tokens=mean([f.prompt_tokens for f in fs]),
                 output_tokens=mean([f.output_tokens for f in fs]),
                 retrieval_queries_per_s=len(rqps) / sum(1 / q for q in rqps) if all(rqps) else None)


def decide(results: Mapping, rows: Sequence[Mapping], benchmark: str, primary: str, table, config=None, *,
           metric: str | None = None, embedder_bytes: int = 0, n_boot: int = N_BOOT, seed: int = SEED) -> Decision:
    """The recommendation for one benchmark of a run, pooled over its seeds, from the records alone.

    results: results.json. rows: scored prediction lines (analysis.rescore's rows, or predictions.jsonl lines
    carrying the metric), each with strategy, seed, id and the `primary` metric. table: serving.PriceTable.
    config: DecisionConfig or the decision dict (default: the run's recorded `decision`).
    Each strategy is priced by the model it ran on (results.models; one model in older runs): a model
    answered by an endpoint per token at its hosted: price (by its name, else its label), and without one
    it is not priced (its throughput is the server's, not our machine's); a local model's hosted: price,
    when the table has one, applies to the strategy kinds it serves; the others run on the machine the
    run's timings stand for. Latency: see cell_latency."""
    cfg = config if isinstance(config, DecisionConfig) else DecisionConfig.from_dict(
        config if config is not None else (results.get("config") or {}).get("decision"))
    machine = table.measured_on(results.get("environment"), cfg.measured_on,
                                (results.get("config") or {}).get("usd_per_hour"))
    cells = [c for c in results.get("cells") or [] if c.get("benchmark", benchmark) == benchmark]
    scores = _scores_by_seed(rows, benchmark, primary)
    names = list(dict.fromkeys(c["strategy"] for c in cells))
    names += [n for n in scores if n not in names]
    of = {n: [c for c in cells if c["strategy"] == n] for n in names}
    facts = {n: pool_facts([serving.facts_from_cell(c, results, embedder_bytes=embedder_bytes) for c in of[n]])
             for n in names}
    model_of = {n: serving.cell_model(next(iter(of[n]), {}), results) for n in names}
    pricing = _Pricing(table, machine, serving.Load.of(cfg), facts, model_of, scores)
    costs = {n: pricing.price(n) for n in names}
    latency = {n: cell_latency(of[n]) for n in names}
    for n in names:  # an endpoint's answers were not batched by us: each query's latency is its request's
        if serving.is_served(model_of[n][1]) and latency[n].get("source") == "batched":
            latency[n] = {**latency[n], "source": "endpoint", "batch_size": None}
    cands = [Candidate(n, scores[n], costs[n].total_usd if costs.get(n) else None,
                       facts[n].kind if facts.get(n) else None, p95_s=latency[n]["p95_s"],
                       p50_s=latency[n]["p50_s"], latency_source=latency[n]["source"])
             for n in names if n in scores]
    verdict = recommend(cands, cfg, metric=metric or primary, cost_at=pricing.cost_at, n_boot=n_boot, seed=seed)
    curves = pricing.curves(costs)
    crossings, regions, sides = _break_even(curves, cfg.cost_tolerance)
    seeds = sorted({s for sc in scores.values() for s in sc}, key=lambda x: (str(type(x)), x))
    hosted = {model_of[n][0]: pricing.hosted(n) for n in names if pricing.hosted(n) is not None}
    models = {n: {k: v for k, v in (("label", label), ("name", rec.get("name")),
                                    ("backend", rec.get("backend", "local")), ("base_url", rec.get("base_url")))
                  if v is not None} for n, (label, rec) in model_of.items()}
    return Decision(verdict, facts, costs, machine, hosted, crossings, latency,
                    [n for n in names if pricing.hosted(n) is not None], cfg, seeds, curves, regions, models, sides)


def _scores_by_seed(rows: Sequence[Mapping], benchmark: str, primary: str) -> dict[str, dict]:
    """strategy -> seed -> question id -> the primary metric, from the benchmark's scored rows."""
    scores: dict[str, dict] = {}
    for r in rows:
        if r.get("benchmark", benchmark) == benchmark and primary in r:
            scores.setdefault(r["strategy"], {}).setdefault(r.get("seed", 0), {})[r["id"]] = float(r[primary])
    return scores


class _Pricing:
    """decide()'s prices: each strategy by the model it ran on, at the run's load or at another volume,
    refresh interval and machine price (for 'what would change the answer')."""

    def __init__(self, table, machine, load, facts: Mapping, model_of: Mapping, scores: Mapping):
        self.table, self.machine, self.load = table, machine, load
        self.facts, self.model_of, self.scores = facts, model_of, scores

    def hosted(self, n):
        """The per-token price that answers n, or None: it runs on the machine."""
        f = self.facts.get(n)
        label, record = self.model_of[n]
        h = serving.hosted_price(self.table, record, label)
        if f is None or h is None:
            return None
        return h if serving.is_served(record) or h.answers(f.kind) else None  # an endpoint answers every kind

    def unpriced(self, n) -> str | None:
        """Why n has no monthly cost: an endpoint model without a hosted: price (None: it is priced)."""
        label, record = self.model_of[n]
        if serving.is_served(record) and self.hosted(n) is None:
            return (f"model {label} ({record.get('name')}) is answered by an endpoint and "
                    f"{Path(self.table.source).name} has no hosted: price for it (add `{record.get('name')}: "
                    "{input_per_1m: ..., output_per_1m: ...}` under hosted:); its throughput is the server's, not a "
                    "machine of the price table")
        return None

    def mean_score(self, n) -> float | None:
        vals = [np.mean(list(q.values())) for q in self.scores.get(n, {}).values() if q]
        return float(np.mean(vals)) if vals else None

    def price(self, n, load=None, scale=1.0):
        f = self.facts.get(n)
        if f is None:
            return None
        return serving.monthly_cost(f, self.machine, self.load if load is None else load, hosted=self.hosted(n),
                                    accuracy=self.mean_score(n), usd_per_hour_scale=scale, unpriced=self.unpriced(n))

    def cost_at(self, monthly_queries, refresh_days, usd_per_hour_scale) -> dict:
        ld = serving.Load.of(self.load, monthly_queries=monthly_queries, refresh_days=refresh_days)
        out = {}
        for n in self.model_of:
            c = self.price(n, ld, usd_per_hour_scale)
            out[n] = c.total_usd if c else None
        return out

    def curves(self, costs: Mapping) -> dict:
        """name -> monthly $ as a function of volume, for the strategies with a monthly cost."""
        curves = {}
        for n, f in self.facts.items():
            if f is not None and costs[n] is not None and costs[n].total_usd is not None:
                try:
                    curves[n] = serving.cost_curve(f, self.machine, self.load, hosted=self.hosted(n))
                except ValueError:
                    pass
        return curves


def _break_even(curves: Mapping, tolerance: float) -> tuple[list[dict], list[dict], list[dict]]:
    """For every two cost curves: the volumes where they cross, the volume ranges where one is cheaper
    by more than the tolerance, and the ranges where each is cheaper or both cost the same (serving.sides)."""
    crossings, regions, sides = [], [], []
    ordered = list(curves)
    for i, a in enumerate(ordered):
        for b in ordered[i + 1:]:
            for x in serving.break_even(curves[a], curves[b]):
                crossings.append({"a": a, "b": b, **dataclasses.asdict(x)})
            regions.append({"a": a, "b": b, "regions": [dataclasses.asdict(r) for r in
                                                        serving.apart(curves[a], curves[b], tolerance)]})
            sides.append({"a": a, "b": b, "sides": [dataclasses.asdict(s) for s in
                                                    serving.sides(curves[a], curves[b])]})
    return crossings, regions, sides
