"""One cell of the matrix, as named stages: load what the cache holds, prepare, answer, the forgetting
check, store, and assemble the record and the per-question rows.

The local executor and a Ray worker both call `run_cell(cell, env)`; a failure of the strategy is
recorded in the cell (status "failed") and never costs the other cells their results.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import traceback
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.analysis import metrics
from harness.analysis.metrics import recall_at
from harness.cache.stages import StageCache
from harness.core.errors import HarnessError, StrategyFailed
from harness.core.paths import inside
from harness.core.types import Example, Prediction, Usage
from harness.engine.config import RunConfig
from harness.engine.plan import Cell
from harness.methods.strategy import PrepareContext, prepare_strategy
from harness.model.resources import Measured, measure
from harness.model.served import NeedsLocalWeights, needs_weights


@dataclass
class CellEnv:
    """What every cell of a run shares: the config, the model runtime, where records go, the cache,
    and what the executor lends (an actor pool for generation, workers for training)."""

    cfg: RunConfig
    runtime: Any                       # LazyRuntime (or the Ray executor's PlannedRuntime on the driver)
    run_dir: Path
    cache: StageCache | None = None
    progress: bool = False
    data_parallel: Any = None          # harness.engine.scaleout.raydata.DataParallel (--data-parallel N)
    train_on_workers: Callable | None = None  # harness.engine.scaleout.raytrain.train_on_workers
    runtimes: dict = field(default_factory=dict)  # model label -> its runtime (LazyRuntime or ServedRuntime)
    models: dict = field(default_factory=dict)    # model label -> harness.model.catalog.ModelSpec

    def runtime_of(self, cell: Cell):
        """The runtime of the cell's model (the run's `runtime` when the cell names none)."""
        return self.runtimes.get(cell.model) or self.runtime


@dataclass
class Stored:
    """What the stage cache already holds for a cell: answers by question id, the prepare record,
    the answering peak memory, and forgetting checks by task."""

    cell: dict | None
    predictions: dict = field(default_factory=dict)
    forgetting: dict = field(default_factory=dict)
    peak_rss_mb: float = 0.0

    @classmethod
    def load(cls, cell: Cell, env: CellEnv) -> "Stored":
        data = env.cache.load_cell(cell.key) if env.cache is not None and cell.key else None
        data = data or {}
        return cls(data or None, dict(data.get("predictions", {})), dict(data.get("forgetting", {})),
                   data.get("answer_peak_rss_mb", 0.0))


def _forgetting_key(cell: Cell, cfg: RunConfig) -> str | None:
    """The forgetting check (lm-eval bridge) is cached in the cell, keyed by its task and limit."""
    if cfg.forgetting and cell.spec.cls.fine_tunes:
        return f"{cfg.forgetting}:{cfg.forgetting_limit}"
    return None


def run_cell(cell: Cell, env: CellEnv) -> tuple[dict, list[dict]]:
    """The cell's record for results.json and its rows for predictions.jsonl."""
    record = {"strategy": cell.spec.name, "benchmark": cell.bench.name, "seed": cell.seed, "status": "ok",
              "error": None, "config": dataclasses.asdict(cell.config), "cached": False}
    if cell.spec.base:
        record["runs"] = cell.spec.base  # a variant: the registered strategy it runs
    if cell.model:
        record["model"] = cell.model  # the label of its model (results.json "models")
    test = cell.test_examples(env.cfg.limit)
    stored = Stored.load(cell, env)
    missing = [e for e in test if e.id not in stored.predictions]
    record["cache"] = {"key": cell.key or None, "predictions_hit": len(test) - len(missing),
                       "predictions_computed": len(missing)}
    fkey = _forgetting_key(cell, env.cfg)
    fresh: dict[str, Prediction] = {}
    try:
        if missing or (fkey and fkey not in stored.forgetting):
            runtime = env.runtime_of(cell)
            if getattr(runtime, "served", False) and cell.spec.cls.fine_tunes:  # before any work, in one line
                raise NeedsLocalWeights(needs_weights(cell.spec.name, runtime.spec))
            ctx = _context(cell, env)
            strat, prepare = _prepare(cell, ctx, stored)
            if missing:
                fresh = _answer(cell, env, ctx, strat, prepare, missing, stored, record)
            if fkey and fkey not in stored.forgetting and strat.model is not None:
                stored.forgetting[fkey] = _forgetting(env, strat, ctx)
            _store(cell, env, stored, prepare)
        else:
            prepare = {**stored.cell["prepare"], "cached": True}
            record["cached"] = True
        return _assemble(cell, env, record, prepare, stored, fresh, test, fkey)
    except (StrategyFailed, HarnessError) as exc:
        record.update(status="failed", error=str(exc))
    except Exception as exc:  # a strategy's bug must not cost the other strategies' results
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(limit=8))
    return record, []


