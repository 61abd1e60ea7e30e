"""Paired, seed-pooled bootstrap estimates and the non-inferiority test: the statistics under the recommendation.

What it computes: each strategy's pooled mean score with its 95% interval (`pooled_mean` -> Estimate); a
candidate's paired difference from a reference on the questions both answered, with its interval, its outcome
and, when inconclusive, the number of questions that would settle it (`non_inferiority` -> Comparison;
`outcome`, `questions_needed`). harness.analysis.verdicts applies the decision rules to these numbers.

Why a non-inferiority test: a cheaper strategy is worth deploying in place of the most accurate one when it is
not worse by more than a margin we accept. "No significant difference" does not show that (too few questions
find no significant difference even between strategies far apart), so the test asks whether the data rule out
a drop larger than the margin.

Definitions (Δ: a candidate's mean score minus the reference's, on the same questions; [L, U]: its
paired-bootstrap 95% interval; δ: the margin (decision.margin), absolute, on the headline metric's scale):

* non-inferior ("within the margin of the most accurate"): L > -δ. The data rule out a drop larger
  than the margin at one-sided 2.5%. It does NOT say "as good": the candidate may be up to δ worse.
* inferior ("below the most accurate by more than the margin"): U < -δ.
* inconclusive: L <= -δ <= U: the interval holds both a drop larger than δ and one smaller; more
  questions would settle it (see questions_needed).
  Each comparison stands alone (no multiplicity adjustment): with k candidates the chance that an
  inferior one passes is at most k x 2.5%.

Pooled seeds: scores per seed and question. A strategy's estimate is the mean over seeds of its
mean over questions (the questions every seed answered). Its interval comes from a two-level
bootstrap: each replicate draws n questions with replacement once (every seed answered the same
questions, so seeds and questions are crossed and a question's difficulty is shared by all seeds)
and S seeds with replacement, and averages that S x n block; the percentiles of 10,000 replicates
give the interval. It carries question variance and seed variance. Paired differences draw the same
questions for both strategies and each strategy's seeds on their own (seed k of one strategy is not
tied to seed k of another). With one seed this is exactly stats.paired_bootstrap / metrics.bootstrap_ci
(same draws from the same generator), so the verdict agrees with the report's significance table.

Questions needed (inconclusive): normal approximation with the observed difference and spread held:
n such that z * sqrt(s_q^2 / n + v_s) < |Δ + δ|, i.e. n = s_q^2 / ((|Δ + δ| / z)^2 - v_s), z = 1.96 (the
95% interval), s_q the standard deviation over questions of the per-question difference averaged
over seeds, v_s the variance of the mean that comes from seeds (sample variance of the per-seed mean
scores / number of seeds, both strategies; 0 with one seed), which more questions do not reduce.
When Δ > -δ it is the number that would show non-inferiority, else inferiority. This is a 50% chance
(the observed difference exactly reproduced); `questions_needed_80` uses z + 0.84 for an 80% chance,
the standard non-inferiority sample-size formula n = ((z_a + z_b) s / (Δ + δ))^2.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

ALPHA = 0.05
Z = 1.959963984540054       # two-sided 95%: the interval's z
Z_POWER80 = 0.8416212335729143
N_BOOT = 10_000
SEED = 0  # a verdict must not change between two reports of the same records


Scores = Mapping[Any, Mapping[str, float]]  # seed -> question id -> score


def per_seed(scores: Mapping) -> dict[Any, dict[str, float]]:
    """{seed: {qid: score}}; a flat {qid: score} is one seed (0)."""
    if not scores:
        return {}
    first = next(iter(scores.values()))
    if isinstance(first, Mapping):
        return {s: {str(q): float(v) for q, v in qs.items()} for s, qs in scores.items()}
    return {0: {str(q): float(v) for q, v in scores.items()}}


def _common(*strategies: Mapping) -> list[str]:
    ids = None
    for sc in strategies:
        for qs in sc.values():
            ids = set(qs) if ids is None else ids & set(qs)
    return sorted(ids or ())


def _matrix(sc: Mapping, ids: Sequence[str]) -> np.ndarray:
    """(seeds, questions) array, seeds in sorted order."""
    return np.array([[sc[s][q] for q in ids] for s in sorted(sc, key=str)], dtype=float)


def _counts(rng: np.random.Generator, n_boot: int, n: int):
    """Blocks of question resampling counts (rows: replicates), drawn exactly as stats.paired_bootstrap draws."""
    block = max(1, 4_000_000 // max(n, 1))
    done = 0
    while done < n_boot:
        b = min(block, n_boot - done)
        idx = rng.integers(0, n, size=(b, n))
        counts = np.bincount((idx + (np.arange(b) * n)[:, None]).ravel(), minlength=b * n).reshape(b, n)
        yield counts
        done += b


def _replicates(mats: Sequence[np.ndarray], signs: Sequence[float], n_boot: int, seed: int) -> np.ndarray:
    """Two-level bootstrap replicates of sum_i sign_i * pooled_mean(mats[i]); questions shared by all."""
    n = mats[0].shape[1]
    rq = np.random.default_rng(seed)             # questions: the same stream as stats.paired_bootstrap
    rs = np.random.default_rng([seed, 1])        # seeds: their own stream, so the question draws do not move
    out = []
    for counts in _counts(rq, n_boot, n):
        total = np.zeros(counts.shape[0])
        for X, sign in zip(mats, signs):
            seed_means = counts @ X.T / n        # (replicates, seeds): each seed's mean on the drawn questions
            S = X.shape[0]
            if S > 1:
                pick = rs.integers(0, S, size=(counts.shape[0], S))
                seed_means = np.take_along_axis(seed_means, pick, axis=1)
            total += sign * seed_means.mean(axis=1)
        out.append(total)
    return np.concatenate(out)


@dataclass(frozen=True)
class Estimate:
    """Pooled mean over seeds and questions with its two-level bootstrap 95% interval."""

    mean: float | None
    low: float | None
    high: float | None
    n_questions: int
    n_seeds: int
    seed_means: tuple[float, ...] = ()


def pooled_mean(scores: Mapping, n_boot: int = N_BOOT, seed: int = SEED, alpha: float = ALPHA) -> Estimate:
    sc = per_seed(scores)
    ids = _common(sc)
    if not ids:
        return Estimate(None, None, None, 0, len(sc))
    X = _matrix(sc, ids)
    reps = _replicates([X], [1.0], n_boot, seed)
    low, high = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
    return Estimate(float(X.mean(axis=1).mean()), float(low), float(high), len(ids), X.shape[0],
                    tuple(float(v) for v in X.mean(axis=1)))


@dataclass(frozen=True)
class Comparison:
    """candidate - reference on shared questions; outcome: non-inferior | inferior | inconclusive."""

    candidate: str
    reference: str
    diff: float
    low: float
    high: float
    margin: float
    outcome: str
    n_questions: int
    n_seeds: tuple[int, int]
    sd_question: float             # s_q
    var_seed: float                # v_s
    questions_needed: int | None   # inconclusive only; None: more questions alone cannot settle it
    questions_needed_80: int | None
    settles_toward: str | None     # what questions_needed would show: "non-inferior" or "inferior"


def outcome(low: float, high: float, margin: float) -> str:
    if low > -margin:
        return "non-inferior"
    if high < -margin:
        return "inferior"
    return "inconclusive"


def questions_needed(diff: float, sd_question: float, margin: float, var_seed: float = 0.0,
                     z: float = Z) -> int | None:
    """Smallest n with z * sqrt(sd^2 / n + var_seed) < |diff + margin| (normal approximation, the
    observed difference and spread held). None: |diff + margin| is 0, or the seed variance alone keeps
    the interval wider than that (more seeds, not more questions, are needed)."""
    gap = abs(diff + margin)
    room = (gap / z) ** 2 - var_seed
    if gap == 0 or room <= 0:
        return None
    if sd_question == 0:
        return 1
    n = sd_question ** 2 / room
    return math.floor(n) + 1  # strictly more than n


def non_inferiority(candidate: Mapping, reference: Mapping, margin: float, *, names: tuple[str, str] = ("a", "b"),
                    n_boot: int = N_BOOT, seed: int = SEED, alpha: float = ALPHA) -> Comparison:
    """Paired (two-level when there are several seeds) bootstrap of candidate - reference, and its outcome."""
    a, b = per_seed(candidate), per_seed(reference)
    ids = _common(a, b)
    if not ids:
        raise ValueError(f"{names[0]} and {names[1]} share no question")
    A, B = _matrix(a, ids), _matrix(b, ids)
    reps = _replicates([A, B], [1.0, -1.0], n_boot, seed)
    low, high = (float(v) for v in np.quantile(reps, [alpha / 2, 1 - alpha / 2]))
    diff = float(A.mean(axis=1).mean() - B.mean(axis=1).mean())
    per_q = A.mean(axis=0) - B.mean(axis=0)
    sd_q = float(per_q.std(ddof=1)) if len(ids) > 1 else 0.0
    var_s = sum(float(M.mean(axis=1).var(ddof=1)) / M.shape[0] for M in (A, B) if M.shape[0] > 1)
    out = outcome(low, high, margin)
    need = need80 = toward = None
    if out == "inconclusive":
        need = questions_needed(diff, sd_q, margin, var_s)
        need80 = questions_needed(diff, sd_q, margin, var_s, Z + Z_POWER80)
        toward = "non-inferior" if diff > -margin else "inferior" if diff < -margin else None
    return Comparison(names[0], names[1], diff, low, high, margin, out, len(ids), (A.shape[0], B.shape[0]),
                      sd_q, var_s, need, need80, toward)
