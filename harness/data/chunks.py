"""Cutting documents into chunks of words: what RAG retrieves, and what `corpus check` counts.

Pure text, no model: chunk boundaries decide what the retriever can return, so this file is part of
the code fingerprint of every strategy's cached output (harness/cache/hashing.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator, Sequence

from harness.core.errors import HarnessError
from harness.core.types import Document

# ~130 tokens a chunk: 3 chunks keep a RAG prompt near 430 tokens. Prefill of those prompts is
# most of the default run's time (200 x 536 tokens took 378 s with 150-word chunks).
# MiniLM reads at most 256 word pieces (~190 words); longer chunks would be cut.
DEFAULT_CHUNK_WORDS = 100
DEFAULT_CHUNK_OVERLAP = 20

_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Chunk:
    doc_id: str
    text: str


def _check_sizes(words: int, overlap: int) -> None:
    if overlap >= words:
        raise HarnessError(f"chunk overlap ({overlap}) must be smaller than the chunk size ({words})")


def chunk_spans(text: str, words: int, overlap: int) -> Iterator[tuple[int, int]]:
    """(start, end) character offsets of each chunk of `words` words, `overlap` words shared with the
    previous one. The regex engine walks a chunk at a time, so a 50 MB document never becomes a list
    of words. Same chunks as range(0, max(n_words - overlap, 1), words - overlap) over text.split()."""
    take = re.compile(r"\S+(?:\s+\S+){0,%d}" % (words - 1))
    # the next chunk's first word: `step` words on, with more than `overlap` words from there to the end
    skip = re.compile(r"(?:\S+\s+){%d}(?=(?:\S+\s+){%d}\S)" % (words - overlap, overlap))
    first = _WORD.search(text)
    pos = first.start() if first else len(text)
    while m := take.match(text, pos):
        yield pos, m.end()
        s = skip.match(text, pos)
        if not s:
            return
        pos = s.end()


def chunk_text(text: str, start: int, end: int) -> str:
    return " ".join(text[start:end].split())


def iter_chunks(docs: Sequence[Document], words: int, overlap: int) -> Iterator[tuple[int, int, int]]:
    """(document index, start char, end char) of every chunk, in document order."""
    _check_sizes(words, overlap)
    for d, doc in enumerate(docs):
        for start, end in chunk_spans(doc.text, words, overlap):
            yield d, start, end


def count_chunks(docs: Sequence[Document], words: int, overlap: int) -> int:
    return sum(1 for _ in iter_chunks(docs, words, overlap))


def chunk_documents(docs: Sequence[Document], words: int, overlap: int) -> list[Chunk]:
    """Split on words; each chunk keeps its document id, so recall is measured per document."""
    return [Chunk(docs[d].id, chunk_text(docs[d].text, s, e)) for d, s, e in iter_chunks(docs, words, overlap)]
