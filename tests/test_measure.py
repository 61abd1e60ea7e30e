"""Measurements a decision needs (issue 15, the run side): the latency probe and its TTFT, throughput,
memory per cell and deployment bytes, sweeps selected on validation only, learning curves, and the
under-training / over-fitting flags."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import pytest

from harness.analysis.training_flags import MIN_STEPS, assessed, training_flags
from harness.core.errors import ConfigError
from harness.core.records import read_jsonl
from harness.core.types import Prediction, Usage
from harness.engine import probe, tuning
from harness.engine.config import make_config
from harness.engine.runner import run
from harness.methods import registry
from harness.methods.strategy import StrategyBase


def _run(tmp_path, body: str, name: str = "run", cache: bool = True, **over):
    exp = tmp_path / f"{name}.yaml"
    exp.write_text(body)
    run_dir = run(make_config(str(exp), {"out": str(tmp_path / name), **over}), progress=False, log=lambda m: None,
                  cache=cache)
    results = json.loads((run_dir / "results.json").read_text())
    return run_dir, results, {c["strategy"]: c for c in results["cells"]}


@pytest.fixture(scope="module")
def measured(tiny_model, tmp_path_factory):
    """One run on the tiny model: prompting, RAG, LoRA with a learning curve and a full fine-tune, probed."""
    from conftest import write_corpus

    tmp = tmp_path_factory.mktemp("measured")
    corpus = write_corpus(tmp / "tiny")
    body = f"""
benchmark: {corpus}
model: {tiny_model}
device: cpu
max_new_tokens: 16
batch_size: 6
latency_probe: 3
strategies:
  zero-shot: {{}}
  rag: {{k: 1}}
  lora: {{epochs: 2, batch_size: 2, r: 4, alpha: 8, train_sizes: [0, 4, all]}}
  full-ft: {{epochs: 1, batch_size: 4, train_layers: 1}}
"""
    run_dir, results, cells = _run(tmp, body)
    again = _run(tmp, body, name="again")
    return run_dir, results, cells, again


def test_probe_answers_one_query_at_a_time(measured):
    """Each probed question is sent alone through the prepared strategy and gets the answer and the
    prompt it got inside its batch. Whether one query alone is faster than its batch is a speed claim,
    shown on the real model by the committed example's report (batch-1 p95 beside the batched wait), not
    asserted here: on the tiny model a batch of 6 costs about what one query costs (per-step overhead,
    not compute), so a timed assertion would only measure the machine's noise."""
    run_dir, results, cells, _ = measured
    rows = {(r["strategy"], r["id"]): r for r in read_jsonl(run_dir / "predictions.jsonl")}
    ids = None
    for name, c in cells.items():
        assert c["status"] == "ok", c.get("error")
        p = c["probe"]
        ids = ids or p["ids"]
        assert p["ids"] == ids and p["n"] == 3  # the same questions for every strategy
        # greedy decoding: one query alone gives the answer it got inside its batch
        assert p["same_as_batched"] == 3 and all(q["same_as_batched"] for q in p["queries"])
        for q in p["queries"]:
            assert q["prompt_tokens"] == rows[(name, q["id"])]["usage"]["prompt_tokens"]  # alone: no padding counted
            assert 0 < q["ttft_s"] <= q["generation_s"] <= q["latency_s"]
        assert p["decode_s_per_token"] > 0 and p["ttft_p50_s"] <= p["latency_p50_s"]
    assert cells["rag"]["probe"]["retrieval_p50_s"] > 0 and cells["zero-shot"]["probe"]["retrieval_p50_s"] == 0
    assert ids == probe.choose([e for e in _tests(results)], 3)


def _tests(results):
    from harness.data.benchmark import load_benchmark

    return load_benchmark(results["config"]["benchmarks"][0]).split("test")


