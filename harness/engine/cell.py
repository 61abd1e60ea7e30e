"""One cell of the matrix, as named stages: load what the cache holds, select among sweep points,
prepare, answer, the latency probe, the forgetting check, the learning curve, store, and assemble
the record and the per-question rows.

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
from harness.analysis.judges import stored_values
from harness.analysis.metrics import recall_at
from harness.analysis.training_flags import training_flags
from harness.cache.stages import StageCache
from harness.core.errors import HarnessError, StrategyFailed
from harness.core.paths import inside
from harness.core.types import Example, Prediction, Usage
from harness.engine import footprint, probe, tuning
from harness.engine.config import RunConfig
from harness.engine.plan import Cell, answer_tokens, judged_metrics, probe_size
from harness.methods.strategy import PrepareContext, prepare_strategy
from harness.model.resources import Measured, measure, release_memory, tensor_bytes
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
    judges: Any = None                 # harness.analysis.judges.Judges, made by the first cell that judges
    runtimes: dict = field(default_factory=dict)  # model label -> its runtime (LazyRuntime or ServedRuntime)
    models: dict = field(default_factory=dict)    # model label -> harness.model.catalog.ModelSpec

    def runtime_of(self, cell: Cell):
        """The runtime of the cell's model (the run's `runtime` when the cell names none)."""
        return self.runtimes.get(cell.model) or self.runtime


@dataclass
class Stored:
    """What the stage cache already holds for a cell: answers by question id, the prepare record,
    the answering peak memory, forgetting checks by task, the latency probe, learning-curve points by
    size, the sweep, the cell's memory and its deployment's bytes."""

    cell: dict | None
    predictions: dict = field(default_factory=dict)
    forgetting: dict = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    probe: dict | None = None
    curve: dict = field(default_factory=dict)
    sweep: dict | None = None
    memory: dict | None = None
    deployment: dict | None = None
    answer_rise_mb: float | None = None

    @classmethod
    def load(cls, cell: Cell, env: CellEnv) -> "Stored":
        data = env.cache.load_cell(cell.key) if env.cache is not None and cell.key else None
        data = data or {}
        return cls(data or None, dict(data.get("predictions", {})), dict(data.get("forgetting", {})),
                   data.get("answer_peak_rss_mb", 0.0), data.get("probe"), dict(data.get("curve") or {}),
                   data.get("sweep"), data.get("memory"), data.get("deployment"), data.get("answer_rise_mb"))


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
    probe_ids = probe.choose(test, probe_size(env.cfg, getattr(env.runtime_of(cell), "served", False)))
    fresh: dict[str, Prediction] = {}
    try:
        carved = None
        if cell.sweep:  # the cell answers with the selected point, prepared on train minus validation
            carved, validation = tuning.carve_validation(cell.bench, env.cfg.train_limit, env.cfg.sweep_validation)
            if stored.sweep:
                cell = dataclasses.replace(cell, config=cell.sweep[stored.sweep["selected"]][1], bench=carved)
        if missing or (fkey and fkey not in stored.forgetting) or (probe_ids and _probe_ids(stored) != probe_ids) \
                or _curve_missing(cell, stored, test) or (cell.sweep and not stored.sweep):
            runtime = env.runtime_of(cell)
            if getattr(runtime, "served", False) and cell.spec.cls.fine_tunes:  # before any work, in one line
                raise NeedsLocalWeights(needs_weights(cell.spec.name, runtime.spec))
            cell, prepare, fresh = _compute(cell, env, stored, record, test, missing, fkey, probe_ids,
                                            (carved, validation) if cell.sweep and not stored.sweep else None)
        else:
            prepare = {**stored.cell["prepare"], "cached": True}
            record["cached"] = True
        record["config"] = dataclasses.asdict(cell.config)
        if _judge(cell, env, stored, test, record):  # model-based metrics: harness/analysis/judges.py
            _store(cell, env, stored, prepare)
        return _assemble(cell, env, record, prepare, stored, fresh, test, fkey, probe_ids)
    except (StrategyFailed, HarnessError) as exc:
        record.update(status="failed", error=str(exc))
    except Exception as exc:  # a strategy's bug must not cost the other strategies' results
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(limit=8))
    return record, []


def _probe_ids(stored: Stored) -> list[str] | None:
    return (stored.probe or {}).get("ids")


def _curve_missing(cell: Cell, stored: Stored, test: list[Example]) -> bool:
    return any(s != tuning.ALL and any(e.id not in (stored.curve.get(str(s)) or {}).get("outputs", {}) for e in test)
               for s in cell.train_sizes)


def _release(strat) -> None:
    """A sweep or learning-curve point's model is not kept for reuse by later cells."""
    from harness.methods.finetune import FineTune

    if getattr(strat, "model", None) is not None:
        FineTune.forget(strat.model)


