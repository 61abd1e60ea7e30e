"""From a RunConfig to the cells of a run: everything checked before any model loads.

A cell is one (benchmark, seed, strategy). Its key fingerprints everything that decides its prepare
record and its answers, so the stage cache can hand back a cell computed by an earlier run.
"""
from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from harness.analysis.recompute import read_run
from harness.cache.hashing import code_version, fingerprint, library_versions
from harness.cache.stages import FORMAT as CACHE_FORMAT
from harness.cache.stages import StageCache
from harness.core.errors import ConfigError, HarnessError
from harness.core.paths import reports_root
from harness.core.types import Benchmark, Example
from harness.data.benchmark import builtin_benchmarks, load_benchmark
from harness.engine.config import RunConfig
from harness.methods.registry import StrategySpec, build_config, entry_model, get_spec, split_entry
from harness.model.catalog import model_for, parse_models


@dataclass(frozen=True)
class Cell:
    """One (benchmark, seed, strategy) of the matrix, with its strategy's built config and its key."""

    spec: StrategySpec
    config: Any
    bench: Benchmark
    seed: int
    key: str = ""
    model: str = ""  # the label of the model it runs on (strategy_models); "": the run's only runtime

    @property
    def id(self) -> tuple[str, int, str]:
        return (self.bench.name, self.seed, self.spec.name)

    @property
    def where(self) -> str:
        return f"[{self.bench.name} seed={self.seed}] {self.spec.name}"

    def test_examples(self, limit: int | None) -> list[Example]:
        test = self.bench.split("test")
        return test[:limit] if limit else test


class Plan(NamedTuple):
    """The checked run: strategies, their built configs by name, the loaded benchmarks."""

    specs: list[StrategySpec]
    configs: dict[str, Any]
    benches: list[Benchmark]

    def cells(self, seeds, models: "RunModels | None" = None) -> list[Cell]:
        """Benchmark by benchmark, seed by seed, strategy by strategy: the order of the report. `models`:
        each cell's model label (strategy_models(cfg))."""
        of = models.model_of if models is not None else {}
        return [Cell(s, self.configs[s.name], b, seed, model=of.get(s.name, ""))
                for b in self.benches for seed in seeds for s in self.specs]


class RunModels(NamedTuple):
    """The run's models: label -> harness.model.catalog.ModelSpec, and each strategy's model label."""

    models: dict
    model_of: dict


def strategy_models(cfg: RunConfig) -> RunModels:
    """Each strategy's model: its entry's `model:`, else the run's `model`; labels are models: keys, or
    the local reference itself (checked by RunConfig and check_names; nothing is loaded here)."""
    declared = parse_models(cfg.models)
    models, model_of = {}, {}
    for n in cfg.strategies:
        m = model_for(entry_model(n, cfg.options.get(n)) or cfg.model, declared)
        models.setdefault(m.label, m)
        model_of[n] = m.label
    return RunModels(models, model_of)


def plan(cfg: RunConfig) -> Plan:
    """Everything that can be checked before any work: strategies, their options, benchmarks, the
    strategies' checks against the data (rag.k against the chunk count), and no cell twice."""
    for what, names in (("strategy", cfg.strategies), ("seed", cfg.seeds), ("benchmark", cfg.benchmarks)):
        twice = sorted(str(n) for n, c in Counter(names).items() if c > 1)
        if twice:
            raise ConfigError(f"{what} {', '.join(twice)} given twice: each cell of the run must be different")
    extra = sorted(set(cfg.options) - set(cfg.strategies))
    if extra:
        raise ConfigError(f"options given for strategies that are not run: {', '.join(extra)}")
    entries = {n: split_entry(n, cfg.options.get(n)) for n in cfg.strategies}  # name -> (registered, options)
    specs = [get_spec(n, base) for n, (base, _) in entries.items()]
    strategy_models(cfg)  # every model named is well formed
    configs = {s.name: build_config(s, entries[s.name][1]) for s in specs}
    benches = [load_benchmark(b, split_seed=cfg.split_seed, test_ratio=cfg.test_ratio) for b in cfg.benchmarks]
    same = sorted(n for n, c in Counter(b.name for b in benches).items() if c > 1)
    if same:
        raise ConfigError(f"two benchmarks are both named {same[0]!r} (their benchmark.json 'name'): their cells, "
                          "records and cached answers would collide; give one another name")
    for spec in specs:
        for bench in benches:
            spec.cls.check(spec.name, configs[spec.name], bench)
    return Plan(specs, configs, benches)


