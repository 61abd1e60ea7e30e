"""Serving-cost model against hand-computed numbers (harness/serving.py)."""
import dataclasses
import json
import math
from pathlib import Path

import pytest

from harness.analysis import serving
from harness.analysis.serving import (
    DAYS_PER_MONTH,
    CostCurve,
    Facts,
    Hosted,
    Load,
    Machine,
    break_even,
    capacity_cost,
    cost_curve,
    cost_per_correct,
    deployment,
    monthly_cost,
    refresh_cost,
    shared_cost,
    sides,
    token_cost,
)
from harness.core.errors import ConfigError
from harness.report.sections import break_even_words

CPU = Machine("box", 0.1, "cpu", vcpus=2, memory_gb=4)   # $0.1/hour: hand arithmetic stays short
GB = 1024 ** 3
EXAMPLE = Path(__file__).resolve().parent.parent / "reports" / "example" / "results.json"


# ---- capacity: always-on floor, the volume, scale to zero


def test_always_on_floor_decides_at_low_volume():
    # 72,000 queries at 2 queries/s = 36,000 s = 10 busy hours; / 0.5 utilization = 20 machine-hours = $2.00;
    # floor: 1 replica x 730 h x $0.1 = $73.00, which is more, so $73.00
    c = capacity_cost(2.0, 0.1, 72_000)
    assert c.busy_hours == pytest.approx(10.0)
    assert c.load_usd == pytest.approx(2.0)
    assert c.floor_usd == pytest.approx(73.0)
    assert c.usd == pytest.approx(73.0) and c.bound == "floor" and c.replicas == 1


def test_volume_decides_at_high_volume():
    # 7,200,000 queries at 2/s = 1,000 busy hours; / 0.5 = 2,000 machine-hours x $0.1 = $200 > $73;
    # month-average replicas 1,000 / (730 x 0.5) = 2.7397
    c = capacity_cost(2.0, 0.1, 7_200_000)
    assert c.usd == pytest.approx(200.0) and c.bound == "load"
    assert c.replicas == pytest.approx(1000 / 365)


def test_scale_to_zero_pays_busy_time_over_utilization():
    c = capacity_cost(2.0, 0.1, 72_000, min_replicas=0)
    assert c.floor_usd == 0 and c.usd == pytest.approx(2.0)
    assert capacity_cost(2.0, 0.1, 0, min_replicas=0).usd == 0
    # two replicas always on, 25% target utilization, 100-hour month
    c = capacity_cost(2.0, 0.1, 72_000, min_replicas=2, target_utilization=0.25, hours_per_month=100)
    assert c.floor_usd == pytest.approx(20.0) and c.load_usd == pytest.approx(4.0) and c.usd == pytest.approx(20.0)


def test_capacity_uses_throughput_not_latency():
    # the run's record: 150 queries answered in 26.079 s at batch 64, though each waited about 10 s
    f = Facts("zero-shot", "prompting", queries_per_s=150 / 26.079)
    c = monthly_cost(f, CPU, Load(monthly_queries=100_000, min_replicas=0))
    assert c.answering.busy_hours == pytest.approx(100_000 * 26.079 / 150 / 3600)


# ---- hosted tokens, refresh, cost per correct answer


def test_per_token_cost():
    # (1,000 x $0.15 + 200 x $0.60) / 1e6 = $0.00027 a query; x 100,000 = $27
    h = Hosted("m", 0.15, 0.60)
    t = token_cost(1000, 200, h, 100_000)
    assert t.per_query_usd == pytest.approx(2.7e-4) and t.usd == pytest.approx(27.0)


