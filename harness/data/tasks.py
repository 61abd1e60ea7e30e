"""Task types: what kind of answer a benchmark asks for, and everything that follows from that.

A benchmark's `task` (its benchmark.json) names one entry of TASK_TYPES. The entry says how every
strategy prompts for it, how an answer is scored, which metric heads the report, whether answers
are generated or chosen by log-likelihood, and what the task becomes when exported to lm-eval.
Adding a task type is adding one entry here (and, when none of the scorers in
harness/analysis/metrics.py fits, one scorer there).
"""
from __future__ import annotations

from dataclasses import dataclass

from harness.core.errors import ConfigError

# Measured on 48 test questions of the default benchmark with gold paragraphs in the prompt:
# this system prompt plus the "copy from the text" request raised token F1 from 0.19 to 0.26
# over "Answer the question with a short phrase." Closed-book scores did not move.
SHORT_ANSWER_SYSTEM = (
    "You answer questions with only the answer: a name, number, date or short phrase of at most "
    "five words. Never write a full sentence."
)


@dataclass(frozen=True)
class TaskType:
    """One kind of task. Prompt texts may hold `{labels}` (the benchmark's label list)."""

    name: str
    description: str
    scorer: str               # a key of harness.analysis.metrics.SCORERS
    primary_metric: str       # the report's headline metric: a registered metric name
    answered_by: str          # "generation" (the model writes the answer) or "loglikelihood" (options scored)
    lmeval_output_type: str   # lm-eval's output_type when the benchmark is exported
    lmeval_metric: str        # the lm-eval metric that stands for primary_metric (forgetting check)
    system: str               # closed-book system prompt
    context_system: str       # system prompt when retrieved passages come with the question
    context_request: str      # the line after the passages and the question
    needs_choices: bool = False  # each question lists its options ("choices")
    # Question answering only: the answer style a benchmark.json `answer_style` names to pick this task
    # type (short, sentence, free_form; see ANSWER_STYLES). None: the answer format is fixed (a label).
    answer_style: str | None = None
    one_line: bool = True     # decoding stops at the first newline after some text

    def __post_init__(self):
        if self.answered_by not in ("generation", "loglikelihood"):
            raise ValueError(f"task type {self.name}: answered_by must be generation or loglikelihood")
        if self.answer_style is not None and self.answer_style not in ANSWER_STYLES:
            raise ValueError(f"task type {self.name}: answer_style must be one of {', '.join(ANSWER_STYLES)}")


# benchmark.json `answer_style` -> what a reader expects. Each style is answered by one question-answering
# task type (its `answer_style`), whose prompts ask for that length and whose scorer keeps that much.
ANSWER_STYLES = {
    "short": "a name, number, date or phrase of a few words (extractive_qa)",
    "sentence": "one complete sentence (generative_qa)",
    "free_form": "a few sentences, several lines allowed (free_form_qa)",
}


TASK_TYPES: dict[str, TaskType] = {}
DEFAULT_TASK = "extractive_qa"  # a corpus whose benchmark.json names no task


def register_task_type(task: TaskType) -> TaskType:
    if task.name in TASK_TYPES and TASK_TYPES[task.name] != task:
        raise RuntimeError(f"task type {task.name!r} registered twice")
    TASK_TYPES[task.name] = task
    return task


def task_for_style(style: str) -> str:
    """The question-answering task type that answers in `style` (an ANSWER_STYLES key)."""
    for t in TASK_TYPES.values():
        if t.answer_style == style:
            return t.name
    raise ConfigError(f"unknown answer_style {style!r}; known: {', '.join(ANSWER_STYLES)}")


def task_type(name: str) -> TaskType:
    """The task type called `name`; an unknown name is a ConfigError listing the known ones."""
    try:
        return TASK_TYPES[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown task type {name!r}; known task types: {', '.join(TASK_TYPES)}") from None


register_task_type(TaskType(
    name="extractive_qa",
    description="a question answered by a short span (name, number, date, phrase); token F1 gives partial credit",
    scorer="span", primary_metric="f1", answered_by="generation",
    lmeval_output_type="generate_until", lmeval_metric="f1",
    system=SHORT_ANSWER_SYSTEM, context_system=SHORT_ANSWER_SYSTEM + " Copy the answer from the context.",
    context_request="Answer with words copied from the text above.",
    answer_style="short",
))
register_task_type(TaskType(
    name="yes_no",
    description="a question answered yes or no; exact match is accuracy",
    scorer="yes_no", primary_metric="exact_match", answered_by="generation",
    lmeval_output_type="generate_until", lmeval_metric="exact_match",
    system="You answer questions with one word: yes or no.",
    context_system="You answer questions with one word: yes or no. Base the answer on the context.",
    context_request="Answer yes or no, based on the text above.",
))
register_task_type(TaskType(
    name="classification",
    description="a text labelled with one of the benchmark's labels; exact match is accuracy",
    scorer="label", primary_metric="exact_match", answered_by="generation",
    lmeval_output_type="generate_until", lmeval_metric="exact_match",
    system="You answer with exactly one of these labels and nothing else: {labels}.",
    context_system="You answer with exactly one of these labels and nothing else: {labels}.",
    context_request="Answer with one label.",
))
register_task_type(TaskType(
    name="multiple_choice",
    description="a question with listed options; each option is scored by log-likelihood, as lm-eval does",
    scorer="choice", primary_metric="exact_match", answered_by="loglikelihood",
    lmeval_output_type="multiple_choice", lmeval_metric="acc",
    system="You answer a multiple-choice question by repeating the one correct option, word for word.",
    context_system="You answer a multiple-choice question by repeating the one correct option, word for word. "
                   "Base the answer on the context.",
    context_request="Answer with one of the options, based on the text above.",
    needs_choices=True,
))
register_task_type(TaskType(
    name="generative_qa",
    description="a question answered in a sentence of the model's own words; token F1 undervalues paraphrases",
    scorer="sentence", primary_metric="semantic", answered_by="generation",
    lmeval_output_type="generate_until", lmeval_metric="f1",
    system="You answer questions in one short, complete sentence.",
    context_system="You answer questions in one short, complete sentence, based on the context.",
    context_request="Answer in one sentence, based on the text above.",
    answer_style="sentence",
))
register_task_type(TaskType(
    name="free_form_qa",
    description="a question answered in a few sentences; judged on meaning (semantic, judge), not on shared words",
    scorer="free", primary_metric="semantic", answered_by="generation",
    lmeval_output_type="generate_until", lmeval_metric="f1",
    system="You answer questions clearly and completely, in a few sentences.",
    context_system="You answer questions clearly and completely, in a few sentences, based on the context.",
    context_request="Answer in a few sentences, based on the text above.",
    answer_style="free_form", one_line=False,
))
