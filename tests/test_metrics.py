"""Answer extraction, SQuAD scoring and bootstrap intervals, checked against hand-computed values."""
from __future__ import annotations

import pytest

from harness.analysis import metrics
from harness.analysis.metrics import (
    EXTRACTION_RULE,
    bootstrap_ci,
    contains,
    exact_match,
    extract_answer,
    normalize,
    paired_bootstrap_diff,
    percentile,
    score,
    token_f1,
)

# -- normalize -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "text, expected",
    [
        ("Paris", "paris"),
        ("  The   Gray\tRiver \n", "gray river"),                 # article dropped, whitespace collapsed
        ("an apple a day", "apple day"),                          # a / an removed as words
        ("Atlanta, Anaheim and Theo", "atlanta anaheim and theo"),  # ...but not inside words
        ("“Quoted” ‘text’", "quoted text"),                       # curly quotes are punctuation
        ('"Hello," she said.', "hello she said"),
        ("U.S.A.", "usa"),                                        # punctuation deleted, not spaced
        ("Mario Draghi's", "mario draghis"),
        ("THE END", "end"),
        ("", ""),
        ("the a an", ""),
    ],
)
def test_normalize(text, expected):
    assert normalize(text) == expected


def test_normalize_dashes():
    # En and em dashes separate words, so they become spaces; ASCII '-' is deleted as in SQuAD.
    assert normalize("1932–1950") == "1932 1950"
    assert normalize("bridge—river") == "bridge river"
    assert normalize("well-known") == "wellknown"


# -- exact match -------------------------------------------------------------------------------

def test_exact_match_after_normalisation():
    assert exact_match("The Gray River.", ["gray river"]) == 1.0
    assert exact_match("gray  river", ["The Gray River"]) == 1.0
    assert exact_match("Gray", ["Gray River"]) == 0.0
    assert exact_match("Paris", ["London", "paris"]) == 1.0   # any gold counts
    assert exact_match("Paris", []) == 0.0


def test_exact_match_returns_float():
    assert isinstance(exact_match("a", ["b"]), float)


# -- token F1 ----------------------------------------------------------------------------------

def test_f1_precision_below_one():
    # prediction tokens (normalised): gray river bridge; gold: gray river -> P = 2/3, R = 1
    p, r = 2 / 3, 1.0
    assert token_f1("the Gray River bridge", ["Gray River"]) == pytest.approx(2 * p * r / (p + r))
    assert token_f1("the Gray River bridge", ["Gray River"]) == pytest.approx(0.8)


def test_f1_recall_below_one():
    # prediction: alice; gold: alice stone -> P = 1, R = 1/2, F1 = 2/3
    assert token_f1("Alice", ["Alice Stone"]) == pytest.approx(2 / 3)


def test_f1_counts_repeated_tokens_once_per_match():
    # prediction: river river; gold: gray river -> one common token; P = 1/2, R = 1/2
    assert token_f1("river river", ["Gray River"]) == pytest.approx(0.5)


def test_f1_is_max_over_golds():
    # vs "October": P = 1/2 (every october), R = 1 -> 2/3; vs "every October": 1.0
    assert token_f1("every October", ["October"]) == pytest.approx(2 / 3)
    assert token_f1("every October", ["October", "every October"]) == pytest.approx(1.0)
    # 310 meters vs ["310", "three hundred ten meters"]: 2/3 and 2*(1/2*1/4)/(3/4)=1/3 -> max 2/3
    assert token_f1("310 meters", ["310", "three hundred ten meters"]) == pytest.approx(2 / 3)


def test_f1_no_overlap_is_zero():
    assert token_f1("Denver", ["Boulder"]) == 0.0
    assert token_f1("Denver", []) == 0.0


def test_f1_empty_sides():
    # SQuAD rule: if either side normalises to nothing, F1 is 1 only when both do
    assert token_f1("", ["Paris"]) == 0.0
    assert token_f1("the", ["a"]) == 1.0
    assert token_f1("Paris", ["the"]) == 0.0


# -- contains ----------------------------------------------------------------------------------

def test_contains_respects_word_boundaries():
    assert contains("The school has 4200 students", ["420"]) == 0.0
    assert contains("It has about 420 students.", ["420"]) == 1.0


def test_contains_normalises_both_sides():
    assert contains("He said: “The Gray River!”", ["gray river"]) == 1.0
    assert contains("GRAY RIVERS", ["Gray River"]) == 0.0
    assert contains("Nothing here", ["Denver", "Boulder"]) == 0.0
    assert contains("Boulder, Colorado", ["Denver", "Boulder"]) == 1.0


def test_contains_ignores_answers_that_normalise_to_nothing():
    assert contains("anything at all", ["the", "..."]) == 0.0


# -- extract_answer ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "output, expected",
    [
        ("The answer is: Paris.", "Paris"),
        ("Answer: 42", "42"),
        ("answer - 42", "42"),
        ("A: Denver", "Denver"),
        ("The answer to this question is: Rome.", "Rome"),
        ("The final answer is Lake Mira", "Lake Mira"),
        ("\n\n   Paris.\nLondon\n", "Paris"),               # first non-empty line only
        ('"Alice Stone."', "Alice Stone"),                    # quotes and final period stripped
        ("“Alice Stone”", "Alice Stone"),
        ("**October**", "October"),
        ("Paris", "Paris"),
        ("", ""),
        ("   \n  \n", ""),
    ],
)
def test_extract_answer(output, expected):
    assert extract_answer(output) == expected


def test_extraction_rule_documents_the_steps():
    rule = EXTRACTION_RULE.lower()
    assert "first non-empty line" in rule
    assert "answer:" in rule
    assert "final period" in rule
    assert "quotes" in rule


