"""Run the matrix's cells on Ray: one task per (benchmark, seed, strategy), artifacts in a shared store.

The driver (the `harness run` process) plans everything: it fingerprints every cell with
harness/cache/stages.py, reads back the cells the store already holds complete, and submits only the rest,
at most `max_concurrency` at a time. A worker runs the same `run_cell` as the local executor against
the store (StageCache rooted there): cell records and trained adapters are written to temporary
names and renamed into place (on an object store: uploaded, then a completion marker), and weights
travel as paths in the store, never through Ray's object store. Only a cell's record and its
per-question rows come back to the driver.

Ray is an optional extra (`pip install -e '.[ray]'`): nothing here imports it before a Ray run.
"""
from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

from harness.core.errors import ConfigError, HarnessError
from harness.core.paths import SOURCE_ROOT
from harness.engine.cell import CellEnv, run_cell
from harness.engine.executor import LocalExecutor

# Passed to every worker: nothing is fetched from a hub on a cluster node either.
WORKER_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def store_root(url: str | None) -> Path | str | None:
    """The stage cache a --store URL names (None: the default cache): a folder for a plain path or
    file://, else any fsspec URL (s3://bucket/prefix, gs://, az://, ...) whose driver is installed;
    object stores publish with a completion marker instead of a rename (harness/cache/store.py)."""
    if url is None:
        return None
    from harness.cache.store import resolve

    return resolve(url)


def import_ray():
    try:
        import ray
    except ImportError:
        raise HarnessError("--executor ray needs Ray, an optional extra: pip install -e '.[ray]' "
                           "(or pip install 'ray>=2.50')") from None
    return ray


class PlannedRuntime:
    """What the fingerprints need to know of the model runtime (device, dtype, model path, batch
    size), decided for the cluster rather than the driver: the driver never loads the model and
    needs no GPU of its own."""

    load_measured = None
    served = False

    def __init__(self, cfg, device: str, model: str | None = None):
        from harness.model.modelstore import resolve_model
        from harness.model.runtime import default_batch_size, resolve_dtype

        self.device = device
        self.dtype_name = resolve_dtype(device, cfg.dtype)
        self.path, self.provenance = resolve_model(model or cfg.model, progress=False)
        self.default_batch_size = default_batch_size(device)

    def get(self):
        """The driver never loads the model: the workers do, each for its own cells."""
        return None


