"""Answering through an endpoint model: the shared answering path (answer_prompts, choose_prompts)
when the cell's model is served by an OpenAI-compatible server (harness/model/served.py).

The same chat messages as the local path go to the server, which applies the model's chat template.
Per query: prompt and output tokens from the server's usage (or the local tokenizer's count, the
trace says which), seconds = the call's wall time / queries + its retrieval share (what throughput
is computed from), latency = the request's own time (queueing at the server included) + the
retries' waits + its retrieval share, and the time to the first token.
"""
from __future__ import annotations

import time
from typing import Sequence

from tqdm.auto import tqdm

from harness.core.errors import StrategyFailed
from harness.core.types import Example, Prediction, Usage


def _trace(base: dict | None, g, em) -> dict:
    trace = dict(base or {})
    trace.update(served_by=em.config.name, usage_source=g.usage_source, ttft_s=g.ttft_s, attempts=g.attempts,
                 model_id=g.model_id, finish_reason=g.finish_reason, max_concurrency=em.config.max_concurrency)
    if not g.streamed:
        trace["streamed"] = False  # the server ignored `stream`: ttft_s is the whole answer's time
    return trace


def _usage(g, wall: float, n: int, r: float) -> Usage:
    return Usage(prompt_tokens=g.prompt_tokens, output_tokens=g.output_tokens, seconds=wall / n + r,
                 retrieval_seconds=r, latency_seconds=g.latency_s + g.retry_wait_s + r)


def _timed(ctx, em, total: int, desc: str, call):
    """call(on_result) to the endpoint behind a progress bar of `total` queries: (its results, wall seconds)."""
    bar = tqdm(total=total, desc=f"{desc} ({em.config.name})", unit="q", disable=not ctx.progress, leave=False)
    t0 = time.perf_counter()
    try:
        out = call(bar.update)
    finally:
        bar.close()
    return out, time.perf_counter() - t0


def answer_served(ctx, examples: Sequence[Example], messages: Sequence[list[dict]], *,
                  retrieval_seconds: Sequence[float] | None = None, traces: Sequence[dict] | None = None,
                  desc: str = "answering") -> list[Prediction]:
    """Greedy answers from the endpoint, cut at the first line as the local decoder cuts them."""
    em = ctx.runtime.ready()
    gens, wall = _timed(ctx, em, len(messages), desc,
                        lambda done: em.chat(messages, ctx.max_new_tokens, on_result=done))
    n = max(len(examples), 1)
    preds = []
    for i, (ex, g) in enumerate(zip(examples, gens)):
        r = retrieval_seconds[i] if retrieval_seconds else 0.0
        preds.append(Prediction(example_id=ex.id, output=g.text, usage=_usage(g, wall, n, r),
                                trace=_trace(traces[i] if traces else None, g, em)))
    return preds


def choose_served(ctx, examples: Sequence[Example], messages: Sequence[list[dict]], *,
                  retrieval_seconds: Sequence[float] | None = None, traces: Sequence[dict] | None = None,
                  desc: str = "answering") -> list[Prediction]:
    """Multiple choice through the endpoint: the options lettered after the question, the letter read
    from the first token's log-probabilities when the server returns them, else from the reply
    (trace["choice_method"] says which). An answer that names no option is scored as given (wrong)."""
    for ex in examples:
        if not ex.choices:
            raise StrategyFailed(f"multiple-choice question {ex.id!r} has no choices")
    em = ctx.runtime.ready()
    options = [list(ex.choices) for ex in examples]
    picks, wall = _timed(ctx, em, len(messages), desc, lambda done: em.choose(messages, options, on_result=done))
    n = max(len(examples), 1)
    preds = []
    for i, (ex, c) in enumerate(zip(examples, picks)):
        r = retrieval_seconds[i] if retrieval_seconds else 0.0
        trace = _trace(traces[i] if traces else None, c.generation, em)
        trace.update(choice_method=c.method, letter_logprobs=c.letter_logprobs, reply=c.generation.text)
        preds.append(Prediction(example_id=ex.id, output=c.text, usage=_usage(c.generation, wall, n, r), trace=trace))
    return preds
