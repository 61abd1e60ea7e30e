"""Price table, costs from a run's cells, break-even and the recommendation rule, against hand-computed
numbers, on the serving-cost model (analysis/serving.py) and the decision rules (analysis/verdicts.py)."""
import pytest

from harness.analysis import serving
from harness.analysis.serving import DAYS_PER_MONTH, Load, break_even, cost_curve, facts_from_cell, monthly_cost
from harness.analysis.verdicts import Candidate, DecisionConfig, recommend
from harness.core.errors import ConfigError
from harness.engine.config import make_config

N_BOOT = 2000


def test_default_price_table_loads():
    t = serving.load_price_table()
    cpu, gpu = t.machines[t.default_machine["cpu"]], t.machines[t.default_machine["gpu"]]
    assert cpu.usd_per_hour == 0.085 and gpu.usd_per_hour > cpu.usd_per_hour
    assert t.hosted == {}


@pytest.mark.parametrize("text", ["machines: {cpu: -1}\n", "machines: {cpu: cheap}\n", "other: 1\n",
                                  "hosted: {m: {prompt_per_1k: 1, typo: 2}}\n", "machines: [1]\n",
                                  "hosted: {m: {input_per_1m: 1, output_per_1m: 2, serves: [prompting, lora]}}\n"])
def test_bad_price_tables_are_config_errors(tmp_path, text):
    f = tmp_path / "prices.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match="prices.yaml"):
        serving.load_price_table(f)


def test_machine_price_by_kind_and_explicit_run_price():
    t = serving.price_table({"machines": {"cpu": 0.1, "gpu": 2.0}})  # the old schema still reads
    assert t.measured_on({"gpu": None}, run_usd_per_hour=0.085).usd_per_hour == 0.1
    assert t.measured_on({"gpu": "H100"}).usd_per_hour == 2.0 and t.measured_on({"gpu": "H100"}).kind == "gpu"
    assert t.measured_on({}, run_usd_per_hour=0.5).usd_per_hour == 0.5  # a run that set its own price keeps it


def _cells():
    return [
        {"strategy": "rag", "seed": 0, "status": "ok", "prepare": {"wall_s": 36.0, "chunks": 10},
         "answer": {"wall_s": 100.0, "queries": 100, "prompt_tokens_mean": 300, "output_tokens_mean": 10,
                    "retrieval_p50_s": 0.01}},
        {"strategy": "lora", "seed": 0, "status": "ok", "prepare": {"wall_s": 360.0, "steps": 5, "peft_type": "LORA"},
         "answer": {"wall_s": 20.0, "queries": 100, "prompt_tokens_mean": 50, "output_tokens_mean": 5}},
        {"strategy": "lora-rag", "seed": 0, "status": "ok",
         "prepare": {"wall_s": 36.0, "chunks": 10, "training_reused_from": "lora", "peft_type": "LORA"},
         "answer": {"wall_s": 80.0, "queries": 100, "prompt_tokens_mean": 300, "output_tokens_mean": 5}},
        {"strategy": "zero-shot", "seed": 0, "status": "ok", "prepare": {"wall_s": 0.0},
         "answer": {"wall_s": 20.0, "queries": 100}},
        {"strategy": "bad", "seed": 0, "status": "failed", "error": "x"},
    ]


MACHINE = serving.Machine("m", 3.6, "cpu")  # $0.001 per second
# scale to zero at full utilization: every answering second is paid, nothing else (the old per-query model)
LINEAR = Load(monthly_queries=1000, refresh_days=30, min_replicas=0, target_utilization=1.0)