class RayExecutor:
    """Connects to (or starts) a Ray cluster and runs cells there. Use as a context manager."""

    def __init__(self, address: str | None = None, max_concurrency: int | None = None, cpus_per_cell: int = 1,
                 log=print, data_parallel: int | None = None):
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.max_concurrency = max_concurrency
        self.cpus_per_cell = cpus_per_cell
        self.log = log
        self.data_parallel = data_parallel  # --data-parallel N: each cell answers through N ray.data actors
        self.ray = None
        self._started = False  # this process connected (and so disconnects); False when reusing a session
        self.submitted = 0
        self.skipped = 0

    # -- connection -----------------------------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def connect(self):
        if self.ray is not None:
            return self.ray
        ray = import_ray()
        if not ray.is_initialized():
            t0 = time.perf_counter()
            env = dict(WORKER_ENV)
            if "RAY_JOB_CONFIG_JSON_ENV_VAR" not in os.environ:
                # Workers import this checkout's code, as the driver does; under `ray job submit` the
                # job's working_dir puts it on their path instead.
                env["PYTHONPATH"] = os.pathsep.join([str(SOURCE_ROOT)] + [p for p in os.environ.get("PYTHONPATH", "")
                                                                   .split(os.pathsep) if p])
            kwargs = {"runtime_env": {"env_vars": env}, "logging_level": "warning", "log_to_driver": True}
            if self.address is None:  # a local cluster on this machine, for the length of the run
                kwargs["include_dashboard"] = False
            try:
                ray.init(address=self.address, **kwargs)
            except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as exc:
                raise HarnessError(f"could not connect to the Ray cluster at {self.address or '(local)'}: {exc}. "
                                   "Check --address / RAY_ADDRESS and the auth token (RAY_AUTH_TOKEN or "
                                   "~/.ray/auth_token; see docs/scale-out.md)") from None
            self._started = True
            self.connect_s = time.perf_counter() - t0
        self.ray = ray
        return ray

    def close(self) -> None:
        if self.ray is not None and self._started:
            self.ray.shutdown()  # cancels this driver's unfinished tasks; stops a local cluster it started
        self.ray = None

    # -- planning ------------------------------------------------------------------------------
    def runtime(self, cfg, progress: bool = False, model=None):
        """Connect, decide the cells' device from the cluster, and check that some node can hold a
        cell: a GPU request on a GPU-less cluster fails here, not after waiting forever. `model`: one
        of the run's models (harness.model.catalog.ModelSpec; None: the default); an endpoint model's
        runtime is the same ServedRuntime a worker makes (nothing of it loads on the driver)."""
        ray = self.connect()
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        gpus = max((r.get("GPU", 0) for r in nodes), default=0)
        if cfg.device not in ("auto", "cpu") and not cfg.device.startswith("cuda"):
            raise ConfigError(f"unknown device {cfg.device!r}; use auto, cpu or cuda")
        device = "cuda" if cfg.device.startswith("cuda") or (cfg.device == "auto" and gpus >= 1) else "cpu"
        self.num_gpus = 1 if device == "cuda" else 0
        total = ray.cluster_resources()
        fits = [r for r in nodes if r.get("CPU", 0) >= self.cpus_per_cell and r.get("GPU", 0) >= self.num_gpus]
        if not fits:
            have = ", ".join(f"{k}={v:g}" for k, v in sorted(total.items()) if k in ("CPU", "GPU")) or "nothing"
            if self.num_gpus and not gpus:
                raise HarnessError(f"cells ask for 1 GPU each (--device {cfg.device}), but the Ray cluster has "
                                   f"no GPU ({have}); use --device cpu or add GPU nodes")
            raise HarnessError(f"no node of the Ray cluster has {self.cpus_per_cell} CPU"
                               + (" and 1 GPU" if self.num_gpus else "") + f" for a cell ({have}); "
                               "lower --cpus-per-cell or add nodes")
        self.resources = {k: total[k] for k in ("CPU", "GPU") if k in total}
        if self.data_parallel and self.num_gpus and total.get("GPU", 0) < 2:  # the cell keeps its own GPU
            raise HarnessError(f"--data-parallel on CUDA: every actor asks for 1 GPU besides its cell's, and the "
                               f"Ray cluster has {total.get('GPU', 0):g}; add GPUs or drop --data-parallel")
        if model is not None and model.served:
            from harness.model.served import ServedRuntime

            return ServedRuntime(model, device, progress, cfg.trust_remote_code)
        return PlannedRuntime(cfg, device, model.path if model is not None else None)

    @property
    def train_on_workers(self):
        """Fine-tuning cells train on --train-workers K Ray Train workers (harness/engine/scaleout/raytrain.py)."""
        from harness.engine.scaleout.raytrain import train_on_workers

        return train_on_workers

    def submit(self, cells, env, log) -> "RayCells":
        """Skip the cells complete in the store (their keys were computed here, on the driver), submit
        the rest."""
        ray = self.connect()
        cfg, stages = env.cfg, env.cache
        # max_calls is fixed per remote function (Ray refuses it in .options()): one for each kind.
        fresh, reused = ray.remote(max_calls=1)(_training_cell), ray.remote(_evaluation_cell)
        bench_refs = {}
        jobs, local = [], {}
        for cell in cells:
            if stages.enabled and cell.cached_in(stages, cfg, getattr(env.runtime_of(cell), "served", False)):
                local[cell.id] = cell
                continue
            if cell.bench.name not in bench_refs:
                bench_refs[cell.bench.name] = ray.put(cell.bench)
            # A fresh worker process for every training cell: no model state leaks between cells.
            options = {"num_cpus": self.cpus_per_cell, "num_gpus": self.num_gpus,
                       "name": f"{cell.spec.name}/{cell.bench.name}/seed{cell.seed}"}
            # the strategy travels by name (its class is found again in the worker's registry)
            args = ((cell.spec.name, cell.spec.registered, cell.model), cell.config, bench_refs[cell.bench.name],
                    cell.seed,
                    dataclasses.replace(cfg, device=env.runtime.device), str(stages.root), stages.enabled,
                    str(env.run_dir), cell.key)
            if self.data_parallel:
                from harness.engine.scaleout.raydata import DataParallel

                args += (DataParallel(self.data_parallel, self.cpus_per_cell, self.num_gpus),)
            else:
                args += (None,)
            args += ((cell.sweep, cell.train_sizes),)  # sweep points and learning-curve sizes
            jobs.append((cell.id, (fresh if cell.spec.cls.fine_tunes else reused).options(**options), args))
        self.skipped += len(local)
        self.submitted += len(jobs)
        log(f"ray: {len(cells)} cells, {len(local)} complete in the store {stages.root} (not submitted), "
            f"{len(jobs)} to run on the cluster ({', '.join(f'{k}={v:g}' for k, v in self.resources.items())}; "
            f"{self.cpus_per_cell} CPU" + (" + 1 GPU" if self.num_gpus else "") + " per cell"
            + (f", at most {self.max_concurrency} at once)" if self.max_concurrency else ")"))
        return RayCells(ray, jobs, local, self.max_concurrency, env)