def _compute(cell: Cell, env: CellEnv, stored: Stored, record: dict, test: list[Example], missing: list[Example],
             fkey: str | None, probe_ids: list[str], sweep) -> tuple[Cell, dict, dict[str, Prediction]]:
    """Every stage the cache lacks, inside one memory measurement: (the selected cell, its prepare
    record, the fresh predictions)."""
    get = getattr(env.runtime_of(cell), "get", None)
    if get is not None:
        get()  # loaded before the measurement: the model is the base every cell starts from, not its rise
    release_memory()
    fresh: dict[str, Prediction] = {}
    with measure() as whole:
        strat = None
        if sweep is not None:
            carved, validation = sweep
            ctx = _context(dataclasses.replace(cell, bench=carved), env)
            best, strat, prepare, stored.sweep = tuning.run_sweep(
                cell.sweep, ctx, validation, lambda config, c: _prepare(cell, config, c, None), _release)
            cell = dataclasses.replace(cell, config=cell.sweep[best][1], bench=carved)
        ctx = _context(cell, env)
        if strat is None:
            strat, prepare = _prepare(cell, cell.config, ctx, stored)
        if missing:
            fresh = _answer(cell, env, ctx, strat, prepare, missing, stored, record)
        if probe_ids and _probe_ids(stored) != probe_ids:
            by_id = {e.id: e for e in test}
            stored.probe = probe.run(strat, [by_id[i] for i in probe_ids],
                                     {i: stored.predictions[i]["output"] for i in probe_ids})
        if fkey and fkey not in stored.forgetting and strat.model is not None:
            stored.forgetting[fkey] = _forgetting(env, strat, ctx)
        if _curve_missing(cell, stored, test):
            stored.curve = tuning.learning_curve(strat, cell.config, ctx, cell.train_sizes, test, stored.curve,
                                                 lambda config, c: _prepare(cell, config, c, None), _release)
        stored.deployment = footprint.deployment(strat, prepare, ctx.runtime)
    if not (prepare.get("cached") and stored.memory):  # a reload keeps the memory measured when first computed
        reused = tensor_bytes(strat.model) if prepare.get("training_reused_from") and strat.model is not None else 0
        stored.memory = footprint.memory(whole, env.runtime_of(cell), None if prepare.get("cached") else prepare,
                                         stored.answer_rise_mb, reused)
    _store(cell, env, stored, prepare)
    return cell, prepare, fresh


def _context(cell: Cell, env: CellEnv) -> PrepareContext:
    workdir = inside(env.run_dir / "artifacts", cell.bench.name, f"{cell.spec.name}-seed{cell.seed}")  # never leads out
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = env.cfg
    cache = env.cache if env.cache is not None and env.cache.enabled else None
    return PrepareContext(benchmark=cell.bench, runtime=env.runtime_of(cell), workdir=workdir, seed=cell.seed,
                          train_limit=cfg.train_limit, batch_size=cfg.batch_size,
                          max_new_tokens=answer_tokens(cfg, cell.bench), progress=env.progress, cache=cache,
                          train_workers=cfg.train_workers, train_sharding=cfg.train_sharding,
                          train_on_workers=env.train_on_workers)


def _prepare(cell: Cell, config, ctx: PrepareContext, stored: Stored | None):
    """Build and prepare the strategy. When the cache already holds the cell (answering questions it
    lacks), the one-time cost recorded is the original one; this preparation is a reload."""
    with measure() as m:
        strat, details = prepare_strategy(cell.spec, config, ctx)
    prepare = {**m.as_dict(), **details}
    if stored is not None and stored.cell:
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
    stored.answer_rise_mb = max(stored.answer_rise_mb or 0.0, m.rise_mb or 0.0)
    return fresh


def _forgetting(env: CellEnv, strat, ctx: PrepareContext) -> dict:
    from harness.lmeval.forgetting import forgetting_record

    return forgetting_record(ctx.runtime, strat, env.cfg.forgetting, limit=env.cfg.forgetting_limit,
                             workdir=ctx.workdir)


def _judge(cell: Cell, env: CellEnv, stored: Stored, test: list[Example], record: dict) -> bool:
    """The judging stage: what the cache lacks of the model-based metrics this benchmark asks for
    (semantic, judge, faithfulness), computed for the cell's answers and kept with them. A failed judge
    is recorded in record["judging"] and never fails the cell. True when something was computed."""
    from harness.analysis import judges

    wanted = judged_metrics(env.cfg, cell.bench)
    if not wanted:
        return False
    try:
        if env.judges is None:
            hasher = env.cache.tree_hash if env.cache is not None else StageCache(enabled=False).tree_hash
            env.judges = judges.Judges(judges.JudgeConfig.from_dict(env.cfg.judge), env.runtime, env.cfg.model,
                                       hasher, batch_size=env.cfg.batch_size)
        entries = {e.id: stored.predictions[e.id] for e in test}
        extracted = {e.id: metrics.score(entries[e.id]["output"], e.answers, e.input, e.task,
                                         entries[e.id]["trace"])["extracted"] for e in test}
        items = judges.run_items(test, {i: x["output"] for i, x in entries.items()},
                                 {i: x["trace"] for i, x in entries.items()}, extracted)
        record["judging"] = judges.judge_predictions(env.judges, wanted, items, entries)
    except Exception as exc:  # the answers stand without their judge
        record["judging"] = {"error": f"{type(exc).__name__}: {exc}"}
        return False
    return any(r["computed"] for r in record["judging"].values())


