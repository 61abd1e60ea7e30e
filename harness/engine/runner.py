"""Run every (benchmark, seed, strategy) cell: prepare, answer, score, and record as it goes.

Each cell's prepare record and answers are cached under a fingerprint of everything that decides
them (harness/cache/stages.py), so a rerun recomputes only what changed. results.json is rewritten after
every cell: a killed run loses at most the cell in flight and `run(resume=...)` continues it;
Ctrl-C writes the records and reports, with the cells not done marked "unfinished".
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import platform
import random
import subprocess
import sys
import traceback
from contextlib import contextmanager, nullcontext
from importlib import metadata
from pathlib import Path

from harness.analysis import metrics
from harness.cache.hashing import code_version, fingerprint, library_versions
from harness.cache.stages import FORMAT as CACHE_FORMAT
from harness.cache.stages import StageCache
from harness.core.errors import ConfigError, HarnessError, StrategyFailed
from harness.core.paths import SOURCE_ROOT, claim_folder, inside, reports_root
from harness.core.records import (
    SCHEMA_VERSION,
    read_jsonl,
    remove_stale_temps,
    write_json,
    write_jsonl,
)
from harness.core.types import Prediction, Usage
from harness.data.benchmark import load_benchmark
from harness.engine.config import RunConfig, check_data
from harness.methods.registry import build_config, get_spec
from harness.methods.retrieval import recall_at
from harness.methods.strategy import PrepareContext
from harness.model.resources import Measured, measure


def plan(cfg: RunConfig):
    """Everything that can be checked before any work: strategies, their options, benchmarks."""
    specs = [get_spec(n) for n in cfg.strategies]
    extra = sorted(set(cfg.options) - set(cfg.strategies))
    if extra:
        raise ConfigError(f"options given for strategies that are not run: {', '.join(extra)}")
    configs = {s.name: build_config(s, cfg.options.get(s.name)) for s in specs}
    benches = [load_benchmark(b, split_seed=cfg.split_seed, test_ratio=cfg.test_ratio) for b in cfg.benchmarks]
    check_data(specs, configs, benches)  # e.g. rag.k against the chunk count, before the model loads
    return specs, configs, benches


def new_run_dir(out: str | None) -> Path:
    if out:
        return claim_folder(Path(out))  # atomic: two runs given one --out never share it
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    reports = reports_root()
    for n in range(100):  # two runs started in the same second get different folders
        path = reports / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise HarnessError(f"could not create a run folder under {reports}")


def point_latest(run_dir: Path) -> None:
    reports = reports_root()
    if run_dir.parent.resolve() != reports.resolve():
        return
    link = reports / "latest"
    tmp = reports / f".latest-{os.getpid()}"
    if tmp.is_symlink():
        tmp.unlink()
    tmp.symlink_to(run_dir.name)
    os.replace(tmp, link)


def environment(device: str, dtype: str) -> dict:
    def version(pkg):
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=SOURCE_ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    cpu = platform.processor()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    # (a Ray driver plans cuda cells for the cluster and may have no GPU itself)
    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") and torch.cuda.is_available() else None
    return {
        "python": sys.version.split()[0], "platform": platform.platform(), "cpu": cpu,
        "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": device,
        "gpu": gpu, "dtype": dtype,
        "git_commit": git("rev-parse", "HEAD") or None, "git_dirty": bool(git("status", "--porcelain")),
        "packages": {p: version(p) for p in ("torch", "transformers", "peft", "sentence-transformers",
                                              "faiss-cpu", "lm_eval", "numpy", "tokenizers", "safetensors")},
    }


def summarize(preds, scores, measured, examples, price) -> dict:
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


class LazyRuntime:
    """The model runtime, loaded on first use: a rerun whose every cell is cached never loads the model.

    What fingerprints need (device, dtype, model path, default batch size) is known without loading;
    any other attribute loads the one Runtime of the run and is read from it.
    """

    def __init__(self, cfg: RunConfig, progress: bool):
        from harness.model.modelstore import resolve_model
        from harness.model.runtime import default_batch_size, pick_device, resolve_dtype

        self._cfg, self._progress, self._runtime = cfg, progress, None
        self.device = pick_device(cfg.device)
        self.dtype_name = resolve_dtype(self.device, cfg.dtype)
        self.path, self.provenance = resolve_model(cfg.model, progress=progress,
                                                   trust_remote_code=cfg.trust_remote_code)
        self.default_batch_size = default_batch_size(self.device)
        self.load_measured = None

    def get(self):
        if self._runtime is None:
            from harness.model.runtime import Runtime

            with measure() as m:
                self._runtime = Runtime(self._cfg.model, device=self._cfg.device, dtype=self._cfg.dtype,
                                        progress=self._progress, trust_remote_code=self._cfg.trust_remote_code)
            self.load_measured = m.as_dict()
        return self._runtime

    def __getattr__(self, name):  # only reached for what __init__ did not set
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.get(), name)


def cell_key(spec, config, bench, seed, cfg: RunConfig, runtime, cache: StageCache) -> str:
    """Everything that determines a cell's prepare record and its answers (not --limit: predictions
    are stored per question, so a larger limit answers only the new questions)."""
    from harness.data.benchmark import builtin_benchmarks

    values = json.dumps(dataclasses.asdict(config), default=repr)
    other = {b: load_benchmark(b).meta["data_sha256"] for b in builtin_benchmarks() if f'"{b}"' in values}
    return fingerprint({
        "strategy": spec.name, "config": dataclasses.asdict(config), "benchmark": bench.name,
        "data_sha256": bench.meta.get("data_sha256"), "other_benchmarks": other, "seed": seed,
        "train_limit": cfg.train_limit, "max_new_tokens": cfg.max_new_tokens,
        "batch_size": cfg.batch_size or runtime.default_batch_size, "device": runtime.device,
        "dtype": runtime.dtype_name, "model_sha256": cache.tree_hash(runtime.path),
        "libraries": library_versions(), "code": code_version(spec.cls), "format": CACHE_FORMAT,
        # only when it is not 1, so that keys from before the option existed stay valid
        **({"train_workers": cfg.train_workers} if cfg.train_workers > 1 and _fine_tunes(spec) else {}),
        **({"train_sharding": cfg.train_sharding} if cfg.train_workers > 1 and cfg.train_sharding != "ddp"
           and _fine_tunes(spec) else {}),
    })


def run_cell(spec, config, bench, seed, cfg, runtime, run_dir, progress, cache: StageCache | None = None,
             key: str | None = None, data_parallel=None) -> tuple[dict, list[dict]]:
    """`data_parallel` (harness/engine/scaleout/raydata.py, --executor ray only): the answers' model calls go to a
    ray.data actor pool; the answers are the same."""
    record = {"strategy": spec.name, "benchmark": bench.name, "seed": seed, "status": "ok", "error": None,
              "config": dataclasses.asdict(config), "cached": False}
    test = bench.split("test")[: cfg.limit] if cfg.limit else bench.split("test")
    workdir = inside(run_dir / "artifacts", bench.name, f"{spec.name}-seed{seed}")  # names never lead out
    workdir.mkdir(parents=True, exist_ok=True)
    stored_cell = cache.load_cell(key) if cache is not None and key else None
    stored = dict((stored_cell or {}).get("predictions", {}))
    missing = [e for e in test if e.id not in stored]
    record["cache"] = {"key": key, "predictions_hit": len(test) - len(missing), "predictions_computed": len(missing)}
    rows, fresh = [], {}
    try:
        peak = (stored_cell or {}).get("answer_peak_rss_mb", 0.0)
        # The forgetting check (lm-eval bridge) is cached in the cell, keyed by its task and limit.
        forgetting = dict((stored_cell or {}).get("forgetting", {}))
        fkey = f"{cfg.forgetting}:{cfg.forgetting_limit}" if cfg.forgetting and _fine_tunes(spec) else None
        if missing or (fkey and fkey not in forgetting):
            ctx = PrepareContext(benchmark=bench, runtime=runtime, workdir=workdir, seed=seed,
                                 train_limit=cfg.train_limit, batch_size=cfg.batch_size,
                                 max_new_tokens=cfg.max_new_tokens, progress=progress,
                                 cache=cache if cache is not None and cache.enabled else None,
                                 train_workers=cfg.train_workers, train_sharding=cfg.train_sharding)
            random.seed(seed)
            import torch

            torch.manual_seed(seed)
            strat = spec.cls(config)
            with measure() as m:
                details = strat.prepare(ctx) or {}
            prepare = {**m.as_dict(), **details}
            if stored_cell:  # answering questions the cache lacks: the one-time cost is the original one
                prepare = {**stored_cell["prepare"], "cached": True, "reload": m.as_dict()}
            if missing:
                pool = data_parallel.answering(ctx, spec.name, config, strat, details) if data_parallel \
                    else nullcontext()
                with pool as pooled, measure() as m:
                    preds = strat.answer(missing)
                if pooled is not None:
                    record["data_parallel"] = pooled.summary()
                if len(preds) != len(missing):
                    raise StrategyFailed(f"{spec.name} returned {len(preds)} predictions for {len(missing)} questions")
                n = len(missing)
                for p, e in zip(preds, missing):
                    fresh[e.id] = p
                    stored[e.id] = {"output": p.output, "usage": dataclasses.asdict(p.usage), "trace": p.trace,
                                    "wall_s": m.wall_s / n, "cpu_s": m.cpu_s / n}
                peak = max(peak, m.peak_rss_mb)
            if fkey and fkey not in forgetting and getattr(strat, "model", None) is not None:
                from harness.lmeval.bridge import forgetting_record

                forgetting[fkey] = forgetting_record(runtime, strat, cfg.forgetting,
                                                     limit=cfg.forgetting_limit, workdir=workdir)
            if cache is not None:
                cache.store_cell(key, {"prepare": {k: v for k, v in prepare.items() if k not in ("cached", "reload")},
                                       "answer_peak_rss_mb": peak, "predictions": stored,
                                       "forgetting": {k: v for k, v in forgetting.items() if "error" not in v},
                                       "computed": (stored_cell or {}).get("computed")
                                       or {"run": run_dir.name, "at": _now()}})
        else:
            prepare = {**stored_cell["prepare"], "cached": True}
            record["cached"] = True
        if stored_cell:
            record["cache"]["computed"] = stored_cell.get("computed")
        record["prepare"] = {**prepare, "usd": prepare["wall_s"] * cfg.usd_per_hour / 3600}
        preds = [fresh.get(e.id) or Prediction(example_id=e.id, output=stored[e.id]["output"],
                                                usage=Usage(**stored[e.id]["usage"]), cached=True,
                                                trace=stored[e.id]["trace"]) for e in test]
        # Cached answers keep the time measured when they were computed, never zero.
        measured = Measured(wall_s=sum(stored[e.id]["wall_s"] for e in test),
                            cpu_s=sum(stored[e.id]["cpu_s"] for e in test), peak_rss_mb=peak)
        scores = [metrics.score(p.output, e.answers, e.input, e.task, p.trace) for p, e in zip(preds, test)]
        record.update(summarize(preds, scores, measured, test, cfg.usd_per_hour))
        if fkey and fkey in forgetting:
            record["forgetting"] = forgetting[fkey]
        for p, e, s in zip(preds, test, scores):
            rows.append({"strategy": spec.name, "benchmark": bench.name, "seed": seed, "id": e.id,
                         "question": e.input, "answers": list(e.answers), "output": p.output, **s,
                         "usage": dataclasses.asdict(p.usage), "cached": p.cached, "trace": p.trace})
    except (StrategyFailed, HarnessError) as exc:
        record.update(status="failed", error=str(exc))
        rows = []
    except Exception as exc:  # a strategy's bug must not cost the other strategies' results
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                      traceback=traceback.format_exc(limit=8))
        rows = []
    return record, rows


def _fine_tunes(spec) -> bool:
    from harness.methods.finetune import FineTune

    return isinstance(spec.cls, type) and issubclass(spec.cls, FineTune)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@contextmanager
def locked(run_dir: Path):
    """One writer per run folder: a second run or --resume of the same folder stops at once."""
    import fcntl

    path = run_dir / ".lock"
    f = open(path, "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise HarnessError(f"{run_dir} is being written by another harness process") from None
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        f.close()


def resume_target(arg: str) -> tuple[Path, dict, RunConfig]:
    """The run folder to continue (a folder, or 'latest'), its records so far, and its config."""
    run_dir = reports_root() / "latest" if arg in ("", "latest") else Path(arg)
    run_dir = run_dir.resolve() if run_dir.exists() else run_dir
    path = run_dir / "results.json"
    if not path.is_file():
        raise HarnessError(f"cannot resume {run_dir}: no results.json there")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
        known = {f.name for f in dataclasses.fields(RunConfig)}
        values = {k: v for k, v in results["config"].items() if k in known}
        for k in ("benchmarks", "strategies", "seeds"):
            values[k] = tuple(values[k])
        cfg = RunConfig(**{**values, "out": str(run_dir)})
    except (ValueError, KeyError, TypeError) as exc:
        raise HarnessError(f"cannot resume {run_dir}: its results.json is not a run record ({exc})") from None
    return run_dir, results, cfg


def run(cfg: RunConfig | None = None, progress: bool = True, log=print, *, cache: bool = True,
        resume: str | None = None, executor=None, store: Path | None = None) -> Path:
    """Run every cell of cfg. `cache=False` recomputes everything; `resume` (a run folder, or
    'latest') continues that run with its own config, keeping every cell it finished.
    `executor` (harness/engine/scaleout/executors.py) runs the cells elsewhere; `store` is the stage cache's folder."""
    previous = None
    if resume is not None:
        run_dir, previous, cfg = resume_target(resume)
    specs, configs, benches = plan(cfg)
    if cfg.train_workers > 1 and executor is None:
        raise ConfigError(f"train_workers {cfg.train_workers} needs --executor ray (Ray Train's TorchTrainer); "
                          "on this machine without Ray, train on several processes with torchrun: "
                          "torchrun --nproc_per_node K -m harness.engine.scaleout.distributed (docs/scale-out.md)")
    from harness.methods.finetune import FineTune

    FineTune._trained.clear()  # models trained by an earlier run in this process are not reused
    runtime = executor.runtime(cfg, progress) if executor is not None else LazyRuntime(cfg, progress)
    stages = StageCache(root=store, enabled=cache)
    model_sha = stages.tree_hash(runtime.path)
    keys = {(b.name, seed, s.name): cell_key(s, configs[s.name], b, seed, cfg, runtime, stages)
            for b in benches for seed in cfg.seeds for s in specs}
    done = {(c["benchmark"], c["seed"], c["strategy"]) for c in (previous or {}).get("cells", [])
            if c.get("status") in ("ok", "failed")}
    limit = {b.name: [e.id for e in b.split("test")][: cfg.limit or None] for b in benches}
    if any(not _all_cached(stages, key, limit[k[0]]) for k, key in keys.items() if k not in done):
        runtime.get()  # something to compute: load the model now, so a bad model stops the run before any output
    if previous is None:
        run_dir = new_run_dir(cfg.out)
    with locked(run_dir):
        remove_stale_temps(run_dir)
        return _run_cells(cfg, specs, configs, benches, runtime, stages, model_sha, keys, run_dir, previous,
                          progress, log, executor)


