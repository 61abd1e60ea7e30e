"""Price table, break-even arithmetic and the recommendation rule, against hand-computed numbers."""
import pytest

from harness.analysis.cost import (
    DAYS_PER_MONTH,
    Costs,
    cell_costs,
    crossover_monthly,
    crossover_total,
    load_prices,
    machine_price,
)
from harness.analysis.decision import DecisionConfig, recommend
from harness.core.errors import ConfigError
from harness.engine.config import make_config


def test_default_price_table_loads():
    p = load_prices()
    assert p["machines"]["cpu"] == 0.085 and p["machines"]["gpu"] > p["machines"]["cpu"]
    assert p["hosted"] == {}


@pytest.mark.parametrize("text", ["machines: {cpu: -1}\n", "machines: {cpu: cheap}\n", "other: 1\n",
                                  "hosted: {m: {prompt_per_1k: 1, typo: 2}}\n", "machines: [1]\n"])
def test_bad_price_tables_are_config_errors(tmp_path, text):
    f = tmp_path / "prices.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match="prices.yaml"):
        load_prices(f)


def test_machine_price_by_kind_and_explicit_run_price():
    prices = {"machines": {"cpu": 0.1, "gpu": 2.0}, "hosted": {}, "source": "t"}
    assert machine_price({"environment": {"gpu": None}, "config": {"usd_per_hour": 0.085}}, prices) == (0.1, "cpu")
    assert machine_price({"environment": {"gpu": "H100"}}, prices) == (2.0, "gpu")
    assert machine_price({"environment": {}, "config": {"usd_per_hour": 0.5}}, prices) == (0.5, "cpu")


def _cells():
    return [
        {"strategy": "rag", "seed": 0, "status": "ok", "prepare": {"wall_s": 36.0, "chunks": 10},
         "answer": {"wall_s": 100.0, "queries": 100, "prompt_tokens_mean": 300, "output_tokens_mean": 10}},
        {"strategy": "lora", "seed": 0, "status": "ok", "prepare": {"wall_s": 360.0, "steps": 5},
         "answer": {"wall_s": 20.0, "queries": 100, "prompt_tokens_mean": 50, "output_tokens_mean": 5}},
        {"strategy": "lora-rag", "seed": 0, "status": "ok",
         "prepare": {"wall_s": 36.0, "chunks": 10, "training_reused_from": "lora"},
         "answer": {"wall_s": 80.0, "queries": 100, "prompt_tokens_mean": 300, "output_tokens_mean": 5}},
        {"strategy": "zero-shot", "seed": 0, "status": "ok", "prepare": {"wall_s": 0.0},
         "answer": {"wall_s": 20.0, "queries": 100}},
        {"strategy": "bad", "seed": 0, "status": "failed", "error": "x"},
    ]


def test_cell_costs_by_hand():
    prices = {"machines": {"cpu": 3.6}, "hosted": {}, "source": "t"}  # $0.001 per second
    results = {"environment": {}, "config": {}, "model": {"name": "m"}}
    cells = _cells()
    c = {x["strategy"]: cell_costs(x, cells, results, prices) for x in cells}
    assert c["bad"] is None
    assert c["rag"].one_time_usd == pytest.approx(0.036) and c["rag"].per_query_usd == pytest.approx(0.001)
    assert c["rag"].refresh_kind == "re-index" and c["rag"].refresh_usd == pytest.approx(0.036)
    assert c["lora"].refresh_kind == "re-train" and c["lora"].per_query_usd == pytest.approx(0.0002)
    # the reused adapter's training is part of lora-rag's one-time and refresh cost
    assert c["lora-rag"].one_time_usd == pytest.approx(0.396) and c["lora-rag"].refresh_kind == "re-train + re-index"
    assert c["zero-shot"].refresh_kind == "none" and c["zero-shot"].refresh_usd == 0
    # hosted model: per-query cost from tokens, preparation still machine time
    hosted = {**prices, "hosted": {"m": {"prompt_per_1k": 0.01, "output_per_1k": 0.1}}}
    h = cell_costs(cells[0], cells, results, hosted)
    assert h.per_query_usd == pytest.approx((300 * 0.01 + 10 * 0.1) / 1000) and h.one_time_usd == pytest.approx(0.036)


