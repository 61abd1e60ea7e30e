"""Run every (benchmark, seed, strategy) cell: prepare, answer, score, and record as it goes."""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import platform
import random
import subprocess
import sys
import traceback
from importlib import metadata
from pathlib import Path

from . import metrics
from .benchmark import load_benchmark
from .config import RunConfig
from .errors import ConfigError, HarnessError, StrategyFailed
from .records import SCHEMA_VERSION, write_json, write_jsonl
from .registry import build_config, get_spec
from .resources import measure
from .retrieval import recall_at
from .strategy import PrepareContext

REPO = Path(__file__).resolve().parent.parent
REPORTS = Path(os.environ.get("HARNESS_REPORTS", REPO / "reports"))


def plan(cfg: RunConfig):
    """Everything that can be checked before any work: strategies, their options, benchmarks."""
    specs = [get_spec(n) for n in cfg.strategies]
    extra = sorted(set(cfg.options) - set(cfg.strategies))
    if extra:
        raise ConfigError(f"options given for strategies that are not run: {', '.join(extra)}")
    configs = {s.name: build_config(s, cfg.options.get(s.name)) for s in specs}
    benches = [load_benchmark(b) for b in cfg.benchmarks]
    return specs, configs, benches


def new_run_dir(out: str | None) -> Path:
    if out:
        path = Path(out)
        if path.exists() and any(path.iterdir()):
            raise HarnessError(f"output folder {path} already exists and is not empty; pick another --out")
        path.mkdir(parents=True, exist_ok=True)
        return path
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(100):  # two runs started in the same second get different folders
        path = REPORTS / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise HarnessError(f"could not create a run folder under {REPORTS}")


def point_latest(run_dir: Path) -> None:
    if run_dir.parent.resolve() != REPORTS.resolve():
        return
    link = REPORTS / "latest"
    tmp = REPORTS / f".latest-{os.getpid()}"
    if tmp.is_symlink():
        tmp.unlink()
    tmp.symlink_to(run_dir.name)
    os.replace(tmp, link)


def environment(runtime) -> dict:
    def version(pkg):
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
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

    gpu = torch.cuda.get_device_name(0) if runtime.device.startswith("cuda") else None
    return {
        "python": sys.version.split()[0], "platform": platform.platform(), "cpu": cpu,
        "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": runtime.device,
        "gpu": gpu, "dtype": str(runtime.dtype).replace("torch.", ""),
        "git_commit": git("rev-parse", "HEAD") or None, "git_dirty": bool(git("status", "--porcelain")),
        "packages": {p: version(p) for p in ("torch", "transformers", "peft", "sentence-transformers",
                                              "faiss-cpu", "lm_eval", "numpy")},
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
           "metrics": {m: metrics.bootstrap_ci([s[m] for s in scores]) for m in metrics.METRICS}}
    ranked = [p.trace.get("retrieved_doc_ids") for p in preds]
    if any(r is not None for r in ranked):
        out["retrieval"] = {}
        for k in range(1, max(len(r or []) for r in ranked) + 1):
            vals = [recall_at(r or [], e.doc_ids, k) for r, e in zip(ranked, examples)]
            vals = [v for v in vals if v is not None]
            out["retrieval"][f"recall@{k}"] = sum(vals) / len(vals) if vals else None
    return out


