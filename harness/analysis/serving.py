"""Serving cost: what a strategy costs a month to keep answering, refreshed, on named machines.

Every figure is a formula over measured facts of the run (throughput at the run's batch size,
preparation seconds, artifact bytes, tokens) and prices from configs/prices.yaml or the run's
`decision:` block. Every function takes plain numbers or dicts and returns a dataclass that keeps
its inputs beside its result, so the report can print both and a reader can redo the arithmetic.

The formulas (P: $/hour of the machine; H: hours a month; u: target utilization; T: measured
queries/s of one replica at the run's batch size; Q: queries a month; r: min_replicas):

    busy hours          B = Q / (3600 T)
    replicas (average)  R = max(r, B / (H u))
    capacity $          = max(r H P, B / u * P)        (r = 0: scale to zero, pay busy time / u)
    hosted answering $  = Q (prompt_tokens * in_per_1M + output_tokens * out_per_1M) / 1e6
    refreshes / month   F = (365.25 / 12) / refresh_days       (refresh_days null: 0, never)
    refresh $           = F * refresh_seconds / 3600 * P
    monthly $           = capacity $ (or hosted answering $ + retrieval capacity $) + refresh $
    $ per query         = monthly $ / Q
    $ per correct       = monthly $ / (Q * accuracy)           (accuracy 0: infinite)

Replicas are a month average, not a whole number: an autoscaler adds machines at peaks and removes
them after, so the machine-hours billed over a month follow the average load; target_utilization
is the headroom that covers the peaks. `min_replicas` is the floor that is paid even with no traffic.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.core.errors import ConfigError, from_fields
from harness.core.paths import DEFAULT_PRICES

DAYS_PER_MONTH = 365.25 / 12        # 30.44: the mean month, so a monthly figure times 12 is a year
HOURS_PER_MONTH = 730.0             # 8,760 hours a year / 12: how cloud providers bill a month of a machine
TARGET_UTILIZATION = 0.5            # size for twice the month's average load: traffic peaks at about twice its
#                                     daily mean (office hours), and a replica run near 100% queues every request
#                                     behind others, so latency would no longer be the one measured
MIN_REPLICAS = 1                    # one machine always on: the first query of the day does not wait for a cold start
RUN_DEFAULT_USD_PER_HOUR = 0.085    # RunConfig's default; a run that set another price keeps it (as cost.py does)
BYTES_PER_PARAM = {"float32": 4, "bfloat16": 2, "float16": 2}

# kind -> (has an index to build, has training, can share a base model deployment with other strategies)
KINDS: dict[str, tuple[bool, bool, bool]] = {
    "prompting": (False, False, True),    # the base model as it is: shares it
    "rag": (True, False, True),           # base model + embedder + index
    "adapter": (False, True, True),       # LoRA / IA3 / other peft adapters load beside a shared base
    "adapter+rag": (True, True, True),
    "full": (False, True, False),         # its own merged copy of every weight: cannot share a base
    "full+rag": (True, True, False),
}


def moving_parts(kind: str) -> int:
    """0 for prompting, 1 for an index or a training step, 2 for both: what must be rebuilt and kept in step."""
    index, train, _ = _kind(kind)
    return int(index) + int(train)


def _kind(kind: str) -> tuple[bool, bool, bool]:
    if kind not in KINDS:
        raise ConfigError(f"unknown strategy kind {kind!r}; known: {', '.join(KINDS)}")
    return KINDS[kind]


# ----------------------------------------------------------------------------------------------
# The price table


@dataclass(frozen=True)
class Machine:
    """One machine type a strategy can be served and prepared on."""

    name: str
    usd_per_hour: float
    kind: str                          # cpu | gpu
    vcpus: int | None = None
    memory_gb: float | None = None     # RAM: what a cpu deployment's weights must fit in
    gpus: int | None = None
    gpu_memory_gb: float | None = None  # all GPUs of the machine together: what a gpu deployment must fit in

    @property
    def weights_capacity_bytes(self) -> float | None:
        gb = self.gpu_memory_gb if self.kind == "gpu" else self.memory_gb
        return None if gb is None else gb * 1024 ** 3


@dataclass(frozen=True)
class Hosted:
    """Per-token prices of a model answered by a provider (no machine of ours answers).

    serves: the strategy kinds the provider answers (None: every kind). `[prompting, rag]` prices the base
    model per token while fine-tuned strategies run on the measured machine (a provider that hosts only the
    base model; or a team that keeps its tuned weights in house)."""

    model: str
    input_usd_per_1m: float
    output_usd_per_1m: float
    serves: tuple[str, ...] | None = None

    def answers(self, kind: str) -> bool:
        return self.serves is None or kind in self.serves


@dataclass(frozen=True)
class PriceTable:
    machines: dict[str, Machine]
    default_machine: dict[str, str]    # environment kind (cpu | gpu) -> machine name
    hosted: dict[str, Hosted]
    source: str

    def machine(self, name: str) -> Machine:
        if name not in self.machines:
            raise ConfigError(f"{self.source}: no machine named {name!r}; known: {', '.join(sorted(self.machines))}")
        return self.machines[name]

    def measured_on(self, environment: Mapping | None = None, name: str | None = None,
                    run_usd_per_hour: float | None = None) -> Machine:
        """The machine a run's measurements stand for: `decision.measured_on` when set, else the table's
        default for the run's environment (gpu when it recorded one, else cpu). A legacy run whose config
        set `usd_per_hour` to other than 0.085 keeps that price on the default machine."""
        if name:
            return self.machine(name)
        kind = "gpu" if (environment or {}).get("gpu") else "cpu"
        if kind not in self.default_machine:
            raise ConfigError(f"{self.source}: default_machine has no {kind!r} entry; set decision.measured_on "
                              f"to one of {', '.join(sorted(self.machines))}")
        m = self.machine(self.default_machine[kind])
        if run_usd_per_hour is not None and run_usd_per_hour != RUN_DEFAULT_USD_PER_HOUR:
            return Machine(f"{m.name} at the run's price", float(run_usd_per_hour), m.kind, m.vcpus, m.memory_gb,
                           m.gpus, m.gpu_memory_gb)
        return m


def load_price_table(path: str | Path | None = None) -> PriceTable:
    """Read configs/prices.yaml (or `path`) with the project's hardened YAML loader; errors name file:line."""
    from harness.core.yamlio import read_yaml

    p = Path(path) if path else DEFAULT_PRICES
    data, where = read_yaml(p)
    return price_table(data or {}, str(p), where)


