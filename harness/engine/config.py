"""Run configuration: an experiment YAML (benchmarks x strategies x seeds) with CLI overrides."""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.errors import ConfigError
from harness.core.yamlio import Where, read_yaml
from harness.data.corpus import DEFAULT_SPLIT_SEED, DEFAULT_TEST_RATIO

DEFAULT_STRATEGIES = ("zero-shot", "few-shot", "rag", "lora")
MAX_NEW_TOKENS = 4096  # the answer buffer is batch x max_new_tokens; a typo of 10**9 must not reach it


@dataclass(frozen=True)
class RunConfig:
    benchmarks: tuple[str, ...] = ("squadshifts_nyt",)
    strategies: tuple[str, ...] = DEFAULT_STRATEGIES
    options: dict = field(default_factory=dict)  # strategy name -> its config values
    seeds: tuple[int, ...] = (0,)
    model: str = "smollm2-135m"  # the default model of every strategy: an entry of `models`, or a local model
    # name -> a local model ({path: ...}) or an OpenAI-compatible endpoint ({backend: openai, base_url, name, ...});
    # a strategy entry's `model:` picks one (harness/model/catalog.py)
    models: dict = field(default_factory=dict)
    device: str = "auto"
    dtype: str = "auto"
    limit: int | None = None        # cap on test questions (None: all)
    train_limit: int | None = None  # cap on train examples (None: all)
    batch_size: int | None = None   # generation batch; None: the device's default (64 on CPU, 128 on CUDA)
    # None: per benchmark, its benchmark.json `max_new_tokens`, else from its gold answers' lengths
    # (harness/data/benchmark.py answer_budget; 24 on short-answer benchmarks). A number here wins.
    max_new_tokens: int | None = None
    usd_per_hour: float = 0.085     # on-demand price of a 2-vCPU cloud machine (AWS c6i.large, us-east-1, 2026)
    out: str | None = None
    split_seed: int = DEFAULT_SPLIT_SEED    # splits corpus questions that have no split; apart from `seeds`
    test_ratio: float = DEFAULT_TEST_RATIO  # share of those questions that become test questions
    # Off: a model folder whose config.json names its own Python code (auto_map) is refused.
    # `--trust-remote-code` runs that code, with the user's rights; only for models one trusts.
    trust_remote_code: bool = False
    decision: dict = field(default_factory=dict)  # report's decision inputs (harness.analysis.verdicts.DecisionConfig)
    # After each fine-tuning strategy, score this general-knowledge benchmark (not trained on) on
    # the base and the tuned model through lm-eval: record["forgetting"]. None: no check.
    forgetting: str | None = None
    forgetting_limit: int | None = None  # cap on its questions (None: all)
    # Processes each fine-tuning cell trains on: Ray Train workers under --executor ray
    # (harness/engine/scaleout/raytrain.py).
    # 1: the cell trains in its own process. Part of the training cache key (losses differ across world sizes).
    train_workers: int = 1
    # How those workers split the model: ddp (each holds all weights) or fsdp (sharded, FSDP2).
    train_sharding: str = "ddp"
    # Column mapping of the question tables of corpus folders ({"question": "prompt", "answers": "gold"}),
    # winning over their benchmark.json "columns"; built-in benchmarks ignore it. None: as each folder says.
    columns: dict | None = None
    # The report's headline metric (any registered one that can head the benchmarks' task types);
    # None: each benchmark's benchmark.json `metric`, else its task type's.
    metric: str | None = None
    # Model-based metrics to compute after answering besides the headline (semantic, judge, faithfulness).
    metrics: tuple[str, ...] = ()
    judge: dict = field(default_factory=dict)  # harness.analysis.judges.JudgeConfig: model, rubric, ...
    # After each strategy's batched answers, this many test questions (the same ids for every
    # strategy: harness/engine/probe.py) answered one at a time: p50/p95 latency, time to first token,
    # decode s/token. 0: off. 16 gives a p95 from the 2nd-largest of 16 values; measured cost in README.
    latency_probe: int = 16
    # Train questions carved off as the validation split that `sweep:` selects on (harness/engine/tuning.py).
    # 40: RAG's F1 CI in the committed example is +-0.044 at 150 questions, so about +-0.085 at 40: it tells
    # apart points that differ by much, and costs a sixth of the demo's 250 train questions; raise it when
    # the train split is large (the report shows each point's CI).
    sweep_validation: int = 40

    def __post_init__(self):
        for name in ("limit", "train_limit", "forgetting_limit"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        for name in ("latency_probe", "sweep_validation"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < (0 if name == "latency_probe" else 1):
                raise ConfigError(f"{name} must be an integer >= {0 if name == 'latency_probe' else 1}, got {v!r}")
        for name in ("batch_size", "max_new_tokens", "train_workers"):
            v = getattr(self, name)
            if name in ("batch_size", "max_new_tokens") and v is None:
                continue
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        if self.train_sharding not in ("ddp", "fsdp"):
            raise ConfigError(f"train_sharding must be ddp or fsdp, got {self.train_sharding!r}")
        if self.max_new_tokens is not None and self.max_new_tokens > MAX_NEW_TOKENS:
            raise ConfigError(f"max_new_tokens must be at most {MAX_NEW_TOKENS}, got {self.max_new_tokens}")
        for seed in self.seeds:
            if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
                raise ConfigError(f"seeds must be integers from 0 to 2**32-1, got {seed!r}")
        for name in ("benchmarks", "strategies"):
            for v in getattr(self, name):
                if not isinstance(v, str) or not v.strip() or "\0" in v:
                    raise ConfigError(f"{name} must be non-empty names, got {v!r}")
        for name in ("model", "device", "dtype", "out"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, str) or not v.strip() or "\0" in v):
                raise ConfigError(f"{name} must be a non-empty string, got {v!r}")
        from harness.model.catalog import model_for, parse_models

        model_for(self.model, parse_models(self.models))  # each entry checked; the default names one or a local model
        if not re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", self.device):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if not isinstance(self.trust_remote_code, bool):
            raise ConfigError(f"trust_remote_code must be true or false, got {self.trust_remote_code!r}")
        if not isinstance(self.usd_per_hour, (int, float)) or not math.isfinite(self.usd_per_hour) \
                or self.usd_per_hour < 0:
            raise ConfigError(f"usd_per_hour must be a number >= 0, got {self.usd_per_hour!r}")
        if isinstance(self.test_ratio, bool) or not isinstance(self.test_ratio, (int, float)) \
                or not 0 < self.test_ratio <= 1:
            raise ConfigError(f"test_ratio must be a number in (0, 1], got {self.test_ratio!r}")
        if not isinstance(self.split_seed, int) or isinstance(self.split_seed, bool):
            raise ConfigError(f"split_seed must be an integer, got {self.split_seed!r}")
        if not self.strategies:
            raise ConfigError("no strategies to run")
        if not self.benchmarks:
            raise ConfigError("no benchmarks to run")
        if not self.seeds:
            raise ConfigError("no seeds to run")
        check_decision(self.decision)  # unknown keys and bad values fail before any work
        if self.forgetting is not None:
            from harness.data.benchmark import builtin_benchmarks

            if not isinstance(self.forgetting, str) or not (
                    self.forgetting in builtin_benchmarks() or (Path(self.forgetting) / "questions.jsonl").is_file()):
                raise ConfigError(f"forgetting must name a built-in benchmark ({', '.join(builtin_benchmarks())}) "
                                  f"or a corpus folder, got {self.forgetting!r}")
        if self.columns is not None:
            from harness.data.ingest import QUESTION_FIELDS

            if not isinstance(self.columns, dict) or not self.columns or not all(
                    k in QUESTION_FIELDS and isinstance(v, str) and v.strip() for k, v in self.columns.items()):
                raise ConfigError(f"columns must map question fields ({', '.join(QUESTION_FIELDS)}) to column "
                                  f"names, got {self.columns!r}")
        from harness.analysis.judges import JUDGED, JudgeConfig
        from harness.analysis.scoring import METRIC_REGISTRY

        if self.metric is not None:
            m = METRIC_REGISTRY.get(self.metric) if isinstance(self.metric, str) else None
            if m is None or not m.headline:
                heads = [k for k, v in METRIC_REGISTRY.items() if v.headline]
                raise ConfigError(f"metric must be one of {', '.join(heads)}, got {self.metric!r}")
        for m in self.metrics:
            if m not in JUDGED:
                raise ConfigError(f"metrics are computed by a model after answering: {', '.join(JUDGED)}; "
                                  f"got {m!r} (the other metrics are always computed)")
        if not isinstance(self.judge, dict):
            raise ConfigError(f"judge must be a mapping (model, rubric, ...), got {self.judge!r}")
        JudgeConfig.from_dict(self.judge)
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ConfigError(f"dtype must be auto, float32, bfloat16 or float16, got {self.dtype!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}
_OPTIONAL_TYPES = {"limit": int, "train_limit": int, "batch_size": int, "out": str,
                   "forgetting": str, "forgetting_limit": int, "max_new_tokens": int, "metric": str,
                   "columns": dict}  # default None
_YAML_KEYS = {"benchmark", "benchmarks", "strategies", "seed", "seeds", *_FIELDS} - {"options"}


def _tuple_of(value, kind, key, where):
    if isinstance(value, kind) and not isinstance(value, bool):
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, kind) and not isinstance(v, bool) for v in value):
        return tuple(value)
    raise ConfigError(f"{where}: '{key}' must be a {kind.__name__} or a list of them, got {value!r}")


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read an experiment file into RunConfig keyword arguments (safe loader, unknown keys rejected)."""
    return _load(Path(path))[0]


def _load(p: Path) -> tuple[dict[str, Any], Where]:
    data, where = read_yaml(p)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}:1: the top level must be a mapping of keys to values, got a {type(data).__name__}")
    unknown = sorted((k for k in data if k not in _YAML_KEYS), key=str)
    if unknown:
        raise ConfigError(f"{where(str(unknown[0]))}: unknown key(s) {', '.join(map(repr, unknown))}; "
                          f"known: {', '.join(sorted(_YAML_KEYS))}")
    if "benchmark" in data and "benchmarks" in data or "seed" in data and "seeds" in data:
        key = "benchmarks" if "benchmark" in data and "benchmarks" in data else "seeds"
        raise ConfigError(f"{where(key)}: give either '{key[:-1]}' or '{key}', not both")
    out: dict[str, Any] = {}
    for key, value in data.items():
        at = where(key)
        if key in ("benchmark", "benchmarks"):
            out["benchmarks"] = _tuple_of(value, str, key, at)
        elif key in ("seed", "seeds"):
            out["seeds"] = _tuple_of(value, int, key, at)
        elif key == "metrics":
            out["metrics"] = _tuple_of(value, str, key, at) if value != [] else ()
        elif key == "judge":
            from harness.analysis.judges import JudgeConfig

            if value is not None and not isinstance(value, dict):
                raise ConfigError(f"{at}: 'judge' must be a mapping (model, rubric, reason_tokens, embedder, "
                                  "semantic_threshold)")
            JudgeConfig.from_dict(value, f"{at}: judge")
            out[key] = dict(value or {})
        elif key == "strategies":
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                out["strategies"] = tuple(value)
            elif isinstance(value, dict):
                for name, opts in value.items():
                    if not isinstance(name, str):
                        raise ConfigError(f"{at}: strategy names must be strings, got {name!r}")
                    if opts is not None and not isinstance(opts, dict):
                        raise ConfigError(f"{where('strategies.' + name)}: options of strategy {name!r} "
                                          "must be a mapping")
                    bad = [k for k in opts or {} if not isinstance(k, str)]
                    if bad:
                        raise ConfigError(f"{where('strategies.' + name)}: option names of strategy {name!r} "
                                          f"must be strings, got {bad[0]!r}")
                out["strategies"] = tuple(value)
                out["options"] = {k: dict(v or {}) for k, v in value.items()}
            else:
                raise ConfigError(f"{at}: 'strategies' must be a list of names or a mapping name -> options")
        elif key == "decision":
            check_decision(value, where)
            out[key] = dict(value or {})
        elif key == "models":
            _check_models(value, where)
            out[key] = dict(value or {})
        elif key in _OPTIONAL_TYPES:
            kind = _OPTIONAL_TYPES[key]
            if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
                raise ConfigError(f"{at}: '{key}' must be of type {kind.__name__}, got {value!r}")
            out[key] = value
        else:
            default = _FIELDS[key].default
            if value is not None and default is not None and not isinstance(value, type(default)) and not (
                isinstance(default, float) and isinstance(value, int)
            ):
                raise ConfigError(f"{at}: '{key}' must be of type {type(default).__name__}, got {value!r}")
            if isinstance(value, bool) and not isinstance(default, bool):
                raise ConfigError(f"{at}: '{key}' must not be true/false, got {value!r}")
            if value is None:
                raise ConfigError(f"{at}: '{key}' needs a value")
            out[key] = value
    for key, value in out.items():  # each value alone, so the error names its line
        if key != "options":
            try:
                RunConfig(**{key: value})
            except ConfigError as exc:
                raise ConfigError(f"{where(key, key[:-1])}: {exc}") from None
    return out, where


def _check_models(value, where: Where) -> None:
    """The `models:` block; an error names the line of the entry's key it is about."""
    from harness.model.catalog import parse_models

    try:
        parse_models(value)
    except ConfigError as exc:
        key = str(exc).split(":", 1)[0]
        parts = key.split(".")
        keys = [".".join(parts[:i]) for i in range(len(parts), 0, -1)] if key.startswith("models") else []
        raise ConfigError(f"{where(*keys, 'models')}: {exc}") from None