def test_throughput_is_queries_and_tokens_per_answering_second(measured):
    _, _, cells, _ = measured
    for c in cells.values():
        a = c["answer"]
        lo, hi = a["wall_s"] - 5e-4, a["wall_s"] + 5e-4  # wall_s is rounded to the millisecond
        assert a["queries"] / hi <= a["queries_per_s"] <= a["queries"] / lo
        assert a["output_tokens_total"] / hi <= a["output_tokens_per_s"] <= a["output_tokens_total"] / lo


def test_a_rerun_keeps_the_probe_as_measured(measured):
    _, _, cells, (_, _, again) = measured
    for name, c in again.items():
        assert c["cached"], name  # nothing recomputed: not the answers, the probe or the curve
        assert c["probe"] == cells[name]["probe"]
        assert c["memory"] == cells[name]["memory"] and c["deployment"] == cells[name]["deployment"]


def test_probe_sample_is_fixed_by_the_ids():
    from harness.core.types import Example

    exs = [Example(f"q{i}", "?", ("a",), "test", "extractive_qa") for i in range(30)]
    first = probe.choose(exs, 5)
    assert probe.choose(list(reversed(exs)), 5) == first  # not by order
    assert probe.choose(exs[:20], 5) == [i for i in probe.choose(exs, 30) if int(i[1:]) < 20][:5]
    assert probe.choose(exs, 0) == []
    want = sorted((e.id for e in exs), key=lambda i: hashlib.sha256(f"probe:{i}".encode()).hexdigest())[:5]
    assert first == want


def test_runtime_times_the_first_token(tiny_model):
    from harness.model.runtime import Runtime

    rt = Runtime(str(tiny_model), device="cpu", progress=False)
    prompt = rt.encode_chat([{"role": "user", "content": "Who opened the Harbor City bridge?"}])
    for gen in (rt.generate, rt.generate_hf):
        [g] = gen([prompt], max_new_tokens=8, stop_at_newline=False)
        assert g.batch_size == 1 and g.output_tokens > 1
        assert 0 < g.first_token_seconds < g.batch_seconds


def test_learning_curve_points(measured):
    run_dir, results, cells, _ = measured
    lc = cells["lora"]["learning_curve"]
    pts = {p["size"]: p for p in lc["points"]}
    assert list(pts) == [0, 4, "all"]
    zero_shot = {r["id"]: r["output"] for r in map(json.loads, (run_dir / "predictions.jsonl").read_text().splitlines())
                 if r["strategy"] == "zero-shot"}
    # 0: the untuned base model with lora's own (closed-book) prompt: exactly what zero-shot answered
    assert pts[0]["outputs"] == zero_shot
    assert pts[4]["fit_examples"] == 4 and pts[4]["steps"] == 2 * 2  # 4 examples, batch 2, 2 epochs
    assert pts["all"]["from_cell"] and pts["all"]["train_examples"] == 12
    assert pts["all"]["metric"] == cells["lora"]["metrics"]["f1"]
    for p in pts.values():
        assert set(p["metric"]) >= {"mean", "low", "high"} and p["metric"]["n"] == 6
    md = (run_dir / "report.md").read_text()
    assert "### Learning curves" in md and "| lora | 12 (all) |" in md


def test_nested_subsets_and_bad_sizes(tmp_path, tiny_corpus):
    from harness.core.types import Example

    pool = [Example(f"t{i}", "?", ("a",), "train", "extractive_qa") for i in range(50)]
    sets = tuning.nested_subsets(pool, [5, 20], seed=3)
    assert sets[5] == sets[20][:5] and len(set(e.id for e in sets[20])) == 20
    assert tuning.nested_subsets(pool, [5], seed=3)[5] == sets[5] != tuning.nested_subsets(pool, [5], seed=4)[5]
    exp = tmp_path / "bad.yaml"
    exp.write_text(f"benchmark: {tiny_corpus}\nstrategies:\n  rag:\n    train_sizes: [0, 4]\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:4: .*train_sizes is for fine-tuning strategies"):
        make_config(str(exp), {})
    exp.write_text(f"benchmark: {tiny_corpus}\nstrategies:\n  lora:\n    train_sizes: [0, -4]\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:4: .*integers >= 0"):
        make_config(str(exp), {})
    from harness.engine.plan import plan

    exp.write_text(f"benchmark: {tiny_corpus}\nstrategies:\n  lora:\n    train_sizes: [0, 64, all]\n")
    with pytest.raises(ConfigError, match="train_sizes 64 is more than the 12 train examples"):
        plan(make_config(str(exp), {}))