def cell_key(cell: Cell, cfg: RunConfig, runtime, cache: StageCache) -> str:
    """Everything that determines a cell's prepare record and its answers (not --limit: predictions
    are stored per question, so a larger limit answers only the new questions)."""
    spec, config = cell.spec, cell.config
    values = json.dumps(dataclasses.asdict(config), default=repr)
    other = {b: load_benchmark(b).meta["data_sha256"] for b in builtin_benchmarks() if f'"{b}"' in values}
    tunes = spec.cls.fine_tunes
    if getattr(runtime, "served", False):  # an endpoint: where and which model, asked of no server
        model = {"batch_size": None, "device": runtime.device, "dtype": None, "model_sha256": None,
                 "endpoint": runtime.fingerprint()}
    else:  # local weights: the same entries as before models could differ, so earlier cached cells stay valid
        model = {"batch_size": cfg.batch_size or runtime.default_batch_size, "device": runtime.device,
                 "dtype": runtime.dtype_name, "model_sha256": cache.tree_hash(runtime.path)}
    return fingerprint({
        "strategy": spec.name, **({"runs": spec.base} if spec.base else {}),
        "config": dataclasses.asdict(config), "benchmark": cell.bench.name,
        "data_sha256": cell.bench.meta.get("data_sha256"), "other_benchmarks": other, "seed": cell.seed,
        "train_limit": cfg.train_limit, "max_new_tokens": cfg.max_new_tokens, **model,
        "libraries": library_versions(), "code": code_version(spec.cls), "format": CACHE_FORMAT,
        # only when it is not 1, so that keys from before the option existed stay valid
        **({"train_workers": cfg.train_workers} if cfg.train_workers > 1 and tunes else {}),
        **({"train_sharding": cfg.train_sharding} if cfg.train_workers > 1 and cfg.train_sharding != "ddp"
           and tunes else {}),
    })


def all_cached(cache: StageCache, key: str, ids: list[str]) -> bool:
    """The cache holds this cell's record and an answer for every one of `ids`."""
    cell = cache.load_cell(key)
    return cell is not None and all(i in cell["predictions"] for i in ids)


def resume_target(arg: str, trust_remote_code: bool = False) -> tuple[Path, dict, RunConfig]:
    """The run folder to continue (a folder, or 'latest'), its records so far, and its config.

    A run folder is data and grants nothing: security settings (trust_remote_code) come from the
    command line only, whatever the folder's results.json says."""
    run_dir = reports_root() / "latest" if arg in ("", "latest") else Path(arg)
    run_dir = run_dir.resolve() if run_dir.exists() else run_dir
    if not (run_dir / "results.json").is_file():
        raise HarnessError(f"cannot resume {run_dir}: no results.json there")
    results, _ = read_run(run_dir, predictions=False)
    try:
        known = {f.name for f in dataclasses.fields(RunConfig)}
        values = {k: v for k, v in results["config"].items() if k in known}
        for k in ("benchmarks", "strategies", "seeds"):
            values[k] = tuple(values[k])
        cfg = RunConfig(**{**values, "out": str(run_dir), "trust_remote_code": trust_remote_code})
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise HarnessError(f"cannot resume {run_dir}: its results.json is not a run record ({exc})") from None
    return run_dir, results, cfg
