"""Run every (benchmark, seed, strategy) cell: plan, run each cell, record as it goes, write reports.

Each cell's prepare record and answers are cached under a fingerprint of everything that decides
them (harness/engine/plan.py), so a rerun recomputes only what changed. results.json is rewritten
after every cell: a killed run loses at most the cell in flight and `run(resume=...)` continues it;
Ctrl-C writes the records and reports, with the cells not done marked "unfinished".
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
from pathlib import Path

from harness.analysis.recompute import read_run
from harness.cache.stages import StageCache
from harness.core.errors import ConfigError, DataError, HarnessError
from harness.core.paths import claim_folder, reports_root
from harness.core.records import remove_stale_temps, run_lock, write_json, write_jsonl
from harness.engine import results as records
from harness.engine.cell import CellEnv, now
from harness.engine.config import RunConfig
from harness.engine.executor import Executor, LocalExecutor
from harness.engine.plan import Cell, Plan, cell_key, plan, resume_target, strategy_models


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


def run(cfg: RunConfig | None = None, progress: bool = True, log=print, *, cache: bool = True,
        resume: str | None = None, executor: Executor | None = None, store: Path | None = None,
        trust_remote_code: bool = False) -> Path:
    """Run every cell of cfg and return the run folder. `cache=False` recomputes everything; `resume`
    (a run folder, or 'latest') continues that run with its own config, keeping every cell it
    finished (trust_remote_code comes from the caller, never from the folder). `executor` runs the
    cells elsewhere (default: this process); `store` is the stage cache's folder or URL."""
    previous = None
    if resume is not None:
        run_dir, previous, cfg = resume_target(resume, trust_remote_code=trust_remote_code)
    p = plan(cfg)
    for b in p.benches:  # bad document files never stop a run: say which were left out, before any work
        skipped = b.meta.get("skipped_documents") or []
        if skipped:
            log(f"{b.name}: {len(skipped)} document file{'s' * (len(skipped) > 1)} skipped (not loaded): "
                + "; ".join(f"{f} ({why})" for f, why in skipped[:20]) + (" ..." if len(skipped) > 20 else ""))
    stages = StageCache(root=store, enabled=cache)
    stages.check_writable()  # before the model loads: an unwritable cache must not cost the answers
    executor = executor or LocalExecutor()
    if cfg.train_workers > 1 and executor.train_on_workers is None:
        raise ConfigError(f"train_workers {cfg.train_workers} needs --executor ray (Ray Train's TorchTrainer); "
                          "on this machine without Ray, train on several processes with torchrun: "
                          "torchrun --nproc_per_node K -m harness.engine.scaleout.distributed (docs/scale-out.md)")
    from harness.methods.finetune import FineTune

    FineTune._trained.clear()  # models trained by an earlier run in this process are not reused
    models = strategy_models(cfg)
    runtimes = {label: executor.runtime(cfg, progress, spec) for label, spec in models.models.items()}
    cells = [dataclasses.replace(c, key=cell_key(c, cfg, runtimes[c.model], stages))
             for c in p.cells(cfg.seeds, models)]
    done = {(c["benchmark"], c["seed"], c["strategy"]) for c in (previous or {}).get("cells", [])
            if c.get("status") in ("ok", "failed")}
    for label, runtime in runtimes.items():
        served = getattr(runtime, "served", False)  # fine-tuning cells on an endpoint fail without asking it
        if any(not c.cached_in(stages, cfg, served) for c in cells
               if c.model == label and c.id not in done and not (served and c.spec.cls.fine_tunes)):
            # something to compute on it: load a local model now, so a bad one stops the run before any output;
            # an endpoint is asked GET /models once (a failure fails its cells, with one line each)
            runtime.get()
    if previous is None:
        run_dir = new_run_dir(cfg.out)
    default = cfg.model if cfg.model in runtimes else models.model_of[cfg.strategies[0]]  # none on the default
    env = CellEnv(cfg, runtimes[default], run_dir, stages, progress, train_on_workers=executor.train_on_workers,
                  runtimes=runtimes, models=models.models)
    with run_lock(run_dir):
        remove_stale_temps(run_dir)
        return Run(env, p, cells, previous, log).execute(executor)


class Run:
    """The run loop over the cells in order: kept cells (from the run being resumed) are taken as
    they were, the others come from the executor; the records are rewritten after each."""

    def __init__(self, env: CellEnv, plan: Plan, cells: list[Cell], previous: dict | None, log):
        self.env, self.cells, self.log = env, cells, log
        self.results = records.header(env.cfg, plan, env.runtime, env.cache, env.run_dir, env.runtimes, env.models)
        self.kept = self._kept(previous) if previous is not None else {}
        if previous is not None:
            records.continued(self.results, previous)
        self.rows: list[dict] = []

    def _kept(self, previous: dict) -> dict[tuple, tuple[dict, list[dict]]]:
        _, lines = read_run(self.env.run_dir)  # one error naming file and line for a bad record
        pred = self.env.run_dir / "predictions.jsonl"
        old_rows = []
        for n, r in lines:
            if not all(isinstance(r.get(k), t) for k, t in (("benchmark", str), ("strategy", str), ("seed", int))):
                raise DataError("a row of a run being resumed needs 'benchmark', 'strategy' and 'seed'", pred, n)
            old_rows.append(r)
        kept = {}
        for c in previous.get("cells", []):
            if c.get("status") in ("ok", "failed"):
                k = (c["benchmark"], c["seed"], c["strategy"])
                kept[k] = (c, [r for r in old_rows if (r["benchmark"], r["seed"], r["strategy"]) == k])
        return kept

    def execute(self, executor: Executor) -> Path:
        run_dir = self.env.run_dir
        write_json(run_dir / "results.json", self.results)
        try:
            pending = executor.submit([c for c in self.cells if c.id not in self.kept], self.env, self.log)
            for cell in self.cells:
                if cell.id in self.kept:
                    record, rows = self.kept[cell.id]
                    self.log(f"{cell.where}: finished before, kept")
                else:
                    record, rows = pending.result(cell)
                    records.log_cell(self.log, cell.where, record, cell.bench.task)
                self.results["cells"].append(record)
                self.rows += rows
                write_jsonl(run_dir / "predictions.jsonl", self.rows)
                write_json(run_dir / "results.json", self._totals())
        except KeyboardInterrupt:
            self.interrupted()
            raise
        self.results["run"]["finished"] = now()
        records.finish(run_dir, self._totals(), self.rows)
        point_latest(run_dir)
        return run_dir

    def interrupted(self) -> None:
        """Ctrl-C: the cells not done are recorded as unfinished, and the reports written."""
        done = {(c["benchmark"], c["seed"], c["strategy"]) for c in self.results["cells"]}
        for cell in self.cells:
            if cell.id not in done:
                self.results["cells"].append({
                    "strategy": cell.spec.name, "benchmark": cell.bench.name, "seed": cell.seed,
                    "status": "unfinished", "config": dataclasses.asdict(cell.config),
                    "error": f"not finished: the run was interrupted; `harness run --resume {self.env.run_dir}` "
                             "finishes it"})
        self.results["run"]["interrupted"] = now()
        records.finish(self.env.run_dir, self._totals(), self.rows)
        point_latest(self.env.run_dir)
        self.log(f"interrupted: {len(done)} of {len(self.cells)} cells finished and kept in {self.env.run_dir}")

    def _totals(self) -> dict:
        return records.with_totals(self.results, self.env.runtime, self.env.cache, self.env.runtimes)