def test_hosted_answering_has_no_machine_cost_but_training_and_retrieval_do():
    h = Hosted("m", 0.15, 0.60)
    f = Facts("ft", "adapter", prompt_tokens=1000, output_tokens=200, prepare_s=3600, queries_per_s=None)
    c = monthly_cost(f, CPU, Load(monthly_queries=100_000, refresh_days=None), hosted=h)
    assert c.total_usd == pytest.approx(27.0)       # no machine for answering, no refresh
    assert c.one_time_usd == pytest.approx(0.1)     # one hour of training on the $0.1 machine
    # hosted RAG: the embedder and index need a machine; retrieval at 100 queries/s, scale to zero:
    # 100,000 / 100 / 3600 = 0.27778 busy hours / 0.5 x $0.1 = $0.055556
    r = Facts("rag", "rag", prompt_tokens=1000, output_tokens=200, retrieval_queries_per_s=100)
    c = monthly_cost(r, CPU, Load(monthly_queries=100_000, refresh_days=None, min_replicas=0), hosted=h)
    assert c.retrieval.usd == pytest.approx(100_000 / 100 / 3600 / 0.5 * 0.1)
    assert c.total_usd == pytest.approx(27.0 + 100_000 / 100 / 3600 / 0.5 * 0.1)
    # not measured: no total rather than an understated one
    c = monthly_cost(Facts("rag", "rag", prompt_tokens=1, output_tokens=1), CPU, Load(), hosted=h)
    assert c.total_usd is None and "retrieval" in c.missing


def test_refresh_cost():
    # every 7 days: 30.4375 / 7 = 4.3482 refreshes; one hour on a $3 machine = $3 each -> $13.0446
    r = refresh_cost(3600, 3.0, 7)
    assert DAYS_PER_MONTH == 30.4375
    assert r.per_month == pytest.approx(30.4375 / 7) and r.each_usd == pytest.approx(3.0)
    assert r.usd == pytest.approx(3.0 * 30.4375 / 7)
    assert refresh_cost(3600, 3.0, None).usd == 0 and refresh_cost(3600, 3.0, 0).usd == 0
    # prompting has nothing to rebuild; a refresh is the whole preparation unless refresh_s says less
    assert Facts("p", "prompting", prepare_s=50).refresh_seconds == 0
    assert Facts("r", "rag", prepare_s=50).refresh_seconds == 50
    assert Facts("r", "rag", prepare_s=50, refresh_s=5).refresh_seconds == 5


def test_monthly_cost_adds_capacity_and_refresh():
    # capacity $73 (floor) + refresh: 30.4375 / 30 x 0.5 h x $0.1 = $0.0507292
    f = Facts("lora", "adapter", queries_per_s=2.0, prepare_s=1800)
    c = monthly_cost(f, CPU, Load(monthly_queries=72_000, refresh_days=30), accuracy=0.5)
    refresh = 30.4375 / 30 * 0.5 * 0.1
    assert c.refresh.usd == pytest.approx(refresh)
    assert c.total_usd == pytest.approx(73.0 + refresh)
    assert c.per_query_usd == pytest.approx((73.0 + refresh) / 72_000)
    assert c.per_correct_usd == pytest.approx((73.0 + refresh) / 36_000)
    assert c.one_time_usd == pytest.approx(0.05)
    assert any("$73.05" in s for s in serving.describe(c))
    # price scaled x2: capacity and refresh both double
    assert monthly_cost(f, CPU, Load(monthly_queries=72_000), usd_per_hour_scale=2).total_usd == \
        pytest.approx(2 * (73.0 + refresh))


def test_cost_per_correct_answer():
    assert cost_per_correct(100.0, 1000, 0.5) == pytest.approx(0.2)
    assert cost_per_correct(100.0, 1000, 0.0) == math.inf
    assert cost_per_correct(100.0, 0, 0.5) is None
    assert cost_per_correct(100.0, 1000, None) is None
    c = monthly_cost(Facts("x", "prompting", queries_per_s=2.0), CPU, Load(monthly_queries=72_000), accuracy=0.0)
    assert c.per_correct_usd == math.inf
    assert "per correct answer infinite (no correct answers)" in serving.describe(c)[-1]


# ---- deployments and shared bases


