"""What a strategy is, what it gets to prepare with, and the shared path from prompts to predictions."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

from tqdm.auto import tqdm

from .types import Benchmark, Example, Prediction, Usage


@dataclass
class PrepareContext:
    benchmark: Benchmark
    runtime: Any  # harness.runtime.Runtime
    workdir: Path  # where this strategy keeps its artifacts (index, adapter)
    seed: int = 0
    train_limit: int | None = None
    batch_size: int | None = None  # None: the runtime's default for its device
    max_new_tokens: int = 24
    progress: bool = True
    cache: Any = None  # harness.cache.StageCache: strategies keep indexes and adapters there (None: workdir)

    def train_examples(self) -> list[Example]:
        train = self.benchmark.split("train")
        return train[: self.train_limit] if self.train_limit is not None else train


class Strategy(Protocol):
    name: str

    def prepare(self, ctx: PrepareContext) -> dict:
        """One-time work (index, training). Returns details for the record: artifact_bytes, params..."""

    def answer(self, examples: Sequence[Example]) -> list[Prediction]:
        """Per-query work, batched over all the examples given."""


def answer_prompts(
    ctx: PrepareContext,
    examples: Sequence[Example],
    messages: Sequence[list[dict]],
    *,
    model=None,
    retrieval_seconds: Sequence[float] | None = None,
    traces: Sequence[dict] | None = None,
    desc: str = "answering",
    hf_generate: bool = False,
) -> list[Prediction]:
    """Encode chat prompts, generate in length-sorted batches, and account each query's usage."""
    rt = ctx.runtime
    prompts = [rt.encode_chat(m) for m in messages]
    bar = tqdm(total=len(prompts), desc=desc, unit="q", disable=not ctx.progress, leave=False)
    generate = rt.generate_hf if hf_generate else rt.generate
    gens = generate(prompts, max_new_tokens=ctx.max_new_tokens, batch_size=ctx.batch_size,
                    model=model, on_batch=bar.update)
    bar.close()
    preds = []
    for i, (ex, g) in enumerate(zip(examples, gens)):
        r = retrieval_seconds[i] if retrieval_seconds else 0.0
        usage = Usage(prompt_tokens=g.prompt_tokens, output_tokens=g.output_tokens,
                      seconds=g.batch_seconds / g.batch_size + r, retrieval_seconds=r,
                      latency_seconds=g.batch_seconds + r)
        trace = dict(traces[i]) if traces else {}
        trace["batch_size"] = g.batch_size
        preds.append(Prediction(example_id=ex.id, output=g.text, usage=usage, trace=trace))
    return preds
