"""Decision statistics and rules against hand-computed numbers and exact enumeration
(harness/analysis/noninferiority.py, harness/analysis/verdicts.py)."""
import itertools
import math
import re

import numpy as np
import pytest

from harness.analysis import metrics, noninferiority, stats, verdicts
from harness.analysis.noninferiority import non_inferiority, outcome, pooled_mean, questions_needed
from harness.analysis.verdicts import Candidate, DecisionConfig, recommend
from harness.core.errors import ConfigError

N_BOOT = 2000  # enough for the verdicts below, whose intervals are exact (constant differences) or far from the margin


def sc(values, prefix="q"):
    return {f"{prefix}{i}": float(v) for i, v in enumerate(values)}


BASE = [0.9, 0.8, 0.7, 0.6, 0.5]  # mean 0.7


def texts(v):
    return v.reasons + v.changes + [r.sentence for r in v.rows]


def assert_honest(v):
    """'No significant difference' is never written as 'as good' / 'as accurate'."""
    for t in texts(v):
        assert "as good" not in t.replace("not shown to be as good", "") and "as accurate" not in t, t


# ---- the three outcomes


@pytest.mark.parametrize("low,high,expected", [
    (-0.01, 0.02, "non-inferior"),    # lower end above -0.02
    (-0.05, -0.03, "inferior"),       # upper end below -0.02
    (-0.03, 0.01, "inconclusive"),    # -0.02 inside the interval
    (-0.02, 0.01, "inconclusive"),    # on the margin: not above it (strict)
    (-0.04, -0.02, "inconclusive"),   # upper end on the margin: not below it
])
def test_outcome_definitions(low, high, expected):
    assert outcome(low, high, 0.02) == expected


def test_constant_differences_give_exact_intervals():
    # every question 0.01 lower: every resample's mean difference is -0.01, so the interval is [-0.01, -0.01]
    c = non_inferiority(sc([v - 0.01 for v in BASE]), sc(BASE), 0.02, n_boot=N_BOOT)
    assert (c.diff, c.low, c.high) == pytest.approx((-0.01, -0.01, -0.01))
    assert c.outcome == "non-inferior" and c.questions_needed is None
    c = non_inferiority(sc([v - 0.05 for v in BASE]), sc(BASE), 0.02, n_boot=N_BOOT)
    assert c.outcome == "inferior"


def test_inconclusive_sample_size_by_hand():
    # differences 0.3, -0.3, 0.28, -0.32: mean -0.01, sd^2 = (0.31^2 + 0.29^2 + 0.29^2 + 0.31^2) / 3 = 0.120133;
    # distance to the margin |-0.01 + 0.02| = 0.01; n > 0.120133 x 1.96^2 / 0.01^2 = 4,614.9 -> 4,615;
    # 80% chance: 0.120133 x (1.96 + 0.8416)^2 / 0.01^2 = 9,429.1 -> 9,430
    c = non_inferiority(sc([0.8, 0.2, 0.78, 0.18]), sc([0.5] * 4), 0.02, n_boot=N_BOOT)
    assert c.diff == pytest.approx(-0.01)
    assert c.sd_question ** 2 == pytest.approx(0.3604 / 3)
    assert c.outcome == "inconclusive" and c.settles_toward == "non-inferior"
    assert c.questions_needed == 4615 and c.questions_needed_80 == 9430
    assert c.var_seed == 0


def test_inconclusive_toward_inferior_by_hand():
    # differences 0.25, -0.35, 0.23, -0.33: mean -0.05, sd^2 = (2 x 0.3^2 + 2 x 0.28^2) / 3 = 0.112267;
    # distance |-0.05 + 0.02| = 0.03: n > 0.112267 x 1.96^2 / 0.0009 = 479.2 -> 480 would show it inferior
    c = non_inferiority(sc([0.75, 0.15, 0.73, 0.17]), sc([0.5] * 4), 0.02, n_boot=N_BOOT)
    assert c.outcome == "inconclusive" and c.settles_toward == "inferior"
    assert c.questions_needed == 480


def test_questions_needed_with_seed_variance():
    z2 = noninferiority.Z ** 2
    # room = (0.01 / 1.96)^2 - 1e-5 = 2.6032e-5 - 1e-5 = 1.6032e-5; n > 0.3^2 / 1.6032e-5 = 5,613.9 -> 5,614
    assert questions_needed(-0.01, 0.3, 0.02, 1e-5) == math.floor(0.09 / (1e-4 / z2 - 1e-5)) + 1
    assert questions_needed(-0.01, 0.3, 0.02, 1e-5) == 5614
    assert questions_needed(-0.01, 0.3, 0.02, 1e-4) is None   # seeds alone keep it wider: more seeds needed
    assert questions_needed(-0.02, 0.3, 0.02) is None         # exactly on the margin


