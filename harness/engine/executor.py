"""Where cells run. The runner hands an Executor the cells still to do; it gets back, cell by cell in
the run's order, each cell's record and rows. The local executor runs them in this process, one
after another; the Ray executor (harness/engine/scaleout/executors.py) runs them on a cluster.
"""
from __future__ import annotations

from typing import Protocol

from harness.engine.cell import CellEnv, run_cell
from harness.engine.config import RunConfig
from harness.engine.plan import Cell
from harness.model.lazy import LazyRuntime


class CellResults(Protocol):
    def result(self, cell: Cell) -> tuple[dict, list[dict]]:
        """The cell's record and rows (waits for it when it runs elsewhere)."""


class Executor(Protocol):
    def runtime(self, cfg: RunConfig, progress: bool, model=None):
        """The runtime of one of the run's models (a harness.model.catalog.ModelSpec; None: the run's
        default model) that the cells' fingerprints are made with (device, dtype, path, batch size)."""

    def submit(self, cells: list[Cell], env: CellEnv, log) -> CellResults:
        """Start the cells (or keep them to run on demand)."""


class LocalExecutor:
    """This process: one loaded model, the cells one after another as the runner asks for them."""

    train_on_workers = None  # one process; several training processes are torchrun's (docs/scale-out.md)

    def __init__(self):
        self._local: dict = {}  # one LazyRuntime per local model, however many labels name it

    def runtime(self, cfg: RunConfig, progress: bool, model=None):
        return model_runtime(cfg, model, progress, self._local)

    def submit(self, cells: list[Cell], env: CellEnv, log) -> "LocalCells":
        return LocalCells(env, log)


def model_runtime(cfg: RunConfig, model=None, progress: bool = False, pool: dict | None = None):
    """The runtime of one model of the run: a LazyRuntime (local weights, loaded when a cell needs
    them; one per model reference, shared through `pool`) or a ServedRuntime (an endpoint)."""
    from harness.model.catalog import model_for, parse_models

    spec = model if model is not None else model_for(cfg.model, parse_models(cfg.models))
    if spec.served:
        from harness.model.runtime import pick_device
        from harness.model.served import ServedRuntime

        return ServedRuntime(spec, pick_device(cfg.device), progress, cfg.trust_remote_code)
    key = (spec.path, cfg.device, cfg.dtype)
    if pool is not None and key in pool:
        return pool[key]
    runtime = LazyRuntime(spec.path, cfg.device, cfg.dtype, trust_remote_code=cfg.trust_remote_code, progress=progress)
    if pool is not None:
        pool[key] = runtime
    return runtime


class LocalCells:
    def __init__(self, env: CellEnv, log):
        self.env, self.log = env, log

    def result(self, cell: Cell) -> tuple[dict, list[dict]]:
        self.log(f"{cell.where}: running")
        return run_cell(cell, self.env)
