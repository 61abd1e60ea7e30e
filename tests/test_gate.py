"""`harness gate`: identical runs pass, a seeded degradation fails, unusable inputs exit 2.

The reproducibility check runs the tiny model twice with the cache off and gates one against the other.
"""
from __future__ import annotations

import json
import random
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.analysis import metrics
from harness.core.errors import HarnessError
from harness.core.records import read_jsonl, write_json, write_jsonl
from harness.data.benchmark import load_benchmark
from harness.engine.config import RunConfig
from harness.engine.runner import run
from harness.report.gate import compare, gate, load_run


def make_corpus(folder: Path, n: int, *, name="tiny", variant="") -> Path:
    """A corpus of n test questions; question i's gold answer is "city i" (`variant` changes the data)."""
    if folder.exists():
        return folder
    folder.mkdir(parents=True)
    (folder / "documents.jsonl").write_text(json.dumps({"id": "d0", "text": "Cities and their numbers."}) + "\n")
    (folder / "questions.jsonl").write_text("".join(
        json.dumps({"id": f"q{i}", "question": f"Which city is number {i}?{variant}", "answers": [f"city {i}"],
                    "split": "test"}) + "\n" for i in range(n)))
    (folder / "benchmark.json").write_text(json.dumps({"name": name, "task": "extractive_qa"}))
    return folder


def make_run(folder: Path, outputs: dict[str, list[str]], *, bench="tiny", variant="", latency=1.0, seed=0) -> Path:
    """A run record with one cell per strategy, on a corpus of as many questions as the longest output
    list (one per benchmark name and variant, beside the run folders)."""
    n = max(len(o) for o in outputs.values())
    corpus = make_corpus(folder.parent / f"corpus-{bench}-{n}{variant and '-' + str(abs(hash(variant)))}", n,
                         name=bench, variant=variant)
    data = load_benchmark(str(corpus)).meta["data_sha256"]
    rows, cells = [], []
    for strat, outs in outputs.items():
        for i, out in enumerate(outs):
            s = metrics.score(out, [f"city {i}"], "", "extractive_qa")
            rows.append({"strategy": strat, "benchmark": bench, "seed": seed, "id": f"q{i}", "output": out, **s,
                         "usage": {"seconds": latency / 4, "latency_seconds": latency}})
        cells.append({"strategy": strat, "benchmark": bench, "seed": seed, "status": "ok"})
    folder.mkdir(parents=True)
    write_json(folder / "results.json", {"schema_version": 1, "cells": cells, "pricing": {"usd_per_hour": 1.0},
                                         "config": {"benchmarks": [str(corpus)], "seeds": [seed]},
                                         "benchmarks": [{"name": bench, "data_sha256": data, "path": str(corpus)}]})
    write_jsonl(folder / "predictions.jsonl", rows)
    return folder


def right(n):
    return [f"city {i}" for i in range(n)]


def corrupt(outs, share, seed=0):
    outs = list(outs)
    for i in random.Random(seed).sample(range(len(outs)), round(len(outs) * share)):
        outs[i] = "corrupted"
    return outs


def run_gate(base, cur, **kw):
    return gate(str(base), str(cur), out=lambda m: None, **kw)


def test_identical_results_pass_and_write_junit(tmp_path):
    outs = {"rag": corrupt(right(100), 0.5), "lora": corrupt(right(100), 0.7)}
    base, cur = make_run(tmp_path / "a", outs), make_run(tmp_path / "b", outs)
    junit = tmp_path / "gate.xml"
    assert run_gate(base / "results.json", cur, junit=str(junit)) == 0
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("tests") == "2" and suite.get("failures") == "0"


def test_answers_corrupted_for_20_percent_of_questions_fail(tmp_path):
    base = make_run(tmp_path / "a", {"rag": right(100), "lora": right(100)})
    cur = make_run(tmp_path / "b", {"rag": corrupt(right(100), 0.2), "lora": right(100)})
    lines = []
    junit = tmp_path / "gate.xml"
    assert gate(str(base), str(cur), junit=str(junit), out=lines.append) == 1
    text = "\n".join(lines)
    assert "failed: rag on tiny: f1 may have dropped by more than 0.02: -0.200" in text
    assert [ln.split(":")[1] for ln in text.splitlines() if ln.startswith("failed:")] == [" rag on tiny"]
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    assert cases["rag"].find("failure") is not None and cases["lora"].find("failure") is None


def test_non_inferiority_not_a_point_drop(tmp_path):
    # one question of 200 worse: the point estimate drops, but the interval rules out a drop of 0.02
    base = make_run(tmp_path / "a", {"rag": right(200)})
    cur = make_run(tmp_path / "b", {"rag": ["wrong"] + right(200)[1:]})
    assert run_gate(base, cur) == 0
    # the same drop on 20 questions cannot rule out a 0.02 drop: the gate fails
    base = make_run(tmp_path / "c", {"rag": right(20)})
    cur = make_run(tmp_path / "d", {"rag": ["wrong"] + right(20)[1:]})
    assert run_gate(base, cur) == 1
    assert run_gate(base, cur, margin=0.5) == 0


def test_latency_and_cost_ratios(tmp_path):
    base = make_run(tmp_path / "a", {"rag": right(10)}, latency=1.0)
    cur = make_run(tmp_path / "b", {"rag": right(10)}, latency=1.6)
    assert run_gate(base, cur) == 0  # not checked unless asked
    assert run_gate(base, cur, max_latency_ratio=2.0, max_cost_ratio=2.0) == 0
    assert run_gate(base, cur, max_latency_ratio=1.5) == 1
    assert run_gate(base, cur, max_cost_ratio=1.5) == 1