_MACHINE_KEYS = {"usd_per_hour": float, "kind": str, "vcpus": int, "memory_gb": float, "gpus": int,
                 "gpu_memory_gb": float}


def price_table(data: Mapping, source: str = "prices", where=None) -> PriceTable:
    """Validate a price table given as plain data (what the YAML holds). Also accepts the legacy table
    (`machines: {cpu: 0.085, gpu: 3.0}`, hosted prices per 1,000 tokens)."""
    def at(*keys: str) -> str:
        return where(*keys) if where else source

    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: a price table is a mapping with machines, default_machine and hosted")
    unknown = sorted(set(data) - {"machines", "default_machine", "hosted"}, key=str)
    if unknown:
        raise ConfigError(f"{at(str(unknown[0]))}: unknown key(s) {', '.join(map(repr, unknown))}; "
                          "known: default_machine, hosted, machines")
    raw_m, raw_h = data.get("machines") or {}, data.get("hosted") or {}
    raw_d = data.get("default_machine")
    for key, v in (("machines", raw_m), ("hosted", raw_h), ("default_machine", raw_d or {})):
        if not isinstance(v, Mapping):
            raise ConfigError(f"{at(key)}: '{key}' must be a mapping")
    machines = {name: _machine(name, entry, at) for name, entry in raw_m.items()}
    if raw_d is None:  # legacy tables name their machines by kind
        raw_d = {k: k for k in ("cpu", "gpu") if k in machines}
    default = {kind: _default_machine(kind, name, machines, at) for kind, name in raw_d.items()}
    hosted = {str(model): _hosted(model, entry, at) for model, entry in raw_h.items()}
    return PriceTable(machines, default, hosted, source)


def _machine(name, entry, at: Callable[..., str]) -> Machine:
    """One entry of machines: ({usd_per_hour, kind, ...}, or the legacy `cpu: 0.085`)."""
    w = at(f"machines.{name}", "machines")
    if not isinstance(name, str):
        raise ConfigError(f"{w}: machine names must be strings, got {name!r}")
    if not isinstance(entry, Mapping):  # legacy: `cpu: 0.085` is $/hour of a machine of that kind
        if name not in ("cpu", "gpu"):
            raise ConfigError(f"{w}: machines.{name} must map usd_per_hour, kind (cpu | gpu) and optionally "
                              "vcpus, memory_gb, gpus, gpu_memory_gb")
        return Machine(name, _number(entry, f"{w}: machines.{name}"), name)
    bad = sorted(set(entry) - set(_MACHINE_KEYS), key=str)
    if bad:
        raise ConfigError(f"{at(f'machines.{name}.{bad[0]}', f'machines.{name}')}: unknown key(s) "
                          f"{', '.join(map(repr, bad))} in machines.{name}; known: {', '.join(_MACHINE_KEYS)}")
    for req in ("usd_per_hour", "kind"):
        if req not in entry:
            raise ConfigError(f"{w}: machines.{name} needs '{req}'")
    kind = entry["kind"]
    if kind not in ("cpu", "gpu"):
        raise ConfigError(f"{at(f'machines.{name}.kind', w)}: machines.{name}.kind must be cpu or gpu, "
                          f"got {kind!r}")
    vals = {k: _number(v, f"{at(f'machines.{name}.{k}', w)}: machines.{name}.{k}", integer=_MACHINE_KEYS[k] is int)
            for k, v in entry.items() if k != "kind" and v is not None}
    return Machine(name=name, kind=kind, **vals)


def _default_machine(kind, name, machines: Mapping[str, Machine], at: Callable[..., str]) -> str:
    """One entry of default_machine: a machine of the table, of that kind."""
    w = at(f"default_machine.{kind}", "default_machine")
    if kind not in ("cpu", "gpu"):
        raise ConfigError(f"{w}: default_machine keys are cpu and gpu, got {kind!r}")
    if name not in machines:
        raise ConfigError(f"{w}: default_machine.{kind} names {name!r}, which is not in machines "
                          f"({', '.join(sorted(machines))})")
    if machines[name].kind != kind:
        raise ConfigError(f"{w}: default_machine.{kind} names {name!r}, a {machines[name].kind} machine")
    return name


def _hosted(model, entry, at: Callable[..., str]) -> Hosted:
    """One entry of hosted: $ per million tokens (or the legacy per 1,000), and the kinds it serves."""
    w = at(f"hosted.{model}", "hosted")
    keys = set(entry) if isinstance(entry, Mapping) else set()
    serves = None
    if "serves" in keys:
        raw_s = entry["serves"]
        ws = at(f"hosted.{model}.serves", w)
        if not isinstance(raw_s, list) or not raw_s or not all(isinstance(k, str) for k in raw_s):
            raise ConfigError(f"{ws}: hosted.{model}.serves must be a list of strategy kinds ({', '.join(KINDS)})")
        bad_kinds = [k for k in raw_s if k not in KINDS]
        if bad_kinds:
            raise ConfigError(f"{ws}: hosted.{model}.serves: unknown kind {bad_kinds[0]!r}; "
                              f"known: {', '.join(KINDS)}")
        serves = tuple(raw_s)
        keys = keys - {"serves"}
    if keys == {"input_per_1m", "output_per_1m"}:
        return Hosted(str(model), _number(entry["input_per_1m"], f"{w}: hosted.{model}.input_per_1m"),
                      _number(entry["output_per_1m"], f"{w}: hosted.{model}.output_per_1m"), serves)
    if keys and keys <= {"prompt_per_1k", "output_per_1k"}:  # legacy: $ per 1,000 tokens
        return Hosted(str(model), 1000 * _number(entry.get("prompt_per_1k", 0), f"{w}: hosted.{model}.prompt_per_1k"),
                      1000 * _number(entry.get("output_per_1k", 0), f"{w}: hosted.{model}.output_per_1k"), serves)
    raise ConfigError(f"{w}: hosted.{model} must map input_per_1m and output_per_1m to $ per million tokens "
                      "(and optionally serves: a list of strategy kinds)")


