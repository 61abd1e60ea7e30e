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
    def runtime(self, cfg: RunConfig, progress: bool):
        """The model runtime the cells' fingerprints are made with (device, dtype, path, batch size)."""

    def submit(self, cells: list[Cell], env: CellEnv, log) -> CellResults:
        """Start the cells (or keep them to run on demand)."""


class LocalExecutor:
    """This process: one loaded model, the cells one after another as the runner asks for them."""

    train_on_workers = None  # one process; several training processes are torchrun's (docs/scale-out.md)

    def runtime(self, cfg: RunConfig, progress: bool) -> LazyRuntime:
        return LazyRuntime(cfg.model, cfg.device, cfg.dtype, trust_remote_code=cfg.trust_remote_code,
                           progress=progress)

    def submit(self, cells: list[Cell], env: CellEnv, log) -> "LocalCells":
        return LocalCells(env, log)


class LocalCells:
    def __init__(self, env: CellEnv, log):
        self.env, self.log = env, log

    def result(self, cell: Cell) -> tuple[dict, list[dict]]:
        self.log(f"{cell.where}: running")
        return run_cell(cell, self.env)