def run_cell(spec, config, bench, seed, cfg, runtime, run_dir, progress) -> tuple[dict, list[dict]]:
    record = {"strategy": spec.name, "benchmark": bench.name, "seed": seed, "status": "ok", "error": None,
              "config": dataclasses.asdict(config)}
    test = bench.split("test")[: cfg.limit] if cfg.limit else bench.split("test")
    workdir = run_dir / "artifacts" / bench.name / f"{spec.name}-seed{seed}"
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = PrepareContext(benchmark=bench, runtime=runtime, workdir=workdir, seed=seed,
                         train_limit=cfg.train_limit, batch_size=cfg.batch_size,
                         max_new_tokens=cfg.max_new_tokens, progress=progress)
    random.seed(seed)
    import torch

    torch.manual_seed(seed)
    rows = []
    try:
        strat = spec.cls(config)
        with measure() as m:
            details = strat.prepare(ctx) or {}
        record["prepare"] = {**m.as_dict(), "usd": m.wall_s * cfg.usd_per_hour / 3600, **details}
        with measure() as m:
            preds = strat.answer(test)
        if len(preds) != len(test):
            raise StrategyFailed(f"{spec.name} returned {len(preds)} predictions for {len(test)} questions")
        scores = [metrics.score(p.output, e.answers, e.input, e.task) for p, e in zip(preds, test)]
        record.update(summarize(preds, scores, m, test, cfg.usd_per_hour))
        if cfg.forgetting and getattr(strat, "model", None) is not None:  # fine-tuned: forgetting check
            from .lmeval_bridge import forgetting_record

            record["forgetting"] = forgetting_record(runtime, strat, cfg.forgetting,
                                                     limit=cfg.forgetting_limit, workdir=workdir)
        for p, e, s in zip(preds, test, scores):
            rows.append({"strategy": spec.name, "benchmark": bench.name, "seed": seed, "id": e.id,
                         "question": e.input, "answers": list(e.answers), "output": p.output, **s,
                         "usage": dataclasses.asdict(p.usage), "cached": p.cached, "trace": p.trace})
    except (StrategyFailed, HarnessError) as exc:
        record.update(status="failed", error=str(exc))
    except Exception as exc:  # a strategy's bug must not cost the other strategies' results
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                      traceback=traceback.format_exc(limit=8))
    return record, rows


def run(cfg: RunConfig, progress: bool = True, log=print) -> Path:
    from .runtime import Runtime

    specs, configs, benches = plan(cfg)
    from .finetune import FineTune

    FineTune._trained.clear()  # models trained by an earlier run in this process are not reused
    with measure() as load:
        runtime = Runtime(cfg.model, device=cfg.device, dtype=cfg.dtype, progress=progress)
    run_dir = new_run_dir(cfg.out)
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    results = {
        "schema_version": SCHEMA_VERSION,
        "run": {"id": run_dir.name, "started": started, "finished": None, "argv": sys.argv[1:]},
        "config": {**cfg.to_dict(), "batch_size": cfg.batch_size or runtime.default_batch_size},
        "environment": environment(runtime),
        "model": {"name": cfg.model, "path": str(runtime.path), **runtime.provenance,
                  "load": load.as_dict()},
        "benchmarks": [{"name": b.name, "task": b.task, "documents": len(b.documents),
                        "train": len(b.split("train")), "test": len(b.split("test")),
                        "test_used": min(len(b.split("test")), cfg.limit or 10**9),
                        "data_sha256": b.meta.get("data_sha256"), "license": b.meta.get("license"),
                        "source": b.meta.get("source")} for b in benches],
        "pricing": {"usd_per_hour": cfg.usd_per_hour},
        "answer_extraction": metrics.EXTRACTION_RULE,
        "cells": [],
    }
    all_rows: list[dict] = []
    write_json(run_dir / "results.json", results)
    for bench in benches:
        for seed in cfg.seeds:
            for spec in specs:
                log(f"[{bench.name} seed={seed}] {spec.name}: running")
                record, rows = run_cell(spec, configs[spec.name], bench, seed, cfg, runtime, run_dir, progress)
                results["cells"].append(record)
                all_rows += rows
                write_jsonl(run_dir / "predictions.jsonl", all_rows)
                write_json(run_dir / "results.json", results)
                if record["status"] == "ok":
                    f1 = record["metrics"]["f1"]["mean"]
                    log(f"[{bench.name} seed={seed}] {spec.name}: F1 {f1:.3f}, "
                        f"prepare {record['prepare']['wall_s']:.1f}s, answer {record['answer']['wall_s']:.1f}s")
                else:
                    log(f"[{bench.name} seed={seed}] {spec.name}: FAILED: {record['error']}")
    results["run"]["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    write_json(run_dir / "results.json", results)
    from .report import write_reports

    write_reports(run_dir)
    point_latest(run_dir)
    return run_dir
