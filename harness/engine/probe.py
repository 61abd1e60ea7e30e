"""The latency probe: a fixed sample of test questions answered one at a time, after a strategy's
batched answers, so that a latency target can be held against what one user waits.

Batched latency (results.json `answer.latency_p50_s`) is the wall time of the batch a question was
in: at 64 questions a batch it says how long a question waits for its batch, not for itself. The
probe sends each question alone, as a user would: end-to-end latency (the strategy's whole
`answer` call: retrieval, prompt, prefill, decoding), time to first token (the runtime's prefill of a
batch of one), decode time per output token after the first, and retrieval time.

The sample is the same for every strategy of a benchmark: the N test questions (of those the run
answers) with the smallest sha256 of "probe:" + id, fixed by the ids alone. Each call starts afresh:
no KV cache is kept between queries, so TTFT includes the prefill of the system prompt and, for
few-shot, its demonstrations (a server with prefix caching would save that part).
"""
from __future__ import annotations

import hashlib
import time
from typing import Sequence

from harness.analysis.metrics import percentile
from harness.core.types import Example


def choose(test: Sequence[Example], n: int) -> list[str]:
    """The probe's question ids: the n test questions with the smallest sha256("probe:" + id), in
    that order. The same ids for every strategy, seed and rerun of the same questions."""
    if n <= 0:
        return []
    key = {e.id: hashlib.sha256(f"probe:{e.id}".encode()).hexdigest() for e in test}
    return sorted(key, key=key.__getitem__)[:n]


def run(strat, examples: Sequence[Example], batched: dict[str, str]) -> dict:
    """Answer each example alone through the prepared strategy; `batched`: id -> the output the
    batched run gave, to check that answering alone changes no answer (greedy decoding)."""
    queries = []
    ctx = getattr(strat, "ctx", None)
    progress = getattr(ctx, "progress", None)
    if ctx is not None:
        ctx.progress = False  # one bar per query would flood the terminal
    try:
        for e in examples:
            t0 = time.perf_counter()
            [p] = strat.answer([e])
            wall = time.perf_counter() - t0
            u = p.usage
            queries.append({"id": e.id, "latency_s": round(wall, 6), "ttft_s": p.trace.get("first_token_s"),
                            "generation_s": round(u.latency_seconds - u.retrieval_seconds, 6),
                            "retrieval_s": round(u.retrieval_seconds, 6), "prompt_tokens": u.prompt_tokens,
                            "output_tokens": u.output_tokens, "same_as_batched": p.output == batched.get(e.id)})
    finally:
        if ctx is not None:
            ctx.progress = progress
    return summarize(queries)


def summarize(queries: list[dict]) -> dict:
    """The probe's figures from its per-query rows (kept in the record, so the report can redo them).

    decode_s_per_token: (generation - TTFT) summed over the queries, over their output tokens after
    the first (the usual time per output token); None when no query decoded past its first token."""
    lat = [q["latency_s"] for q in queries]
    ttft = [q["ttft_s"] for q in queries if q.get("ttft_s") is not None]
    timed = [q for q in queries if q.get("ttft_s") is not None]
    after_first = sum(max(q["output_tokens"] - 1, 0) for q in timed)
    decode = sum(max(q["generation_s"] - q["ttft_s"], 0.0) for q in timed)
    return {
        "n": len(queries),
        "latency_p50_s": percentile(lat, 50), "latency_p95_s": percentile(lat, 95),
        "ttft_p50_s": percentile(ttft, 50) if ttft else None, "ttft_p95_s": percentile(ttft, 95) if ttft else None,
        "decode_s_per_token": decode / after_first if after_first else None,
        "retrieval_p50_s": percentile([q["retrieval_s"] for q in queries], 50),
        "same_as_batched": sum(bool(q.get("same_as_batched")) for q in queries),
        "ids": [q["id"] for q in queries],
        "queries": queries,
    }
