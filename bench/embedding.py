"""Embedding and indexing: documents/s of the harness's `Index.build` against a bare
`SentenceTransformer.encode` of the same chunks, and FAISS query latency (p50/p95, one query at a
time) and recall@k against exact search at 1k, 10k and 100k chunks.

To reach 100k chunks without embedding 100k texts, the corpus's chunk embeddings are replicated
with a small deterministic perturbation (renormalised), and `Index.build` is handed an embedder
that looks those vectors up by text: the index type, its build and its search are the harness's
own, only the MiniLM forward passes are skipped. Recall is measured against an exact
`IndexFlatIP` over the same vectors.
"""
from __future__ import annotations

import copy

import numpy as np

from .common import (
    Options,
    build_chunks,
    embed_index,
    interleaved,
    load_benchmark_only,
    timed,
)
from .stats import percentile

K = 3


class LookupEncoder:
    """Stands in for the SentenceTransformer: returns precomputed vectors for known texts."""

    def __init__(self, table: dict[str, np.ndarray]):
        self.table = {" ".join(t.split()): v for t, v in table.items()}

    def encode(self, texts, **_):  # the harness's chunker joins words with single spaces
        return np.stack([self.table[" ".join(t.split())] for t in texts]).astype(np.float32)


def index_type(index) -> str:
    return getattr(index, "kind", "") or type(getattr(index, "index", None)).__name__


def measure(opts: Options, sizes=(1_000, 10_000, 100_000)) -> dict:
    import faiss

    from harness.data.chunks import Chunk, chunk_documents
    from strategies.rag import RagConfig

    bench = load_benchmark_only(opts)
    c = RagConfig()
    chunks = chunk_documents(bench.documents, c.chunk_words, c.chunk_overlap)[: opts.n(256, 8)]
    texts = [ch.text for ch in chunks]
    index = embed_index(c.embedder, opts.device)
    st = index.model

    def harness_build():
        build_chunks(index, chunks)

    def bare_encode():
        st.encode(texts, batch_size=index.batch_size, normalize_embeddings=True, convert_to_numpy=True)

    timed(lambda: st.encode(texts[:8]))  # warm-up
    seconds, _ = interleaved({"harness Index.build": harness_build, "bare encode": bare_encode}, opts.reps)
    out = {"chunks": len(chunks), "embed": {k: {"seconds": v, "docs_per_s": [len(chunks) / s for s in v]}
                                            for k, v in seconds.items()}}

    base = st.encode(texts, batch_size=index.batch_size, normalize_embeddings=True, convert_to_numpy=True)
    queries = [e.input for e in bench.split("test")[: opts.n(200, 8)]]
    qvecs = st.encode(queries, normalize_embeddings=True, convert_to_numpy=True)
    rng = np.random.default_rng(0)
    out["faiss"] = {}
    for size in sizes:
        reps = -(-size // len(base))
        vecs = np.concatenate([base] + [base + rng.normal(0, 0.02, base.shape).astype(np.float32)
                                        for _ in range(reps - 1)])[:size]
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        many = [Chunk(chunks[i % len(chunks)].doc_id, f"{i}\t{texts[i % len(texts)]}") for i in range(size)]
        table = {ch.text: v for ch, v in zip(many, vecs)}
        table.update(zip(queries, qvecs))
        idx = copy.copy(index)  # the harness's Index with a lookup in place of the MiniLM
        idx.model = LookupEncoder(table)
        build_s, _ = timed(lambda: build_chunks(idx, many))
        lat, found = [], []
        idx.search(queries[:2], K)  # warm-up
        for q in queries:
            dt, (hits, _) = timed(lambda: idx.search([q], K))
            lat.append(dt)
            found.append([int(h.doc_id) for h in hits[0]])
        exact = faiss.IndexFlatIP(vecs.shape[1])
        exact.add(np.ascontiguousarray(vecs))
        _, truth = exact.search(np.ascontiguousarray(qvecs, dtype=np.float32), K)
        recall = np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth.tolist())])
        out["faiss"][str(size)] = {"index_type": index_type(idx), "build_s": build_s,
                                   "query_p50_ms": percentile(lat, 50) * 1e3, "query_p95_ms": percentile(lat, 95) * 1e3,
                                   f"recall@{K}_vs_exact": float(recall), "queries": len(queries)}
    return out
