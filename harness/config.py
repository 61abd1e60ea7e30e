"""Run configuration: an experiment YAML (benchmarks x strategies x seeds) with CLI overrides."""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

DEFAULT_STRATEGIES = ("zero-shot", "few-shot", "rag", "lora")


@dataclass(frozen=True)
class RunConfig:
    benchmarks: tuple[str, ...] = ("squadshifts_nyt",)
    strategies: tuple[str, ...] = DEFAULT_STRATEGIES
    options: dict = field(default_factory=dict)  # strategy name -> its config values
    seeds: tuple[int, ...] = (0,)
    model: str = "smollm2-135m"
    device: str = "auto"
    dtype: str = "auto"
    limit: int | None = None        # cap on test questions (None: all)
    train_limit: int | None = None  # cap on train examples (None: all)
    batch_size: int | None = None   # generation batch; None: the device's default (16 on CPU, 128 on CUDA)
    max_new_tokens: int = 24        # short-answer QA; answers past 24 tokens are sentences anyway
    usd_per_hour: float = 0.085     # on-demand price of a 2-vCPU cloud machine (AWS c6i.large, us-east-1, 2026)
    out: str | None = None
    # After each fine-tuning strategy, score this general-knowledge benchmark (not trained on) on
    # the base and the tuned model through lm-eval: record["forgetting"]. None: no check.
    forgetting: str | None = None
    forgetting_limit: int | None = None  # cap on its questions (None: all)

    def __post_init__(self):
        for name in ("limit", "train_limit", "forgetting_limit"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        for name in ("batch_size", "max_new_tokens"):
            v = getattr(self, name)
            if name == "batch_size" and v is None:
                continue
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        if not isinstance(self.usd_per_hour, (int, float)) or not math.isfinite(self.usd_per_hour) \
                or self.usd_per_hour < 0:
            raise ConfigError(f"usd_per_hour must be a number >= 0, got {self.usd_per_hour!r}")
        if not self.strategies:
            raise ConfigError("no strategies to run")
        if not self.benchmarks:
            raise ConfigError("no benchmarks to run")
        if not self.seeds:
            raise ConfigError("no seeds to run")
        if self.out is not None and not isinstance(self.out, str):
            raise ConfigError(f"out must be a folder path, got {self.out!r}")
        if self.forgetting is not None:
            from .benchmark import builtin_benchmarks

            if not isinstance(self.forgetting, str) or not (
                    self.forgetting in builtin_benchmarks() or (Path(self.forgetting) / "questions.jsonl").is_file()):
                raise ConfigError(f"forgetting must name a built-in benchmark ({', '.join(builtin_benchmarks())}) "
                                  f"or a corpus folder, got {self.forgetting!r}")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ConfigError(f"dtype must be auto, float32, bfloat16 or float16, got {self.dtype!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}
_OPTIONAL_TYPES = {"limit": int, "train_limit": int, "batch_size": int, "out": str,
                   "forgetting": str, "forgetting_limit": int}  # default None
_YAML_KEYS = {"benchmark", "benchmarks", "strategies", "seed", "seeds", *_FIELDS} - {"options"}


def _tuple_of(value, kind, key, path):
    if isinstance(value, kind) and not isinstance(value, bool):
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, kind) and not isinstance(v, bool) for v in value):
        return tuple(value)
    raise ConfigError(f"{path}: '{key}' must be a {kind.__name__} or a list of them, got {value!r}")


def _loader():
    """PyYAML's safe loader, plus YAML 1.2 floats: `lr: 1e-3` is a number, not the string '1e-3'."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"),
    )
    return Loader


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read an experiment file into RunConfig keyword arguments (safe loader, unknown keys rejected)."""
    import yaml

    _Loader = _loader()
    p = Path(path)
    try:
        data = yaml.load(p.read_text(encoding="utf-8"), Loader=_Loader)
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark else str(p)
        raise ConfigError(f"{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of keys to values")
    unknown = sorted(set(data) - _YAML_KEYS)
    if unknown:
        raise ConfigError(f"{p}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_YAML_KEYS))}")
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("benchmark", "benchmarks"):
            out["benchmarks"] = _tuple_of(value, str, key, p)
        elif key in ("seed", "seeds"):
            out["seeds"] = _tuple_of(value, int, key, p)
        elif key == "strategies":
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                out["strategies"] = tuple(value)
            elif isinstance(value, dict):
                for name, opts in value.items():
                    if opts is not None and not isinstance(opts, dict):
                        raise ConfigError(f"{p}: options of strategy {name!r} must be a mapping")
                out["strategies"] = tuple(value)
                out["options"] = {k: dict(v or {}) for k, v in value.items()}
            else:
                raise ConfigError(f"{p}: 'strategies' must be a list of names or a mapping name -> options")
        elif key in _OPTIONAL_TYPES:
            kind = _OPTIONAL_TYPES[key]
            if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
                raise ConfigError(f"{p}: '{key}' must be of type {kind.__name__}, got {value!r}")
            out[key] = value
        else:
            default = _FIELDS[key].default
            if value is not None and default is not None and not isinstance(value, type(default)) and not (
                isinstance(default, float) and isinstance(value, int)
            ):
                raise ConfigError(f"{p}: '{key}' must be of type {type(default).__name__}, got {value!r}")
            if isinstance(value, bool) and not isinstance(default, bool):
                raise ConfigError(f"{p}: '{key}' must not be true/false, got {value!r}")
            out[key] = value
    return out


def make_config(yaml_path: str | None, overrides: dict[str, Any]) -> RunConfig:
    values = load_yaml(yaml_path) if yaml_path else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return RunConfig(**values)
