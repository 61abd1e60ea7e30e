"""Prices and break-even: what each strategy costs at a query volume and a knowledge-refresh interval.

Every figure is a measured quantity (wall seconds to prepare and to answer, tokens) times a price
from the price table (configs/prices.yaml), so a run can be re-priced without rerunning it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import ConfigError

RUN_DEFAULT_USD_PER_HOUR = 0.085  # RunConfig's default; a run that set another price keeps it
DAYS_PER_MONTH = 365.25 / 12


def load_prices(path: str | Path | None = None) -> dict:
    """The price table as {"machines": {kind: $/hour}, "hosted": {model: {prompt_per_1k, output_per_1k}},
    "source"}, read (hardened YAML, file:line errors) by the serving cost model."""
    from harness.analysis import serving

    return serving.legacy_prices(serving.load_price_table(path))


def _price(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{where} must be a price >= 0, got {value!r}")
    return float(value)


def machine_price(results: dict, prices: dict) -> tuple[float, str]:
    """$/hour of the machine the run used, and its kind."""
    kind = "gpu" if results.get("environment", {}).get("gpu") else "cpu"
    chosen = results.get("config", {}).get("usd_per_hour")
    if chosen is not None and chosen != RUN_DEFAULT_USD_PER_HOUR:
        return float(chosen), kind
    if kind not in prices["machines"]:
        raise ConfigError(f"{prices['source']}: no price for machine kind {kind!r}")
    return float(prices["machines"][kind]), kind


@dataclass(frozen=True)
class Costs:
    """One strategy's costs in $. refresh_usd: what a knowledge refresh costs (redo the preparation)."""

    strategy: str
    one_time_usd: float
    per_query_usd: float | None
    refresh_usd: float
    refresh_kind: str

    def total(self, queries: float) -> float:
        return self.one_time_usd + (self.per_query_usd or 0.0) * queries

    def monthly(self, monthly_queries: float, refresh_days: float | None) -> float:
        return refreshes_per_month(refresh_days) * self.refresh_usd + (self.per_query_usd or 0.0) * monthly_queries


def refreshes_per_month(refresh_days: float | None) -> float:
    return DAYS_PER_MONTH / refresh_days if refresh_days else 0.0


def _refresh_kind(prep: dict) -> str:
    trained = bool(prep.get("steps")) or bool(prep.get("training_reused_from"))
    indexed = bool(prep.get("chunks"))
    if trained and indexed:
        return "re-train + re-index"
    return "re-train" if trained else "re-index" if indexed else "none"


def cell_costs(cell: dict, cells: list[dict], results: dict, prices: dict) -> Costs | None:
    """Costs of one ok cell. A cell that reused a model trained by another cell of the run carries
    that training's cost too: it could not exist without it."""
    if cell.get("status") != "ok" or "prepare" not in cell:
        return None
    usd_h, _ = machine_price(results, prices)
    prep, ans = cell["prepare"], cell.get("answer") or {}
    seconds = prep.get("wall_s") or 0.0
    donor = prep.get("training_reused_from")
    if donor:
        src = next((c for c in cells if c["strategy"] == donor and c.get("seed") == cell.get("seed")
                    and c.get("status") == "ok"), None)
        seconds += (src or {}).get("prepare", {}).get("wall_s") or 0.0
    one_time = seconds * usd_h / 3600
    hosted = prices["hosted"].get(results.get("model", {}).get("name"))
    if hosted and ans.get("prompt_tokens_mean") is not None:
        per_query = (ans["prompt_tokens_mean"] * hosted.get("prompt_per_1k", 0.0)
                     + ans.get("output_tokens_mean", 0.0) * hosted.get("output_per_1k", 0.0)) / 1000
    elif ans.get("wall_s") is not None and ans.get("queries"):
        per_query = ans["wall_s"] / ans["queries"] * usd_h / 3600
    else:
        per_query = None
    kind = _refresh_kind(prep)
    return Costs(cell["strategy"], one_time, per_query, one_time if kind != "none" else 0.0, kind)


def crossover_total(a: Costs, b: Costs) -> float | None:
    """Total queries at which a and b have cost the same over their whole life (one-time + per query);
    past it the one with the lower per-query cost is cheaper. None: they never cross."""
    return _cross(a.one_time_usd, a.per_query_usd or 0.0, b.one_time_usd, b.per_query_usd or 0.0)


def crossover_monthly(a: Costs, b: Costs, refresh_days: float | None) -> float | None:
    """Monthly queries at which a and b cost the same per month, refreshes included; None: never."""
    r = refreshes_per_month(refresh_days)
    return _cross(a.refresh_usd * r, a.per_query_usd or 0.0, b.refresh_usd * r, b.per_query_usd or 0.0)


def _cross(fixed_a, var_a, fixed_b, var_b) -> float | None:
    if var_a == var_b:
        return None
    q = (fixed_b - fixed_a) / (var_a - var_b)
    return q if q > 0 else None
