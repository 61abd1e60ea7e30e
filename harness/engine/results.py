"""results.json of a run: its header (run, config, environment, model, benchmarks), the totals kept
up to date after every cell, and the finish that writes every report format."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from harness.analysis import metrics
from harness.cache.stages import StageCache
from harness.core.paths import SOURCE_ROOT
from harness.core.records import SCHEMA_VERSION, write_json, write_jsonl
from harness.data.benchmark import answer_budget
from harness.data.tasks import task_type
from harness.engine.cell import now
from harness.engine.config import RunConfig
from harness.engine.plan import Plan, answer_tokens, headline, judged_metrics

PACKAGES = ("torch", "transformers", "peft", "sentence-transformers", "faiss-cpu", "lm_eval", "numpy", "tokenizers",
            "safetensors")


def environment(device: str, dtype: str) -> dict:
    """Where the measurements were made: machine, device, packages, and the code's git commit."""
    def version(pkg):
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=SOURCE_ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
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
        "gpu": gpu, "dtype": dtype, "harness_version": version("rag-or-finetune"),
        "git_commit": git("rev-parse", "HEAD") or None, "git_dirty": bool(git("status", "--porcelain")),
        "packages": {p: version(p) for p in PACKAGES},
    }


def model_record(label: str, spec, runtime, stages: StageCache) -> dict:
    """results.json's record of one model: a local one's path, provenance and content hash (its
    name is what the run called it: packaged name, folder, GGUF file or hub id), or an endpoint's
    URL, name and settings (never an API key)."""
    if getattr(runtime, "served", False):
        return {**spec.record(), "load": None}
    name = spec.path if spec is not None else label
    return {"label": label, "backend": "local", "name": name, "path": str(runtime.path), **runtime.provenance,
            "content_sha256": stages.tree_hash(runtime.path), "dtype": runtime.dtype_name, "load": None,
            # its weights in the run's dtype (from the safetensors headers): what a deployment holds
            "weights_bytes": getattr(runtime, "weights_bytes", None)}


def header(cfg: RunConfig, plan: Plan, runtime, stages: StageCache, run_dir: Path,
           runtimes: dict | None = None, specs: dict | None = None) -> dict:
    """results.json before any cell has run. `model`: the run's default model (the one record of runs
    made before several models could be compared); `models`: every model a cell runs on, by label."""
    from harness.model.runtime import resolve_dtype

    runtimes = runtimes or {cfg.model: runtime}
    models = {label: model_record(label, (specs or {}).get(label), rt, stages) for label, rt in runtimes.items()}
    default = next((label for label, rt in runtimes.items() if rt is runtime), next(iter(runtimes)))
    local = [rt for rt in [runtime, *runtimes.values()] if not getattr(rt, "served", False)]
    here = local[0] if local else runtime  # where the local work (generation, training, embedding) ran
    return {
        "schema_version": SCHEMA_VERSION,
        "run": {"id": run_dir.name, "started": now(), "finished": None, "argv": sys.argv[1:]},
        "config": {**cfg.to_dict(), "batch_size": cfg.batch_size or here.default_batch_size},
        "environment": environment(here.device, here.dtype_name or resolve_dtype(here.device, cfg.dtype)),
        "model": models[default],
        "models": models,
        "benchmarks": [{"name": b.name, "task": b.task, "documents": len(b.documents),
                        "train": len(b.split("train")), "test": len(b.split("test")),
                        "test_used": min(len(b.split("test")), cfg.limit or 10**9),
                        "data_sha256": b.meta.get("data_sha256"), "path": b.meta.get("path"),
                        "license": b.meta.get("license"),
                        "source": b.meta.get("source"), "split_assigned": b.meta.get("split_assigned"),
                        "answer_style": task_type(b.task).answer_style, "metric": headline(cfg, b),
                        "judged_metrics": list(judged_metrics(cfg, b)), "max_new_tokens": answer_tokens(cfg, b),
                        "max_new_tokens_from": "config" if cfg.max_new_tokens is not None else answer_budget(b)[1],
                        **{k: b.meta[k] for k in ("synthetic", "skipped_documents") if b.meta.get(k)}}
                       for b in plan.benches],
        "pricing": {"usd_per_hour": cfg.usd_per_hour},
        "answer_extraction": metrics.EXTRACTION_RULE,
        "cache": {"enabled": stages.enabled, "root": str(stages.root)},
        "cells": [],
    }


def continued(results: dict, previous: dict) -> dict:
    """The header of a resumed run: the first run's identity, environment and model load."""
    results["run"] = {**previous["run"], "finished": None, "interrupted": None,
                      "resumed": previous["run"].get("resumed", []) + [now()]}
    results["environment"] = previous.get("environment", results["environment"])
    results["model"]["load"] = previous.get("model", {}).get("load")
    for label, m in results.get("models", {}).items():
        m["load"] = ((previous.get("models") or {}).get(label) or {}).get("load")
    results["cache"] = previous.get("cache", results["cache"])
    return results


def with_totals(results: dict, runtime, stages: StageCache, runtimes: dict | None = None) -> dict:
    cells = [c for c in results["cells"] if "cache" in c]
    if runtime.load_measured is not None:
        results["model"]["load"] = runtime.load_measured
    for label, rt in (runtimes or {}).items():
        if rt.load_measured is not None and label in results.get("models", {}):
            results["models"][label]["load"] = rt.load_measured
    results["cache"] = {**results["cache"],
                        "cells_fully_cached": sum(1 for c in cells if c.get("cached")),
                        "predictions_hit": sum(c["cache"]["predictions_hit"] for c in cells),
                        "predictions_computed": sum(c["cache"]["predictions_computed"] for c in cells),
                        "artifacts_hit": stages.counts["hit"], "artifacts_built": stages.counts["miss"]}
    return results


def finish(run_dir: Path, results: dict, rows: list[dict]) -> None:
    """Write the final records, then every report format from them."""
    write_jsonl(run_dir / "predictions.jsonl", rows)
    write_json(run_dir / "results.json", results)
    from harness.report.document import write_reports

    write_reports(run_dir)


def log_cell(log, where: str, record: dict, task: str) -> None:
    if record["status"] != "ok":
        log(f"{where}: FAILED: {record['error']}")
        return
    c = record["cache"]
    how = "cached" if record["cached"] else (
        f"{c['predictions_computed']} answers computed, {c['predictions_hit']} cached" if c["predictions_hit"] else "")
    name = metrics.primary_metric(task)
    name = name if name in record["metrics"] else "f1"  # a model-based headline that was not computed
    label = {"f1": "F1", "exact_match": "accuracy"}.get(name, metrics.get_metric(name).label)
    judged = record.get("judging") or {}
    extra = f"; judging failed: {judged['error']}" if "error" in judged else "".join(
        f", {metrics.get_metric(m).label} {record['metrics'][m]['mean']:.3f}" for m in judged
        if m != name and m in record["metrics"])
    log(f"{where}: {label} {record['metrics'][name]['mean']:.3f}{extra}, prepare {record['prepare']['wall_s']:.1f}s, "
        f"answer {record['answer']['wall_s']:.1f}s" + (f" ({how}; times as first measured)" if how else ""))
