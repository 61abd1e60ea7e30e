"""The Strategy contract, what a strategy gets to prepare with, and the shared path from prompts to
predictions (batched generation, or log-likelihood for multiple choice)."""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

from tqdm.auto import tqdm

from harness.core.errors import StrategyFailed
from harness.core.types import Benchmark, Example, Prediction, Usage
from harness.data.chunks import Chunk
from harness.data.tasks import task_type
from harness.methods import prompts
from harness.model.batching import DEFAULT_MAX_NEW_TOKENS


@dataclass
class PrepareContext:
    """What a strategy gets to prepare with: the benchmark, the shared model runtime, where to keep
    artifacts, and the run's settings."""

    benchmark: Benchmark
    runtime: Any  # the cell model's runtime: harness.model.runtime.Runtime, or model.served.ServedRuntime
    workdir: Path  # where this strategy keeps its artifacts (index, adapter)
    seed: int = 0
    train_limit: int | None = None
    batch_size: int | None = None  # None: the runtime's default for its device
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    progress: bool = True
    cache: Any = None  # harness.cache.stages.StageCache: strategies keep indexes and adapters there (None: workdir)
    train_workers: int = 1  # fine-tuning trains on this many workers, through `train_on_workers`
    train_sharding: str = "ddp"  # with several training processes: ddp, or fsdp (weights sharded)
    # Given by an executor that can train on several workers (the Ray executor hands in Ray Train's):
    # train_on_workers(strategy, ctx, folder) -> details. Methods never import the scale-out code.
    train_on_workers: Callable | None = None

    def train_examples(self) -> list[Example]:
        train = self.benchmark.split("train")
        return train[: self.train_limit] if self.train_limit is not None else train


class Retriever(Protocol):
    """What a RAG strategy retrieves with: the top `k` chunks for each query."""

    k: int

    def search(self, queries: Sequence[str]) -> tuple[list[list[Chunk]], list[float]]:
        """Top-k chunks per query, and each query's share of the search time in seconds."""


@runtime_checkable
class Strategy(Protocol):
    """The contract every strategy meets. `prepare` and `answer` are the work; the other members are
    read by the engine, the lm-eval bridge, the forgetting check and --data-parallel, and
    StrategyBase gives each its documented default."""

    name: str
    config: Any
    fine_tunes: bool      # prepare() trains a model (the forgetting check and --train-workers apply)
    model: Any            # after prepare: the model it answers with; None: the runtime's base model
    prompt_learning: bool  # that model prepends virtual tokens (prompt/prefix tuning): plain generate only
    demos: Sequence[tuple[str, str]]  # worked (question, answer) pairs put before every question
    retriever: Retriever | None  # after prepare: what it retrieves with; None: answers closed-book
    artifact_path: Path | None   # after prepare: the folder holding its index or adapter, if any

    def prepare(self, ctx: PrepareContext) -> dict:
        """One-time work (index, training). Returns details for the record: artifact_bytes, params..."""

    def answer(self, examples: Sequence[Example]) -> list[Prediction]:
        """Per-query work, batched over all the examples given."""

    @classmethod
    def check(cls, name: str, config: Any, benchmark: Benchmark) -> None:
        """Checks that need the benchmark's data, run before the model loads; raise ConfigError."""


class StrategyBase:
    """The optional members of the Strategy contract with their defaults. A strategy subclasses it,
    sets what applies in prepare(), and registers with @strategy beside the class."""

    name: str = ""               # set by the @strategy decorator
    fine_tunes: bool = False

    def __init__(self, config):
        self.config = config
        self.model = None
        self.prompt_learning = False
        self.demos: Sequence[tuple[str, str]] = ()
        self.retriever: Retriever | None = None
        self.artifact_path: Path | None = None
        self.ctx: PrepareContext | None = None

    @classmethod
    def check(cls, name: str, config, benchmark: Benchmark) -> None:
        return None

    def prepare(self, ctx: PrepareContext) -> dict:  # pragma: no cover - every strategy defines it
        raise NotImplementedError

    def answer(self, examples: Sequence[Example]) -> list[Prediction]:  # pragma: no cover
        raise NotImplementedError


