"""Answer extraction, SQuAD-style scoring, and bootstrap confidence intervals."""
from __future__ import annotations

import re
import string
from collections import Counter
from typing import Sequence

import numpy as np

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation) | {"‘", "’", "“", "”"}
_DASHES = re.compile("[\u2013\u2014]")  # en/em dashes separate words ("1932–1950"): space, not deletion

# The default model likes to restate the question ("The answer to this question is: ...");
# these lead-ins are cut before exact match and F1 are computed.
_LEAD_INS = re.compile(
    r"^\s*(?:(?:the\s+)?(?:final\s+|short\s+)?answer\b(?:\s+to\s+(?:this|the)\s+question)?\s*(?:is\b)?\s*[:\-]?"
    r"|a\s*:|answer\s*:)\s*",
    re.IGNORECASE,
)
EXTRACTION_RULE = (
    "first non-empty line of the output; a leading 'Answer:' / 'The answer is' removed; "
    "leading words that only restate the question dropped ('The president of the ECB is Mario "
    "Draghi' -> 'Mario Draghi'); surrounding quotes and a final period stripped"
)
# Words that may join a restatement to the answer without carrying content of their own.
_GLUE = {"is", "was", "are", "were", "be", "been", "the", "a", "an", "of", "in", "on", "at", "to",
         "for", "by", "that", "which", "who", "what", "called", "named", "known", "as", "it"}
_COPULAS = {"is", "was", "are", "were"}


def _drop_restatement(text: str, question: str) -> str:
    """Drop the longest run of leading words that all come from the question (or are glue words),
    provided it ends on a copula ('is', 'was', 'are', 'were') and leaves something behind."""
    words = text.split()
    qwords = {normalize(w) for w in question.split()} - {""}
    cut = 0
    for i, w in enumerate(words):
        n = normalize(w)
        if n and n not in qwords and n not in _GLUE:
            break
        if n in _COPULAS and i > 0:
            cut = i + 1
    return " ".join(words[cut:]) if 0 < cut < len(words) else text


def extract_answer(output: str, question: str = "") -> str:
    lines = [ln.strip() for ln in output.strip().splitlines() if ln.strip()]
    text = lines[0] if lines else ""
    text = _LEAD_INS.sub("", text, count=1)
    if question:
        text = _drop_restatement(text, question)
    text = text.strip().strip("\"'“”‘’`*").strip()
    if text.endswith(".") and not re.search(r"\b[A-Z]\.$", text):
        text = text[:-1]
    return text.strip()


def normalize(text: str) -> str:
    """SQuAD v1.1 normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in _DASHES.sub(" ", text.lower()) if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    p = normalize(prediction)
    return float(any(p == normalize(a) for a in answers))


def _f1(prediction: str, answer: str) -> float:
    p, g = normalize(prediction).split(), normalize(answer).split()
    if not p or not g:
        return float(p == g)
    common = Counter(p) & Counter(g)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, answers: Sequence[str]) -> float:
    return max((_f1(prediction, a) for a in answers), default=0.0)


def contains(output: str, answers: Sequence[str]) -> float:
    """1 when a normalised gold answer appears, on word boundaries, inside the normalised raw output."""
    out = f" {normalize(output)} "
    return float(any(normalize(a) and f" {normalize(a)} " in out for a in answers))


METRICS = ("exact_match", "f1", "contains")
# Scored for one task type only, beside METRICS: lm-eval's length-normalised accuracy.
TASK_METRICS = {"multiple_choice": ("acc_norm",)}


def metric_names(task: str) -> tuple[str, ...]:
    return METRICS + TASK_METRICS.get(task, ())

# The headline metric of each task type, as a key of score()'s result. Extractive QA answers are
# free text, so token F1 gives partial credit; the other tasks have one right answer, so exact
# match is their accuracy (score() sets f1 = exact_match for them).
PRIMARY = {"extractive_qa": "f1", "yes_no": "exact_match", "classification": "exact_match",
           "multiple_choice": "exact_match"}


def primary_metric(task: str) -> str:
    """"f1" for extractive QA, "exact_match" (accuracy) for yes/no, classification, multiple choice."""
    return PRIMARY.get(task, "f1")


def _label(text: str) -> str:
    return normalize(text.replace("_", " "))


def score(output: str, answers: Sequence[str], question: str = "", task: str = "extractive_qa",
          trace: dict | None = None) -> dict:
    """Per-example metrics. Yes/no and classification have one right answer: EM is accuracy,
    F1 equals EM, and `contains` asks for the gold word or label (underscores read as spaces)
    in the output; a yes/no output that says both "yes" and "no" gets no containment credit.
    Multiple choice: the output is the chosen option, and EM = F1 = contains = accuracy;
    acc_norm scores the choice by log-probability per character (trace["choice_norm"])."""
    if task == "multiple_choice":
        hit = float(any(normalize(output) == normalize(a) for a in answers))
        out = {"extracted": output, "exact_match": hit, "f1": hit, "contains": hit}
        if trace and "choice_norm" in trace:
            out["acc_norm"] = float(any(normalize(trace["choice_norm"]) == normalize(a) for a in answers))
        return out
    if task in ("yes_no", "classification"):
        first = extract_answer(output)
        if task == "yes_no":
            words = normalize(output).split()
            found = next((w for w in words if w in ("yes", "no")), "")
            extracted = found or first
            hit = float(any(found == normalize(a) for a in answers))
            inside = float(hit and not {"yes", "no"} <= set(words))
        else:
            extracted = first
            hit = float(any(_label(first) == _label(a) for a in answers))
            inside = float(any(f" {_label(a)} " in f" {_label(output)} " for a in answers))
        return {"extracted": extracted, "exact_match": hit, "f1": hit, "contains": inside}
    extracted = extract_answer(output, question)
    return {
        "extracted": extracted,
        "exact_match": exact_match(extracted, answers),
        "f1": token_f1(extracted, answers),
        "contains": contains(output, answers),
    }


def bootstrap_ci(values: Sequence[float], n_boot: int = 2000, alpha: float = 0.05, seed: int = 0):
    """Mean and percentile bootstrap interval of the mean."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return {"mean": None, "low": None, "high": None, "n": 0}
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return {"mean": float(x.mean()), "low": float(low), "high": float(high), "n": int(x.size)}


def paired_bootstrap_diff(a: Sequence[float], b: Sequence[float], n_boot: int = 2000, seed: int = 0):
    """Mean of a - b over the same examples, with a paired percentile bootstrap interval."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape:
        raise ValueError("paired comparison needs the same examples on both sides")
    return bootstrap_ci(a - b, n_boot=n_boot, seed=seed)


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, float), q)) if len(values) else None
