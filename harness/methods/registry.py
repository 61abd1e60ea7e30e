"""Strategy registry: one decorator beside each strategy class, nothing else to keep in sync."""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from harness.core.errors import ConfigError
from harness.methods.strategy import StrategyBase


@dataclass(frozen=True)
class StrategySpec:
    name: str           # what the run calls it: the registered name, or a variant's own name
    cls: type
    config_cls: type
    description: str
    base: str = ""      # a variant's registered strategy ("rag" for `rag-k8: {strategy: rag, k: 8}`)

    @property
    def registered(self) -> str:
        return self.base or self.name


# Keys of a strategy's entry in the run YAML that are not options of its config:
#   strategy: the registered strategy a named variant runs (`rag-k8: {strategy: rag, k: 8}`)
#   sweep: options to select on a validation split (`lora: {sweep: {lr: [5e-4, 1e-3]}}`; harness/engine/tuning.py)
#   train_sizes: a learning curve (`lora: {train_sizes: [0, 64, all]}`; harness/engine/tuning.py)
#   model: the model it runs on, an entry of the run's `models:` or a local model (default: the run's `model`)
RESERVED_KEYS = ("strategy", "model", "sweep", "train_sizes")


def split_entry(name: str, values: dict | None) -> tuple[str, dict]:
    """A YAML strategy entry -> (registered strategy it runs, its config options); the other reserved
    keys (sweep, train_sizes) are read by harness/engine/tuning.py."""
    values = {k: v for k, v in (values or {}).items() if k not in RESERVED_KEYS[1:]}
    base = values.pop("strategy", name)
    values.pop("model", None)  # entry_model reads it
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"strategy {name!r}: 'strategy' must name a registered strategy, got {base!r}")
    return base, values


def entry_model(name: str, values: dict | None) -> str | None:
    """The `model:` of a YAML strategy entry (None: the run's default model)."""
    model = (values or {}).get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise ConfigError(f"strategy {name!r}: 'model' must name an entry of models: or a local model, got {model!r}")
    return model


_REGISTRY: dict[str, StrategySpec] = {}


def strategy(name: str, config: type, description: str = ""):
    """Register a strategy class under `name`, with its frozen config dataclass. The class subclasses
    harness.api.StrategyBase, which holds the contract's optional members and their defaults."""

    def register(cls):
        if not (isinstance(cls, type) and issubclass(cls, StrategyBase)):
            raise TypeError(f"strategy {name!r}: {cls!r} must subclass harness.api.StrategyBase")
        if name in _REGISTRY and _REGISTRY[name].cls is not cls:
            raise RuntimeError(f"strategy {name!r} registered twice")
        doc = description or (cls.__doc__ or "").strip().splitlines()[0]
        _REGISTRY[name] = StrategySpec(name, cls, config, doc)
        cls.name = name
        return cls

    return register


# Outside packages add strategies by declaring, in their pyproject.toml,
#   [project.entry-points."rag_or_finetune.strategies"]
#   my-strategy = "my_package.my_module"
# Loading the entry point imports that module, whose @strategy decorators register its classes.
ENTRY_POINT_GROUP = "rag_or_finetune.strategies"


def _discover() -> None:
    import strategies

    for mod in pkgutil.iter_modules(strategies.__path__):
        importlib.import_module(f"strategies.{mod.name}")
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as exc:  # an installed plugin's bug is named, not a traceback
            raise ConfigError(f"strategy plugin {ep.name!r} ({ep.value}) failed to load: "
                              f"{type(exc).__name__}: {exc}") from None


def all_strategies() -> dict[str, StrategySpec]:
    _discover()
    return dict(sorted(_REGISTRY.items()))


def get_spec(name: str, base: str | None = None) -> StrategySpec:
    """The registered strategy `name`, or, with `base`, the variant `name` of registered strategy `base`."""
    known = all_strategies()
    key = base or name
    if key not in known:
        what = f"unknown strategy {key!r}" + (f" (for variant {name!r})" if base and base != name else "")
        raise ConfigError(f"{what}; known strategies: {', '.join(known)}")
    spec = known[key]
    return spec if key == name else dataclasses.replace(spec, name=name, base=key)


def build_config(spec: StrategySpec, values: dict[str, Any] | None) -> Any:
    """Make the strategy's frozen config from YAML values; unknown keys and wrong types are errors."""
    values = dict(values or {})
    names = {f.name: f for f in dataclasses.fields(spec.config_cls)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(
            f"strategy {spec.name!r}: unknown option(s) {', '.join(unknown)}; "
            f"known: {', '.join(names) or '(none)'}"
        )
    for key, value in values.items():
        default = getattr(spec.config_cls(), key) if _has_default(names[key]) else None
        values[key] = _coerce(f"{spec.name}.{key}", value, default)
    try:
        return spec.config_cls(**values)
    except TypeError as exc:
        raise ConfigError(f"strategy {spec.name!r}: {exc}") from None


def _has_default(f: dataclasses.Field) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def _coerce(where: str, value: Any, default: Any) -> Any:
    """Check a YAML value against the type of the field's default (ints may stand for floats)."""
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, tuple) and isinstance(value, list):
        return tuple(value)
    if not isinstance(value, type(default)) or isinstance(value, bool) != isinstance(default, bool):
        raise ConfigError(f"{where} must be of type {type(default).__name__}, got {value!r}")
    return value


def describe_config(config_cls: type) -> list[tuple[str, Any]]:
    out = []
    for f in dataclasses.fields(config_cls):
        if f.default_factory is not dataclasses.MISSING:
            out.append((f.name, f.default_factory()))
        else:
            out.append((f.name, f.default if f.default is not dataclasses.MISSING else None))
    return out