class RayCells:
    """The submitted cells; `result(k)` returns a cell's (record, rows), submitting more as earlier
    ones finish so that at most `limit` run at once."""

    def __init__(self, ray, jobs, local, limit, env):
        self.ray, self.local, self.limit, self.env = ray, local, limit, env
        self.stages = env.cache
        self.configs = {args[0]: args[1] for _, _, args in jobs}
        self.waiting = list(jobs)          # not yet submitted, in order
        self.running: dict = {}            # ObjectRef -> cell
        self.done: dict = {}
        self._fill()

    def _fill(self):
        while self.waiting and (not self.limit or len(self.running) < self.limit):
            k, fn, args = self.waiting.pop(0)
            self.running[fn.remote(*args)] = k

    def result(self, cell) -> tuple[dict, list[dict]]:
        k = cell.id
        if k in self.local:  # complete in the store: read back here, no model loaded
            return run_cell(self.local.pop(k), self.env)
        while k not in self.done:
            if not self.running:
                raise HarnessError(f"cell {k} was never submitted")  # a bug, not a user error
            ready, _ = self.ray.wait(list(self.running), num_returns=1)
            ref = ready[0]
            cell = self.running.pop(ref)
            self.done[cell] = self._collect(ref, cell)
            self._fill()
        return self.done.pop(k)

    def _collect(self, ref, cell):
        bench, seed, strategy = cell
        try:
            record, rows, counts = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:  # the worker died (OOM, node lost) or Ray failed
            msg = str(exc).strip().splitlines()
            record = {"strategy": strategy, "benchmark": bench, "seed": seed, "status": "failed",
                      "config": dataclasses.asdict(self.configs[strategy]),
                      "error": f"{type(exc).__name__}: {msg[-1] if msg else ''}", "cached": False}
            return record, []
        for what in ("hit", "miss"):
            self.stages.counts[what] += counts.get(what, 0)
        return record, rows


_RUNTIMES: dict = {}  # in a Ray worker process: (model, device, dtype) -> its LazyRuntime


def _training_cell(*args):
    return _cell(*args)


def _evaluation_cell(*args):
    return _cell(*args)


def _cell(strategy, config, bench, seed, cfg, store, cache_enabled, run_dir, key, data_parallel=None, tuned=((), ())):
    """One cell in a Ray worker: the local executor's run_cell against the shared store."""
    from harness.cache.stages import StageCache
    from harness.engine.executor import model_runtime
    from harness.engine.plan import Cell
    from harness.engine.scaleout.raytrain import train_on_workers
    from harness.methods.registry import get_spec
    from harness.model.catalog import model_for, parse_models

    stages = StageCache(root=store, enabled=cache_enabled)  # a folder's path or an object store's URL
    name, base, *label = strategy
    label = label[0] if label and label[0] else cfg.model
    spec = model_for(label, parse_models(cfg.models))
    # A reused (evaluation) worker keeps the loaded model (or the checked endpoint) for its next cells;
    # training cells get a fresh process each and so a fresh runtime.
    which = (spec, cfg.device, cfg.dtype)
    runtime = _RUNTIMES.get(which) or _RUNTIMES.setdefault(which, model_runtime(cfg, spec))
    loaded_before = runtime.load_measured is not None
    env = CellEnv(cfg, runtime, Path(run_dir), stages, progress=False, data_parallel=data_parallel,
                  train_on_workers=train_on_workers, runtimes={label: runtime})
    record, rows = run_cell(Cell(get_spec(name, base), config, bench, seed, key, *tuned, model=label), env)
    import ray

    record["worker"] = {"node_id": ray.get_runtime_context().get_node_id(), "host": socket.gethostname(),
                        "pid": os.getpid(),
                        "model_load": "reused" if loaded_before else runtime.load_measured}
    return record, rows, dict(stages.counts)


@contextmanager
def executor_for(args):
    """The executor `harness run` flags ask for: this process (LocalExecutor) or a connected RayExecutor."""
    if args.executor == "local":
        given = [f for f, v in (("--address", args.address), ("--max-concurrency", args.max_concurrency),
                                ("--cpus-per-cell", args.cpus_per_cell != 1),
                                ("--data-parallel", getattr(args, "data_parallel", None))) if v]
        if given:
            raise ConfigError(f"{', '.join(given)}: only with --executor ray")
        yield LocalExecutor()
        return
    with RayExecutor(args.address, args.max_concurrency, args.cpus_per_cell,
                     data_parallel=getattr(args, "data_parallel", None)) as executor:
        yield executor


def submit(config: str, address: str | None, run_args: list[str], dry_run: bool = False) -> int:
    """`ray job submit --working-dir . -- python -m harness run --config CONFIG --executor ray ...`:
    the cluster gets this checkout and runs the same command on its head node."""
    if not Path(config).is_file():
        raise ConfigError(f"{config}: no such experiment file")
    cmd = ["ray", "job", "submit", "--working-dir", "."]
    if address:
        cmd += ["--address", address]
    extra = run_args[1:] if run_args[:1] == ["--"] else run_args
    cmd += ["--", "python", "-m", "harness", "run", "--config", config, "--executor", "ray", *extra]
    if dry_run:
        print(shlex.join(cmd))
        return 0
    if shutil.which("ray") is None:
        raise HarnessError("`ray` command not found: pip install -e '.[ray]'")
    return subprocess.run(cmd).returncode
