"""Answer extraction, per-question scorers and the metric registry: pure Python, no harness import.

This file is copied verbatim into an exported lm-eval task's utils.py (harness/lmeval/export.py), so
lm-eval scores exactly as the harness does without the harness installed. Which scorer a task type
uses is the task-type table's business (harness/data/tasks.py); harness/analysis/metrics.py joins them.
"""
from __future__ import annotations

import re
import string
from collections import Counter
from typing import Callable, NamedTuple, Sequence

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


# -- the metric registry -------------------------------------------------------------------------
class Metric(NamedTuple):
    """A per-question metric. The report's columns, the gate's --metric and the recommendation read
    this registry: adding a metric is one `register_metric` call.

    compute: (output, answers, question, trace, scored) -> float, where `scored` holds what the task's
    scorer already computed; None when the task's scorer itself sets the value. (A NamedTuple, not a
    dataclass: lm-eval loads the exported copy of this file without registering it as a module.)"""

    name: str
    label: str                       # column header
    higher_is_better: bool = True
    tasks: tuple[str, ...] = ()      # task types it applies to; empty: every task type
    binary: bool = False             # per-question values are 0 or 1 (McNemar applies); else graded
    description: str = ""
    compute: Callable | None = None  # returns None for a question it does not apply to (no context)
    # Computed by a model during `harness run` (harness/analysis/judges.py) and stored per question in
    # predictions.jsonl; a report takes the stored value, since reports never run a model.
    stored: bool = False
    headline: bool = True            # may head a report; False: a diagnostic of some rows only (RAG)

    def applies_to(self, task: str) -> bool:
        return not self.tasks or task in self.tasks


METRIC_REGISTRY: dict[str, Metric] = {}


def register_metric(metric: Metric) -> Metric:
    if metric.name in METRIC_REGISTRY and METRIC_REGISTRY[metric.name] != metric:
        raise RuntimeError(f"metric {metric.name!r} registered twice")
    METRIC_REGISTRY[metric.name] = metric
    return metric


def get_metric(name: str) -> Metric:
    if name not in METRIC_REGISTRY:
        raise KeyError(f"unknown metric {name!r}; known metrics: {', '.join(METRIC_REGISTRY)}")
    return METRIC_REGISTRY[name]


register_metric(Metric("exact_match", "EM", binary=True,
                       description="the extracted answer equals a gold answer after SQuAD normalisation"))
register_metric(Metric("f1", "F1", description="token F1 of the extracted answer against the best gold answer"))
register_metric(Metric("contains", "Contains", binary=True,
                       description="a normalised gold answer appears, on word boundaries, in the raw output"))
register_metric(Metric("acc_norm", "acc_norm", binary=True, tasks=("multiple_choice",),
                       description="lm-eval's length-normalised choice: log-probability per character"))

# Free-text answers: where a reader judges the meaning, not the words. Model-based (stored) ones are
# computed by harness/analysis/judges.py; their rubrics and thresholds are documented there.
TEXT_TASKS = ("extractive_qa", "generative_qa", "free_form_qa")
register_metric(Metric("semantic", "Semantic", binary=True, tasks=TEXT_TASKS, stored=True,
                       description="cosine similarity of the answer and the closest gold answer (MiniLM "
                                   "embeddings) at or above a calibrated threshold"))
register_metric(Metric("judge", "Judge", tasks=TEXT_TASKS, stored=True,
                       description="an LLM judge's verdict against the gold answers with a versioned rubric: "
                                   "correct 1, partially correct 0.5, incorrect 0"))
register_metric(Metric("faithfulness", "Faithfulness", tasks=TEXT_TASKS, stored=True, headline=False,
                       description="an LLM judge's verdict on whether the retrieved context supports the answer: "
                                   "supported 1, partially 0.5, unsupported 0 (rows with retrieval only)"))


_STOP = {"i", "me", "my", "we", "our", "you", "your", "he", "him", "his", "she", "her", "it", "its", "they",
         "them", "their", "is", "was", "are", "were", "be", "been", "am", "do", "did", "does", "have", "has",
         "had", "to", "of", "in", "on", "at", "for", "by", "with", "and", "or", "but", "so", "that", "this",
         "there", "as", "from", "not", "because", "will", "would", "could", "can"}


def context_recall(answers: Sequence[str], context: Sequence[str]) -> float:
    """Share of the gold answer's content words (normalised, function words left out) found in the
    retrieved passages, best over the gold answers: 1.0 when a short gold answer appears whole."""
    ctx = set(normalize(" ".join(context)).split())
    best = 0.0
    for a in answers:
        words = normalize(a).split()
        words = [w for w in words if w not in _STOP] or words
        if words:
            best = max(best, sum(w in ctx for w in words) / len(words))
    return best