def check_decision(value, where: Where | None = None) -> None:
    """The `decision:` block (or the CLI's decision flags): a mapping of harness.analysis.verdicts.DecisionConfig's
    keys. Each unknown key or bad value is one error naming its own line when `where` locates the YAML."""
    from harness.analysis.verdicts import DecisionConfig

    known = [f.name for f in dataclasses.fields(DecisionConfig)]

    def at(*keys) -> str:
        return f"{where(*keys, 'decision')}: " if where else ""

    if value is not None and not isinstance(value, dict):
        raise ConfigError(f"{at()}'decision' must be a mapping of {', '.join(known)}")
    values = dict(value or {})
    for k in values:
        if k not in known:
            raise ConfigError(f"{at(f'decision.{k}')}unknown key 'decision.{k}'; known: {', '.join(known)}")
    for k, v in values.items():
        try:
            DecisionConfig(**{k: v})
        except (ConfigError, TypeError) as exc:
            raise ConfigError(f"{at(f'decision.{k}')}{exc}") from None
    DecisionConfig.from_dict(values)
    if values.get("measured_on") is not None:  # a run's reports are priced with the default price table
        from harness.analysis.serving import load_price_table

        table = load_price_table()
        if values["measured_on"] not in table.machines:
            raise ConfigError(f"{at('decision.measured_on')}decision.measured_on names {values['measured_on']!r}, "
                              f"which is not a machine of {table.source} ({', '.join(sorted(table.machines))})")


