"""Core records that flow through the harness: benchmark -> strategy -> prediction -> score."""
from __future__ import annotations

from dataclasses import dataclass, field, fields


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    title: str = ""


@dataclass(frozen=True)
class Example:
    """One question with its gold answers and the ids of the documents that support it."""

    id: str
    input: str
    answers: tuple[str, ...]
    split: str
    task: str
    doc_ids: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()  # multiple choice: the options; `answers` holds the correct one


@dataclass
class Usage:
    """What answering one query cost. Adds up with +.

    `seconds` is this query's share of the compute (its batch's wall time divided by the batch
    size, plus its share of retrieval): that is what cost per query is computed from.
    `latency_seconds` is what a caller waits for it: the wall time of the batch it was in, plus
    its retrieval share.
    """

    prompt_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0
    retrieval_seconds: float = 0.0
    latency_seconds: float = 0.0

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})


@dataclass
class Prediction:
    example_id: str
    output: str
    usage: Usage
    cached: bool = False
    trace: dict = field(default_factory=dict)


@dataclass
class Benchmark:
    name: str
    task: str
    documents: list[Document]
    examples: list[Example]
    meta: dict = field(default_factory=dict)

    def split(self, name: str) -> list[Example]:
        return [e for e in self.examples if e.split == name]
