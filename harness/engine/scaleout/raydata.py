"""`--data-parallel N` under `--executor ray`: a cell's model calls go to a pool of N actors (ray.data).

The cell still does everything but the model calls: it builds the prompts (retrieval included),
scores and records. While its strategy answers, the strategy's runtime is a `PooledRuntime`:
`generate`, `generate_hf` and `loglikelihood` cut the call into the very batches the local runtime
forms (same length sort, same caps, the whole call's shared prefix), send one batch per row through
`ray.data.from_items(rows).map_batches(GeneratorActor, compute=ActorPoolStrategy(size=N),
batch_size=1)` and put the results back in the questions' order. Each actor loads the model once
(and the cell's fine-tuned weights, by their path in the store) and runs the same Runtime method on
its batch, so the answers are the local executor's. A question's latency is its batch's time,
measured inside the actor as the local runtime measures it; the cell's answer wall time also holds
the pool's start (actor processes, model loads) and the transfers.

The pipeline runs in a zero-CPU task that the cell waits on: Ray lends a blocked task's CPUs to
other work, so the actors can use the cell's CPU. Its rows are taken once (`take_all`) and kept: a
dataset is lazy, and reading it a second time would run every batch again.
"""
from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass

from harness.core.errors import HarnessError
from harness.model.batching import DEFAULT_MAX_NEW_TOKENS


@dataclass(frozen=True)
class DataParallel:
    """What `--data-parallel N` asks for: N actors, each with the resources of a cell."""

    actors: int
    num_cpus: float = 1
    num_gpus: float = 0

    @contextmanager
    def answering(self, ctx, strategy: str, config, strat, details: dict):
        """ctx.runtime is a PooledRuntime while the strategy answers. A fine-tuned strategy's model
        (strat.model) reaches the actors as its saved weights: strat.artifact_path."""
        runtime = ctx.runtime
        model, adapter = strat.model, None
        if model is not None and strat.artifact_path is not None:
            adapter = {"strategy": strategy, "config": config, "path": str(strat.artifact_path),
                       "prompt_learning": strat.prompt_learning}
        ctx.runtime = PooledRuntime(runtime, self, model, adapter)
        try:
            yield ctx.runtime
        finally:
            ctx.runtime = runtime