def _context_recall(output, answers, question, trace, scored):
    texts = (trace or {}).get("retrieved_texts")
    return None if texts is None else context_recall(answers, texts)


register_metric(Metric("context_recall", "Context recall", tasks=TEXT_TASKS, headline=False,
                       compute=_context_recall,
                       description="share of the gold answer's content words found in the retrieved passages "
                                   "(best gold answer; rows with retrieval only)"))

METRICS = ("exact_match", "f1", "contains")  # scored for every task type


def metric_names(task: str) -> tuple[str, ...]:
    """The registered metrics that apply to a task type, in registration order."""
    return tuple(m.name for m in METRIC_REGISTRY.values() if m.applies_to(task))


def scorer_metric_names(task: str) -> tuple[str, ...]:
    """The metrics a task type's scorer gives on every answer by itself: no model (not `stored`), no
    retrieved passages (a `headline` metric). What an exported lm-eval task reports."""
    return tuple(m.name for m in METRIC_REGISTRY.values() if m.applies_to(task) and not m.stored and m.headline)


def _label(text: str) -> str:
    return normalize(text.replace("_", " "))


# -- scorers: how a task type turns an output into the base metrics ------------------------------
def score_span(output, answers, question, trace):
    """Free-text answers: the answer is extracted first; EM and F1 on it, containment on the raw output."""
    extracted = extract_answer(output, question)
    return {"extracted": extracted, "exact_match": exact_match(extracted, answers),
            "f1": token_f1(extracted, answers), "contains": contains(output, answers)}


def score_sentence(output, answers, question, trace):
    """Sentence answers: the first line, lead-ins ('Answer:') removed but the sentence kept whole."""
    lines = [ln.strip() for ln in output.strip().splitlines() if ln.strip()]
    extracted = _LEAD_INS.sub("", lines[0], count=1).strip() if lines else ""
    return {"extracted": extracted, "exact_match": exact_match(extracted, answers),
            "f1": token_f1(extracted, answers), "contains": contains(output, answers)}


def score_free(output, answers, question, trace):
    """Free-form answers (several sentences, several lines): the whole output, a lead-in removed."""
    extracted = _LEAD_INS.sub("", output.strip(), count=1).strip()
    return {"extracted": extracted, "exact_match": exact_match(extracted, answers),
            "f1": token_f1(extracted, answers), "contains": contains(output, answers)}


def score_yes_no(output, answers, question, trace):
    """The first yes or no in the output is the answer; an output that says both gets no
    containment credit."""
    words = normalize(output).split()
    found = next((w for w in words if w in ("yes", "no")), "")
    hit = float(any(found == normalize(a) for a in answers))
    return {"extracted": found or extract_answer(output), "exact_match": hit, "f1": hit,
            "contains": float(hit and not {"yes", "no"} <= set(words))}


def score_label(output, answers, question, trace):
    """Classification: the first line is the label (underscores read as spaces)."""
    first = extract_answer(output)
    hit = float(any(_label(first) == _label(a) for a in answers))
    inside = float(any(f" {_label(a)} " in f" {_label(output)} " for a in answers))
    return {"extracted": first, "exact_match": hit, "f1": hit, "contains": inside}


def score_choice(output, answers, question, trace):
    """Multiple choice: the output is the chosen option; acc_norm from trace["choice_norm"]."""
    hit = float(any(normalize(output) == normalize(a) for a in answers))
    out = {"extracted": output, "exact_match": hit, "f1": hit, "contains": hit}
    if trace and "choice_norm" in trace:
        out["acc_norm"] = float(any(normalize(trace["choice_norm"]) == normalize(a) for a in answers))
    return out


SCORERS: dict[str, Callable] = {"span": score_span, "sentence": score_sentence, "free": score_free,
                                "yes_no": score_yes_no,
                                "label": score_label, "choice": score_choice}


def score_with(scorer: str, output: str, answers: Sequence[str], question: str = "", task: str = "",
               trace: dict | None = None) -> dict:
    """Per-example metrics: the scorer's base metrics, then every registered metric with a compute
    function that applies to the task."""
    out = SCORERS[scorer](output, answers, question, trace)
    for m in METRIC_REGISTRY.values():
        if m.compute is not None and m.applies_to(task):
            value = m.compute(output, answers, question, trace, out)
            if value is not None:
                out[m.name] = float(value)
    return out