def _context(cell: Cell, env: CellEnv) -> PrepareContext:
    workdir = inside(env.run_dir / "artifacts", cell.bench.name, f"{cell.spec.name}-seed{cell.seed}")  # never leads out
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = env.cfg
    cache = env.cache if env.cache is not None and env.cache.enabled else None
    return PrepareContext(benchmark=cell.bench, runtime=env.runtime_of(cell), workdir=workdir, seed=cell.seed,
                          train_limit=cfg.train_limit, batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens,
                          progress=env.progress, cache=cache,
                          train_workers=cfg.train_workers, train_sharding=cfg.train_sharding,
                          train_on_workers=env.train_on_workers)


def _prepare(cell: Cell, ctx: PrepareContext, stored: Stored):
    """Build and prepare the strategy. When the cache already holds the cell (answering questions it
    lacks), the one-time cost recorded is the original one; this preparation is a reload."""
    with measure() as m:
        strat, details = prepare_strategy(cell.spec, cell.config, ctx)
    prepare = {**m.as_dict(), **details}
    if stored.cell:
        prepare = {**stored.cell["prepare"], "cached": True, "reload": m.as_dict()}
    return strat, prepare


def _answer(cell: Cell, env: CellEnv, ctx: PrepareContext, strat, prepare: dict, missing: list[Example],
            stored: Stored, record: dict) -> dict[str, Prediction]:
    """Answer the questions the cache lacks (through the actor pool with --data-parallel)."""
    local = not getattr(ctx.runtime, "served", False)  # an endpoint spreads its requests itself
    pool = env.data_parallel.answering(ctx, cell.spec.name, cell.config, strat, prepare) \
        if env.data_parallel and local else nullcontext()
    with pool as pooled, measure() as m:
        preds = strat.answer(missing)
    if pooled is not None:
        record["data_parallel"] = pooled.summary()
    if len(preds) != len(missing):
        raise StrategyFailed(f"{cell.spec.name} returned {len(preds)} predictions for {len(missing)} questions")
    n = len(missing)
    fresh = {}
    for p, e in zip(preds, missing):
        fresh[e.id] = p
        stored.predictions[e.id] = {"output": p.output, "usage": dataclasses.asdict(p.usage), "trace": p.trace,
                                    "wall_s": m.wall_s / n, "cpu_s": m.cpu_s / n}
    stored.peak_rss_mb = max(stored.peak_rss_mb, m.peak_rss_mb)
    return fresh


def _forgetting(env: CellEnv, strat, ctx: PrepareContext) -> dict:
    from harness.lmeval.forgetting import forgetting_record

    return forgetting_record(ctx.runtime, strat, env.cfg.forgetting, limit=env.cfg.forgetting_limit,
                             workdir=ctx.workdir)


def _store(cell: Cell, env: CellEnv, stored: Stored, prepare: dict) -> None:
    if env.cache is None:
        return
    env.cache.store_cell(cell.key, {
        "prepare": {k: v for k, v in prepare.items() if k not in ("cached", "reload")},
        "answer_peak_rss_mb": stored.peak_rss_mb, "predictions": stored.predictions,
        "forgetting": {k: v for k, v in stored.forgetting.items() if "error" not in v},
        "computed": (stored.cell or {}).get("computed") or {"run": env.run_dir.name, "at": now()}})