def _number(value, where: str, integer: bool = False) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{where} must be a number >= 0, got {value!r}")
    if integer:
        if value != int(value):
            raise ConfigError(f"{where} must be a whole number, got {value!r}")
        return int(value)
    return float(value)


# ----------------------------------------------------------------------------------------------
# Measured facts and deployments


@dataclass(frozen=True)
class Facts:
    """What the run measured about one strategy (all on the `measured_on` machine).

    kind: prompting | rag | adapter | adapter+rag | full | full+rag.
    base_bytes: the base model's weights. artifact_bytes: the adapter (adapter kinds) or the trained
    weights (full kinds: the deployment holds a merged copy of base_bytes, whatever was saved).
    index_bytes / embedder_bytes: the retrieval index and the embedding model (rag kinds).
    queries_per_s: answering throughput of one replica at the run's batch size (queries / answer wall
    seconds), not 1 / latency. prepare_s: one-time machine seconds (training and/or indexing, including
    a training reused from another strategy). refresh_s: machine seconds a knowledge refresh takes
    (None: prepare_s, the whole preparation again). prompt_tokens / output_tokens: means per query
    (priced for hosted models). retrieval_queries_per_s: retrieval throughput alone, for pricing the
    retrieval machine of a hosted RAG (None: not measured).
    """

    name: str
    kind: str
    base_bytes: int | None = None
    artifact_bytes: int = 0
    index_bytes: int = 0
    embedder_bytes: int = 0
    queries_per_s: float | None = None
    batch_size: int | None = None
    prepare_s: float = 0.0
    refresh_s: float | None = None
    prompt_tokens: float | None = None
    output_tokens: float | None = None
    retrieval_queries_per_s: float | None = None

    def __post_init__(self):
        _kind(self.kind)
        for k in ("base_bytes", "artifact_bytes", "index_bytes", "embedder_bytes", "queries_per_s", "prepare_s",
                  "refresh_s", "prompt_tokens", "output_tokens", "retrieval_queries_per_s", "batch_size"):
            v = getattr(self, k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                                  or v < 0):
                raise ConfigError(f"{self.name}: {k} must be a number >= 0 or None, got {v!r}")

    @classmethod
    def of(cls, value: Facts | Mapping) -> Facts:
        if isinstance(value, Facts):
            return value
        return from_fields(cls, value, "unknown fact(s)")

    @property
    def refresh_seconds(self) -> float:
        index, train, _ = _kind(self.kind)
        if not (index or train):
            return 0.0  # prompting has nothing to rebuild when the documents change
        return self.prepare_s if self.refresh_s is None else self.refresh_s

    @property
    def moving_parts(self) -> int:
        return moving_parts(self.kind)


@dataclass(frozen=True)
class Deployment:
    """What one serving replica must hold. own_weights_bytes: full fine-tunes' merged copies (nothing shared)."""

    strategies: tuple[str, ...]
    base_bytes: int | None
    own_weights_bytes: int | None
    adapter_bytes: int
    embedder_bytes: int
    index_bytes: int
    total_bytes: int | None          # None: a size was not recorded
    shares_base: bool
    machine: str | None = None
    capacity_bytes: float | None = None
    fits: bool | None = None         # None: the machine's memory or a size is unknown
    note: str = "weights, adapters, embedder and index only: KV cache and activations need more"


def deployment(facts: Iterable[Facts | Mapping] | Facts | Mapping, machine: Machine | None = None,
               hosted: bool = False) -> Deployment:
    """What one replica holds for one strategy, or for several sharing one base model.

    Strategies that can share a base (prompting, rag, adapters) hold the base once, every adapter, one
    embedder (the largest recorded) and every index; a full fine-tune holds its own merged copy and can
    share with nothing else. hosted: the provider holds the model; we hold only embedder and index.
    """
    group = [Facts.of(f) for f in ([facts] if isinstance(facts, (Facts, Mapping)) else facts)]
    if not group:
        raise ValueError("a deployment needs at least one strategy")
    full = [f for f in group if not _kind(f.kind)[2]]
    if full and len(group) > 1:
        raise ConfigError(f"{full[0].name} is a full fine-tune: it holds its own weights and cannot share a base "
                          f"deployment with {', '.join(f.name for f in group if f is not full[0])}")
    bases = {f.base_bytes for f in group}
    if len(bases) > 1:
        raise ConfigError(f"{', '.join(f.name for f in group)} do not share one base model (base sizes "
                          f"{', '.join(str(b) for b in sorted(bases, key=str))} bytes)")
    rag = [f for f in group if _kind(f.kind)[0]]
    embedder = max((f.embedder_bytes for f in rag), default=0)
    index = sum(f.index_bytes for f in rag)
    if hosted:  # the provider holds the model and any tuned weights
        base, own, adapters = 0, 0, 0
        total = embedder + index
    else:
        weights = group[0].base_bytes
        base, own = (0, weights) if full else (weights, 0)  # a full fine-tune's merged copy replaces the base
        adapters = sum(f.artifact_bytes for f in group if _kind(f.kind)[1] and _kind(f.kind)[2])
        total = None if weights is None else weights + adapters + embedder + index
    cap = machine.weights_capacity_bytes if machine else None
    fits = None if cap is None or total is None else total <= cap
    return Deployment(tuple(f.name for f in group), base, own, adapters, embedder, index, total,
                      shares_base=not full, machine=machine.name if machine else None, capacity_bytes=cap, fits=fits)


