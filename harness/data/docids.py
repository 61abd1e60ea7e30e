"""Document ids and what counts as finding a gold document.

A document loaded from a file that splits into parts (a PDF's pages, a Markdown file's sections) has
the id "FILE#PART" ("manual#p3", "guides/install#linux"); a file of one part keeps the plain file id.
A question's doc_ids may name a part or a whole file ("manual"): a whole file is found when any of
its parts is retrieved. Recall@k (harness/analysis), the report's retrieval diagnostics and RAFT's
gold chunks all ask `doc_matches`, so they agree on what a hit is.
"""
from __future__ import annotations

from typing import Iterable

SEPARATOR = "#"  # between a file's id and its part; never inside a file id (harness/data/ingest.py refuses it)


def file_id(doc_id: str) -> str:
    """The file part of a document id: "manual#p3" -> "manual"; a plain id is its own file."""
    return doc_id.partition(SEPARATOR)[0]


def doc_matches(retrieved_id: str, gold_id: str) -> bool:
    """Whether a retrieved document counts as the gold one: the same id, or a part ("manual#p3") of
    the whole file a gold id without '#' names ("manual")."""
    return retrieved_id == gold_id or (SEPARATOR not in gold_id and file_id(retrieved_id) == gold_id)


def any_match(retrieved: Iterable[str], gold: Iterable[str]) -> bool:
    """Whether any retrieved id matches any gold id."""
    gold = list(gold)
    return any(doc_matches(r, g) for r in retrieved for g in gold)


def unknown_refs(refs: Iterable[str], doc_ids: set[str]) -> list[str]:
    """The references that name no document: neither a document id nor the file of one."""
    files = {file_id(d) for d in doc_ids if SEPARATOR in d}
    return [r for r in refs if r not in doc_ids and not (SEPARATOR not in r and r in files)]