def _assemble(cell: Cell, env: CellEnv, record: dict, prepare: dict, stored: Stored, fresh: dict,
              test: list[Example], fkey: str | None) -> tuple[dict, list[dict]]:
    """Score every answer (fresh or cached) and put the record and the rows together."""
    if stored.cell:
        record["cache"]["computed"] = stored.cell.get("computed")
    record["prepare"] = {**prepare, "usd": prepare["wall_s"] * env.cfg.usd_per_hour / 3600}
    preds = [fresh.get(e.id) or Prediction(example_id=e.id, output=stored.predictions[e.id]["output"],
                                            usage=Usage(**stored.predictions[e.id]["usage"]), cached=True,
                                            trace=stored.predictions[e.id]["trace"]) for e in test]
    # Cached answers keep the time measured when they were computed, never zero.
    measured = Measured(wall_s=sum(stored.predictions[e.id]["wall_s"] for e in test),
                        cpu_s=sum(stored.predictions[e.id]["cpu_s"] for e in test), peak_rss_mb=stored.peak_rss_mb)
    scores = [metrics.score(p.output, e.answers, e.input, e.task, p.trace) for p, e in zip(preds, test)]
    record.update(summarize(preds, scores, measured, test, env.cfg.usd_per_hour))
    if fkey and fkey in stored.forgetting:
        record["forgetting"] = stored.forgetting[fkey]
    rows = [{"strategy": cell.spec.name, **({"model": cell.model} if cell.model else {}),
             "benchmark": cell.bench.name, "seed": cell.seed, "id": e.id,
             "question": e.input, "answers": list(e.answers), "output": p.output, **s,
             "usage": dataclasses.asdict(p.usage), "cached": p.cached, "trace": p.trace}
            for p, e, s in zip(preds, test, scores)]
    return record, rows


def summarize(preds, scores, measured, examples, price) -> dict:
    """A cell's answering figures: tokens, latency percentiles, cost per query, metrics with CIs,
    and recall@k when the strategy retrieved documents."""
    lat = [p.usage.latency_seconds for p in preds]
    ret = [p.usage.retrieval_seconds for p in preds]
    gen = [a - b for a, b in zip(lat, ret)]
    n = max(len(preds), 1)
    answer = {
        **measured.as_dict(), "queries": len(preds),
        "prompt_tokens_mean": sum(p.usage.prompt_tokens for p in preds) / n,
        "output_tokens_mean": sum(p.usage.output_tokens for p in preds) / n,
        "prompt_tokens_total": sum(p.usage.prompt_tokens for p in preds),
        "output_tokens_total": sum(p.usage.output_tokens for p in preds),
        "latency_p50_s": metrics.percentile(lat, 50), "latency_p95_s": metrics.percentile(lat, 95),
        "generation_p50_s": metrics.percentile(gen, 50), "generation_p95_s": metrics.percentile(gen, 95),
        "retrieval_p50_s": metrics.percentile(ret, 50), "retrieval_p95_s": metrics.percentile(ret, 95),
        "seconds_per_query": measured.wall_s / n,
        "usd_per_1k_queries": measured.wall_s / n * 1000 * price / 3600,
    }
    out = {"answer": answer,
           "metrics": {m: metrics.bootstrap_ci([s[m] for s in scores if m in s])
                       for m in metrics.metric_names(examples[0].task if examples else "")}}
    ranked = [p.trace.get("retrieved_doc_ids") for p in preds]
    if any(r is not None for r in ranked):
        out["retrieval"] = {}
        for k in range(1, max(len(r or []) for r in ranked) + 1):
            vals = [recall_at(r or [], e.doc_ids, k) for r, e in zip(ranked, examples)]
            vals = [v for v in vals if v is not None]
            out["retrieval"][f"recall@{k}"] = sum(vals) / len(vals) if vals else None
    return out


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