def test_deployment_holds():
    base = 1_000_000_000
    rag = deployment(Facts("rag", "rag", base_bytes=base, index_bytes=5, embedder_bytes=90), CPU)
    assert (rag.base_bytes, rag.embedder_bytes, rag.index_bytes, rag.total_bytes) == (base, 90, 5, base + 95)
    assert rag.fits and rag.shares_base
    full = deployment(Facts("ft", "full", base_bytes=base, artifact_bytes=123))
    assert full.own_weights_bytes == base and full.base_bytes == 0 and full.total_bytes == base
    assert not full.shares_base and full.fits is None  # no machine given: unknown
    big = deployment(Facts("x", "prompting", base_bytes=5 * GB), CPU)
    assert big.fits is False
    hosted = deployment(Facts("r", "adapter+rag", base_bytes=base, artifact_bytes=7, index_bytes=5,
                              embedder_bytes=90), hosted=True)
    assert hosted.total_bytes == 95 and hosted.adapter_bytes == 0


def test_shared_base_pays_the_floor_once():
    # busy hours at 72,000 queries each: lora 2/s -> 10 h, ia3 4/s -> 5 h, prompting 1/s -> 20 h: 35 h,
    # / 0.5 = 70 machine-hours = $7 < the $73 floor: one pool costs $73; each alone costs $73 (saving $146)
    group = [Facts("lora", "adapter", base_bytes=1000, artifact_bytes=50, queries_per_s=2),
             Facts("ia3", "adapter", base_bytes=1000, artifact_bytes=5, queries_per_s=4),
             Facts("zs", "prompting", base_bytes=1000, queries_per_s=1)]
    s = shared_cost(group, CPU, Load(monthly_queries=72_000, refresh_days=None))
    assert s.capacity.busy_hours == pytest.approx(35.0)
    assert s.total_usd == pytest.approx(73.0)
    assert s.busy_share == pytest.approx({"lora": 10 / 35, "ia3": 5 / 35, "zs": 20 / 35})
    assert s.attributed_usd == pytest.approx({"lora": 73 * 10 / 35, "ia3": 73 * 5 / 35, "zs": 73 * 20 / 35})
    assert sum(s.attributed_usd.values()) == pytest.approx(s.total_usd)
    assert s.alone_usd == pytest.approx({"lora": 73.0, "ia3": 73.0, "zs": 73.0})
    assert s.saving_usd == pytest.approx(146.0)
    assert s.deployment.total_bytes == 1055  # the base once, both adapters


def test_full_fine_tune_cannot_share():
    with pytest.raises(ConfigError, match="full fine-tune"):
        shared_cost([Facts("ft", "full", base_bytes=1, queries_per_s=1), Facts("zs", "prompting", base_bytes=1,
                                                                                  queries_per_s=1)], CPU)
    with pytest.raises(ConfigError, match="base"):
        deployment([Facts("a", "adapter", base_bytes=1), Facts("b", "adapter", base_bytes=2)])


# ---- break-even


def test_break_even_hosted_against_always_on():
    # A: hosted at $0.001 a query; B: one $0.1 machine always on at 1 query/s, u = 0.5:
    # B = max($73, Q x 0.1 / 1800); they meet at 0.001 Q = 73 -> Q = 73,000 (below B's kink at 1,314,000)
    a = cost_curve(Facts("A", "prompting", prompt_tokens=1000, output_tokens=0), CPU,
                   Load(refresh_days=None), hosted=Hosted("m", 1.0, 0.0))
    b = cost_curve(Facts("B", "prompting", queries_per_s=1.0), CPU, Load(refresh_days=None))
    assert a.at(1000) == pytest.approx(1.0) and b.at(1000) == pytest.approx(73.0)
    assert b.kinks() == pytest.approx([1_314_000])
    (x,) = break_even(a, b)
    assert x.monthly_queries == pytest.approx(73_000)
    assert (x.cheaper_below, x.cheaper_above) == ("A", "B")
    assert x.usd == pytest.approx(73.0)


def test_break_even_two_crossings_and_none():
    # A = 50 + 1e-4 Q; B = max(73, 2e-4 Q), kink at 365,000:
    # below the kink 50 + 1e-4 Q = 73 -> 230,000; above it 50 + 1e-4 Q = 2e-4 Q -> 500,000
    a = CostCurve("A", 50.0, 1e-4, ())
    b = CostCurve("B", 0.0, 0.0, ((73.0, 2e-4),))
    xs = break_even(a, b)
    assert [x.monthly_queries for x in xs] == pytest.approx([230_000, 500_000])
    assert [(x.cheaper_below, x.cheaper_above) for x in xs] == [("A", "B"), ("B", "A")]
    assert break_even(b, b) == []                                   # equal everywhere
    assert break_even(CostCurve("C", 1, 1e-4, ()), CostCurve("D", 2, 2e-4, ())) == []  # C always cheaper


