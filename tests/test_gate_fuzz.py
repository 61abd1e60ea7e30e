"""The gate cannot be fooled (hypothesis): random edits to the current run's outputs, per-row scores,
usage, row fields and results.json; the gate's verdict equals the verdict computed here from the
outputs alone, rescored against the corpus's own gold answers, or the gate refuses the input with a
HarnessError (exit 2). Any other exception is a bug.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_gate import make_run

from harness.analysis import metrics
from harness.core.errors import HarnessError
from harness.core.records import read_jsonl
from harness.report.gate import N_BOOT, SEED, gate

N = 12
MARGIN = 0.02
GOLD = [f"city {i}" for i in range(N)]
BASE = [g if i % 3 else "no idea" for i, g in enumerate(GOLD)]  # 8 of 12 right: the current can rise or fall

TEXT = st.one_of(st.sampled_from(GOLD + ["I cannot answer.", "", "city", "City 3.", "The answer is city 4",
                                         "city 1\ncity 2", "  city 5  "]),
                 st.text(max_size=20))
JSON = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**12), st.floats(allow_nan=True, allow_infinity=True),
                 st.text(max_size=8), st.lists(st.integers(), max_size=2),
                 st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
ROW = st.integers(0, N - 1)
OUTPUT = st.tuples(st.just("output"), ROW, TEXT)
SCORE = st.tuples(st.just("score"), ROW, st.sampled_from(["f1", "exact_match", "contains", "extracted"]),
                  st.one_of(JSON, st.just(1.0), st.just(1e9)))
FINITE_SCORE = SCORE.filter(lambda e: _finite(e[3]))
BENIGN = st.one_of(OUTPUT, FINITE_SCORE)  # what leaves the records readable: the verdict must follow the outputs
HOSTILE = st.one_of(
    SCORE,
    st.tuples(st.just("usage"), ROW, st.sampled_from(["latency_seconds", "seconds"]), JSON),
    st.tuples(st.just("row"), ROW, st.sampled_from(["strategy", "seed", "benchmark", "id", "trace", "answers",
                                                    "question"]), st.one_of(JSON, TEXT, st.just("rag"),
                                                                            st.just("tiny"), st.just(0))),
    st.tuples(st.just("drop"), ROW),
    st.tuples(st.just("dup"), ROW),
    st.tuples(st.just("record"), st.sampled_from(["status", "data_sha256", "usd_per_hour", "seed", "cells",
                                                  "extra_cell"]), st.one_of(JSON, st.just("ok"),
                                                                            st.just("failed"))),
)
EDITS = st.builds(lambda a, b: a + b, st.lists(BENIGN, max_size=8), st.lists(HOSTILE, max_size=3))


def _finite(v) -> bool:
    try:
        json.dumps(v, allow_nan=False)
    except ValueError:
        return False
    return True

def apply(edits, results: dict, rows: list[dict]) -> tuple[dict, list[dict]]:
    rows = [dict(r) for r in rows]
    for e in edits:
        try:
            _apply_one(e, results, rows)
        except (TypeError, KeyError, IndexError, AttributeError):
            pass  # an edit that no longer applies (the cells were replaced by a string): skipped
    return results, rows


def _apply_one(e, results: dict, rows: list[dict]) -> None:
    kind, arg = e[0], e[1]
    i = arg if isinstance(arg, int) and arg < len(rows) else None
    if kind == "output" and i is not None:
        rows[i]["output"] = e[2]
    elif kind == "score" and i is not None:
        rows[i][e[2]] = e[3]
    elif kind == "usage" and i is not None:
        rows[i]["usage"] = {**rows[i]["usage"], e[2]: e[3]}
    elif kind == "row" and i is not None:
        rows[i][e[2]] = e[3]
    elif kind == "drop" and i is not None:
        rows.pop(i)
    elif kind == "dup" and i is not None:
        rows.append(dict(rows[i]))
    elif kind == "record":
        value = e[2]
        if arg == "status":
            results["cells"][0]["status"] = value
        elif arg == "data_sha256":
            results["benchmarks"][0]["data_sha256"] = value
        elif arg == "usd_per_hour":
            results["pricing"]["usd_per_hour"] = value
        elif arg == "seed":
            results["cells"][0]["seed"] = value
        elif arg == "cells":
            results["cells"] = value
        elif arg == "extra_cell":
            results["cells"] = results["cells"] + [{"strategy": "other", "benchmark": "tiny", "seed": 0,
                                                    "status": value}]


def expected(results: dict, rows: list[dict], base_rows: list[dict]) -> int:
    """The verdict from the outputs alone: 1 when rag must fail, 0 when it passes."""
    cur = {(r.get("seed", 0), r["id"]): r["output"] for r in rows if r.get("strategy", "external") == "rag"}
    base = {(r["seed"], r["id"]): r["output"] for r in base_rows}
    cells = [c for c in results["cells"] if c["strategy"] == "rag"]
    if any(c["status"] != "ok" for c in cells) or (not cells and not cur):
        return 1
    shared = sorted(set(base) & set(cur), key=str)
    gold = {(0, f"q{i}"): [g] for i, g in enumerate(GOLD)}
    c_v = [metrics.score(cur[k], gold[(0, k[1])])["f1"] for k in shared]
    b_v = [metrics.score(base[k], gold[k])["f1"] for k in shared]
    low = metrics.paired_bootstrap_diff(c_v, b_v, n_boot=N_BOOT, seed=SEED)["low"]
    return 1 if set(base) - set(cur) or low < -MARGIN else 0


@pytest.mark.reliability("fuzz", "gate (hypothesis): random edits to outputs, per-row scores, usage, row fields and "
                                 "results.json give the verdict of the rescored outputs, or exit 2")
def test_gate_verdict_is_the_rescored_verdict(tmp_path):
    base = make_run(tmp_path / "base", {"rag": BASE})
    cur = tmp_path / "cur"
    shutil.copytree(base, cur)
    base_rows = read_jsonl(base / "predictions.jsonl")
    outcomes = []

    @settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(EDITS)
    def check(edits):
        results = json.loads((base / "results.json").read_text())
        results, rows = apply(edits, results, base_rows)
        # written as Python's json writes by default: NaN, Infinity and lone surrogates get through
        (cur / "results.json").write_text(json.dumps(results))
        (cur / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        try:
            rc = gate(str(base), str(cur), margin=MARGIN, out=lambda m: None)
        except HarnessError:
            outcomes.append(2)
            return
        assert rc == expected(results, rows, base_rows), edits
        outcomes.append(rc)

    check()
    print(f"gate fuzz: {outcomes.count(0)} passed, {outcomes.count(1)} failed, {outcomes.count(2)} refused (exit 2)")
    # the property is not vacuous: verdicts of both kinds were reached, and most inputs were usable
    assert outcomes.count(0) >= 20 and outcomes.count(1) >= 20, (outcomes.count(0), outcomes.count(1))
    assert outcomes.count(2) < len(outcomes) * 3 / 4, outcomes.count(2)


@pytest.mark.reliability("fuzz", "gate (hypothesis): stored per-row scores alone, however forged, never change the "
                                 "verdict")
def test_forged_scores_never_change_the_verdict(tmp_path):
    base = make_run(tmp_path / "base", {"rag": BASE})
    cur = tmp_path / "cur"
    shutil.copytree(base, cur)
    rows0 = read_jsonl(base / "predictions.jsonl")

    @settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(st.lists(OUTPUT, max_size=6), st.lists(FINITE_SCORE, max_size=6))
    def check(outputs, scores):
        _, rows = apply(outputs, {}, rows0)
        (cur / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        honest = gate(str(base), str(cur), margin=MARGIN, out=lambda m: None)
        _, forged = apply(scores, {}, rows)
        (cur / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in forged))
        assert gate(str(base), str(cur), margin=MARGIN, out=lambda m: None) == honest

    check()


def test_fuzz_helpers_are_sound(tmp_path):
    """The oracle itself: on unedited records it agrees with the gate, and the base is what it says."""
    base = make_run(tmp_path / "base", {"rag": BASE})
    rows = read_jsonl(base / "predictions.jsonl")
    results = json.loads((base / "results.json").read_text())
    assert expected(results, rows, rows) == 0 == gate(str(base), str(base), out=lambda m: None)
    worse = apply([("output", i, "no idea") for i in range(N)], results, rows)[1]
    assert expected(results, worse, rows) == 1
    assert Path(base / "predictions.jsonl").read_text().count("\n") == N