def _all_cached(stages: StageCache, key: str, ids: list[str]) -> bool:
    cell = stages.load_cell(key)
    return cell is not None and all(i in cell["predictions"] for i in ids)


def _run_cells(cfg, specs, configs, benches, runtime, stages, model_sha, keys, run_dir, previous, progress, log,
               executor=None):
    results = {
        "schema_version": SCHEMA_VERSION,
        "run": {"id": run_dir.name, "started": _now(), "finished": None, "argv": sys.argv[1:]},
        "config": {**cfg.to_dict(), "batch_size": cfg.batch_size or runtime.default_batch_size},
        "environment": environment(runtime.device, runtime.dtype_name),
        "model": {"name": cfg.model, "path": str(runtime.path), **runtime.provenance,
                  "content_sha256": model_sha, "load": None},
        "benchmarks": [{"name": b.name, "task": b.task, "documents": len(b.documents),
                        "train": len(b.split("train")), "test": len(b.split("test")),
                        "test_used": min(len(b.split("test")), cfg.limit or 10**9),
                        "data_sha256": b.meta.get("data_sha256"), "license": b.meta.get("license"),
                        "source": b.meta.get("source"), "split_assigned": b.meta.get("split_assigned")}
                       for b in benches],
        "pricing": {"usd_per_hour": cfg.usd_per_hour},
        "answer_extraction": metrics.EXTRACTION_RULE,
        "cache": {"enabled": stages.enabled, "root": str(stages.root)},
        "cells": [],
    }
    kept: dict[tuple, tuple[dict, list[dict]]] = {}
    if previous is not None:
        old_rows = read_jsonl(run_dir / "predictions.jsonl") if (run_dir / "predictions.jsonl").exists() else []
        for c in previous.get("cells", []):
            if c.get("status") in ("ok", "failed"):
                k = (c["benchmark"], c["seed"], c["strategy"])
                kept[k] = (c, [r for r in old_rows if (r["benchmark"], r["seed"], r["strategy"]) == k])
        results["run"] = {**previous["run"], "finished": None, "interrupted": None,
                          "resumed": previous["run"].get("resumed", []) + [_now()]}
        results["environment"] = previous.get("environment", results["environment"])
        results["model"]["load"] = previous.get("model", {}).get("load")
        results["cache"] = previous.get("cache", results["cache"])
    order = [(b, seed, spec) for b in benches for seed in cfg.seeds for spec in specs]
    all_rows: list[dict] = []
    write_json(run_dir / "results.json", results)
    try:
        remote = None if executor is None else executor.submit(
            [c for c in order if (c[0].name, c[1], c[2].name) not in kept], keys, cfg, configs, runtime, stages,
            run_dir, log)
        for bench, seed, spec in order:
            k = (bench.name, seed, spec.name)
            where = f"[{bench.name} seed={seed}] {spec.name}"
            if k in kept:
                record, rows = kept[k]
                log(f"{where}: finished before, kept")
            else:
                if remote is not None:
                    record, rows = remote.result(k)
                else:
                    log(f"{where}: running")
                    record, rows = run_cell(spec, configs[spec.name], bench, seed, cfg, runtime, run_dir, progress,
                                            cache=stages, key=keys[k])
                _log_cell(log, where, record, bench.task)
            results["cells"].append(record)
            all_rows += rows
            write_jsonl(run_dir / "predictions.jsonl", all_rows)
            write_json(run_dir / "results.json", _with_totals(results, runtime, stages))
    except KeyboardInterrupt:
        done = {(c["benchmark"], c["seed"], c["strategy"]) for c in results["cells"]}
        for bench, seed, spec in order:
            if (bench.name, seed, spec.name) not in done:
                results["cells"].append({
                    "strategy": spec.name, "benchmark": bench.name, "seed": seed, "status": "unfinished",
                    "config": dataclasses.asdict(configs[spec.name]),
                    "error": f"not finished: the run was interrupted; `harness run --resume {run_dir}` finishes it"})
        results["run"]["interrupted"] = _now()
        _finish(run_dir, _with_totals(results, runtime, stages), all_rows)
        log(f"interrupted: {len(done)} of {len(order)} cells finished and kept in {run_dir}")
        raise
    results["run"]["finished"] = _now()
    _finish(run_dir, _with_totals(results, runtime, stages), all_rows)
    return run_dir