def test_break_even_by_hand():
    rag = Costs("rag", 0.036, 0.001, 0.036, "re-index")
    lora = Costs("lora", 0.36, 0.0002, 0.36, "re-train")
    # one-time + per query: 0.036 + 0.001 q = 0.36 + 0.0002 q  ->  q = 0.324 / 0.0008 = 405
    assert crossover_total(rag, lora) == pytest.approx(405)
    assert crossover_total(lora, rag) == pytest.approx(405)
    assert rag.total(405) == pytest.approx(lora.total(405))
    # monthly, refresh every 10 days: r = 30.4375 / 10 refreshes a month
    r = DAYS_PER_MONTH / 10
    assert crossover_monthly(rag, lora, 10) == pytest.approx(r * 0.324 / 0.0008)
    assert lora.monthly(1000, 10) == pytest.approx(r * 0.36 + 0.2)
    assert crossover_monthly(rag, lora, None) is None  # no refresh: fine-tuning is cheaper at any volume
    assert crossover_total(rag, Costs("x", 1.0, 0.001, 1.0, "re-train")) is None  # parallel lines


def _entry(name, acc, p95, costs):
    return {"strategy": name, "acc": acc, "low": acc - 0.05, "high": acc + 0.05, "p95": p95, "costs": costs}


def _scores(hits, n=40):
    return {f"q{i}": {"exact_match": float(i < hits), "f1": float(i < hits)} for i in range(n)}


def test_recommendation_cheapest_of_the_equally_accurate():
    rag = Costs("rag", 0.036, 0.001, 0.036, "re-index")
    lora = Costs("lora", 0.36, 0.0002, 0.36, "re-train")
    zero = Costs("zero-shot", 0.0, 0.0002, 0.0, "none")
    entries = [_entry("rag", 0.50, 10.0, rag), _entry("lora", 0.475, 2.0, lora), _entry("zero-shot", 0.0, 2.0, zero)]
    scores = {"rag": _scores(20), "lora": _scores(19), "zero-shot": _scores(0)}
    many = recommend(entries, scores, "exact_match", "accuracy", DecisionConfig(monthly_queries=100_000, refresh_days=30))
    assert many["winner"] == "lora"  # not significantly below rag and cheaper at this volume
    assert any("zero-shot" in line for line in many["why"])  # zero-shot is significantly worse
    cross = 0.324 * (DAYS_PER_MONTH / 30) / 0.0008
    assert any(f"Below {cross:,.0f} queries a month rag becomes cheaper" in line for line in many["changes"])
    few = recommend(entries, scores, "exact_match", "accuracy", DecisionConfig(monthly_queries=100, refresh_days=30))
    assert few["winner"] == "rag"
    fast = recommend(entries, scores, "exact_match", "accuracy",
                     DecisionConfig(monthly_queries=100, refresh_days=30, latency_target_s=5))
    assert fast["winner"] == "lora"
    assert any("Over the latency target: rag" in line for line in fast["why"])
    assert any("latency target of 10.00 s" in line and "rag" in line for line in fast["changes"])


@pytest.mark.parametrize("bad", [{"monthly_queries": -1}, {"monthly_queries": 1.5}, {"refresh_days": -2},
                                 {"latency_target_s": 0}, {"volume": 3}])
def test_decision_config_rejects_bad_values(bad):
    with pytest.raises(ConfigError, match="decision"):
        DecisionConfig.from_dict(bad)


def test_run_yaml_decision_block(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("strategies: [zero-shot]\ndecision:\n  monthly_queries: 5000\n  latency_target_s: 2.5\n")
    cfg = make_config(str(f), {})
    assert cfg.decision == {"monthly_queries": 5000, "latency_target_s": 2.5}
    assert cfg.to_dict()["decision"] == cfg.decision  # recorded in results.json's config
    f.write_text("decision:\n  monthly_querys: 5\n")
    with pytest.raises(ConfigError, match="monthly_querys"):
        make_config(str(f), {})
    f.write_text("decision: 5\n")
    with pytest.raises(ConfigError, match="decision"):
        make_config(str(f), {})