# ----------------------------------------------------------------------------------------------
# The cost formulas


@dataclass(frozen=True)
class Capacity:
    """capacity $ = max(min_replicas * H * P, busy_hours / target_utilization * P)."""

    usd_per_hour: float
    monthly_queries: float
    queries_per_s: float
    min_replicas: float
    target_utilization: float
    hours_per_month: float
    busy_hours: float                 # Q / (3600 T)
    replicas: float                   # month average: max(min_replicas, busy_hours / (H u))
    floor_usd: float                  # min_replicas * H * P
    load_usd: float                   # busy_hours / u * P
    usd: float                        # max(floor_usd, load_usd)
    bound: str                        # "floor" (min_replicas decide) or "load" (the volume decides)


def capacity_cost(queries_per_s: float, usd_per_hour: float, monthly_queries: float, *,
                  min_replicas: float = MIN_REPLICAS, target_utilization: float = TARGET_UTILIZATION,
                  hours_per_month: float = HOURS_PER_MONTH) -> Capacity:
    """Machine cost a month of answering `monthly_queries` at a measured throughput of one replica."""
    if not queries_per_s or queries_per_s <= 0:
        raise ValueError("capacity needs a measured throughput > 0 queries/s")
    if not 0 < target_utilization <= 1:
        raise ValueError(f"target_utilization must be in (0, 1], got {target_utilization}")
    busy = monthly_queries / (3600.0 * queries_per_s)
    floor = min_replicas * hours_per_month * usd_per_hour
    load = busy / target_utilization * usd_per_hour
    replicas = max(min_replicas, busy / (hours_per_month * target_utilization))
    return Capacity(usd_per_hour, monthly_queries, queries_per_s, min_replicas, target_utilization, hours_per_month,
                    busy, replicas, floor, load, max(floor, load), "load" if load > floor else "floor")


@dataclass(frozen=True)
class Tokens:
    """hosted $ = Q * (prompt_tokens * input_per_1M + output_tokens * output_per_1M) / 1e6."""

    model: str
    monthly_queries: float
    prompt_tokens: float
    output_tokens: float
    input_usd_per_1m: float
    output_usd_per_1m: float
    per_query_usd: float
    usd: float


def token_cost(prompt_tokens: float, output_tokens: float, hosted: Hosted, monthly_queries: float) -> Tokens:
    per_q = (prompt_tokens * hosted.input_usd_per_1m + output_tokens * hosted.output_usd_per_1m) / 1e6
    return Tokens(hosted.model, monthly_queries, prompt_tokens, output_tokens, hosted.input_usd_per_1m,
                  hosted.output_usd_per_1m, per_q, per_q * monthly_queries)


def refreshes_per_month(refresh_days: float | None) -> float:
    """(365.25 / 12) / refresh_days; null or 0: never refreshed."""
    return DAYS_PER_MONTH / refresh_days if refresh_days else 0.0


@dataclass(frozen=True)
class Refresh:
    """refresh $ = refreshes_per_month * refresh_seconds / 3600 * P."""

    refresh_days: float | None
    per_month: float
    seconds: float
    usd_per_hour: float
    each_usd: float
    usd: float


def refresh_cost(refresh_seconds: float, usd_per_hour: float, refresh_days: float | None) -> Refresh:
    n = refreshes_per_month(refresh_days)
    each = refresh_seconds / 3600.0 * usd_per_hour
    return Refresh(refresh_days, n, refresh_seconds, usd_per_hour, each, n * each)


def cost_per_correct(monthly_usd: float, monthly_queries: float, accuracy: float | None) -> float | None:
    """monthly $ / (Q * accuracy): None when Q is 0 or accuracy unknown, inf when accuracy is 0."""
    if accuracy is None or not monthly_queries:
        return None
    if accuracy <= 0:
        return math.inf
    return monthly_usd / (monthly_queries * accuracy)


@dataclass(frozen=True)
class Load:
    """The decision inputs the cost model reads (the run's `decision:` block)."""

    monthly_queries: float = 100_000
    refresh_days: float | None = 30
    min_replicas: float = MIN_REPLICAS
    target_utilization: float = TARGET_UTILIZATION
    hours_per_month: float = HOURS_PER_MONTH

    @classmethod
    def of(cls, value: Load | Mapping | Any | None = None, **overrides) -> Load:
        """From a Load, a dict, or any object with these attributes (a DecisionConfig); unknown keys ignored."""
        names = cls.__dataclass_fields__
        if value is None:
            base = {}
        elif isinstance(value, Mapping):
            base = {k: v for k, v in value.items() if k in names}
        else:
            base = {k: getattr(value, k) for k in names if hasattr(value, k)}
        return cls(**{**base, **overrides})