# ---- one seed: the same numbers as stats.py and metrics.py


def test_one_seed_matches_stats_paired_bootstrap_and_metrics_ci():
    rng = np.random.default_rng(7)
    a, b = rng.random(41), rng.random(41)
    ids = [f"q{i:02d}" for i in range(41)]
    c = non_inferiority(dict(zip(ids, a)), dict(zip(ids, b)), 0.02, n_boot=3000, seed=5)
    p = stats.paired_bootstrap(a, b, n_boot=3000, seed=5)
    assert (c.diff, c.low, c.high) == pytest.approx((p["diff"], p["low"], p["high"]), abs=1e-12)
    e = pooled_mean(dict(zip(ids, a)), n_boot=2000, seed=0)
    m = metrics.bootstrap_ci(a, n_boot=2000, seed=0)
    assert (e.mean, e.low, e.high) == pytest.approx((m["mean"], m["low"], m["high"]), abs=1e-12)


# ---- pooled seeds: two-level bootstrap against exact enumeration


def _enumerate(mats, signs):
    """Every equally likely replicate: each strategy's seeds drawn on their own, questions shared."""
    n = mats[0].shape[1]
    seed_draws = [list(itertools.product(range(M.shape[0]), repeat=M.shape[0])) for M in mats]
    values = []
    for qs in itertools.product(range(n), repeat=n):
        for combo in itertools.product(*seed_draws):
            values.append(sum(sign * np.mean([M[s, list(qs)].mean() for s in draw])
                              for M, sign, draw in zip(mats, signs, combo)))
    return np.array(values)


def _scores(M):
    return {seed: sc(row) for seed, row in enumerate(M)}


def test_pooled_mean_against_exact_enumeration():
    X = np.array([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]])  # 2 seeds x 3 questions; question 1 is hard for both
    exact = _enumerate([X], [1.0])                     # 27 question draws x 4 seed draws = 108 outcomes
    assert len(exact) == 108
    e = pooled_mean(_scores(X), n_boot=200_000, seed=1)
    assert e.mean == pytest.approx(0.5)                # (2/3 + 1/3) / 2, by hand
    assert e.n_seeds == 2 and e.n_questions == 3 and e.seed_means == pytest.approx((2 / 3, 1 / 3))
    reps = noninferiority._replicates([X], [1.0], 200_000, 1)
    assert reps.mean() == pytest.approx(exact.mean(), abs=4 * exact.std() / math.sqrt(200_000))
    assert reps.var() == pytest.approx(exact.var(), rel=0.03)
    # shared questions matter: drawing questions anew for each seed would give another variance
    indep = np.array([np.mean([X[s, list(q)].mean() for s, q in zip(draw, qq)])
                      for draw in itertools.product(range(2), repeat=2)
                      for qq in itertools.product(itertools.product(range(3), repeat=3), repeat=2)])
    assert abs(exact.var() - indep.var()) > 0.1 * exact.var()
    assert e.low == pytest.approx(np.quantile(reps, 0.025)) and e.high == pytest.approx(np.quantile(reps, 0.975))


def test_pooled_paired_difference_against_exact_enumeration():
    A = np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])   # 2 seeds
    B = np.array([[0.0, 1.0, 1.0]])                    # 1 seed (a deterministic prompt)
    exact = _enumerate([A, B], [1.0, -1.0])
    c = non_inferiority(_scores(A), _scores(B), 0.02, n_boot=200_000, seed=2)
    assert c.diff == pytest.approx((2 / 3 + 1 / 3) / 2 - 2 / 3)   # -1/6
    assert c.n_seeds == (2, 1)
    reps = noninferiority._replicates([A, B], [1.0, -1.0], 200_000, 2)
    assert reps.mean() == pytest.approx(exact.mean(), abs=4 * exact.std() / math.sqrt(200_000))
    assert reps.var() == pytest.approx(exact.var(), rel=0.03)
    # the seed part of the variance: per-seed means 2/3 and 1/3, sample variance 1/18, over 2 seeds
    assert c.var_seed == pytest.approx(1 / 36)