def test_break_even_matches_monthly_cost():
    f1 = Facts("rag", "rag", queries_per_s=1.0, prepare_s=36)
    f2 = Facts("lora", "adapter", queries_per_s=4.0, prepare_s=36_000)
    ld = Load(min_replicas=0, refresh_days=1)
    for x in break_even(cost_curve(f1, CPU, ld), cost_curve(f2, CPU, ld)):
        q = x.monthly_queries
        assert monthly_cost(f1, CPU, Load.of(ld, monthly_queries=q)).total_usd == \
            pytest.approx(monthly_cost(f2, CPU, Load.of(ld, monthly_queries=q)).total_usd)
    # by hand: refresh 30.4375 x (36 s vs 36,000 s) / 3600 x $0.1 = $0.0304 vs $30.44;
    # slopes 0.1 / 1800 and 0.1 / 7200 per query: 0.030437 + Q/18000 = 30.4375 + Q/72000 -> Q = 729,770
    (x,) = break_even(cost_curve(f1, CPU, ld), cost_curve(f2, CPU, ld))
    assert x.monthly_queries == pytest.approx((30.4375 - 0.0304375) / (1 / 18000 - 1 / 72000))
    assert (x.cheaper_below, x.cheaper_above) == ("rag", "lora")


def _words(a: CostCurve, b: CostCurve) -> str:
    """The report's break-even column for a against b."""
    return break_even_words([dataclasses.asdict(s) for s in sides(a, b)])


def test_same_cost_on_the_floor_until_one_needs_more_than_it():
    # A at 1 query/s, B at 4 queries/s, each one $0.1 machine always on at u = 0.5: both pay the floor
    # 1 x 730 h x $0.1 = $73.00 until A's busy machine-hours pass it: Q x 0.1 / (3600 x 1 x 0.5) = 73 ->
    # Q = 730 x 3600 x 1 x 0.5 = 1,314,000 (B's own kink: 4 x 1,314,000 = 5,256,000): no crossing, yet
    # not "never": the same $73.00 up to 1,314,000, B cheaper above it
    ld = Load(refresh_days=None)
    a = cost_curve(Facts("A", "rag", queries_per_s=1.0), CPU, ld)
    b = cost_curve(Facts("B", "adapter", queries_per_s=4.0), CPU, ld)
    assert break_even(a, b) == []
    same, past = sides(a, b)
    assert (same.low, same.cheaper, same.same) == (0.0, None, "floor") and same.high == pytest.approx(1_314_000)
    assert (past.low, past.high, past.cheaper) == (same.high, None, "B")
    assert _words(a, b) == _words(b, a) == "same cost up to 1,314,000 (both at the always-on floor); B cheaper above"
    # B's refresh a tenth of a cent dearer (reports/example's shape: $62.05 against $62.05): B overtakes A
    # 0.001 / (0.1 / 1800) = 18 queries past A's kink, a difference no printed cent shows: still the same cost
    # up to A's kink. Half a cent or more is a difference: A cheaper until 0.01 / (0.1 / 1800) = 180 past it
    b_dear = CostCurve("B", 0.001, 0.0, b.terms)
    assert [x.monthly_queries for x in break_even(a, b_dear)] == pytest.approx([1_314_018])
    assert _words(a, b_dear) == "same cost up to 1,314,000 (both at the always-on floor); B cheaper above"
    assert _words(a, CostCurve("B", 0.01, 0.0, b.terms)) == "1,314,180 (B cheaper above)"