@dataclass(frozen=True)
class MonthlyCost:
    """One strategy's month, with every formula input kept. answering is Capacity (our machines) or Tokens
    (hosted); retrieval: the machine for a hosted RAG's embedder and index (None otherwise)."""

    strategy: str
    machine: str
    usd_per_hour: float
    load: Load
    answering: Capacity | Tokens | None
    retrieval: Capacity | None
    refresh: Refresh
    one_time_usd: float              # the first preparation: prepare_s / 3600 * P
    total_usd: float | None          # None: a needed measurement is missing (see missing)
    per_query_usd: float | None
    accuracy: float | None
    per_correct_usd: float | None
    deployment: Deployment | None = None
    missing: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def monthly_cost(facts: Facts | Mapping, machine: Machine, load: Load | Mapping | None = None, *,
                 hosted: Hosted | None = None, accuracy: float | None = None,
                 usd_per_hour_scale: float = 1.0, unpriced: str | None = None) -> MonthlyCost:
    """One strategy priced alone on its own deployment (see shared_cost for several on one base).

    hosted: the provider's token prices when the run's model is hosted (answering costs tokens, not
    machine time; training and indexing still cost machine time). usd_per_hour_scale multiplies the
    machine price (for "what price would change the answer"). unpriced: why answering has no price
    (a model answered by an endpoint with no hosted price: its throughput is not our machine's)."""
    f, ld = Facts.of(facts), Load.of(load)
    P = machine.usd_per_hour * usd_per_hour_scale
    refresh = refresh_cost(f.refresh_seconds, P, ld.refresh_days)
    answering: Capacity | Tokens | None = None
    retrieval = None
    missing = None
    if unpriced:
        missing = unpriced
    elif hosted is not None:
        if f.prompt_tokens is None or f.output_tokens is None:
            missing = "token counts (prompt and output tokens per query) were not recorded"
        else:
            answering = token_cost(f.prompt_tokens, f.output_tokens, hosted, ld.monthly_queries)
        if _kind(f.kind)[0]:
            if f.retrieval_queries_per_s:
                retrieval = capacity_cost(f.retrieval_queries_per_s, P, ld.monthly_queries,
                                          min_replicas=ld.min_replicas, target_utilization=ld.target_utilization,
                                          hours_per_month=ld.hours_per_month)
            else:
                missing = missing or "retrieval throughput was not recorded, so the retrieval machine is not priced"
    elif f.queries_per_s:
        answering = capacity_cost(f.queries_per_s, P, ld.monthly_queries, min_replicas=ld.min_replicas,
                                  target_utilization=ld.target_utilization, hours_per_month=ld.hours_per_month)
    else:
        missing = "throughput (queries answered / answer wall seconds) was not recorded"
    total = None
    if answering is not None and not unpriced and not (hosted is not None and _kind(f.kind)[0] and retrieval is None):
        total = answering.usd + (retrieval.usd if retrieval else 0.0) + refresh.usd
    per_q = total / ld.monthly_queries if total is not None and ld.monthly_queries else None
    per_c = cost_per_correct(total, ld.monthly_queries, accuracy) if total is not None else None
    return MonthlyCost(f.name, machine.name, P, ld, answering, retrieval, refresh, f.prepare_s / 3600.0 * P,
                       total, per_q, accuracy, per_c, deployment(f, machine, hosted is not None or bool(unpriced)),
                       missing)


@dataclass(frozen=True)
class SharedCost:
    """Several strategies answering from one base deployment (one pool of replicas, base held once).

    The pool is sized for the sum of their busy hours: capacity $ = max(r H P, sum_i B_i / u * P).
    Attribution: each strategy carries the pool's capacity $ in proportion to its busy hours
    (equal shares when nobody is busy), plus its own refresh $. `alone_usd` is what each would cost
    on its own deployment, and `saving_usd` the sum of those less the pool's total: what sharing saves
    (the floor of replicas is paid once instead of once per strategy)."""

    strategies: tuple[str, ...]
    capacity: Capacity
    refresh_usd: dict[str, float]
    attributed_usd: dict[str, float]
    busy_share: dict[str, float]
    total_usd: float
    alone_usd: dict[str, float | None]
    saving_usd: float | None
    deployment: Deployment


def shared_cost(group: Iterable[Facts | Mapping], machine: Machine, load: Load | Mapping | None = None,
                monthly_queries: Mapping[str, float] | None = None) -> SharedCost:
    """Price strategies that share a base model together. monthly_queries: each one's own volume
    (default: load.monthly_queries each, e.g. one adapter per team, each with the full traffic)."""
    facts, ld = [Facts.of(f) for f in group], Load.of(load)
    dep = deployment(facts, machine)  # raises when a full fine-tune is in a group or the bases differ
    vol = {f.name: (monthly_queries or {}).get(f.name, ld.monthly_queries) for f in facts}
    for f in facts:
        if not f.queries_per_s:
            raise ValueError(f"{f.name}: no measured throughput, cannot size a shared pool")
    busy = {f.name: vol[f.name] / (3600.0 * f.queries_per_s) for f in facts}
    total_busy = sum(busy.values())
    P = machine.usd_per_hour
    # one pool: its "throughput" is the one that gives the summed busy hours for the summed volume
    q_total = sum(vol.values())
    qps = q_total / (3600.0 * total_busy) if total_busy else max(f.queries_per_s for f in facts)
    cap = capacity_cost(qps, P, q_total, min_replicas=ld.min_replicas, target_utilization=ld.target_utilization,
                        hours_per_month=ld.hours_per_month)
    share = {n: (b / total_busy if total_busy else 1 / len(facts)) for n, b in busy.items()}
    refresh = {f.name: refresh_cost(f.refresh_seconds, P, ld.refresh_days).usd for f in facts}
    attributed = {n: cap.usd * share[n] + refresh[n] for n in share}
    total = cap.usd + sum(refresh.values())
    alone = {f.name: monthly_cost(f, machine, Load.of(ld, monthly_queries=vol[f.name])).total_usd for f in facts}
    saving = sum(alone.values()) - total if all(v is not None for v in alone.values()) else None
    return SharedCost(tuple(f.name for f in facts), cap, refresh, attributed, share, total, alone, saving, dep)


# ----------------------------------------------------------------------------------------------
# Cost as a function of volume: break-even


@dataclass(frozen=True)
class CostCurve:
    """monthly $(Q) = fixed_usd + per_query_usd * Q + sum over terms of max(floor_usd, usd_per_query * Q)."""

    strategy: str
    fixed_usd: float
    per_query_usd: float
    terms: tuple[tuple[float, float], ...]   # (floor_usd, usd_per_query) of each capacity pool

    def at(self, q: float) -> float:
        return self.fixed_usd + self.per_query_usd * q + sum(max(fl, s * q) for fl, s in self.terms)

    def kinks(self) -> list[float]:
        return [fl / s for fl, s in self.terms if s > 0 and fl > 0]

    def slope(self, q: float) -> float:
        """dC/dQ at a q that is not a kink."""
        return self.per_query_usd + sum(s for fl, s in self.terms if s * q > fl)