def test_several_seeds_give_one_recommendation():
    rng = np.random.default_rng(0)
    truth = rng.random(30)
    good = {s: sc(np.clip(truth + rng.normal(0, 0.05, 30), 0, 1)) for s in range(3)}
    worse = {s: sc(np.clip(truth - 0.3 + rng.normal(0, 0.05, 30), 0, 1)) for s in range(3)}
    v = recommend([Candidate("good", good, 200.0, "rag"), Candidate("worse", worse, 100.0, "prompting")],
                  {}, n_boot=N_BOOT)
    assert v.chosen == "good"
    row = {r.name: r for r in v.rows}
    assert row["good"].estimate.n_seeds == 3 and row["worse"].status == "inferior"
    hand = np.mean([np.mean(list(good[s].values())) for s in range(3)])
    assert row["good"].estimate.mean == pytest.approx(hand)
    assert "3 seeds" in v.reasons[0]
    assert_honest(v)


# ---- the rule


def test_inferior_and_inconclusive_are_not_chosen_even_when_cheaper():
    v = recommend([Candidate("best", sc([0.5] * 4), 100.0, "rag"),
                   Candidate("noisy", sc([0.8, 0.2, 0.78, 0.18]), 10.0, "prompting"),
                   Candidate("bad", sc([0.4] * 4), 1.0, "prompting")], {}, metric="accuracy", n_boot=N_BOOT)
    assert v.chosen == "best" and v.reference == "best"
    row = {r.name: r for r in v.rows}
    assert (row["noisy"].status, row["bad"].status) == ("inconclusive", "inferior")
    assert "4,615 questions in all (4,611 more)" in row["noisy"].sentence
    assert any("Not shown to be within the margin" in r and "noisy" in r for r in v.reasons)
    # what would change: the cheaper inconclusive one, given more questions or a wider margin
    assert any(c.startswith("noisy ($10.00 a month against $100.00) would be chosen if more questions")
               for c in v.changes)
    assert any(c.startswith("A margin above 0.100 (now 0.02) would make it bad ($1.00 a month)") for c in v.changes)
    assert_honest(v)


def test_non_inferior_cheaper_one_is_chosen_and_the_words_say_within_the_margin():
    v = recommend([Candidate("best", sc(BASE), 100.0, "rag"),
                   Candidate("cheap", sc([x - 0.01 for x in BASE]), 50.0, "prompting")],
                  {"margin": 0.02}, metric="token F1", n_boot=N_BOOT)
    assert v.chosen == "cheap" and v.reference == "best"
    assert any("within the margin (it may be up to 0.02 worse, not shown to be as good)" in r for r in v.reasons)
    assert "per correct answer" in v.reasons[0]
    # $50 / (100,000 x 0.69) per correct answer
    row = {r.name: r for r in v.rows}
    assert row["cheap"].per_correct_usd == pytest.approx(50 / (100_000 * 0.69))
    assert row["cheap"].per_query_usd == pytest.approx(50 / 100_000)
    assert row["best"].status == "dearer"
    # a margin below 0.01 would rule it out
    assert any(c.startswith("A margin of 0.010 or less") and "would make it best" in c for c in v.changes)
    assert_honest(v)


def test_cost_tie_goes_to_fewer_moving_parts_on_equal_means():
    # same scores; 105 is within 10% of 100, so the costs count as equal; prompting (0 parts) beats adapter+rag (2)
    v = recommend([Candidate("lora-rag", sc(BASE), 100.0, "adapter+rag"),
                   Candidate("prompt", sc(BASE), 105.0, "prompting")], {}, n_boot=N_BOOT)
    assert v.chosen == "prompt"
    row = {r.name: r for r in v.rows}
    assert row["lora-rag"].status == "cost tie, more moving parts"
    assert any("fewer moving parts (0 against lora-rag 2)" in r for r in v.reasons)
    # 111 is not within 10% of 100: the cheaper one wins
    v = recommend([Candidate("lora-rag", sc(BASE), 100.0, "adapter+rag"),
                   Candidate("prompt", sc(BASE), 111.0, "prompting")], {}, n_boot=N_BOOT)
    assert v.chosen == "lora-rag"