def test_a_true_crossing_keeps_its_volume():
    # A = 50 + 1e-4 Q against B = max(73, 2e-4 Q): they cross at 230,000 and 500,000 (test above)
    a, b = CostCurve("A", 50.0, 1e-4, ()), CostCurve("B", 0.0, 0.0, ((73.0, 2e-4),))
    assert [(s.cheaper, s.high) for s in sides(a, b)] == [("A", pytest.approx(230_000)),
                                                         ("B", pytest.approx(500_000)), ("A", None)]
    assert _words(a, b) == "230,000 (B cheaper above); 500,000 (A cheaper above)"
    # hosted at $0.001 a query against the $73 floor: 73,000 (test_break_even_hosted_against_always_on)
    h = cost_curve(Facts("H", "prompting", prompt_tokens=1000, output_tokens=0), CPU, Load(refresh_days=None),
                   hosted=Hosted("m", 1.0, 0.0))
    m = cost_curve(Facts("M", "prompting", queries_per_s=1.0), CPU, Load(refresh_days=None))
    assert _words(h, m) == "73,000 (M cheaper above)"


def test_one_cheaper_at_every_volume_is_never():
    # C = 1 + 1e-4 Q, D = 2 + 2e-4 Q: C cheaper by $1 at 0 and by more past it
    c, d = CostCurve("C", 1.0, 1e-4, ()), CostCurve("D", 2.0, 2e-4, ())
    assert sides(c, d) == [serving.Side(0.0, None, "C")]
    assert _words(c, d) == "never"
    # on one floor, C's refresh $0.01 cheaper and C rising later (2 queries/s against 1): C at every volume
    fast = CostCurve("C", 0.0, 0.0, ((73.0, 0.1 / 3600),))
    slow = CostCurve("D", 0.01, 0.0, ((73.0, 0.1 / 1800),))
    assert _words(fast, slow) == "never"
    # the same $ per query and fixed costs under half a cent apart: the same at every volume
    assert _words(c, CostCurve("E", 1.004, 1e-4, ())) == "same cost at every volume (the same $ per query)"


# ---- the price table


def test_default_price_table_loads_with_a_comment_per_price():
    t = serving.load_price_table()
    assert t.measured_on({"gpu": None}).kind == "cpu" and t.measured_on({"gpu": "H100"}).kind == "gpu"
    assert t.measured_on({"gpu": None}).usd_per_hour == 0.085
    text = serving.DEFAULT_PRICES.read_text()
    for line in text.splitlines():
        if "usd_per_hour" in line and not line.lstrip().startswith("#"):
            assert "#" in line, f"price without its source: {line}"
    assert t.machines[t.default_machine["cpu"]].usd_per_hour == 0.085
    assert t.machines[t.default_machine["gpu"]].usd_per_hour == 3.0


def test_measured_on():
    t = serving.price_table({"machines": {"a": {"usd_per_hour": 1, "kind": "cpu"},
                                          "g": {"usd_per_hour": 2, "kind": "gpu", "gpu_memory_gb": 80}},
                             "default_machine": {"cpu": "a", "gpu": "g"}})
    assert t.measured_on({}, "g").name == "g"
    assert t.measured_on({"gpu": "x"}).name == "g"
    with pytest.raises(ConfigError, match="no machine named 'nope'"):
        t.measured_on({}, "nope")
    # a legacy run that set its own $/hour keeps it; the default 0.085 does not override the table
    assert t.measured_on({}, run_usd_per_hour=0.5).usd_per_hour == 0.5
    assert t.measured_on({}, run_usd_per_hour=0.085).usd_per_hour == 1


def test_legacy_table_is_read():
    t = serving.price_table({"machines": {"cpu": 0.085, "gpu": 3.0},
                             "hosted": {"m": {"prompt_per_1k": 0.00015, "output_per_1k": 0.0006}}})
    assert t.measured_on({}).usd_per_hour == 0.085
    assert t.hosted["m"].input_usd_per_1m == pytest.approx(0.15)
    assert t.hosted["m"].output_usd_per_1m == pytest.approx(0.6)