def cost_curve(facts: Facts | Mapping, machine: Machine, load: Load | Mapping | None = None, *,
               hosted: Hosted | None = None) -> CostCurve:
    """The monthly cost of monthly_cost() as a function of the volume, every other input held."""
    f, ld = Facts.of(facts), Load.of(load)
    P = machine.usd_per_hour
    fixed = refresh_cost(f.refresh_seconds, P, ld.refresh_days).usd

    def term(qps: float) -> tuple[float, float]:
        return (ld.min_replicas * ld.hours_per_month * P, P / (3600.0 * qps * ld.target_utilization))

    if hosted is not None:
        if f.prompt_tokens is None or f.output_tokens is None:
            raise ValueError(f"{f.name}: no token counts to price a hosted model")
        per_q = token_cost(f.prompt_tokens, f.output_tokens, hosted, 1).per_query_usd
        terms = (term(f.retrieval_queries_per_s),) if _kind(f.kind)[0] and f.retrieval_queries_per_s else ()
        return CostCurve(f.name, fixed, per_q, terms)
    if not f.queries_per_s:
        raise ValueError(f"{f.name}: no measured throughput")
    return CostCurve(f.name, fixed, 0.0, (term(f.queries_per_s),))


@dataclass(frozen=True)
class Crossing:
    """At monthly_queries the two cost the same (usd); below it `cheaper_below` costs less, above it `cheaper_above`."""

    monthly_queries: float
    usd: float
    cheaper_below: str
    cheaper_above: str


def break_even(a: CostCurve, b: CostCurve) -> list[Crossing]:
    """Every monthly volume > 0 where the cheaper of a and b changes. Exact: both curves are piecewise
    linear in Q with kinks where a pool's load passes its floor, so the difference is linear between
    the sorted kinks and each piece is solved in closed form. Empty: one is never dearer, or they are
    equal everywhere."""
    def diff(q: float) -> float:
        return a.at(q) - b.at(q)

    points = sorted({0.0, *a.kinks(), *b.kinks()})
    roots: list[float] = []
    for i, lo in enumerate(points):
        hi = points[i + 1] if i + 1 < len(points) else math.inf
        mid = (lo + hi) / 2 if hi < math.inf else 2 * lo + 1
        s = a.slope(mid) - b.slope(mid)  # linear inside the piece: its slope anywhere inside it
        d0 = diff(lo)
        if s == 0:
            continue
        q = lo - d0 / s
        if lo <= q <= hi and q > 0:
            roots.append(q)
    out: list[Crossing] = []
    for q in sorted(set(roots)):
        eps = max(q * 1e-9, 1e-9)
        below, above = diff(max(q - eps, 0.0)), diff(q + eps)
        if below == 0 or above == 0 or (below > 0) == (above > 0):
            continue  # touches without changing sides
        if out and math.isclose(out[-1].monthly_queries, q, rel_tol=1e-9):
            continue
        out.append(Crossing(q, a.at(q), a.strategy if below < 0 else b.strategy,
                            a.strategy if above < 0 else b.strategy))
    return out


@dataclass(frozen=True)
class Region:
    """A range of monthly volumes [low, high) (high None: no end) over which `cheaper` costs less than the other
    by more than the tolerance (None: within the tolerance of each other, so the decision counts them as equal)."""

    low: float
    high: float | None
    cheaper: str | None


def _scaled(c: CostCurve, k: float) -> CostCurve:
    return CostCurve(c.strategy + " x k", c.fixed_usd * k, c.per_query_usd * k,
                     tuple((fl * k, s * k) for fl, s in c.terms))


def apart(a: CostCurve, b: CostCurve, tolerance: float) -> list[Region]:
    """The volumes at which a and b are more than `tolerance` apart (a cheaper when (1 + t) a < b), and where
    they count as equal: the break-even that the decision rule sees. Exact, like break_even: the region borders
    are the roots of a = (1 + t) b and b = (1 + t) a."""
    k = 1.0 + tolerance
    points = sorted({0.0, *(x.monthly_queries for x in break_even(a, _scaled(b, k))),
                     *(x.monthly_queries for x in break_even(b, _scaled(a, k)))})
    out: list[Region] = []
    for i, lo in enumerate(points):
        hi = points[i + 1] if i + 1 < len(points) else None
        mid = (math.sqrt(lo * hi) if lo > 0 else hi / 2) if hi is not None else 2 * lo + 1
        ca, cb = a.at(mid), b.at(mid)
        cheaper = a.strategy if ca * k < cb else b.strategy if cb * k < ca else None
        if out and out[-1].cheaper == cheaper:
            out[-1] = Region(out[-1].low, hi, cheaper)
        else:
            out.append(Region(lo, hi, cheaper))
    return out


SAME_USD = 0.005  # half a cent a month: the report prints cents, so a constant difference below it reads as none


@dataclass(frozen=True)
class Side:
    """A range of monthly volumes [low, high) (high None: no end) over which `cheaper` costs less than the other.
    cheaper None: over the whole range the two cost the same (their difference is constant and under half a
    cent a month), because `same` is "floor" (both pay only their always-on floor) or "per query" (both add
    the same $ a query)."""

    low: float
    high: float | None
    cheaper: str | None
    same: str | None = None