def test_per_cell_memory_does_not_inherit_an_earlier_cells_peak(tiny_model, tiny_corpus, tmp_path):
    """A cell that keeps 300 MB alive (as models kept for reuse do) must not put it on the next cell."""
    import torch

    @dataclass(frozen=True)
    class NoConfig:
        pass

    class Hog(StrategyBase):
        kept = []

        def prepare(self, ctx):
            self.ctx = ctx
            Hog.kept.append(torch.ones(300 * 2**20 // 4))  # 300 MB, still resident when the next cell runs
            return {}

        def answer(self, examples):
            return [Prediction(e.id, "x", Usage(seconds=0.01, latency_seconds=0.01)) for e in examples]

    saved = dict(registry._REGISTRY)
    registry._REGISTRY["t-hog"] = registry.StrategySpec("t-hog", Hog, NoConfig, "holds 300 MB")
    Hog.name = "t-hog"
    try:
        # cache=False: a zero-shot cell of the same key cached by another test would bring that test's memory record
        _, _, cells = _run(tmp_path, f"benchmark: {tiny_corpus}\nmodel: {tiny_model}\ndevice: cpu\n"
                                     "max_new_tokens: 4\nlatency_probe: 0\nstrategies: [t-hog, zero-shot]\n",
                           cache=False)
    finally:
        registry._REGISTRY.clear()
        registry._REGISTRY.update(saved)
        Hog.kept.clear()
    hog, zs = cells["t-hog"]["memory"], cells["zero-shot"]["memory"]
    assert hog["rise_mb"] > 280 and hog["cell_mb"] == pytest.approx(hog["base_mb"] + hog["rise_mb"], abs=0.2)
    # the 300 MB were still resident when zero-shot began (against the hog's own start: base_mb, measured at model
    # load, can carry an earlier test's garbage that release_memory later returned to the OS)
    assert zs["start_rss_mb"] > hog["start_rss_mb"] + 280
    assert zs["rise_mb"] < 100 and zs["cell_mb"] < hog["cell_mb"] - 200  # but are not zero-shot's
    # the process's high-water mark would have given zero-shot the hog's memory
    assert cells["zero-shot"]["answer"]["peak_rss_mb"] > zs["cell_mb"] + 200


def test_deployment_bytes(measured):
    run_dir, results, cells, _ = measured
    base = results["model"]["weights_bytes"]
    assert base > 0
    zs, rag, lora, full = (cells[s]["deployment"] for s in ("zero-shot", "rag", "lora", "full-ft"))
    assert zs["total_bytes"] == zs["base_bytes"] == base and zs["shares_base"]
    assert rag["embedder_bytes"] > 10 * 2**20 and rag["index_bytes"] > 0 and rag["base_bytes"] == base
    assert 0 < lora["adapter_bytes"] < base and lora["shares_base"]
    # a full fine-tune holds its own copy of every weight, and shares no base
    assert full["base_bytes"] == 0 and full["own_weights_bytes"] == base and not full["shares_base"]
    md = (run_dir / "report.md").read_text()
    assert "### Memory" in md and "### Single-query latency and throughput" in md


# ---- sweeps -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SpyConfig:
    skill: float = 0.0  # share of questions it answers right (1: all, 0: none)


class Spy(StrategyBase):
    """Answers right on a `skill` share of the questions it is given, and logs every id it sees."""

    log: list = []

    def prepare(self, ctx):
        self.ctx = ctx
        Spy.log.append(("train", self.config.skill, [e.id for e in ctx.train_examples()]))
        return {}

    def answer(self, examples):
        Spy.log.append(("answer", self.config.skill, [e.id for e in examples]))
        right = lambda e: int(hashlib.sha256(e.id.encode()).hexdigest(), 16) % 100 < 100 * self.config.skill  # noqa: E731
        return [Prediction(e.id, e.answers[0] if right(e) else "zzz", Usage(seconds=0.01, latency_seconds=0.01))
                for e in examples]


@pytest.fixture
def spy():
    saved = dict(registry._REGISTRY)
    registry._REGISTRY["t-spy"] = registry.StrategySpec("t-spy", Spy, SpyConfig, "logs what it sees")
    Spy.name = "t-spy"
    Spy.log.clear()
    try:
        yield Spy.log
    finally:
        registry._REGISTRY.clear()
        registry._REGISTRY.update(saved)


def test_sweep_selects_on_validation_and_never_sees_a_test_id(spy, tiny_model, tiny_corpus, tmp_path):
    run_dir, results, cells = _run(tmp_path, f"""
benchmark: {tiny_corpus}
model: {tiny_model}
device: cpu
latency_probe: 2
sweep_validation: 4
strategies:
  t-spy:
    sweep: {{skill: [0.0, 1.0, 0.5]}}
""")
    from harness.data.benchmark import load_benchmark

    bench = load_benchmark(str(tiny_corpus))
    test = {e.id for e in bench.split("test")}
    train = {e.id for e in bench.split("train")}
    c = cells["t-spy"]
    sw = c["sweep"]
    val = set(sw["validation"]["ids"])
    assert len(val) == 4 and val <= train and not val & test
    assert sw["selected"] == 1 and c["config"]["skill"] == 1.0  # the best on validation answered test
    assert [p["validation"]["mean"] for p in sw["points"]][:2] == [0.0, 1.0]
    # selection: every point trained without the validation questions, and answered only them
    selection = spy[:6]
    assert [(kind, skill) for kind, skill, _ in selection] == [("train", 0.0), ("answer", 0.0), ("train", 1.0),
                                                               ("answer", 1.0), ("train", 0.5), ("answer", 0.5)]
    for kind, _, ids in selection:
        assert not set(ids) & test
        assert set(ids) == val if kind == "answer" else set(ids) == train - val
    # after selection, only the selected point meets the test questions (batched, then the probe)
    assert all(skill == 1.0 and set(ids) <= test for kind, skill, ids in spy[6:])
    assert set(spy[6][2]) == test
    md = (run_dir / "report.md").read_text()
    assert "### Sweeps, selected on validation" in md and "| **skill=1.0** | 1.000" in md
    assert "**selected, answered test**" in md


def test_sweep_validation_is_fixed_and_leaves_the_limit_alone(tiny_corpus):
    from harness.data.benchmark import load_benchmark

    bench = load_benchmark(str(tiny_corpus))
    carved, val = tuning.carve_validation(bench, 8, 3)
    pool = bench.split("train")[:8]
    assert val == tuning.validation_split(list(reversed(pool)), 3) and set(val) <= set(pool)
    assert {e.id for e in carved.split("train")} == {e.id for e in pool} - {e.id for e in val}
    assert {e.id for e in carved.split("validation")} == {e.id for e in val}
    assert len(carved.split("unused")) == len(bench.split("train")) - 8  # past train_limit: not trained on
    assert carved.split("test") == bench.split("test")


def test_sweep_config_errors_name_the_line(tmp_path, tiny_corpus):
    exp = tmp_path / "s.yaml"
    cases = [("    sweep: {kk: [1, 2]}\n", r"s.yaml:4: .*unknown option"),
             ("    k: 2\n    sweep: {k: [1, 2]}\n", r"s.yaml:5: .*both set and swept"),
             ("    sweep: {k: 2}\n", r"s.yaml:4: .*must be a non-empty list"),
             ("    sweep: {k: [1]}\n", r"s.yaml:4: .*at least two points"),
             ("    sweep: {k: [1, 2, 3, 4, 5], chunk_words: [40, 50, 60, 70]}\n", r"s.yaml:4: .*20 points; at most 16")]
    for entry, match in cases:
        exp.write_text(f"benchmark: {tiny_corpus}\nstrategies:\n  rag:\n{entry}")
        with pytest.raises(ConfigError, match=match):
            make_config(str(exp), {})
    exp.write_text(f"benchmark: {tiny_corpus}\nlatency_probe: -1\n")
    with pytest.raises(ConfigError, match=r"s.yaml:2: .*latency_probe must be an integer >= 0"):
        make_config(str(exp), {})


# ---- training flags -----------------------------------------------------------------------------

def _flags(curve, held=(), steps=None):
    return {f["flag"] for f in training_flags(curve, held, steps)}


def test_flags_on_synthetic_loss_curves():
    import math
    import random

    rng = random.Random(0)
    falling = [3 * math.exp(-i / 60) + rng.gauss(0, 0.05) for i in range(80)]  # cut off mid-descent
    flat = [1.0 + 2 * math.exp(-i / 5) + rng.gauss(0, 0.05) for i in range(80)]  # converged early
    assert _flags(falling) == {"still_falling"}
    assert _flags(flat) == set()
    assert _flags(flat[:12]) == {"few_steps", "still_falling"}
    assert "few_steps" in _flags(flat, steps=MIN_STEPS - 1) and "few_steps" not in _flags(flat, steps=MIN_STEPS)
    assert _flags(flat, [1.30, 1.20, 1.29]) == {"overfitting"}  # held-out rose 7.5% above its best
    assert _flags(flat, [1.30, 1.20, 1.21]) == set()  # within the 2% jitter
    assert _flags(flat, [1.50, 1.30]) == {"held_out_falling"}
    noisy = [1.0 + rng.gauss(0, 0.3) for _ in range(80)]  # no trend, only noise: no flag
    assert _flags(noisy) == set()
    assert assessed([1.0]).startswith("one held-out value") and assessed([1.0, 0.9]) is None


def test_flags_reach_the_record_and_the_report(measured):
    run_dir, _, cells, _ = measured
    flags = cells["lora"]["prepare"]["training_flags"]
    assert [f["flag"] for f in flags][:1] == ["few_steps"]  # 12 steps on the tiny corpus
    md = (run_dir / "report.md").read_text()
    assert "**Under-training and over-fitting flags**" in md and "- lora: only 12 optimizer steps" in md


def test_a_new_probe_size_probes_again_and_answers_nothing_again(tiny_model, tiny_corpus, tmp_path):
    body = f"benchmark: {tiny_corpus}\nmodel: {tiny_model}\ndevice: cpu\nmax_new_tokens: 4\nstrategies: [zero-shot]\n"
    _, _, first = _run(tmp_path, body + "latency_probe: 2\n", name="first")
    _, _, second = _run(tmp_path, body + "latency_probe: 4\n", name="second")
    _, _, third = _run(tmp_path, body + "latency_probe: 0\n", name="third")
    a, b, c = first["zero-shot"], second["zero-shot"], third["zero-shot"]
    assert a["probe"]["n"] == 2 and b["probe"]["n"] == 4 and b["probe"]["ids"][:2] == a["probe"]["ids"]
    assert b["cache"]["predictions_computed"] == 0 and not b["cached"]  # probed again, answers from the cache
    assert c["cached"] and "probe" not in c


@pytest.mark.parametrize("name", ["default.yaml", "full.yaml"])
def test_shipped_configs_plan_their_sweeps_and_curves(name):
    from pathlib import Path

    from harness.engine.plan import plan

    cfg = make_config(str(Path(__file__).resolve().parents[1] / "configs" / name), {})
    cells = plan(cfg).cells(cfg.seeds)  # sizes and the validation split checked against the train split
    assert any(c.train_sizes for c in cells) and cfg.latency_probe > 0
