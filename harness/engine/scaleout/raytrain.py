"""A fine-tuning cell's training stage on K Ray Train workers (`--executor ray --train-workers K`).

The cell (a Ray task, harness/engine/scaleout/executors.py) fingerprints its training stage as always; on a miss the
stage cache calls `build(tmp folder)`, which lands here: a `TorchTrainer` starts K workers, Ray Train
sets up the torch process group on them (gloo on CPU, NCCL on GPU), and each worker runs the same
training script as torchrun does (harness/engine/scaleout/distributed.py `train_strategy` ->
FineTune._train, which finds the process group through torch.distributed and trains under
DistributedDataParallel). Rank 0 writes the adapter into a folder of its own node and reports it as a
Ray Train checkpoint, which Ray Train persists under the store (`<store>/ray-train`, a shared folder or
the object store itself); the cell, possibly on another node, copies that checkpoint into the stage's
build folder, the stage cache publishes it (rename, or upload + marker) and the cell loads the adapter
and answers as usual.
The world size is part of the training fingerprint, so K=2 and K=1 are different cache entries.

Resources: the cell's own task keeps its CPUs while it waits for the trainer, except that Ray lends
a task's CPUs back to the cluster while it is blocked in `ray.get` (fit() blocks so), so K workers
of the cell's CPU count each fit where the cell stood: on a 2-CPU cluster a 1-CPU cell trains on two
1-CPU workers. Ray does not lend GPUs back: on CUDA the cell keeps the GPU it evaluates on and its
workers need K more. Works with Ray Train V2 (the default from Ray 2.5x, RAY_TRAIN_V2_ENABLED) and V1.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from harness.core.errors import StrategyFailed


def train_on_workers(strat, ctx, folder: Path) -> dict:
    """Train `strat` on ctx.train_workers Ray Train workers into folder/checkpoint; return its meta."""
    try:
        import ray
        from ray.train import RunConfig, ScalingConfig, TrainingFailedError
        from ray.train.torch import TorchTrainer
    except ImportError as exc:
        raise StrategyFailed(f"train_workers needs Ray Train: pip install -e '.[ray]' ({exc})") from None
    k = ctx.train_workers
    if not ray.is_initialized():
        raise StrategyFailed(f"train_workers {k}: training on several workers needs --executor ray")
    use_gpu = str(ctx.runtime.device).startswith("cuda")
    held = ray.get_runtime_context().get_assigned_resources()  # what this cell's task asked for
    per_worker = {"CPU": held.get("CPU") or 1, **({"GPU": 1} if use_gpu else {})}
    total = ray.cluster_resources()
    need = {r: n * k + (held.get(r, 0) if r == "GPU" else 0) for r, n in per_worker.items()}
    short = [f"{r}={need[r]:g} (the cluster has {total.get(r, 0):g})" for r in need if total.get(r, 0) < need[r]]
    if short:  # Ray would wait for them forever
        raise StrategyFailed(f"{strat.name}: {k} Ray Train workers with {per_worker} each need "
                             + ", ".join(short) + ("; on CUDA the cell keeps its own GPU for evaluation"
                                                   if use_gpu else "") + ": lower --train-workers")
    v2 = ".v2." in TorchTrainer.__module__
    scaling = ScalingConfig(num_workers=k, use_gpu=use_gpu, resources_per_worker=per_worker,
                            # V1 gives the trainer actor 1 CPU by default, which a full cluster lacks
                            **({} if v2 else {"trainer_resources": {"CPU": 0}}))
    storage, filesystem = _storage(ctx.cache, folder)
    name = f"{strat.name}-{Path(folder).name.strip('.')}"
    config = {"strategy": strat.name, "config": strat.config, "benchmark": ctx.benchmark,
              "seed": ctx.seed, "train_limit": ctx.train_limit, "model": str(ctx.runtime.path),
              "dtype": str(ctx.runtime.dtype).removeprefix("torch."), "use_gpu": use_gpu,
              "trust_remote_code": bool(getattr(ctx.runtime, "trust_remote_code", False)),
              "workdir": str(Path(ctx.workdir).resolve()), "v2": v2, "sharding": ctx.train_sharding}
    trainer = TorchTrainer(_train_loop, train_loop_config=config, scaling_config=scaling,
                           run_config=RunConfig(storage_path=storage, storage_filesystem=filesystem, name=name))
    t0 = time.perf_counter()
    try:
        result = trainer.fit()
    except (TrainingFailedError, ray.exceptions.RayError) as exc:
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        raise StrategyFailed(f"{strat.name}: training on {k} Ray Train workers failed: "
                             f"{lines[-1] if lines else type(exc).__name__}") from None
    fit_s = time.perf_counter() - t0
    # V2 hands back rank 0's return value; V1 only what was reported
    meta = getattr(result, "return_value", None) or (result.metrics or {}).get("meta")
    if not meta or result.checkpoint is None:
        raise StrategyFailed(f"{strat.name}: the Ray Train run finished without an adapter checkpoint")
    result.checkpoint.to_directory(str(Path(folder) / "checkpoint"))
    try:  # Ray Train's run state; the adapter is now in `folder`
        result.checkpoint.filesystem.delete_dir(str(Path(result.checkpoint.path).parent))
    except OSError:
        pass
    return {**meta, "ray_train": {"workers": k, "resources_per_worker": per_worker, "train_v2": v2,
                                  "fit_s": round(fit_s, 3)}}


def _train_loop(c: dict) -> dict:
    """One Ray Train worker: the torchrun script's training on this rank's share of every batch."""
    import ray.train
    import torch

    from harness.engine.scaleout.distributed import train_strategy
    from harness.methods.registry import get_spec
    from harness.methods.strategy import PrepareContext
    from harness.model.runtime import Runtime

    device = "cpu"
    if c["use_gpu"]:
        import ray.train.torch

        dev = ray.train.torch.get_device()  # this worker's GPU; Ray Train set the process group up on NCCL
        torch.cuda.set_device(dev)
        device = str(dev)
    runtime = Runtime(c["model"], device=device, dtype=c["dtype"], progress=False,
                      trust_remote_code=c["trust_remote_code"])
    ctx = PrepareContext(benchmark=c["benchmark"], runtime=runtime, workdir=Path(c["workdir"]), seed=c["seed"],
                         train_limit=c["train_limit"], progress=False, train_sharding=c["sharding"])
    with tempfile.TemporaryDirectory(prefix="harness-raytrain-") as out:
        meta = train_strategy(get_spec(c["strategy"]), c["config"], ctx, Path(out))
        # Every rank reports (a barrier); rank 0's adapter is the checkpoint, persisted to the store.
        mine = Path(out) / "checkpoint"
        checkpoint = ray.train.Checkpoint.from_directory(str(mine)) if mine.is_dir() else None
        ray.train.report({} if c["v2"] else {"meta": meta}, checkpoint=checkpoint)
    return meta


def _storage(cache, folder: Path):
    """Where Ray Train persists the checkpoint: `<store>/ray-train`, as (path, pyarrow filesystem).
    A folder store is a local path (shared by all nodes on a cluster); an object store goes through
    its fsspec filesystem, wrapped for pyarrow, so any protocol the store takes works here too."""
    if cache is None:
        return str(Path(folder).resolve().parent / "ray-train"), None
    if cache.remote is None:
        return str(Path(cache.root) / "ray-train"), None
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    return f"{cache.remote.base}/ray-train", PyFileSystem(FSSpecHandler(cache.remote.fs))