def prepare_strategy(spec, config, ctx: PrepareContext):
    """Seed, build and prepare one strategy, as the engine, the lm-eval bridge and the training
    scripts all do; returns (strategy, prepare details)."""
    import torch

    random.seed(ctx.seed)
    torch.manual_seed(ctx.seed)
    strat = spec.cls(config)
    strat.name = spec.name  # a variant answers under its own name (`rag-k8`), its class under the registered one
    details = strat.prepare(ctx) or {}
    return strat, details


def check_context(rt, examples: Sequence[Example], needed: Sequence[int], what: str) -> None:
    """A prompt that does not fit the model's context is an error naming the question, never a
    silent run past the positions the model was trained on (no truncation: cutting a prompt would
    drop the question or the retrieved passage and score an answer to something else)."""
    limit = getattr(rt, "context_length", None)
    if not isinstance(limit, int):
        return
    for ex, n in zip(examples, needed):
        if n > limit:
            raise StrategyFailed(f"question {ex.id!r}: its prompt needs {n:,} tokens ({what}), more than the "
                                 f"model's context of {limit:,}; shorten the question or the context put before "
                                 "it (rag.k, rag.chunk_words, few-shot.shots), or lower max_new_tokens")


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
    if any(task_type(e.task).answered_by == "loglikelihood" for e in examples):
        return choose_prompts(ctx, examples, messages, model=model, retrieval_seconds=retrieval_seconds,
                              traces=traces, desc=desc, plain=hf_generate)
    if model is None and getattr(ctx.runtime, "served", False):  # the cell's model is an endpoint
        from harness.methods.served import answer_served

        return answer_served(ctx, examples, messages, retrieval_seconds=retrieval_seconds, traces=traces, desc=desc)
    rt = ctx.runtime
    prompts = [rt.encode_chat(m) for m in messages]
    check_context(rt, examples, [len(p) + ctx.max_new_tokens for p in prompts], f"+ {ctx.max_new_tokens} new")
    bar = tqdm(total=len(prompts), desc=desc, unit="q", disable=not ctx.progress, leave=False)
    one_line = all(task_type(e.task).one_line for e in examples)  # free-form answers run over several lines
    if hf_generate:
        gens = rt.generate_hf(prompts, max_new_tokens=ctx.max_new_tokens, batch_size=ctx.batch_size,
                              model=model, on_batch=bar.update, stop_at_newline=one_line)
    else:
        gens = rt.generate(prompts, max_new_tokens=ctx.max_new_tokens, batch_size=ctx.batch_size, model=model,
                           on_batch=bar.update, stop_at_newline=one_line, stop_on_loop=True)
    bar.close()
    preds = []
    for i, (ex, g) in enumerate(zip(examples, gens)):
        r = retrieval_seconds[i] if retrieval_seconds else 0.0
        usage = Usage(prompt_tokens=g.prompt_tokens, output_tokens=g.output_tokens,
                      seconds=g.batch_seconds / g.batch_size + r, retrieval_seconds=r,
                      latency_seconds=g.batch_seconds + r)
        trace = dict(traces[i]) if traces else {}
        trace["batch_size"] = g.batch_size
        if g.first_token_seconds is not None:  # its batch's prefill: the TTFT of a batch of one
            trace["first_token_s"] = round(g.first_token_seconds, 6)
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
    answer. trace["choice_norm"] is the choice by log-probability per character (lm-eval's acc_norm).
    An endpoint model (no log-likelihoods over the API) picks a lettered option instead (methods/served.py)."""
    if model is None and getattr(ctx.runtime, "served", False):
        from harness.methods.served import choose_served

        return choose_served(ctx, examples, messages, retrieval_seconds=retrieval_seconds, traces=traces, desc=desc)
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
        check_context(rt, [ex], [len(prompt) + max(len(c) for c in conts)], "+ its longest option")
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