def sides(a: CostCurve, b: CostCurve, same_usd: float = SAME_USD) -> list[Side]:
    """Which of a and b is cheaper at every monthly volume from 0 on, as consecutive ranges: the reader's
    break-even. Between two ranges where each is cheaper lies a crossing of break_even(), at its volume. A range
    of the same cost is one where neither curve's slope differs from the other's (both at the always-on floor,
    or the same $ per query) and the costs are within `same_usd`: two strategies on one machine's floor cost
    the same until one of them needs more than the floor. A crossing that only undoes a difference under
    `same_usd` right next to such a range (a refresh a tenth of a cent dearer, overtaken a few queries past the
    floor) is no change a reader could see: the range's far side goes to whoever is cheaper past it."""
    def diff(q: float) -> float:
        return a.at(q) - b.at(q)

    cuts = sorted({0.0, *a.kinks(), *b.kinks(), *(x.monthly_queries for x in break_even(a, b))})
    out: list[Side] = []
    for i, lo in enumerate(cuts):   # diff is linear inside each: a kink or a crossing at every border
        hi = cuts[i + 1] if i + 1 < len(cuts) else None
        mid = (lo + hi) / 2 if hi is not None else 2 * lo + 1
        sa, sb, d = a.slope(mid), b.slope(mid), diff(mid)
        if math.isclose(sa, sb, rel_tol=1e-9) and abs(d) < same_usd:
            out.append(Side(lo, hi, None, "floor" if sa == 0 and sb == 0 else "per query"))
        else:
            out.append(Side(lo, hi, a.strategy if d < 0 else b.strategy))

    def faint(s: Side) -> bool:  # within same_usd over the whole range (diff is linear on it)
        return s.high is not None and abs(diff(s.low)) < same_usd and abs(diff(s.high)) < same_usd

    for order in (list(range(len(out))), list(range(len(out) - 1, -1, -1))):  # past a same range, and before it
        for k, i in enumerate(order):
            if out[i].cheaper is not None:
                continue
            run = []
            for j in order[k + 1:]:
                if out[j].cheaper is None or not faint(out[j]) or (run and out[j].cheaper != out[run[0]].cheaper):
                    break
                run.append(j)
            after = order[k + 1 + len(run)] if k + 1 + len(run) < len(order) else None
            if run and after is not None and out[after].cheaper not in (None, out[run[0]].cheaper):
                for j in run:
                    out[j] = Side(out[j].low, out[j].high, out[after].cheaper)
    merged: list[Side] = []
    for s in out:
        if merged and (merged[-1].cheaper, merged[-1].same) == (s.cheaper, s.same):
            merged[-1] = Side(merged[-1].low, s.high, s.cheaper, s.same)
        else:
            merged.append(s)
    return merged


# ----------------------------------------------------------------------------------------------
# From a run's record


def run_models(results: Mapping) -> dict[str, dict]:
    """label -> the record of each model of a run: results.models, or for a run made before several
    models could be compared, its one results.model under its name."""
    models = results.get("models")
    if isinstance(models, Mapping) and models:
        return {str(k): dict(v) for k, v in models.items() if isinstance(v, Mapping)}
    m = results.get("model") or {}
    label = m.get("label") or m.get("name") or (results.get("config") or {}).get("model") or "model"
    return {str(label): {"label": label, "backend": "local", **m}}


def default_model(results: Mapping) -> str:
    m = results.get("model") or {}
    return str(m.get("label") or m.get("name") or next(iter(run_models(results))))


def cell_model(cell: Mapping, results: Mapping) -> tuple[str, dict]:
    """The label and record of the model a cell ran on (its `model`, else the run's default)."""
    label = str(cell.get("model") or default_model(results))
    return label, run_models(results).get(label) or {"label": label, "name": label}


def is_served(record: Mapping) -> bool:
    """The model answered through an OpenAI-compatible endpoint (not on the run's machine)."""
    return record.get("backend") == "openai"


def hosted_price(table: "PriceTable", record: Mapping, label: str | None = None) -> Hosted | None:
    """A model's hosted: entry in the price table: by its name (the served name, or the local
    reference), else by the run's label for it."""
    for key in (record.get("name"), label or record.get("label")):
        if key is not None and str(key) in table.hosted:
            return table.hosted[str(key)]
    return None


def base_model_bytes(results: Mapping, model: str | None = None) -> int | None:
    """The base model's weight bytes: the model's record weights_bytes when recorded, else the largest
    total_params of its cells times the bytes of its dtype. None when neither is recorded.
    model: a label of results.models (None: the run's default model)."""
    label = model or default_model(results)
    m = run_models(results).get(label) or results.get("model") or {}
    if isinstance(m.get("weights_bytes"), int):
        return m["weights_bytes"]
    params = [(c.get("prepare") or {}).get("total_params") for c in results.get("cells") or []
              if cell_model(c, results)[0] == label]
    params = [p for p in params if isinstance(p, int)]
    dtype = m.get("dtype") or (results.get("environment") or {}).get("dtype")
    if not params or dtype not in BYTES_PER_PARAM:
        return None
    return max(params) * BYTES_PER_PARAM[dtype]


def strategy_kind(prepare: Mapping) -> str:
    """prompting | rag | adapter | adapter+rag | full | full+rag from a cell's prepare record:
    trained when it has steps or reused another strategy's training; an adapter when it names a
    peft_type; indexed when it has chunks."""
    trained = bool(prepare.get("steps")) or bool(prepare.get("training_reused_from"))
    indexed = bool(prepare.get("chunks"))
    base = ("adapter" if prepare.get("peft_type") else "full") if trained else None
    if base and indexed:
        return base + "+rag"
    return base or ("rag" if indexed else "prompting")