def test_cost_tie_goes_to_the_higher_mean():
    best = Candidate("best", sc(BASE), 100.0, "rag")
    cheap = Candidate("cheap", sc([x - 0.01 for x in BASE]), 95.0, "prompting")
    v = recommend([best, cheap], {}, n_boot=N_BOOT)          # 100 <= 95 x 1.1 = 104.5: tied
    assert v.chosen == "best"
    assert any("best has the highest measured score (0.700 against cheap 0.690); this ordering is of point "
               "estimates" in r for r in v.reasons)
    assert {r.name: r.status for r in v.rows}["cheap"] == "cost tie, lower mean"
    assert recommend([best, cheap], {"cost_tolerance": 0.0}, n_boot=N_BOOT).chosen == "cheap"
    far = Candidate("cheap", sc([x - 0.01 for x in BASE]), 80.0, "prompting")
    v = recommend([best, far], {}, n_boot=N_BOOT)            # 100 > 88: dearer
    assert v.chosen == "cheap" and {r.name: r.status for r in v.rows}["best"] == "dearer"


def test_quality_bar_and_none_meets_it():
    p = Candidate("p", sc([0.6] * 5), 10.0, "rag")
    q = Candidate("q", sc([0.5] * 5), 1.0, "prompting")
    v = recommend([p, q], {"min_quality": 0.7}, metric="accuracy", n_boot=N_BOOT)
    assert v.chosen is None
    assert any("None reaches the quality bar of 0.7 accuracy; the closest, p, scores 0.600" in r and "0.100 short" in r
               for r in v.reasons)
    assert any("A quality bar of 0.600 or less (now 0.7) would make it p." == c for c in v.changes)
    v = recommend([p, q], {"min_quality": 0.55}, metric="accuracy", n_boot=N_BOOT)
    assert v.chosen == "p"
    assert {r.name: r.status for r in v.rows}["q"] == "below the bar"
    assert any("Below the quality bar of 0.55: q (0.500)" in r for r in v.reasons)
    assert_honest(v)


def test_bar_met_on_the_mean_but_not_the_interval_is_flagged():
    v = recommend([Candidate("p", sc([1, 0, 1, 1, 0, 1, 0, 1]), 10.0, "rag")], {"min_quality": 0.6}, n_boot=N_BOOT)
    assert v.chosen == "p"
    assert any(r.startswith("Caution: p's mean reaches the bar of 0.6, but its interval goes down to")
               for r in v.reasons)


def test_latency_target():
    slow = Candidate("slow", sc(BASE), 10.0, "rag", p95_s=10.0)
    fast = Candidate("fast", sc([0.2] * 5), 10.0, "prompting", p95_s=1.0)
    v = recommend([slow, fast], {"latency_target_s": 2}, n_boot=N_BOOT)
    assert v.chosen == "fast" and v.reference == "fast"
    assert any("Over the p95 latency target of 2 s: slow (10.00 s)" in r for r in v.reasons)
    assert "A p95 latency target of 10.00 s or more (now 2 s) would make it slow." in v.changes
    v = recommend([slow, fast], {"latency_target_s": 0.5}, n_boot=N_BOOT)
    assert v.chosen is None
    assert any("the fastest, fast, has a p95 of 1.00 s, 0.50 s over" in r for r in v.reasons)


def test_volume_flip_recomputed_on_the_cost_model():
    # same scores. A: hosted, $0.001 a query, 0 moving parts; B: an adapter on one always-on $73 machine.
    # Below 73,000 queries A is cheaper. Up to A = 1.1 x 73 = $80.30, i.e. 80,300 queries, the costs count as
    # equal and A wins on moving parts; above, B is chosen.
    def cost_at(monthly_queries, refresh_days, usd_per_hour_scale):
        return {"A": 0.001 * monthly_queries, "B": max(73.0, monthly_queries / 18000) * usd_per_hour_scale}

    cands = [Candidate("A", sc(BASE), kind="prompting"), Candidate("B", sc(BASE), kind="adapter")]
    v = recommend(cands, {"monthly_queries": 10_000}, cost_at=cost_at, n_boot=N_BOOT)
    assert v.chosen == "A"
    (flip,) = [c for c in v.changes if "queries a month or more" in c]
    q = float(re.search(r"At about ([\d,]+) queries", flip).group(1).replace(",", ""))
    assert q == pytest.approx(80_300, rel=2e-4)
    assert "B ($73.00 against $80.3" in flip
    # the machine price: B's cost scales with it; at 10,000 queries A = $10 ties with B only below 10 / 73 / 1.1...
    # B becomes the cheapest when 73 k < 10 / 1.1 -> k < 0.1245: the search finds it
    (price,) = [c for c in v.changes if "times today's machine price" in c]
    k = float(re.search(r"At ([\d.]+) times", price).group(1))
    assert k == pytest.approx(10 / 1.1 / 73, rel=1e-3)
    assert_honest(v)


