"""Recall@10 of the index the harness picks above retrieval.EXACT_MAX_CHUNKS (HNSW) against exact search.

    python bench/hnsw_recall.py [N]      # N vectors of 384 dims (MiniLM's width), default 60000

Two synthetic sets: unit vectors around 200 topic centres (structure like real text embeddings), and
uniform random unit vectors (no structure: the hardest case for any approximate index). One thread.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def measure(x, q, label) -> None:
    import faiss

    from harness.methods.retrieval import new_faiss_index

    exact = faiss.IndexFlatIP(x.shape[1])
    exact.add(x)
    t = time.perf_counter()
    approx, kind = new_faiss_index(x.shape[1], len(x), exact_max=0)
    approx.add(x)
    build = time.perf_counter() - t
    t = time.perf_counter()
    _, e = exact.search(q, 10)
    t_exact = (time.perf_counter() - t) / len(q)
    t = time.perf_counter()
    _, h = approx.search(q, 10)
    t_approx = (time.perf_counter() - t) / len(q)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(e, h)])
    print(f"{label}: n={len(x)} {kind} recall@10={recall:.3f} top1={np.mean(e[:, 0] == h[:, 0]):.3f} "
          f"build={build:.0f}s query exact={t_exact * 1e3:.2f}ms approx={t_approx * 1e3:.2f}ms", flush=True)


def main() -> None:
    import faiss

    faiss.omp_set_num_threads(1)
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 60_000
    rng = np.random.default_rng(0)
    centres = unit(rng.standard_normal((200, 384)))
    x = unit(centres[rng.integers(0, 200, n + 500)] + 0.08 * rng.standard_normal((n + 500, 384)))
    measure(x[500:], x[:500], "clustered")
    x = unit(rng.standard_normal((n + 500, 384)))
    measure(x[500:], x[:500], "random (worst case)")


if __name__ == "__main__":
    main()