def test_cell_costs_by_hand():
    cells = _cells()
    results = {"cells": cells, "environment": {}, "config": {}, "model": {"name": "m"}}
    f = {c["strategy"]: facts_from_cell(c, results) for c in cells}
    assert f["bad"] is None
    c = {n: monthly_cost(f[n], MACHINE, LINEAR) for n in ("rag", "lora", "lora-rag", "zero-shot")}
    r = DAYS_PER_MONTH / 30
    # rag: 1 s a query = $0.001; one re-index a refresh = 36 s = $0.036
    assert c["rag"].one_time_usd == pytest.approx(0.036) and c["rag"].answering.usd == pytest.approx(1.0)
    assert c["rag"].refresh.each_usd == pytest.approx(0.036) and c["rag"].total_usd == pytest.approx(1.0 + r * 0.036)
    assert c["rag"].per_query_usd == pytest.approx((1.0 + r * 0.036) / 1000)
    assert f["rag"].kind == "rag" and f["lora"].kind == "adapter" and f["lora-rag"].kind == "adapter+rag"
    # lora: 0.2 s a query; a refresh re-trains (360 s)
    assert c["lora"].answering.usd == pytest.approx(0.2) and c["lora"].refresh.each_usd == pytest.approx(0.36)
    # the reused adapter's training is part of lora-rag's one-time and refresh cost
    assert c["lora-rag"].one_time_usd == pytest.approx(0.396) and c["lora-rag"].refresh.each_usd == pytest.approx(0.396)
    assert c["zero-shot"].refresh.usd == 0 and c["zero-shot"].total_usd == pytest.approx(0.2)
    # hosted model: answering from tokens, preparation (and a RAG's retrieval machine) still machine time
    hosted = serving.Hosted("m", 10.0, 100.0)  # $ per million prompt / output tokens
    h = monthly_cost(f["rag"], MACHINE, LINEAR, hosted=hosted)
    assert h.answering.per_query_usd == pytest.approx((300 * 10 + 10 * 100) / 1e6)
    assert h.retrieval.usd == pytest.approx(1000 * 0.01 * 0.001)  # 0.01 s of retrieval a query
    assert h.one_time_usd == pytest.approx(0.036)
    assert h.total_usd == pytest.approx(1000 * 0.004 + 0.01 + r * 0.036)


def test_hosted_prices_apply_to_the_kinds_the_provider_serves():
    t = serving.price_table({"machines": {"m": {"usd_per_hour": 3.6, "kind": "cpu"}}, "default_machine": {"cpu": "m"},
                             "hosted": {"m": {"input_per_1m": 10, "output_per_1m": 100,
                                              "serves": ["prompting", "rag"]}}})
    h = t.hosted["m"]
    assert h.answers("rag") and h.answers("prompting") and not h.answers("adapter") and not h.answers("adapter+rag")
    assert serving.Hosted("x", 1, 1).answers("full")  # no serves: every kind


def test_break_even_by_hand():
    cells = _cells()
    results = {"cells": cells, "environment": {}, "config": {}}
    rag, lora = (facts_from_cell(cells[i], results) for i in (0, 1))
    r = DAYS_PER_MONTH / 10
    load = Load(refresh_days=10, min_replicas=0, target_utilization=1.0)
    # refresh + per query: 0.036 r + 0.001 q = 0.36 r + 0.0002 q  ->  q = 0.324 r / 0.0008
    (x,) = break_even(cost_curve(rag, MACHINE, load), cost_curve(lora, MACHINE, load))
    assert x.monthly_queries == pytest.approx(0.324 * r / 0.0008)
    assert (x.cheaper_below, x.cheaper_above) == ("rag", "lora")
    assert cost_curve(lora, MACHINE, load).at(1000) == pytest.approx(r * 0.36 + 0.2)
    # no refresh: the fine-tuned model is cheaper at any volume
    none = Load(refresh_days=None, min_replicas=0, target_utilization=1.0)
    assert break_even(cost_curve(rag, MACHINE, none), cost_curve(lora, MACHINE, none)) == []
    # one replica always on (730 h x $3.6 = $2,628): both pay the floor until rag's load passes it at 2,628,000
    # queries; then rag costs 0.036 r + 0.001 q against lora's 0.36 r + 2,628: q = 2,628,000 + 324 r
    floor = Load(refresh_days=10, min_replicas=1, target_utilization=1.0)
    (x,) = break_even(cost_curve(rag, MACHINE, floor), cost_curve(lora, MACHINE, floor))
    assert x.monthly_queries == pytest.approx(2_628_000 + 324 * r)
    assert (x.cheaper_below, x.cheaper_above) == ("rag", "lora")  # below, lora's dearer re-training decides


def _sc(values):
    return {f"q{i}": float(v) for i, v in enumerate(values)}