@pytest.mark.parametrize("text,where", [
    ("machines:\n  a: {usd_per_hour: 1, kind: tpu}\n", ":2"),
    ("machines:\n  a:\n    usd_per_hour: -1\n    kind: cpu\n", ":3"),
    ("machines:\n  a: {usd_per_hour: 1, kind: cpu, typo: 2}\n", ":2"),
    ("machines:\n  a: {kind: cpu}\n", ":2"),
    ("machines:\n  a: {usd_per_hour: 1, kind: cpu}\ndefault_machine: {gpu: a}\n", ":3"),
    ("machines: {}\nother: 1\n", ":2"),
    ("hosted:\n  m: {input_per_1m: 1}\n", ":2"),
    ("machines:\n  a: {usd_per_hour: 1, kind: cpu, vcpus: 1.5}\n", ":2"),
])
def test_bad_price_tables_name_file_and_line(tmp_path, text, where):
    f = tmp_path / "prices.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=f"prices.yaml{where}"):
        serving.load_price_table(f)


# ---- from a run's record


def test_facts_from_the_example_run():
    results = json.loads(EXAMPLE.read_text())
    cells = {c["strategy"]: c for c in results["cells"]}
    f = {n: serving.facts_from_cell(c, results) for n, c in cells.items()}
    assert [f[n].kind for n in ("zero-shot", "rag", "rag-k1", "full-ft", "lora", "lora-r64", "lora-rag")] == \
        ["prompting", "rag", "rag", "full", "adapter", "adapter", "adapter+rag"]
    prep = {n: c["prepare"] for n, c in cells.items()}
    # bytes a replica holds: the measured deployment (vectors, chunk table, text), not the index file's size
    dep = {n: c["deployment"] for n, c in cells.items()}
    assert f["rag"].index_bytes == dep["rag"]["index_bytes"] and f["rag"].artifact_bytes == 0
    # rag built the index; rag-k1 found it in the stage cache: its one-time cost still counts the indexing
    assert not prep["rag"]["index"]["cached"] and f["rag"].prepare_s == prep["rag"]["wall_s"]
    assert prep["rag-k1"]["index"]["cached"]
    assert f["rag-k1"].prepare_s == pytest.approx(prep["rag-k1"]["wall_s"] + prep["rag-k1"]["index"]["index_seconds"])
    # lora-rag reused lora's training: its preparation is both (and the index it found in the cache), its artifact
    # the adapter plus the index
    assert prep["lora-rag"]["training_reused_from"] == "lora"
    indexing = prep["lora-rag"].get("index", {}).get("index_seconds", 0) if prep["lora-rag"].get("index", {}).get(
        "cached") else 0
    assert f["lora-rag"].prepare_s == pytest.approx(prep["lora-rag"]["wall_s"] + prep["lora"]["wall_s"] + indexing)
    assert f["lora-rag"].artifact_bytes == dep["lora-rag"]["adapter_bytes"] > 0
    assert f["lora-rag"].index_bytes == dep["lora-rag"]["index_bytes"] == dep["rag"]["index_bytes"]
    ans = cells["lora"]["answer"]
    assert f["lora"].queries_per_s == pytest.approx(ans["queries_per_s"])
    assert ans["queries_per_s"] == pytest.approx(ans["queries"] / ans["wall_s"], rel=1e-3)
    assert f["zero-shot"].base_bytes == 134_515_008 * 4  # total_params x float32
    # a full fine-tune's replica holds its own copy of every weight (its record's base_bytes is 0)
    assert dep["full-ft"]["base_bytes"] == 0 and f["full-ft"].base_bytes == dep["full-ft"]["own_weights_bytes"] > 0
    held = serving.deployment(f["full-ft"])
    assert held.own_weights_bytes == dep["full-ft"]["own_weights_bytes"] and held.base_bytes == 0
    assert f["zero-shot"].moving_parts == 0 and f["lora-rag"].moving_parts == 2


def test_unknown_kind_and_bad_facts():
    with pytest.raises(ConfigError, match="unknown strategy kind"):
        Facts("x", "distill")
    with pytest.raises(ConfigError, match="queries_per_s"):
        Facts("x", "rag", queries_per_s=-1)
    with pytest.raises(ConfigError, match="unknown fact"):
        Facts.of({"name": "x", "kind": "rag", "qps": 1})