def make_config(yaml_path: str | None, overrides: dict[str, Any]) -> RunConfig:
    """The run's config: YAML values, then CLI overrides; every name is checked against the
    registries here, before any model or data is loaded."""
    values, where = _load(Path(yaml_path)) if yaml_path else ({}, None)
    given = {k: v for k, v in overrides.items() if v is not None}
    if "models" in given:  # --model openai:NAME adds an entry beside the YAML's models
        given["models"] = {**values.get("models", {}), **given["models"]}
    values.update(given)
    cfg = RunConfig(**values)
    check_names(cfg, where, yaml_keys=set(values) - set(given))
    return cfg


def check_names(cfg: RunConfig, where: Where | None = None, yaml_keys: set[str] = frozenset()) -> None:
    """Strategies and benchmarks are names in the registries (or a corpus folder), never import
    paths: nothing named in a config is imported. Options of the strategies that run are built.
    `where` locates the keys in `yaml_keys` (those that came from the YAML file) in messages."""
    from harness.data.benchmark import builtin_benchmarks
    from harness.methods.registry import all_strategies, build_config, entry_model, get_spec, split_entry
    from harness.model.catalog import model_for, parse_models

    def at(key, *keys):
        return f"{where(*keys)}: " if where and key in yaml_keys else ""

    known = all_strategies()
    models = parse_models(cfg.models)
    for name in cfg.strategies:
        model = None
        try:
            model = entry_model(name, cfg.options.get(name))
            if model is not None:
                model_for(model, models)
        except ConfigError as exc:
            raise ConfigError(f"{at('options', f'strategies.{name}.model', 'strategies.' + name)}{exc}") from None
        base, options = split_entry(name, cfg.options.get(name))
        if base not in known:
            variant = f" (variant {name!r})" if base != name else ""
            raise ConfigError(f"{at('strategies', 'strategies.' + name, 'strategies')}unknown strategy {base!r}"
                              f"{variant}; known strategies: {', '.join(known)}")
        if name in cfg.options:
            try:
                build_config(known[base], options)
            except ConfigError as exc:
                named = [f"strategies.{name}.{k}" for k in cfg.options[name]
                         if f"{name}.{k} " in str(exc) or repr(k) in str(exc) or f" {k}" in str(exc)]
                raise ConfigError(f"{at('options', *named, 'strategies.' + name)}{exc}") from None
            for key in ("sweep", "train_sizes"):  # harness/engine/tuning.py
                if key in cfg.options[name]:
                    from harness.engine.tuning import parse_entry

                    try:
                        parse_entry(get_spec(name, base), options, {key: cfg.options[name][key]})
                    except ConfigError as exc:
                        raise ConfigError(f"{at('options', f'strategies.{name}.{key}', 'strategies.' + name)}"
                                          f"{exc}") from None
    if where and "benchmarks" in yaml_keys:  # names from the command line go straight to the corpus loader
        builtin = builtin_benchmarks()
        for name in cfg.benchmarks:
            if name not in builtin and not Path(name).is_dir():
                raise ConfigError(
                    f"{where('benchmarks.' + name, 'benchmark', 'benchmarks')}: unknown benchmark {name!r}: "
                    f"neither a built-in benchmark ({', '.join(builtin)}) nor a corpus folder")
