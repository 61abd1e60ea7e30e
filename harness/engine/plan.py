"""From a RunConfig to the cells of a run: everything checked before any model loads.

A cell is one (benchmark, seed, strategy). Its key fingerprints everything that decides its prepare
record and its answers, so the stage cache can hand back a cell computed by an earlier run.
"""
from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from harness.analysis.recompute import read_run
from harness.analysis.scoring import get_metric
from harness.cache.hashing import code_version, fingerprint, library_versions
from harness.cache.stages import FORMAT as CACHE_FORMAT
from harness.cache.stages import StageCache
from harness.core.errors import ConfigError, HarnessError
from harness.core.paths import reports_root
from harness.core.types import Benchmark, Example
from harness.data.benchmark import answer_budget, builtin_benchmarks, load_benchmark
from harness.data.tasks import task_type
from harness.engine import probe, tuning
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
    sweep: tuple = ()        # ((swept options, built config), ...): select on validation (engine/tuning.py)
    train_sizes: tuple = ()  # a learning curve's sizes (engine/tuning.py)
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

    def cached_in(self, cache: StageCache, cfg: RunConfig, served: bool = False) -> bool:
        """The cache holds everything this cell records: answers to its test questions, its latency
        probe of the same questions (none on an endpoint model: see probe_size), and every
        learning-curve point on them."""
        test = self.test_examples(cfg.limit)
        return all_cached(cache, self.key, [e.id for e in test],
                          probe_ids=probe.choose(test, probe_size(cfg, served)),
                          train_sizes=self.train_sizes)


@dataclass(frozen=True)
class Plan:
    """The checked run: strategies, their built configs by name, the loaded benchmarks, and the
    strategies' tunings (name -> tuning.Tuning: sweep points, learning-curve sizes; only those with one)."""

    specs: list[StrategySpec]
    configs: dict[str, Any]
    benches: list[Benchmark]
    tunings: dict = field(default_factory=dict)

    # `specs, configs, benches = plan(cfg)` and `plan(cfg)[2]`, as when Plan was a 3-tuple (before tunings)
    def __iter__(self):
        return iter((self.specs, self.configs, self.benches))

    def __getitem__(self, i):
        return (self.specs, self.configs, self.benches)[i]

    def cells(self, seeds, models: "RunModels | None" = None) -> list[Cell]:
        """Benchmark by benchmark, seed by seed, strategy by strategy: the order of the report. `models`:
        each cell's model label (strategy_models(cfg))."""
        of = models.model_of if models is not None else {}
        t = self.tunings or {}
        return [Cell(s, self.configs[s.name], b, seed, sweep=t[s.name].sweep if s.name in t else (),
                     train_sizes=t[s.name].train_sizes if s.name in t else (), model=of.get(s.name, ""))
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
    benches = [load_benchmark(b, split_seed=cfg.split_seed, test_ratio=cfg.test_ratio, columns=cfg.columns)
               for b in cfg.benchmarks]
    same = sorted(n for n, c in Counter(b.name for b in benches).items() if c > 1)
    if same:
        raise ConfigError(f"two benchmarks are both named {same[0]!r} (their benchmark.json 'name'): their cells, "
                          "records and cached answers would collide; give one another name")
    tunings = {s.name: tuning.parse_entry(s, entries[s.name][1], cfg.options.get(s.name)) for s in specs}
    for bench in benches:
        seen = _as_trained(bench, cfg.train_limit)  # few-shot.shots against the train questions it will get
        for spec in specs:
            for config in [configs[spec.name]] + [c for _, c in tunings[spec.name].sweep]:
                spec.cls.check(spec.name, config, seen)
            tuning.check_against(spec.name, tunings[spec.name], len(seen.split("train")), cfg.sweep_validation)
        m = headline(cfg, bench)
        if not get_metric(m).applies_to(bench.task):
            raise ConfigError(f"metric {m!r} does not apply to benchmark {bench.name!r} (task {bench.task})")
    return Plan(specs, configs, benches, {n: t for n, t in tunings.items() if t.sweep or t.train_sizes})


def _as_trained(bench: Benchmark, train_limit: int | None) -> Benchmark:
    """The benchmark as a strategy's preparation sees it: only the first `train_limit` train questions."""
    if train_limit is None:
        return bench
    keep = {id(e) for e in bench.split("train")[:train_limit]}
    return dataclasses.replace(bench, examples=[e for e in bench.examples if e.split != "train" or id(e) in keep])


def probe_size(cfg: RunConfig, served: bool) -> int:
    """Questions the latency probe sends alone: none on an endpoint model, whose every answer is already
    its own request, timed as one user's (verdicts.LATENCY_SOURCES 'endpoint')."""
    return 0 if served else cfg.latency_probe


def answer_tokens(cfg: RunConfig, bench: Benchmark) -> int:
    """Greedy tokens per answer on a benchmark: the run's max_new_tokens when set, else the benchmark's
    own (benchmark.json, or from its gold answers' lengths: harness/data/benchmark.py answer_budget)."""
    return cfg.max_new_tokens if cfg.max_new_tokens is not None else answer_budget(bench)[0]


def headline(cfg: RunConfig, bench: Benchmark) -> str:
    """The benchmark's headline metric: the run's `metric`, else benchmark.json's, else its task type's."""
    return cfg.metric or bench.meta.get("metric") or task_type(bench.task).primary_metric


def judged_metrics(cfg: RunConfig, bench: Benchmark) -> tuple[str, ...]:
    """The model-based metrics a cell of this benchmark computes after answering."""
    from harness.analysis.judges import wanted_metrics

    return wanted_metrics(headline(cfg, bench), cfg.metrics, bench.task)


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
        "train_limit": cfg.train_limit, "max_new_tokens": answer_tokens(cfg, cell.bench), **model,
        "libraries": library_versions(), "code": code_version(spec.cls), "format": CACHE_FORMAT,
        # only when it is not 1, so that keys from before the option existed stay valid
        **({"train_workers": cfg.train_workers} if cfg.train_workers > 1 and tunes else {}),
        **({"train_sharding": cfg.train_sharding} if cfg.train_workers > 1 and cfg.train_sharding != "ddp"
           and tunes else {}),
        # a sweep decides the config that answers: its points and validation split are part of the key
        **({"sweep": [p for p, _ in cell.sweep], "sweep_validation": cfg.sweep_validation} if cell.sweep else {}),
    })


def all_cached(cache: StageCache, key: str, ids: list[str], *, probe_ids: list[str] = (),
               train_sizes: tuple = ()) -> bool:
    """The cache holds this cell's record and an answer for every one of `ids` (and, when asked, a
    latency probe of exactly `probe_ids` and learning-curve points of `train_sizes` on `ids`)."""
    cell = cache.load_cell(key)
    if cell is None or not all(i in cell["predictions"] for i in ids):
        return False
    if probe_ids and (cell.get("probe") or {}).get("ids") != list(probe_ids):
        return False
    curve = cell.get("curve") or {}
    return all(s == tuning.ALL or all(i in (curve.get(str(s)) or {}).get("outputs", {}) for i in ids)
               for s in train_sizes)


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
        for k in ("benchmarks", "strategies", "seeds", "metrics"):
            if k in values:
                values[k] = tuple(values[k])
        cfg = RunConfig(**{**values, "out": str(run_dir), "trust_remote_code": trust_remote_code})
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise HarnessError(f"cannot resume {run_dir}: its results.json is not a run record ({exc})") from None
    return run_dir, results, cfg