class PooledRuntime:
    """The cell's runtime, except that its model calls run on the actor pool. Anything else
    (tokenizer, encode_chat, device, defaults) is the cell's own runtime's."""

    def __init__(self, runtime, plan: DataParallel, model=None, adapter: dict | None = None):
        self._runtime, self._plan, self._model, self._adapter = runtime, plan, model, adapter
        self._stats = {"actors": plan.actors, "pipelines": 0, "batches": 0, "local_calls": 0,
                       "per_actor": {}, "pipeline_s": 0.0}

    def __getattr__(self, name):  # only reached for what __init__ did not set
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._runtime, name)

    # -- the three model calls ------------------------------------------------------------------
    def generate(self, prompts, *, max_new_tokens=DEFAULT_MAX_NEW_TOKENS, batch_size=None, stop_at_newline=True,
                 model=None, on_batch=None, share_prefix=True, max_batch_tokens=None, stop_on_loop=False):
        from harness.model.batching import length_batches, shared_prefix_len
        from harness.model.runtime import Generation

        rt = self._runtime
        kw = {"max_new_tokens": max_new_tokens, "batch_size": batch_size or rt.default_batch_size,
              "stop_at_newline": stop_at_newline, "max_batch_tokens": max_batch_tokens or rt.max_batch_tokens,
              "stop_on_loop": stop_on_loop}
        if not prompts or not self._pooled(model):
            self._stats["local_calls"] += bool(prompts)
            return rt.generate(prompts, model=model, on_batch=on_batch, share_prefix=share_prefix, **kw)
        kw["prefix_len"] = shared_prefix_len(prompts, share_prefix)
        batches = length_batches(prompts, kw["batch_size"], kw["max_batch_tokens"])
        jobs = [{"call": "generate", "args": [[list(prompts[i]) for i in idx]], "kwargs": kw} for idx in batches]
        return self._gather(batches, self._run(jobs), len(prompts), Generation, on_batch)

    def generate_hf(self, prompts, *, max_new_tokens=DEFAULT_MAX_NEW_TOKENS, batch_size=None, model=None, on_batch=None,
                    stop_at_newline=True, **_ignored):
        from harness.model.batching import length_batches
        from harness.model.runtime import Generation

        rt = self._runtime
        kw = {"max_new_tokens": max_new_tokens, "batch_size": batch_size or rt.default_batch_size,
              "stop_at_newline": stop_at_newline}
        if not prompts or not self._pooled(model):
            self._stats["local_calls"] += bool(prompts)
            return rt.generate_hf(prompts, model=model, on_batch=on_batch, **kw)
        batches = length_batches(prompts, kw["batch_size"], rt.max_batch_tokens)
        jobs = [{"call": "generate_hf", "args": [[list(prompts[i]) for i in idx]], "kwargs": kw} for idx in batches]
        return self._gather(batches, self._run(jobs), len(prompts), Generation, on_batch)

    def loglikelihood(self, requests, *, batch_size=None, model=None, on_batch=None, share_prefix=True,
                      plain=False):
        from harness.model.batching import length_batches, shared_prefix_len
        from harness.model.runtime import LogLikelihood

        rt = self._runtime
        bs = batch_size or rt.default_batch_size
        if not requests or not self._pooled(model) \
                or any(not c for _, c in requests) or any(not p for p, _ in requests):  # the runtime's own error
            self._stats["local_calls"] += bool(requests)
            return rt.loglikelihood(requests, batch_size=bs, model=model, on_batch=on_batch,
                                    share_prefix=share_prefix, plain=plain)
        # The local runtime's grouping: distinct prompts, batched by length; a batch is all their requests.
        groups: dict[tuple, list[int]] = {}
        for i, (p, _) in enumerate(requests):
            groups.setdefault(tuple(p), []).append(i)
        prompts, members = [list(p) for p in groups], list(groups.values())
        kw = {"batch_size": bs, "share_prefix": share_prefix, "plain": plain,
              "prefix_len": shared_prefix_len(prompts, share_prefix and not plain)}
        batches = [[i for g in idx for i in members[g]] for idx in length_batches(prompts, bs, rt.max_batch_tokens)]
        jobs = [{"call": "loglikelihood", "args": [[[list(requests[i][0]), list(requests[i][1])] for i in rows]],
                 "kwargs": kw} for rows in batches]
        out = self._gather(batches, self._run(jobs), len(requests), LogLikelihood, on_batch)
        for n, rows in enumerate(batches):  # the batch index, as one local call would number it
            for i in rows:
                out[i].batch = n
        return out

    # -- plumbing -------------------------------------------------------------------------------
    def _pooled(self, model) -> bool:
        """The base model and the strategy's own fine-tuned model go to the pool; any other model
        (one the actors could not load) is run here."""
        return model is None or (model is self._model and self._adapter is not None)

    def _gather(self, batches, results, n, kind, on_batch):
        out = [None] * n
        for idx, res in zip(batches, results):
            for i, r in zip(idx, res):
                out[i] = kind(**r)
            if on_batch:
                on_batch(len(idx))
        return out

    def _run(self, jobs: list[dict]) -> list[list[dict]]:
        import ray

        rt = self._runtime
        actor = {"model": rt.model_name, "device": rt.device, "dtype": str(rt.dtype).rsplit(".", 1)[-1],
                 "trust_remote_code": rt.trust_remote_code, "adapter": self._adapter,
                 "log": os.environ.get("HARNESS_RAYDATA_LOG")}
        plan = self._plan
        t0 = time.perf_counter()
        pipeline = ray.remote(num_cpus=0)(_pipeline)
        rows = ray.get(pipeline.remote(jobs, actor, plan.actors, plan.num_cpus, plan.num_gpus))
        self._stats["pipeline_s"] += time.perf_counter() - t0
        self._stats["pipelines"] += 1
        self._stats["batches"] += len(rows)
        results = [None] * len(jobs)
        for row in rows:
            done = json.loads(row["result"])
            results[int(row["batch"])] = done["results"]
            who = self._stats["per_actor"].setdefault(f"{done['host']}:{done['pid']}",
                                                      {"batches": 0, "seconds": 0.0, "model_load_s": done["load_s"]})
            who["batches"] += 1
            who["seconds"] += done["seconds"]
        missing = [n for n, r in enumerate(results) if r is None]
        if missing:  # every batch comes back exactly once, or the cell fails
            raise HarnessError(f"ray.data returned no result for {len(missing)} of {len(jobs)} batches")
        return results

    def summary(self) -> dict:
        """For the cell's record: how the answers were computed and where the latency was measured."""
        s = {**self._stats, "per_actor": {k: {**v, "seconds": round(v["seconds"], 3)}
                                          for k, v in self._stats["per_actor"].items()}}
        s["actors_used"] = len(s["per_actor"])
        s["pipeline_s"] = round(s["pipeline_s"], 3)
        s["latency"] = ("per-question latency is its batch's time measured inside an actor; the cell's "
                        "answer wall_s also holds the pool's start (processes, model loads) and transfers")
        return s