def _store(cell: Cell, env: CellEnv, stored: Stored, prepare: dict) -> None:
    if env.cache is None:
        return
    env.cache.store_cell(cell.key, {
        "prepare": {k: v for k, v in prepare.items() if k not in ("cached", "reload")},
        "answer_peak_rss_mb": stored.peak_rss_mb, "predictions": stored.predictions,
        "forgetting": {k: v for k, v in stored.forgetting.items() if "error" not in v},
        **{k: v for k, v in (("probe", stored.probe), ("curve", stored.curve), ("sweep", stored.sweep),
                             ("memory", stored.memory), ("deployment", stored.deployment),
                             ("answer_rise_mb", stored.answer_rise_mb)) if v},
        "computed": (stored.cell or {}).get("computed") or {"run": env.run_dir.name, "at": now()}})


def _assemble(cell: Cell, env: CellEnv, record: dict, prepare: dict, stored: Stored, fresh: dict,
              test: list[Example], fkey: str | None, probe_ids: list[str]) -> tuple[dict, list[dict]]:
    """Score every answer (fresh or cached) and put the record and the rows together."""
    if stored.cell:
        record["cache"]["computed"] = stored.cell.get("computed")
    record["prepare"] = {**prepare, "usd": prepare["wall_s"] * env.cfg.usd_per_hour / 3600}
    if prepare.get("loss_curve"):  # under-training and over-fitting, read off the loss curves
        record["prepare"]["training_flags"] = training_flags(prepare["loss_curve"], prepare.get("eval_loss") or [],
                                                             prepare.get("steps"))
    preds = [fresh.get(e.id) or Prediction(example_id=e.id, output=stored.predictions[e.id]["output"],
                                            usage=Usage(**stored.predictions[e.id]["usage"]), cached=True,
                                            trace=stored.predictions[e.id]["trace"]) for e in test]
    # Cached answers keep the time measured when they were computed, never zero.
    measured = Measured(wall_s=sum(stored.predictions[e.id]["wall_s"] for e in test),
                        cpu_s=sum(stored.predictions[e.id]["cpu_s"] for e in test), peak_rss_mb=stored.peak_rss_mb)
    scores = [metrics.score(p.output, e.answers, e.input, e.task, p.trace) for p, e in zip(preds, test)]
    fps = {m: j["fingerprint"] for m, j in (record.get("judging") or {}).items() if isinstance(j, dict)}
    judged = [stored_values(stored.predictions[e.id], fps) for e in test]  # the judging stage's values
    for s, (values, _) in zip(scores, judged):
        s.update(values)
    record.update(summarize(preds, scores, measured, test, env.cfg.usd_per_hour))
    if fkey and fkey in stored.forgetting:
        record["forgetting"] = stored.forgetting[fkey]
    if probe_ids and _probe_ids(stored) == probe_ids:
        record["probe"] = stored.probe
    if cell.sweep and stored.sweep:
        record["sweep"] = stored.sweep
    if cell.train_sizes:
        record["learning_curve"] = _curve_record(cell, stored, test)
    for key in ("memory", "deployment"):
        if getattr(stored, key):
            record[key] = getattr(stored, key)
    rows = [{"strategy": cell.spec.name, **({"model": cell.model} if cell.model else {}),
             "benchmark": cell.bench.name, "seed": cell.seed, "id": e.id,
             "question": e.input, "answers": list(e.answers), "output": p.output, **s,
             "usage": dataclasses.asdict(p.usage), "cached": p.cached, "trace": p.trace,
             **({"judgments": j[1]} if j[1] else {})}
            for p, e, s, j in zip(preds, test, scores, judged)]
    return record, rows


def _curve_record(cell: Cell, stored: Stored, test: list[Example]) -> dict:
    """The learning curve's points on this cell's test questions (outputs kept, so the report rescores
    them; "all" is the cell's own answers)."""
    ids = [e.id for e in test]
    points = []
    for size in cell.train_sizes:
        p = dict(stored.curve.get(str(size)) or {})
        if "outputs" in p:
            p["outputs"] = {i: p["outputs"][i] for i in ids}
        points.append({"size": size, **p})
    return {"order": f"nested: the first n of the train examples in an order seeded by seed {cell.seed}",
            "points": points}


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
        # throughput at the run's batch size (answering wall time, retrieval included), apart from
        # latency: what a capacity model divides the volume by
        "queries_per_s": len(preds) / measured.wall_s if measured.wall_s else None,
        "output_tokens_per_s": sum(p.usage.output_tokens for p in preds) / measured.wall_s if measured.wall_s else None,
    }
    out = {"answer": answer,
           "metrics": {m: metrics.bootstrap_ci([s[m] for s in scores if m in s])
                       for m in metrics.metric_names(examples[0].task if examples else "")
                       if any(m in s for s in scores)}}  # a model-based metric only where it was computed
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
