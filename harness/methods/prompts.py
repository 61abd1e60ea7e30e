"""Prompt templates shared by every strategy, so that only the evidence given to the model differs.

One `Prompter` per benchmark task type, its texts from the task-type table (harness/data/tasks.py).
A multiple-choice question's options are added to the last user turn by `show_choices`, in the
shared answering and training paths, so strategies build their messages as for any task.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from harness.data.tasks import DEFAULT_TASK, task_type


@dataclass(frozen=True)
class Prompter:
    system: str
    context_system: str
    context_request: str

    @classmethod
    def for_task(cls, task: str, labels: Sequence[str] = ()) -> "Prompter":
        """The prompts of a task type (harness/data/tasks.py), labels filled in for classification."""
        t = task_type(task)
        fill = {"labels": ", ".join(labels)}
        return cls(t.system.format(**fill), t.context_system.format(**fill), t.context_request.format(**fill))

    @classmethod
    def for_benchmark(cls, bench) -> "Prompter":
        return cls.for_task(bench.task, bench.meta.get("labels", ()))

    def closed_book(self, question: str, demos: Sequence[tuple[str, str]] = ()) -> list[dict]:
        """Chat messages for a question asked without context; demos become earlier turns."""
        messages = [{"role": "system", "content": self.system}]
        for q, a in demos:
            messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        messages.append({"role": "user", "content": question})
        return messages

    def with_context(self, question: str, passages: Sequence[str]) -> list[dict]:
        context = "\n\n".join(passages)
        return [
            {"role": "system", "content": self.context_system},
            {"role": "user", "content": f"{context}\n\nQuestion: {question}\n{self.context_request}"},
        ]


def show_choices(messages: list[dict], example) -> list[dict]:
    """The messages with a multiple-choice example's options listed after its question in the last
    user turn (at its end when the question is not found there); unchanged for other examples.
    The model is then scored on each option as the assistant's reply."""
    if not example.choices or not task_type(example.task).needs_choices:
        return messages
    options = "\nOptions:\n" + "\n".join(f"- {c}" for c in example.choices)
    last = messages[-1]["content"]
    at = last.rfind(example.input)
    at = len(last) if at < 0 else at + len(example.input)
    return [*messages[:-1], {**messages[-1], "content": last[:at] + options + last[at:]}]


_QA = Prompter.for_task(DEFAULT_TASK)
closed_book = _QA.closed_book  # extractive-QA defaults, for callers without a benchmark
with_context = _QA.with_context