def test_recommendation_cheapest_of_those_within_the_margin():
    base = [0.2 + 0.6 * (i % 2) for i in range(40)]  # mean 0.5
    r = DAYS_PER_MONTH / 30

    def cost_at(monthly_queries, refresh_days, usd_per_hour_scale):  # the scale-to-zero costs above
        k = (DAYS_PER_MONTH / refresh_days if refresh_days else 0.0) * usd_per_hour_scale
        return {"rag": 0.036 * k + 0.001 * monthly_queries * usd_per_hour_scale,
                "lora": 0.36 * k + 0.0002 * monthly_queries * usd_per_hour_scale,
                "zero-shot": 0.0002 * monthly_queries * usd_per_hour_scale}

    cands = [Candidate("rag", _sc(base), kind="rag", p95_s=10.0, latency_source="batched"),
             Candidate("lora", _sc([v - 0.005 for v in base]), kind="adapter", p95_s=2.0, latency_source="batched"),
             Candidate("zero-shot", _sc([0.0] * 40), kind="prompting", p95_s=2.0, latency_source="batched")]
    cfg = {"monthly_queries": 100_000, "refresh_days": 30, "cost_tolerance": 0.0}
    many = recommend(cands, cfg, metric="token F1", cost_at=cost_at, n_boot=N_BOOT)
    assert many.chosen == "lora" and many.reference == "rag"  # within 0.02 of rag (every question 0.005 lower), cheaper
    assert any("zero-shot" in line and "Below rag by more than the margin" in line for line in many.reasons)
    cross = 0.324 * r / 0.0008
    assert any(line.startswith(f"At about {cross:,.0f} queries a month or fewer (now 100,000): rag")
               for line in many.changes), many.changes
    few = recommend(cands, {**cfg, "monthly_queries": 100}, metric="token F1", cost_at=cost_at, n_boot=N_BOOT)
    assert few.chosen == "rag"
    fast = recommend(cands, {**cfg, "monthly_queries": 100, "latency_target_s": 5}, metric="token F1", cost_at=cost_at,
                     n_boot=N_BOOT)
    assert fast.chosen == "lora"
    assert any("Over the p95 latency target of 5 s: rag (10.00 s, batched)" in line for line in fast.reasons)
    assert any("latency target of 10.00 s or more" in line and "rag" in line for line in fast.changes)
    assert any("p95 of the batched run" in line for line in fast.reasons)  # says which latency it held


@pytest.mark.parametrize("bad", [{"monthly_queries": -1}, {"monthly_queries": 1.5}, {"refresh_days": -2},
                                 {"latency_target_s": 0}, {"volume": 3}, {"margin": -0.1},
                                 {"target_utilization": 0}, {"hours_per_month": 800}])
def test_decision_config_rejects_bad_values(bad):
    with pytest.raises(ConfigError, match="decision"):
        DecisionConfig.from_dict(bad)


def test_run_yaml_decision_block(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("strategies: [zero-shot]\ndecision:\n  monthly_queries: 5000\n  latency_target_s: 2.5\n"
                 "  margin: 0.05\n  min_quality: 0.4\n  min_replicas: 0\n  measured_on: c6i.large\n")
    cfg = make_config(str(f), {})
    assert cfg.decision == {"monthly_queries": 5000, "latency_target_s": 2.5, "margin": 0.05, "min_quality": 0.4,
                            "min_replicas": 0, "measured_on": "c6i.large"}
    assert cfg.to_dict()["decision"] == cfg.decision  # recorded in results.json's config
    # every problem names the file and the line of its key
    for text, line, what in [("decision:\n  monthly_querys: 5\n", 2, "monthly_querys"),
                             ("decision:\n  margin: 0.02\n  cost_tolerance: -1\n", 3, "cost_tolerance"),
                             ("decision:\n  target_utilization: 1.5\n", 2, "target_utilization"),
                             ("decision:\n  measured_on: my-laptop\n", 2, "my-laptop"),
                             ("decision: 5\n", 1, "decision")]:
        f.write_text(text)
        with pytest.raises(ConfigError, match=f"run.yaml:{line}: .*{what}"):
            make_config(str(f), {})
