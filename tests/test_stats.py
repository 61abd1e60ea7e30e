"""Paired statistics against hand-computed values (and scipy where it is installed)."""
import math
import random

import numpy as np
import pytest

from harness.analysis import stats


def test_binomial_tail_by_hand():
    assert stats.binom_cdf_half(1, 5) == (1 + 5) / 32
    assert stats.binom_cdf_half(0, 9) == 1 / 512
    assert stats.binom_cdf_half(3, 12) == (1 + 12 + 66 + 220) / 4096
    assert stats.binom_cdf_half(-1, 4) == 0 and stats.binom_cdf_half(4, 4) == 1


def _pairs(only_a, only_b, both=0, neither=0):
    a = [1] * only_a + [0] * only_b + [1] * both + [0] * neither
    b = [0] * only_a + [1] * only_b + [1] * both + [0] * neither
    return a, b


@pytest.mark.parametrize("only_a,only_b,p", [
    (9, 0, 2 / 512),                               # 2 * 0.5^9
    (3, 9, 2 * (1 + 12 + 66 + 220) / 4096),        # 0.14599609375
    (8, 8, 1.0),                                   # balanced: no evidence either way
    (0, 0, 1.0),                                   # no discordant question at all
    (1, 4, min(1.0, 2 * (1 + 5) / 32)),            # 0.375
])
def test_mcnemar_exact_by_hand(only_a, only_b, p):
    a, b = _pairs(only_a, only_b, both=20, neither=30)
    r = stats.mcnemar_exact(a, b)
    assert (r["only_a"], r["only_b"]) == (only_a, only_b)
    assert r["p"] == pytest.approx(p, abs=1e-15)
    assert r["diff"] == pytest.approx((only_a - only_b) / len(a))
    assert stats.mcnemar_exact(b, a)["p"] == r["p"]  # two-sided: symmetric


def test_mcnemar_matches_scipy_binomtest():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = random.Random(0)
    for _ in range(40):
        x, y = rng.randint(0, 30), rng.randint(0, 30)
        if x + y == 0:
            continue
        a, b = _pairs(x, y, both=rng.randint(0, 5))
        ref = scipy_stats.binomtest(x, x + y, 0.5, alternative="two-sided").pvalue
        assert stats.mcnemar_exact(a, b)["p"] == pytest.approx(ref, rel=1e-9), (x, y)


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert stats.holm([]) == []
    assert stats.holm([0.02]) == [0.02]


def test_paired_bootstrap_is_seeded_and_sane():
    rng = np.random.default_rng(1)
    b = rng.random(400)
    a = b + rng.normal(0.05, 0.2, 400)
    r1, r2 = stats.paired_bootstrap(a, b, seed=3), stats.paired_bootstrap(a, b, seed=3)
    assert r1 == r2
    d = a - b
    assert r1["diff"] == pytest.approx(d.mean())
    half = 1.96 * d.std(ddof=1) / math.sqrt(d.size)  # normal approximation of the same interval
    assert r1["low"] == pytest.approx(d.mean() - half, abs=half * 0.15)
    assert r1["high"] == pytest.approx(d.mean() + half, abs=half * 0.15)
    assert r1["p"] < 0.001  # the shift is 5 standard errors


def test_paired_bootstrap_edges():
    same = stats.paired_bootstrap([0.2, 0.5, 1.0], [0.2, 0.5, 1.0])
    assert same["p"] == 1.0 and same["diff"] == 0.0
    shift = stats.paired_bootstrap([1.0] * 10, [0.0] * 10, n_boot=999)
    assert shift["low"] == shift["high"] == 1.0
    assert shift["p"] == pytest.approx(2 / 1000)  # (0 + 1) / (999 + 1), two-sided
    with pytest.raises(ValueError):
        stats.paired_bootstrap([1.0], [1.0, 0.0])


def _scores(values):
    return {f"q{i}": {"exact_match": float(v >= 0.5), "f1": float(v)} for i, v in enumerate(values)}


def test_comparisons_pairs_holm_and_verdicts():
    n = 60
    scores = {"zero-shot": _scores([0] * n), "rag": _scores([1] * 30 + [0] * 30), "lora": _scores([0] * n)}
    cmp = stats.comparisons(scores, "exact_match")
    assert cmp["best"] == "rag"
    pairs = {(r["strategy"], r["baseline"]) for r in cmp["rows"]}
    # each unordered pair once: zero-shot vs rag appears as rag vs zero-shot
    assert pairs == {("lora", "rag"), ("rag", "zero-shot"), ("lora", "zero-shot")}
    by = {(r["strategy"], r["baseline"]): r for r in cmp["rows"]}
    assert by[("rag", "zero-shot")]["em"]["p"] == pytest.approx(2 * 0.5 ** 30)
    assert by[("rag", "zero-shot")]["em"]["p_holm"] == pytest.approx(3 * 2 * 0.5 ** 30)
    assert by[("rag", "zero-shot")]["verdict"] == "significantly better"
    assert by[("lora", "rag")]["verdict"] == "significantly worse"
    assert by[("lora", "zero-shot")]["verdict"] == "no significant difference"
    assert by[("lora", "zero-shot")]["p_holm"] == 1.0
    assert "f1" not in by[("lora", "rag")]  # accuracy tasks: McNemar only


def test_comparisons_when_zero_shot_is_the_best_list_each_pair_once():
    n = 40
    scores = {"zero-shot": _scores([1] * n), "rag": _scores([1] * 30 + [0] * 10), "lora": _scores([0] * n)}
    cmp = stats.comparisons(scores, "exact_match")
    assert cmp["best"] == "zero-shot"
    assert sorted((r["strategy"], r["baseline"]) for r in cmp["rows"]) == [("lora", "zero-shot"), ("rag", "zero-shot")]
    by = {r["strategy"]: r for r in cmp["rows"]}
    # Holm over two comparisons, not four: the smaller p times 2, the larger times 1
    assert by["lora"]["em"]["p_holm"] == pytest.approx(2 * (2 * 0.5 ** 40))
    assert by["rag"]["em"]["p_holm"] == pytest.approx(2 * 0.5 ** 10)


def test_comparisons_use_only_shared_questions_and_bootstrap_f1():
    a = _scores([0.5] * 20)
    b = _scores([0.4] * 20)
    b.pop("q0")
    cmp = stats.comparisons({"zero-shot": b, "rag": a}, "f1")
    (row,) = cmp["rows"]
    assert row["n"] == 19 and row["primary_test"] == "f1"
    assert row["f1"]["diff"] == pytest.approx(0.1)