def _pipeline(jobs, actor, actors, num_cpus, num_gpus):
    """The ray.data pipeline, run once in a zero-CPU task: one row per batch, N actors."""
    import logging

    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    # One batch at a time per actor: a ready actor takes the next batch, none queues behind another.
    context.max_tasks_in_flight_per_actor = 1
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    rows = [{"batch": n, "job": json.dumps(job)} for n, job in enumerate(jobs)]
    ds = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
        GeneratorActor, fn_constructor_kwargs=actor, batch_size=1, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=min(actors, len(rows))), num_cpus=num_cpus,
        num_gpus=num_gpus or None)
    # One execution, kept: iterating `ds` again would rerun the pipeline.
    return ds.take_all()


class GeneratorActor:
    """One actor of the pool: loads the model (and the cell's fine-tuned weights) once, then runs
    the local runtime's own method on each batch it is given."""

    def __init__(self, model: str, device: str, dtype: str, trust_remote_code: bool = False,
                 adapter: dict | None = None, log: str | None = None):
        from harness.model.runtime import Runtime

        t0 = time.perf_counter()
        self.runtime = Runtime(model, device=device, dtype=dtype, progress=False,
                               trust_remote_code=trust_remote_code)
        self.model = None
        if adapter is not None:
            from pathlib import Path

            from harness.methods.registry import get_spec

            strat = get_spec(adapter["strategy"]).cls(adapter["config"])
            strat.prompt_learning = adapter["prompt_learning"]
            loaded = strat.load(self.runtime.fresh_model(), Path(adapter["path"]))
            self.model = strat.finish(loaded).to(self.runtime.dtype).eval()  # as FineTune.prepare does
        self.load_s = round(time.perf_counter() - t0, 3)
        self.log = log
        self._log("start")

    def _log(self, what: str) -> None:
        if self.log:  # HARNESS_RAYDATA_LOG: one line per actor start and per batch, appended
            with open(self.log, "a", encoding="utf-8") as f:
                f.write(f"{what} {socket.gethostname()}:{os.getpid()}\n")

    def __call__(self, batch):
        import numpy as np

        out = []
        for n, job in zip(batch["batch"], batch["job"]):
            job = json.loads(job)
            t0 = time.perf_counter()
            results = getattr(self.runtime, job["call"])(*job["args"], model=self.model, **job["kwargs"])
            out.append(json.dumps({"results": [asdict(r) for r in results], "host": socket.gethostname(),
                                   "pid": os.getpid(), "seconds": time.perf_counter() - t0,
                                   "load_s": self.load_s}))
            self._log(f"batch {int(n)}")
        return {"batch": batch["batch"], "result": np.array(out, dtype=object)}
