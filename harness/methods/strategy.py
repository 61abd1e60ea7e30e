"""What a strategy is, what it gets to prepare with, and the shared path from prompts to predictions."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

from tqdm.auto import tqdm

from harness.core.errors import StrategyFailed
from harness.core.types import Benchmark, Example, Prediction, Usage
from harness.methods import prompts


@dataclass
class PrepareContext:
    benchmark: Benchmark
    runtime: Any  # harness.model.runtime.Runtime
    workdir: Path  # where this strategy keeps its artifacts (index, adapter)
    seed: int = 0
    train_limit: int | None = None
    batch_size: int | None = None  # None: the runtime's default for its device
    max_new_tokens: int = 24
    progress: bool = True
    cache: Any = None  # harness.cache.stages.StageCache: strategies keep indexes and adapters there (None: workdir)
    train_workers: int = 1  # fine-tuning trains on this many Ray Train workers (harness/engine/scaleout/raytrain.py)
    train_sharding: str = "ddp"  # with several training processes: ddp, or fsdp (weights sharded)

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
    """Encode chat prompts, generate in length-sorted batches, and account each query's usage.
    Multiple-choice examples are answered by `choose_prompts` instead."""
    if any(e.task == "multiple_choice" for e in examples):
        return choose_prompts(ctx, examples, messages, model=model, retrieval_seconds=retrieval_seconds,
                              traces=traces, desc=desc, plain=hf_generate)
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


def choose_prompts(
    ctx: PrepareContext,
    examples: Sequence[Example],
    messages: Sequence[list[dict]],
    *,
    model=None,
    retrieval_seconds: Sequence[float] | None = None,
    traces: Sequence[dict] | None = None,
    desc: str = "answering",
    plain: bool = False,
) -> list[Prediction]:
    """Multiple choice, as lm-eval scores it: the options are shown after the question, each one
    is scored as the assistant's reply by its summed log-probability, and the most likely is the
    answer. trace["choice_norm"] is the choice by log-probability per character (lm-eval's acc_norm)."""
    rt = ctx.runtime
    requests, owner, tokens = [], [], []
    for i, (ex, msgs) in enumerate(zip(examples, messages)):
        if not ex.choices:
            raise StrategyFailed(f"multiple-choice question {ex.id!r} has no choices")
        prompt = rt.encode_chat(prompts.show_choices(msgs, ex))
        conts = [rt.tokenizer(c, add_special_tokens=False)["input_ids"] for c in ex.choices]
        requests += [(prompt, c) for c in conts]
        owner += [i] * len(conts)
        # tokens run through the model: the prompt once (Runtime.loglikelihood; once per option when
        # plain), then every option
        tokens.append(len(prompt) * (len(conts) if plain else 1) + sum(len(c) for c in conts))
    bar = tqdm(total=len(requests), desc=desc, unit="choice", disable=not ctx.progress, leave=False)
    scores = rt.loglikelihood(requests, batch_size=ctx.batch_size, model=model, on_batch=bar.update, plain=plain)
    bar.close()
    per = [[] for _ in examples]
    for i, s in zip(owner, scores):
        per[i].append(s)
    preds = []
    for i, (ex, ss) in enumerate(zip(examples, per)):
        lps = [s.logprob for s in ss]
        best = max(range(len(lps)), key=lps.__getitem__)
        best_norm = max(range(len(lps)), key=lambda j: lps[j] / max(len(ex.choices[j]), 1))
        r = retrieval_seconds[i] if retrieval_seconds else 0.0
        batches = {s.batch: s.batch_seconds for s in ss}
        usage = Usage(prompt_tokens=tokens[i], output_tokens=0,
                      seconds=sum(s.batch_seconds / s.batch_size for s in ss) + r, retrieval_seconds=r,
                      latency_seconds=sum(batches.values()) + r)
        trace = dict(traces[i]) if traces else {}
        trace.update(choice_logprobs=lps, choice_norm=ex.choices[best_norm],
                     batch_size=max(s.batch_size for s in ss))
        preds.append(Prediction(example_id=ex.id, output=ex.choices[best], usage=usage, trace=trace))
    return preds