def test_decision_config_validation():
    assert DecisionConfig.from_dict({"monthly_queries": 10, "refresh_days": None, "latency_target_s": 2}).margin == 0.02
    with pytest.raises(ConfigError, match="unknown key"):
        DecisionConfig.from_dict({"margins": 0.1})
    for bad in ({"target_utilization": 0}, {"target_utilization": 1.5}, {"margin": -0.1}, {"cost_tolerance": "x"},
                {"min_quality": True}, {"monthly_queries": 1.5}, {"hours_per_month": 800}, {"measured_on": 3}):
        with pytest.raises(ConfigError):
            DecisionConfig.from_dict(bad)


def test_nothing_to_recommend():
    v = recommend([], {}, n_boot=N_BOOT)
    assert v.chosen is None and "nothing to recommend" in v.reasons[0]
    v = recommend([Candidate("a", sc(BASE))], {}, n_boot=N_BOOT)  # not priced
    assert v.chosen is None and "lack a monthly cost" in v.reasons[0]


def test_decide_on_the_example_run():
    """The committed run (reports/example), without its quality bar: every strategy fits one always-on c6i.large at
    100,000 queries a month, so each costs the $62.05 floor (730 h x $0.085) plus its refreshes: a cost tie, which the
    most accurate wins. A strategy whose paired difference to it holds -0.02 is inconclusive, never 'as good'.
    Every figure by hand from the records."""
    import json
    from pathlib import Path

    from harness.analysis import serving

    ex = Path(__file__).resolve().parent.parent / "reports" / "example"
    results = json.loads((ex / "results.json").read_text())
    rows = [json.loads(line) for line in (ex / "predictions.jsonl").read_text().splitlines() if line.strip()]
    cells = {c["strategy"]: c for c in results["cells"]}
    table = serving.price_table({"machines": {"c6i.large": {"usd_per_hour": 0.085, "kind": "cpu"}},
                                 "default_machine": {"cpu": "c6i.large"}})
    f1 = {}
    for r in rows:
        f1.setdefault(r["strategy"], {})[r["id"]] = r["f1"]
    means = {n: sum(v.values()) / len(v) for n, v in f1.items()}
    best = max(means, key=means.get)
    d = verdicts.decide(results, rows, "squadshifts_nyt", "f1", table, {}, metric="token F1", n_boot=N_BOOT)
    v = d.verdict
    assert v.chosen == best and d.machine.name == "c6i.large"
    refresh = 30.4375 / 30  # refreshes a month at one every 30 days
    for n in ("zero-shot", "rag", "lora"):
        prepare_s = serving.facts_from_cell(cells[n], results).prepare_s
        assert d.costs[n].total_usd == pytest.approx(730 * 0.085 + refresh * prepare_s / 3600 * 0.085)
    row = {r.name: r for r in v.rows}
    for n, r in row.items():
        if n == best:
            continue
        shared = sorted(set(f1[n]) & set(f1[best]))
        assert r.comparison.diff == pytest.approx(sum(f1[n][q] - f1[best][q] for q in shared) / len(shared))
        c = r.comparison
        assert c.outcome == ("non-inferior" if c.low > -0.02 else "inferior" if c.high < -0.02 else "inconclusive")
    assert any(r.comparison and r.comparison.outcome == "inconclusive" for r in row.values())  # rag against lora-rag
    assert_honest(v)
    # scale to zero: the volume decides each cost, at the measured throughput and 50% utilization
    d0 = verdicts.decide(results, rows, "squadshifts_nyt", "f1", table, {"min_replicas": 0}, n_boot=N_BOOT)
    for n in ("rag", "lora-rag"):
        fa = serving.facts_from_cell(cells[n], results)
        assert d0.costs[n].total_usd == pytest.approx(100_000 / fa.queries_per_s / 3600 / 0.5 * 0.085
                                                      + refresh * fa.prepare_s / 3600 * 0.085)
    assert d0.verdict.chosen == best  # nothing is within the margin of it, so cost cannot pick another
    cheaper = [n for n, r in {r.name: r for r in d0.verdict.rows}.items() if r.status == "inconclusive"
               and d0.costs[n].total_usd < d0.costs[best].total_usd * 0.9]
    for n in cheaper:  # a cheaper inconclusive strategy: the verdict says what would settle it
        assert any(c.startswith(f"{n} (") and "would be chosen if more questions" in c for c in d0.verdict.changes)