def test_missing_or_failed_strategy_fails_new_one_is_skipped(tmp_path):
    base = make_run(tmp_path / "a", {"rag": right(10), "lora": right(10)})
    cur = make_run(tmp_path / "b", {"rag": right(10), "ia3": right(10)})
    lines = []
    assert gate(str(base), str(cur), out=lines.append) == 1
    text = "\n".join(lines)
    assert "failed: lora on tiny: strategy missing from the current run" in text
    assert "skipped: ia3 on tiny: new in the current run" in text
    results = json.loads((cur / "results.json").read_text())
    results["cells"][0].update(status="failed", error="loss became nan")
    write_json(cur / "results.json", results)
    lines = []
    assert gate(str(base), str(cur), out=lines.append) == 1
    assert "rag on tiny: failed in the current run: loss became nan" in "\n".join(lines)


def test_unusable_inputs_exit_2(tmp_path):
    base = make_run(tmp_path / "a", {"rag": right(10)})
    with pytest.raises(HarnessError, match="no results.json"):
        run_gate(base, tmp_path / "nowhere")
    other = make_run(tmp_path / "b", {"rag": right(10)}, bench="boolq")
    with pytest.raises(HarnessError, match="different benchmarks"):
        run_gate(base, other)
    changed = make_run(tmp_path / "c", {"rag": right(10)}, variant=" (edited)")
    with pytest.raises(HarnessError, match="differs between the runs"):
        run_gate(base, changed)
    seed1 = make_run(tmp_path / "d", {"rag": right(10)}, seed=1)
    with pytest.raises(HarnessError, match="share no question ids"):
        run_gate(base, seed1)
    (seed1 / "predictions.jsonl").unlink()
    with pytest.raises(HarnessError, match="predictions.jsonl is missing"):
        run_gate(base, seed1)
    with pytest.raises(HarnessError, match="unknown metric"):
        run_gate(base, base, metric="bleu")
    assert HarnessError.exit_code == 2


def test_same_seed_twice_gives_identical_predictions_and_the_gate_passes(tiny_model, tiny_corpus, tmp_path):
    """Reproducibility: two runs with the cache off give the same answers; a corrupted copy fails."""
    opts = {"zero-shot": {}, "rag": {"k": 2}, "lora": {"epochs": 1, "r": 4, "alpha": 8}}
    runs = []
    for name in ("a", "b"):
        cfg = RunConfig(benchmarks=(str(tiny_corpus),), strategies=tuple(opts), options=opts, model=str(tiny_model),
                        device="cpu", max_new_tokens=6, batch_size=4, out=str(tmp_path / name))
        runs.append(run(cfg, progress=False, log=lambda m: None, cache=False))
    a, b = (read_jsonl(r / "predictions.jsonl") for r in runs)
    assert [r["output"] for r in a] == [r["output"] for r in b]
    assert gate(str(runs[0]), str(runs[1]), out=lambda m: None) == 0
    checks = compare(load_run(str(runs[0])), load_run(str(runs[1])))
    assert [(c.strategy, c.status, c.changed, c.diff["mean"]) for c in checks] == [
        ("lora", "passed", 0, 0.0), ("rag", "passed", 0, 0.0), ("zero-shot", "passed", 0, 0.0)]

    # The manifest says what produced the run.
    results = json.loads((runs[0] / "results.json").read_text())
    env = results["environment"]
    assert env["git_commit"] and isinstance(env["git_dirty"], bool) and env["cores"] and env["cpu"]
    assert env["packages"]["torch"] and len(results["model"]["content_sha256"]) == 64
    assert results["benchmarks"][0]["data_sha256"] and results["config"]["seeds"] == [0]
    rag = next(c for c in results["cells"] if c["strategy"] == "rag")
    assert rag["prepare"]["index"]["chunk_words"] == 100 and rag["config"]["k"] == 2

    # A seeded degradation: lora answers the gold answer in the baseline, and is corrupted for 20%
    # of questions in the current copy.
    def rewrite(src: Path, dst: Path, outputs):
        shutil.copytree(src, dst)
        rows = read_jsonl(dst / "predictions.jsonl")
        lora = [r for r in rows if r["strategy"] == "lora"]
        for r, out in zip(lora, outputs):
            r.update(output=out, **metrics.score(out, r["answers"], r["question"]))
        write_jsonl(dst / "predictions.jsonl", rows)
        return dst

    gold = [r["answers"][0] for r in a if r["strategy"] == "lora"]
    base = rewrite(runs[0], tmp_path / "gold", gold)
    cur = rewrite(runs[1], tmp_path / "corrupted", corrupt(gold, 0.2))
    lines = []
    assert gate(str(base), str(cur), out=lines.append) == 1
    failed = [ln for ln in "\n".join(lines).splitlines() if ln.startswith("failed:")]
    assert len(failed) == 1 and failed[0].startswith("failed: lora on tiny")


def test_cli_exit_status(tmp_path, capsys):
    from harness.cli import main

    base = make_run(tmp_path / "a", {"rag": right(50)})
    cur = make_run(tmp_path / "b", {"rag": corrupt(right(50), 0.2)})
    assert main(["gate", "--baseline", str(base), "--current", str(base)]) == 0
    assert main(["gate", "--baseline", str(base), "--current", str(cur), "--junit", str(tmp_path / "j.xml")]) == 1
    assert "FAILED" in capsys.readouterr().out and (tmp_path / "j.xml").is_file()
    assert main(["gate", "--baseline", str(base), "--current", str(tmp_path / "none")]) == 2