def facts_from_cell(cell: Mapping, results: Mapping, *, embedder_bytes: int = 0) -> Facts | None:
    """The measured facts of one ok cell of results.json (None for a failed or unmeasured cell).

    Fields read: prepare.wall_s (+ the donor cell's prepare.wall_s when training_reused_from names one,
    same benchmark and seed; + prepare.index.index_seconds when the index came from the stage cache),
    prepare.steps / peft_type / chunks (kind), prepare.artifact_bytes,
    prepare.index (rag: the whole artifact is the index), answer.queries / answer.wall_s (throughput),
    answer.prompt_tokens_mean / output_tokens_mean, answer.retrieval_p50_s, config.batch_size; and when
    recorded, answer.queries_per_s and deployment.{base_bytes, adapter_bytes, index_bytes, embedder_bytes}.
    embedder_bytes: used when the record has no deployment.embedder_bytes."""
    if cell.get("status") != "ok" or "prepare" not in cell:
        return None
    prep, ans = cell["prepare"], cell.get("answer") or {}
    kind = strategy_kind(prep)
    seconds = prep.get("wall_s") or 0.0
    donor = prep.get("training_reused_from")
    if donor:
        src = next((c for c in results.get("cells") or [] if c.get("strategy") == donor
                    and c.get("benchmark") == cell.get("benchmark") and c.get("seed") == cell.get("seed")
                    and c.get("status") == "ok"), None)
        seconds += ((src or {}).get("prepare") or {}).get("wall_s") or 0.0
    index = prep.get("index") if isinstance(prep.get("index"), Mapping) else {}
    if index.get("cached") and isinstance(index.get("index_seconds"), (int, float)):
        seconds += index["index_seconds"]  # an index another cell (or run) built: this deployment builds its own
    artifact = prep.get("artifact_bytes") or 0
    index_b = adapter_b = 0
    if kind == "rag":
        index_b = artifact
    elif kind.endswith("+rag"):
        donor_bytes = None
        if donor:
            src = next((c for c in results.get("cells") or [] if c.get("strategy") == donor
                        and c.get("seed") == cell.get("seed") and c.get("benchmark") == cell.get("benchmark")), None)
            donor_bytes = ((src or {}).get("prepare") or {}).get("artifact_bytes")
        adapter_b = donor_bytes if donor_bytes is not None else artifact
        index_b = max(artifact - adapter_b, 0)
    else:
        adapter_b = artifact
    qps = ans.get("queries_per_s") or (ans["queries"] / ans["wall_s"] if ans.get("queries") and ans.get("wall_s")
                                       else None)
    ret = ans.get("retrieval_p50_s")
    label, record = cell_model(cell, results)
    base_b = None if is_served(record) else base_model_bytes(results, label)
    embed_b = embedder_bytes if kind in ("rag", "adapter+rag", "full+rag") else 0
    dep = cell.get("deployment")
    if isinstance(dep, Mapping):  # measured bytes of what the deployment holds, when the run recorded them

        def size(*keys):
            return next((dep[k] for k in keys if isinstance(dep.get(k), int) and not isinstance(dep.get(k), bool)),
                        None)

        if kind.startswith("full"):  # its own copy of every weight (the record's base_bytes is 0: it holds no base)
            base_b = size("own_weights_bytes") or base_b
        else:
            base_b = size("base_bytes") if size("base_bytes") is not None else base_b
        adapter_b = size("adapter_bytes", "artifact_bytes") if size("adapter_bytes", "artifact_bytes") is not None \
            else adapter_b
        index_b = size("index_bytes") if size("index_bytes") is not None else index_b
        embed_b = size("embedder_bytes") if size("embedder_bytes") is not None else embed_b
    return Facts(name=cell["strategy"], kind=kind, base_bytes=base_b, artifact_bytes=adapter_b,
                 index_bytes=index_b, embedder_bytes=embed_b,
                 queries_per_s=qps, batch_size=(results.get("config") or {}).get("batch_size"), prepare_s=seconds,
                 prompt_tokens=ans.get("prompt_tokens_mean"), output_tokens=ans.get("output_tokens_mean"),
                 retrieval_queries_per_s=(1.0 / ret) if ret else None)


def usd(x: float) -> str:
    """$1,234.56 from a dollar up (and $0.00); three significant digits below a dollar ($0.000621)."""
    if x >= 1 or x == 0:
        return f"${x:,.2f}"
    return f"${x:.{max(4, 2 - math.floor(math.log10(x)))}f}"  # three significant digits below a dollar


def describe(c: MonthlyCost) -> list[str]:
    """Plain sentences giving each figure of c with the inputs it comes from (for the report)."""
    ld = c.load
    out = []
    a = c.answering
    if isinstance(a, Capacity):
        out.append(f"Answering: {ld.monthly_queries:,.0f} queries at {a.queries_per_s:.3g} queries/s per replica "
                   f"= {a.busy_hours:,.2f} busy hours; at {a.target_utilization:.0%} target utilization that is "
                   f"{a.busy_hours / a.target_utilization:,.2f} machine-hours ({usd(a.load_usd)}) against a floor of "
                   f"{a.min_replicas:g} replica(s) x {a.hours_per_month:g} h ({usd(a.floor_usd)}) on {c.machine} at "
                   f"${c.usd_per_hour:g}/h: {usd(a.usd)} ({a.replicas:.3g} replica(s) on average, "
                   f"{'the volume' if a.bound == 'load' else 'the floor'} decides).")
    elif isinstance(a, Tokens):
        out.append(f"Answering (hosted {a.model}): {ld.monthly_queries:,.0f} queries x ({a.prompt_tokens:,.1f} prompt "
                   f"tokens x ${a.input_usd_per_1m:g}/1M + {a.output_tokens:,.1f} output tokens x "
                   f"${a.output_usd_per_1m:g}/1M) = {usd(a.usd)}.")
    if c.retrieval is not None:
        r = c.retrieval
        out.append(f"Retrieval machine: {r.busy_hours:,.2f} busy hours at {r.queries_per_s:.3g} queries/s: "
                   f"{usd(r.usd)}.")
    rf = c.refresh
    if rf.per_month and rf.seconds:
        out.append(f"Refresh: every {rf.refresh_days:g} day(s) = {rf.per_month:.2f} a month x {rf.seconds:,.0f} s x "
                   f"${rf.usd_per_hour:g}/h = {usd(rf.usd)}.")
    if c.total_usd is None:
        out.append(f"No monthly total: {c.missing}.")
    else:
        pc = ("infinite (no correct answers)" if c.per_correct_usd == math.inf else
              usd(c.per_correct_usd) if c.per_correct_usd is not None else "not computed (accuracy not given)")
        pq = usd(c.per_query_usd) if c.per_query_usd is not None else "not computed (no queries)"
        out.append(f"Monthly {usd(c.total_usd)}; per query {pq}; per correct answer {pc}.")
    return out