def _with_totals(results: dict, runtime, stages: StageCache) -> dict:
    cells = [c for c in results["cells"] if "cache" in c]
    if runtime.load_measured is not None:
        results["model"]["load"] = runtime.load_measured
    results["cache"] = {**results["cache"],
                        "cells_fully_cached": sum(1 for c in cells if c.get("cached")),
                        "predictions_hit": sum(c["cache"]["predictions_hit"] for c in cells),
                        "predictions_computed": sum(c["cache"]["predictions_computed"] for c in cells),
                        "artifacts_hit": stages.counts["hit"], "artifacts_built": stages.counts["miss"]}
    return results


def _finish(run_dir: Path, results: dict, rows: list[dict]) -> None:
    write_jsonl(run_dir / "predictions.jsonl", rows)
    write_json(run_dir / "results.json", results)
    from harness.report.document import write_reports

    write_reports(run_dir)
    point_latest(run_dir)


def _log_cell(log, where: str, record: dict, task: str) -> None:
    if record["status"] != "ok":
        log(f"{where}: FAILED: {record['error']}")
        return
    c = record["cache"]
    how = "cached" if record["cached"] else (
        f"{c['predictions_computed']} answers computed, {c['predictions_hit']} cached" if c["predictions_hit"] else "")
    name = metrics.primary_metric(task)
    label = {"f1": "F1", "exact_match": "accuracy"}.get(name, name)
    log(f"{where}: {label} {record['metrics'][name]['mean']:.3f}, prepare {record['prepare']['wall_s']:.1f}s, "
        f"answer {record['answer']['wall_s']:.1f}s" + (f" ({how}; times as first measured)" if how else ""))