def test_extract_answer_keeps_period_of_a_trailing_initial():
    # The code keeps a final period after a capital initial (EXTRACTION_RULE does not say so);
    # normalisation drops it anyway, so exact match is unaffected.
    assert extract_answer("John F.") == "John F."
    assert extract_answer("Washington, D.C.") == "Washington, D.C."
    assert exact_match(extract_answer("John F."), ["John F"]) == 1.0


def test_extract_answer_does_not_touch_names_starting_with_a():
    assert extract_answer("Anaheim") == "Anaheim"
    assert extract_answer("Anne Frank") == "Anne Frank"


def test_extract_answer_lead_in_needs_a_word_boundary():
    assert extract_answer("Answering machines") == "Answering machines"


# -- score -------------------------------------------------------------------------------------

def test_score_keys_and_values():
    s = score("The answer is: the Gray River bridge.\nMore text", ["Gray River"])
    assert set(s) == {"extracted", "exact_match", "f1", "contains"}
    assert s["extracted"] == "the Gray River bridge"
    assert s["exact_match"] == 0.0
    assert s["f1"] == pytest.approx(0.8)
    assert s["contains"] == 1.0
    assert set(metrics.METRICS) <= set(s)


def test_score_contains_reads_the_raw_output():
    # the answer is on the second line: extraction misses it, contains finds it
    s = score("I think so.\nIt is Denver.", ["Denver"])
    assert s["exact_match"] == 0.0 and s["f1"] == 0.0
    assert s["contains"] == 1.0


# -- bootstrap ---------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [0.0, 1.0, 0.25])
def test_bootstrap_ci_constant(value):
    ci = bootstrap_ci([value] * 30)
    assert ci["mean"] == ci["low"] == ci["high"] == value
    assert ci["n"] == 30


def test_bootstrap_ci_half():
    ci = bootstrap_ci([0, 1] * 50)
    assert ci["mean"] == 0.5
    assert ci["n"] == 100
    assert 0.0 <= ci["low"] < 0.5 < ci["high"] <= 1.0
    # a sample of 100 Bernoulli(0.5): the 95% interval is about +-0.1
    assert 0.3 < ci["low"] and ci["high"] < 0.7


def test_bootstrap_ci_is_deterministic_for_a_seed():
    vals = [0, 1, 1, 0, 1, 0.5, 0.2, 0.9]
    assert bootstrap_ci(vals, seed=3) == bootstrap_ci(vals, seed=3)


def test_bootstrap_ci_empty():
    ci = bootstrap_ci([])
    assert ci["mean"] is None and ci["low"] is None and ci["high"] is None
    assert ci["n"] == 0


def test_paired_bootstrap_diff_identical_is_zero():
    a = [0, 1, 1, 0.5, 0.2]
    d = paired_bootstrap_diff(a, list(a))
    assert d["mean"] == 0.0 and d["low"] == 0.0 and d["high"] == 0.0
    assert d["n"] == 5


def test_paired_bootstrap_diff_constant_shift():
    d = paired_bootstrap_diff([1, 1, 1, 1], [0, 0, 0, 0])
    assert d["mean"] == d["low"] == d["high"] == 1.0


def test_paired_bootstrap_diff_different_lengths():
    with pytest.raises(ValueError):
        paired_bootstrap_diff([1, 0, 1], [1, 0])


# -- percentile --------------------------------------------------------------------------------

def test_percentile():
    assert percentile([1, 2, 3, 4], 50) == pytest.approx(2.5)
    assert percentile([4, 1, 3, 2], 0) == 1.0
    assert percentile([4, 1, 3, 2], 100) == 4.0
    assert percentile([10.0], 95) == 10.0
    # linear interpolation: p95 of 1..5 is 4 + 0.8 * 1
    assert percentile([1, 2, 3, 4, 5], 95) == pytest.approx(4.8)
    assert percentile([], 50) is None


@pytest.mark.parametrize("output, question, expected", [
    ("The president of the European Central Bank is Mario Draghi.",
     "Who is the president of the European Central Bank?", "Mario Draghi"),
    ("The actual rate of inflation in November was 2.3 percent.",
     "What was the actual rate of inflation in November?", "2.3 percent"),
    # no copula after the restatement: nothing is dropped
    ("The War in Afghanistan began in 2001.", "When did the War in Afghanistan begin?",
     "The War in Afghanistan began in 2001"),
    # a word that is not in the question stops the restatement
    ("The Yankees are a team.", "Which team did Mattingly play for?", "The Yankees are a team"),
    # nothing would be left: keep the text
    ("The president is", "Who is the president?", "The president is"),
])
def test_extract_answer_drops_restated_question(output, question, expected):
    assert extract_answer(output, question) == expected


def test_yes_no_scoring():
    assert score("Yes, it is.", ["yes"], task="yes_no")["exact_match"] == 1.0
    assert score("No.", ["yes"], task="yes_no")["exact_match"] == 0.0
    both = score("It could be yes or no.", ["yes"], task="yes_no")
    assert both["exact_match"] == 1.0 and both["contains"] == 0.0  # the first yes/no word counts
    assert score("Maybe", ["no"], task="yes_no")["f1"] == 0.0


def test_classification_scoring_reads_underscores_as_spaces():
    s = score("add to playlist", ["add_to_playlist"], task="classification")
    assert s["exact_match"] == 1.0 and s["f1"] == 1.0 and s["contains"] == 1.0
    s = score("The intent is get_weather, I think", ["get_weather"], task="classification")
    assert s["exact_match"] == 0.0 and s["contains"] == 1.0
