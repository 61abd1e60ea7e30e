"""Issue 17: a gate that cannot be fooled, and every input the harness reads held to one standard.

Every case carries `@pytest.mark.reliability(kind, case)`; tests/reliability_table.py lists them in
docs/reliability.md. Bad input: one `error:` line naming the file (and line) and the problem, exit
status 2, nothing half-written. No test here loads a model unless it says so.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import write_corpus
from test_gate import corrupt, make_run, right

from harness.core.errors import ConfigError, HarnessError
from harness.core.records import loads_strict, read_jsonl, write_json, write_jsonl
from harness.engine.config import RunConfig
from harness.report.gate import gate

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "reports" / "example"
rel = pytest.mark.reliability


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """harness.cli.main in process, run folders under tmp; returns (rc, stderr lines, stdout, reports dir,
    model loads). Loading a model counts as work: the Runtime is replaced by one that records the call."""
    from harness import cli as cli_mod
    from harness.model import runtime

    reports = tmp_path / "reports"
    reports.mkdir()
    monkeypatch.setenv("HARNESS_REPORTS", str(reports))
    loads = []
    real = runtime.Runtime

    def spy(*args, **kwargs):
        loads.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(runtime, "Runtime", spy)

    def call(*argv):
        rc = cli_mod.main([str(a) for a in argv])
        cap = capsys.readouterr()
        return rc, [ln for ln in cap.err.splitlines() if ln.strip()], cap.out, reports, loads

    return call


def one_error(result, *needles, reports_empty=True) -> str:
    rc, err, _, reports, _ = result
    assert rc == 2, err
    assert len(err) == 1, err
    assert err[0].startswith("error: ") and "Traceback" not in err[0], err
    for n in needles:
        assert n in err[0], (n, err[0])
    if reports_empty:
        assert list(reports.iterdir()) == [], "nothing may be written under reports/"
    return err[0]


def copy_example(dst: Path) -> Path:
    shutil.copytree(EXAMPLE, dst)
    return dst


def raw_jsonl(path: Path, rows: list[dict]) -> None:
    """Lines as Python's json writes them by default: NaN and Infinity pass through (not JSON)."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


# -- the gate rescores: stored per-line scores are never trusted ---------------------------------

@rel("security", "gate: every answer replaced by 'I cannot answer.', stored per-row scores kept: the gate fails")
def test_gate_rescores_replaced_answers(cli, tmp_path):
    base = make_run(tmp_path / "base", {"rag": right(50), "lora": right(50)})
    cur = tmp_path / "cur"
    shutil.copytree(base, cur)
    rows = read_jsonl(cur / "predictions.jsonl")
    for r in rows:
        r["output"] = "I cannot answer."  # f1 / exact_match / contains still say 1.0
    write_jsonl(cur / "predictions.jsonl", rows)
    rc, err, out, _, _ = cli("gate", "--baseline", base, "--current", cur)
    assert rc == 1, err
    assert "failed: rag on tiny: f1 may have dropped" in out and "failed: lora on tiny" in out
    assert f"current tiny: scored against {tmp_path / 'corpus-tiny-50'}" in out


@rel("security", "gate: forged per-row scores are ignored, the outputs are rescored")
@pytest.mark.parametrize("forged", [1.0, 1e9, "1.0", True, None, -5], ids=repr)
def test_gate_ignores_forged_scores(tmp_path, forged):
    base = make_run(tmp_path / "base", {"rag": right(40)})
    cur = make_run(tmp_path / "cur", {"rag": corrupt(right(40), 0.5)})
    rows = read_jsonl(cur / "predictions.jsonl")
    for r in rows:
        r.update(f1=forged, exact_match=forged, contains=forged)
    write_jsonl(cur / "predictions.jsonl", rows)
    lines = []
    assert gate(str(base), str(cur), out=lines.append) == 1
    assert "failed: rag on tiny: f1 may have dropped by more than 0.02: -0.500" in "\n".join(lines)


NONFINITE = [
    pytest.param({"f1": float("nan")}, "NaN is not a JSON number", id="per-row f1 NaN"),
    pytest.param({"exact_match": float("inf")}, "Infinity is not a JSON number", id="per-row score Infinity"),
    pytest.param({"usage": {"latency_seconds": float("nan"), "seconds": 1.0}}, "NaN", id="latency NaN"),
    pytest.param({"usage": {"latency_seconds": 1.0, "seconds": -float("inf")}}, "-Infinity", id="seconds -Infinity"),
    pytest.param({"usage": {"latency_seconds": -1.0, "seconds": 1.0}}, "usage.latency_seconds must be a number >= 0",
                 id="negative latency"),
    pytest.param({"usage": {"latency_seconds": "fast"}}, "usage.latency_seconds must be a number", id="latency text"),
]


@rel("bad input", "gate: non-finite numbers in predictions.jsonl exit 2 naming file and line "
                  "(NaN passed every strategy)")
@pytest.mark.parametrize("edit, needle", NONFINITE)
def test_gate_refuses_non_finite(cli, tmp_path, edit, needle):
    base = make_run(tmp_path / "base", {"rag": right(20)})
    cur = make_run(tmp_path / "cur", {"rag": right(20)})
    rows = read_jsonl(cur / "predictions.jsonl")
    rows[6].update(edit)
    raw_jsonl(cur / "predictions.jsonl", rows)
    one_error(cli("gate", "--baseline", base, "--current", cur), f"{cur / 'predictions.jsonl'}:7: ", needle)


@rel("bad input", "gate: a NaN in results.json exits 2 naming the line")
def test_gate_refuses_nan_in_results(cli, tmp_path):
    base = make_run(tmp_path / "base", {"rag": right(20)})
    cur = make_run(tmp_path / "cur", {"rag": right(20)})
    res = json.loads((cur / "results.json").read_text())
    res["pricing"]["usd_per_hour"] = float("nan")
    (cur / "results.json").write_text(json.dumps(res, indent=1))
    text = (cur / "results.json").read_text()
    line = text[: text.index("NaN")].count("\n") + 1
    one_error(cli("gate", "--baseline", base, "--current", cur), f"{cur / 'results.json'}:{line}: NaN")


@rel("bad input", "gate: the README's external {id, output} lines are gated like a strategy")
def test_gate_external_predictions(cli, tmp_path):
    base = make_run(tmp_path / "base", {"rag": right(30)})
    cur = make_run(tmp_path / "cur", {"rag": right(30)})
    with open(base / "predictions.jsonl", "a") as f:
        f.writelines(json.dumps({"id": f"q{i}", "output": f"city {i}"}) + "\n" for i in range(30))
    with open(cur / "predictions.jsonl", "a") as f:
        f.writelines(json.dumps({"id": f"q{i}", "output": "no idea"}) + "\n" for i in range(30))
    rc, err, out, _, _ = cli("gate", "--baseline", base, "--current", cur)
    assert rc == 1, err
    assert "failed: external on tiny: f1 may have dropped by more than 0.02: -1.000" in out
    assert "rag on tiny" not in "\n".join(ln for ln in out.splitlines() if ln.startswith("failed"))


@rel("security", "gate: dropping the current run's worse answers cannot hide a regression")
def test_gate_missing_questions_fail(tmp_path):
    base = make_run(tmp_path / "base", {"rag": right(40)})
    cur = make_run(tmp_path / "cur", {"rag": corrupt(right(40), 0.5)})
    rows = [r for r in read_jsonl(cur / "predictions.jsonl") if r["f1"] == 1.0]  # only the good ones kept
    write_jsonl(cur / "predictions.jsonl", rows)
    lines = []
    assert gate(str(base), str(cur), out=lines.append) == 1
    assert "20 of the baseline's 40 questions have no answer in the current run" in "\n".join(lines)


@rel("security", "gate: a benchmark whose gold answers were edited after the run is refused (data hash)")
def test_gate_refuses_edited_gold(cli, tmp_path):
    base = make_run(tmp_path / "base", {"rag": right(20)})
    cur = make_run(tmp_path / "cur", {"rag": ["no idea"] * 20})
    corpus = tmp_path / "corpus-tiny-20"
    rows = read_jsonl(corpus / "questions.jsonl")
    for r in rows:
        r["answers"] = ["no idea"]  # every current answer would now be right
    write_jsonl(corpus / "questions.jsonl", rows)
    one_error(cli("gate", "--baseline", base, "--current", cur), "'tiny' is not the data the run answered",
              str(corpus))


@rel("security", "gate: a run whose benchmark cannot be loaded is refused, not scored against the answers "
                 "in its own lines")
def test_gate_needs_the_benchmark(cli, tmp_path):
    base = make_run(tmp_path / "base", {"rag": right(20)})
    cur = make_run(tmp_path / "cur", {"rag": ["no idea"] * 20})
    rows = read_jsonl(cur / "predictions.jsonl")
    for r in rows:
        r["answers"] = ["no idea"]
    write_jsonl(cur / "predictions.jsonl", rows)
    shutil.rmtree(tmp_path / "corpus-tiny-20")
    one_error(cli("gate", "--baseline", base, "--current", cur), "could not be loaded",
              "the gate scores against the benchmark's own gold answers")


# -- report and compare: the data hash, and which folder was scored against -----------------------

def _example_on_copied_corpus(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """The example run, its benchmark a copy of corpora/squadshifts_nyt given by path."""
    corpus = tmp_path / f"{name}-data" / "squadshifts_nyt"
    shutil.copytree(ROOT / "corpora" / "squadshifts_nyt", corpus)
    run = copy_example(tmp_path / name)
    res = json.loads((run / "results.json").read_text())
    res["config"]["benchmarks"] = [str(corpus)]
    res["benchmarks"][0]["path"] = str(corpus)
    (run / "results.json").write_text(json.dumps(res))
    return run, corpus


def _give_outputs_as_gold(corpus: Path, run: Path, strategy: str = "zero-shot") -> None:
    """Each question's gold answer replaced by what the strategy answered (its extracted answer)."""
    from harness.analysis.scoring import normalize

    outputs = {r["id"]: r["extracted"] for r in read_jsonl(run / "predictions.jsonl") if r["strategy"] == strategy}
    rows = read_jsonl(corpus / "questions.jsonl")
    for r in rows:
        if normalize(outputs.get(r["id"], "")):
            r["answers"] = [outputs[r["id"]]]
    write_jsonl(corpus / "questions.jsonl", rows)


@rel("security", "report: edited gold answers (zero-shot F1 0.033 -> 1.000) are refused by the data hash")
def test_report_refuses_edited_gold(cli, tmp_path):
    run, corpus = _example_on_copied_corpus(tmp_path, "run")
    assert cli("report", run)[0] == 0
    before = {n: (run / n).read_bytes() for n in ("report.md", "report.html", "summary.csv", "results.json")}
    _give_outputs_as_gold(corpus, run)
    one_error(cli("report", run), f"{run / 'results.json'}: ", "'squadshifts_nyt' is not the data the run answered",
              str(corpus))
    assert {n: (run / n).read_bytes() for n in before} == before  # nothing rewritten


@rel("security", "report: a folder in the working directory sharing a built-in's name is not taken as its gold answers")
def test_report_same_named_local_folder(cli, tmp_path, monkeypatch):
    run = copy_example(tmp_path / "run")
    recorded = next(c for c in json.loads((run / "results.json").read_text())["cells"] if c["strategy"] == "zero-shot")
    fake = tmp_path / "cwd" / "squadshifts_nyt"
    shutil.copytree(ROOT / "corpora" / "squadshifts_nyt", fake)
    _give_outputs_as_gold(fake, run)
    monkeypatch.chdir(tmp_path / "cwd")
    rc, err, out, _, _ = cli("report", run)
    assert rc == 0, err
    assert "squadshifts_nyt: scored against corpora/squadshifts_nyt" in out  # relative to the harness's root
    zs = next(c for c in json.loads((run / "results.json").read_text())["cells"] if c["strategy"] == "zero-shot")
    assert zs["metrics"]["f1"]["mean"] == pytest.approx(recorded["metrics"]["f1"]["mean"])  # not 1.000
    assert recorded["metrics"]["f1"]["mean"] < 0.1
    md = (run / "report.md").read_text()
    assert "Gold answers from corpora/squadshifts_nyt" in md


@rel("bad input", "compare: two runs on different data (same benchmark name) exit 2")
def test_compare_refuses_different_data(cli, tmp_path):
    a = copy_example(tmp_path / "a")
    b, corpus = _example_on_copied_corpus(tmp_path, "b")
    rows = read_jsonl(corpus / "questions.jsonl")
    rows[-1]["answers"] = rows[-1]["answers"] + ["another accepted answer"]
    write_jsonl(corpus / "questions.jsonl", rows)
    from harness.data.benchmark import load_benchmark

    res = json.loads((b / "results.json").read_text())
    res["benchmarks"][0]["data_sha256"] = load_benchmark(str(corpus)).meta["data_sha256"]
    (b / "results.json").write_text(json.dumps(res))
    assert cli("report", b)[0] == 0  # each run is consistent with its own data
    one_error(cli("compare", a, b), "'squadshifts_nyt' differs between the runs", "data sha256")
    rc, err, out, _, _ = cli("compare", a, copy_example(tmp_path / "a2"))
    assert rc == 0, err
    assert "Scored against corpora/squadshifts_nyt" in out


@rel("bad input", "report: an empty or missing predictions.jsonl exits 2 instead of showing the old scores as current")
@pytest.mark.parametrize("how", ["empty", "missing"])
def test_report_without_predictions(cli, tmp_path, how):
    run = copy_example(tmp_path / "run")
    if how == "empty":
        (run / "predictions.jsonl").write_text("")
    else:
        (run / "predictions.jsonl").unlink()
    before = (run / "report.md").read_bytes()
    one_error(cli("report", run), f"{run / 'predictions.jsonl'}: ", "as answered",
              "has no line for it" if how == "empty" else "predictions.jsonl is missing")
    assert (run / "report.md").read_bytes() == before


# -- records that cannot be used: one line, exit 2, for gate, report and --resume ------------------

BROKEN_RESULTS = [
    pytest.param("[]", "not a run record", id="a JSON array"),
    pytest.param('{"cells": "x", "benchmarks": []}', "not a run record", id="cells not a list"),
    pytest.param('{"cells": [{"strategy": 1, "benchmark": "tiny", "seed": 0, "status": "ok"}], "benchmarks": '
                 '[{"name": "tiny"}]}', "cells[0] needs a string 'strategy'", id="strategy a number"),
    pytest.param('{"cells": [{"strategy": "rag", "benchmark": "tiny", "seed": "0", "status": "ok"}], "benchmarks": '
                 '[{"name": "tiny"}]}', "cells[0].seed must be an integer", id="seed a string"),
    pytest.param('{"cells": [], "benchmarks": ["tiny"]}', "benchmarks[0] needs a 'name'", id="benchmark a string"),
    pytest.param('{"cells": [', "not valid JSON", id="truncated"),
    pytest.param('{"cells": [], "benchmarks": [], "pricing": {"usd_per_hour": Infinity}}', "Infinity",
                 id="Infinity"),
    pytest.param('{"cells": [], "benchmarks": [{"name": "\\ud800"}]}', "lone surrogate", id="lone surrogate"),
    pytest.param('{"cells": [], "benchmarks": [], "config": []}', "'config' must be an object", id="config a list"),
]

BROKEN_LINES = [
    pytest.param("not json", "valid JSON", id="not JSON"),
    pytest.param('{"id": 5, "output": "x"}', "needs a string 'id'", id="id a number"),
    pytest.param('{"id": "q0", "output": "x", "trace": "t"}', "'trace' must be an object", id="trace a string"),
    pytest.param('{"id": "q0", "output": "x", "seed": "0"}', "'seed' must be an integer", id="seed a string"),
    pytest.param('{"id": "q0", "output": "x", "trace": {"retrieved_doc_ids": "d1"}}', "retrieved_doc_ids",
                 id="retrieved ids a string"),
    pytest.param('{"id": "q0", "output": "x", "trace": {"choice_norm": 3}}', "choice_norm", id="choice_norm a number"),
    pytest.param('{"id": "q0", "output": "\\udc80"}', "lone surrogate", id="lone surrogate in an output"),
    pytest.param('{"id": "q0", "output": "x", "strategy": ""}', "'strategy' must be a non-empty string",
                 id="empty strategy"),
]


@rel("bad input", "gate and report: a results.json they cannot use")
@pytest.mark.parametrize("command", ["gate", "report"])
@pytest.mark.parametrize("text, needle", BROKEN_RESULTS)
def test_broken_results_json(cli, tmp_path, command, text, needle):
    base = make_run(tmp_path / "base", {"rag": right(5)})
    cur = make_run(tmp_path / "cur", {"rag": right(5)})
    (cur / "results.json").write_text(text)
    argv = ("gate", "--baseline", base, "--current", cur) if command == "gate" else ("report", cur)
    one_error(cli(*argv), str(cur / "results.json"), needle)


@rel("bad input", "gate and report: a predictions.jsonl line they cannot use")
@pytest.mark.parametrize("command", ["gate", "report"])
@pytest.mark.parametrize("line, needle", BROKEN_LINES)
def test_broken_prediction_line(cli, tmp_path, command, line, needle):
    base = make_run(tmp_path / "base", {"rag": right(5)})
    cur = make_run(tmp_path / "cur", {"rag": right(5)})
    with open(cur / "predictions.jsonl", "a") as f:
        f.write(line + "\n")
    argv = ("gate", "--baseline", base, "--current", cur) if command == "gate" else ("report", cur)
    one_error(cli(*argv), f"{cur / 'predictions.jsonl'}:6: ", needle)


@rel("bad input", "report, compare: a record field of an unexpected type deeper down is one line, exit 2, never exit 1")
@pytest.mark.parametrize("command", ["report", "compare"])
def test_unexpected_record_shape(cli, tmp_path, command):
    run = copy_example(tmp_path / "run")
    res = json.loads((run / "results.json").read_text())
    res["cells"][0]["prepare"] = "fast"  # nothing the strict reader checks; the cost model reads it
    (run / "results.json").write_text(json.dumps(res))
    argv = ("report", run) if command == "report" else ("compare", EXAMPLE, run)
    rc, err, _, _, _ = cli(*argv)
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and str(run) in err[0], err
    assert "the run records could not be used" in err[0]


def _resumable(tmp_path: Path, corpus: Path, model: Path) -> Path:
    """A run folder as --resume finds it: a valid config, one finished cell."""
    run = tmp_path / "resumable"
    run.mkdir()
    cfg = RunConfig(benchmarks=(str(corpus),), strategies=("zero-shot",), model=str(model), device="cpu",
                    max_new_tokens=4, out=str(run))
    write_json(run / "results.json", {"schema_version": 1, "run": {"id": "r"}, "config": cfg.to_dict(),
                                      "benchmarks": [{"name": "tiny"}],
                                      "cells": [{"strategy": "zero-shot", "benchmark": "tiny", "seed": 0,
                                                 "status": "ok"}]})
    write_jsonl(run / "predictions.jsonl", [{"strategy": "zero-shot", "benchmark": "tiny", "seed": 0, "id": "q1",
                                             "output": "x"}])
    return run


@rel("bad input", "--resume: a predictions.jsonl line it cannot use")
@pytest.mark.parametrize("line, needle", BROKEN_LINES + [
    pytest.param('{"id": "q2", "output": "x"}', "needs 'benchmark', 'strategy' and 'seed'", id="no cell keys")])
def test_resume_broken_prediction_line(cli, tmp_path, tiny_corpus, tiny_model, line, needle):
    run = _resumable(tmp_path, tiny_corpus, tiny_model)
    with open(run / "predictions.jsonl", "a") as f:
        f.write(line + "\n")
    before = (run / "results.json").read_bytes()
    r = cli("run", "--resume", run, "--quiet")
    one_error(r, f"{run / 'predictions.jsonl'}:2: ", needle)
    assert r[4] == [] and (run / "results.json").read_bytes() == before


@rel("bad input", "--resume: a results.json it cannot use")
@pytest.mark.parametrize("text, needle", BROKEN_RESULTS)
def test_resume_broken_results(cli, tmp_path, tiny_corpus, tiny_model, text, needle):
    run = _resumable(tmp_path, tiny_corpus, tiny_model)
    (run / "results.json").write_text(text)
    r = cli("run", "--resume", run, "--quiet")
    one_error(r, str(run / "results.json"), needle)
    assert r[4] == []


# -- a run folder grants nothing ----------------------------------------------------------------

@rel("security", "--resume of a folder whose results.json says trust_remote_code: true runs no model code")
def test_resume_never_takes_trust_from_the_folder(cli, tmp_path, tiny_corpus, tiny_model):
    from test_reliability import _remote_code_model

    from harness.engine.plan import resume_target

    model, marker = _remote_code_model(tmp_path, tiny_model)
    run = _resumable(tmp_path, tiny_corpus, model)
    res = json.loads((run / "results.json").read_text())
    res["config"]["trust_remote_code"] = True
    res["cells"] = []
    (run / "results.json").write_text(json.dumps(res))
    assert resume_target(str(run))[2].trust_remote_code is False
    assert resume_target(str(run), trust_remote_code=True)[2].trust_remote_code is True  # only when asked
    r = cli("run", "--resume", run, "--quiet")
    one_error(r, str(model / "config.json"), "auto_map", "--trust-remote-code")
    assert not marker.exists() and r[4] == []


# -- writing for people: Markdown, CSV, the terminal --------------------------------------------

HOSTILE = ["<script>alert(1)</script>", "<img src=x onerror=alert(2)>", "[click](javascript:alert(3))",
           "![pixel](http://tracker.invalid/p.png)", "[ref]: javascript:alert(4)", "<javascript:alert(5)>",
           "[a\\](javascript:alert(6))", "line\n\n<svg onload=alert(7)>", "<!-- hidden --> <a href='x'>y</a>"]


def _rendered(md: str) -> str:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": True}).enable("table").render(md)


def _assert_inert(html: str) -> None:
    import re

    assert not re.search(r"<(script|img|svg|a|iframe)\b", html, re.I), html
    assert "<!--" not in html and "javascript:" not in re.sub(r">[^<]*<", "><", html), html


@rel("security", "report.md: raw HTML, links and images in any text block render as plain text in a "
                 "CommonMark renderer")
def test_markdown_blocks_are_escaped():
    from harness.report.render import Doc, render_markdown

    doc = Doc()
    for h in HOSTILE:
        doc.h(2, h)
        doc.p(f"**{h}** and {h}")
        doc.ul([h, f"x {h}"])
        doc.table([h, "b"], [[h, "0.035 [0.021, 0.049]"]])
    md = render_markdown(doc)
    html = _rendered(md)
    _assert_inert(html)
    assert "0.035 [0.021, 0.049]" in md  # brackets that open no link are left as written
    assert "alert(1)" in html and "alert(7)" in html  # shown, as text


@rel("security", "report.md of a run with hostile benchmark, strategy, error, source and licence fields")
def test_report_md_of_hostile_records(cli, tmp_path):
    run = copy_example(tmp_path / "run")
    res = json.loads((run / "results.json").read_text())
    b = res["benchmarks"][0]
    b["source"], b["license"] = HOSTILE[2], HOSTILE[1]
    res["model"]["name"] = HOSTILE[0]
    res["cells"].append({"strategy": HOSTILE[1], "benchmark": "squadshifts_nyt", "seed": 0, "status": "failed",
                         "error": " ".join(HOSTILE), "config": {}})
    (run / "results.json").write_text(json.dumps(res))
    assert cli("report", run)[0] == 0
    md = (run / "report.md").read_text()
    assert "onerror" in md  # the text is there ...
    _assert_inert(_rendered(md))  # ... and none of it is markup


@rel("security", "summary.csv: cells a spreadsheet would run as formulas start with an apostrophe")
def test_csv_cells_are_neutral(cli, tmp_path):
    run = copy_example(tmp_path / "run")
    res = json.loads((run / "results.json").read_text())
    for name, error in (("=cmd", '=HYPERLINK("http://x.invalid","click")'), ("@SUM", "+1+2"), ("-2", "-2+3")):
        res["cells"].append({"strategy": name, "benchmark": "squadshifts_nyt", "seed": 0, "status": "failed",
                             "error": error, "config": {}})
    (run / "results.json").write_text(json.dumps(res))
    assert cli("report", run)[0] == 0
    rows = list(csv.DictReader(io.StringIO((run / "summary.csv").read_text())))
    bad = {r["strategy"]: r["error"] for r in rows if r["status"] == "failed"}
    assert bad == {"'=cmd": '\'=HYPERLINK("http://x.invalid","click")', "'@SUM": "'+1+2", "'-2": "'-2+3"}
    ok = next(r for r in rows if r["strategy"] == "rag")
    assert float(ok["f1"]) > 0 and not ok["f1"].startswith("'")  # numbers are left alone


@rel("security", "terminal: escape sequences in names and answers are printed escaped (gate table, corpus check)")
def test_terminal_output_has_no_escape_sequences(cli, tmp_path):
    base = make_run(tmp_path / "base", {"rag\x1b[2J\x1b]52;c;cHduZWQ=\x07": right(10)})
    cur = make_run(tmp_path / "cur", {"rag\x1b[2J\x1b]52;c;cHduZWQ=\x07": right(10)})
    junit = tmp_path / "gate.xml"
    rc, err, out, _, _ = cli("gate", "--baseline", base, "--current", cur, "--junit", junit)
    assert rc == 0, err
    assert "\x1b" not in out and "\x07" not in out and "rag\\x1b[2J" in out
    import xml.etree.ElementTree as ET

    assert ET.parse(junit).getroot().find("testsuite/testcase").get("name").startswith("rag\\x1b[2J")
    corpus = write_corpus(tmp_path / "c")
    (corpus / "documents.jsonl").unlink()
    (corpus / "documents").mkdir()
    for d in ("d1", "d2", "d3", "d4", "d5", "d6"):
        (corpus / "documents" / f"{d}.txt").write_text(f"text of {d}")
    (corpus / "documents" / "notes\x1b[31m\u202e.pdf").write_text("x")  # ignored, with a warning naming it
    rc, err, out, _, _ = cli("corpus", "check", corpus)
    assert rc == 0, err
    assert "\x1b" not in out and "\u202e" not in out and "\\x1b[31m\\u202e" in out


# -- every YAML through the hardened loader -----------------------------------------------------

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8))


@rel("security", "--prices: a YAML alias bomb is refused at once (it took 25 s and 3.4 GB)")
def test_prices_alias_bomb(cli, tmp_path):
    prices = tmp_path / "prices.yaml"
    prices.write_text(BOMB)
    run = copy_example(tmp_path / "run")
    t0 = time.perf_counter()
    one_error(cli("report", run, "--prices", prices), f"{prices}:1: ", "anchors and aliases")
    assert time.perf_counter() - t0 < 5


@rel("security", "--option values (harness lm-eval, torchrun script) go through the hardened loader")
def test_option_values_are_hardened(cli, monkeypatch):
    from harness.engine.scaleout.distributed import _options

    with pytest.raises(ConfigError, match="anchors and aliases"):
        _options(["k=[&a [1, 1], *a]"])
    with pytest.raises(ConfigError, match="invalid YAML"):
        _options(["k=!!python/object/apply:os.system [echo hi]"])
    assert _options(["k=5", "lr=1e-3", "t=[a, b]"]) == {"k": 5, "lr": 0.001, "t": ["a", "b"]}
    monkeypatch.setitem(sys.modules, "harness.lmeval.model", None)  # reaching lm-eval would fail the test
    one_error(cli("lm-eval", "--strategy", "rag", "--tasks", "x", "--option", "k=[&a [1], *a]"),
              "--option k:1: ", "anchors and aliases")


# -- inputs that passed checks and failed later: now refused before the model loads ----------------

def _named(tmp: Path, folder: str, name: str) -> Path:
    c = write_corpus(tmp / folder)
    (c / "benchmark.json").write_text(json.dumps({"name": name, "task": "extractive_qa"}))
    return c


@rel("bad input", "duplicate cells are refused before the model loads")
@pytest.mark.parametrize("case", ["same corpus twice", "--strategies zero-shot,zero-shot", "seeds: [0, 0]",
                                  "two corpora with one name"])
def test_duplicate_cells(cli, tmp_path, tiny_corpus, tiny_model, case):
    args = ["--model", tiny_model, "--quiet"]
    if case == "same corpus twice":
        argv = ["run", "--benchmark", tiny_corpus, "--corpus", tiny_corpus, "--strategies", "zero-shot", *args]
        needle = "given twice"
    elif case.startswith("--strategies"):
        argv = ["run", "--benchmark", tiny_corpus, "--strategies", "zero-shot,zero-shot", *args]
        needle = "strategy zero-shot given twice"
    elif case.startswith("seeds"):
        cfg = tmp_path / "exp.yaml"
        cfg.write_text(f"benchmarks: [{tiny_corpus}]\nstrategies: [zero-shot]\nseeds: [0, 0]\n")
        argv = ["run", "--config", cfg, *args]
        needle = "seed 0 given twice"
    else:
        other = _named(tmp_path, "other", "tiny")
        argv = ["run", "--benchmark", tiny_corpus, "--corpus", other, "--strategies", "zero-shot", *args]
        needle = "two benchmarks are both named 'tiny'"
    r = cli(*argv)
    one_error(r, needle)
    assert r[4] == []


@rel("bad input", "data-dependent strategy options are checked before the model loads")
@pytest.mark.parametrize("options, extra, needle", [
    ("few-shot: {shots: 50}", [], "few-shot.shots=50 is larger than the train split"),
    ("few-shot: {shots: 5}", ["--train-limit", "3"], "few-shot.shots=5 is larger than the train split"),
    ("multitask: {tasks: [TINY, no_such_task]}", [], "unknown benchmark 'no_such_task'"),
    ("sequential: {first: no_such_task}", [], "unknown benchmark 'no_such_task'"),
    ("sequential: {first: TINY}", [], "task A (TINY) is the benchmark under evaluation"),
], ids=["few-shot shots above the train split", "few-shot shots above --train-limit", "multitask.tasks unknown",
        "sequential.first unknown", "sequential.first is the evaluated benchmark"])
def test_data_dependent_options(cli, tmp_path, tiny_corpus, tiny_model, options, extra, needle):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(f"benchmarks: [{tiny_corpus}]\nstrategies:\n  {options.replace('TINY', str(tiny_corpus))}\n")
    r = cli("run", "--config", cfg, "--model", tiny_model, "--quiet", *extra)
    one_error(r, needle.replace("TINY", str(tiny_corpus)))
    assert r[4] == []


@rel("bad input", "a misspelt or unknown task type in benchmark.json is a corpus problem")
@pytest.mark.parametrize("task", ["multiple-choice", "summarization", "Extractive_QA"])
def test_unknown_task_type(cli, tmp_path, task):
    c = write_corpus(tmp_path / "c")
    (c / "benchmark.json").write_text(json.dumps({"name": "c", "task": task}))
    one_error(cli("corpus", "check", c), f"{c / 'benchmark.json'}: unknown task {task!r}", "extractive_qa")


def _question_line(c: Path, edit: dict) -> None:
    """Question q1 of the tiny corpus edited; written with ASCII escapes (\\ud800 stays an escape)."""
    rows = read_jsonl(c / "questions.jsonl")
    rows[0].update(edit)
    (c / "questions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


ID_ANSWER_CASES = [
    pytest.param({"id": "q\ud800"}, "question id 'q\\ud800' contains a lone surrogate", id="lone surrogate in an id"),
    pytest.param({"question": "Who \ud83d opened it?"}, "field 'question' holds a lone surrogate",
                 id="lone surrogate in a question"),
    pytest.param({"id": "q\x851"}, "contains a control character (U+0085)", id="C1 control character in an id"),
    pytest.param({"id": "q\u200b1"}, "contains an invisible format character (U+200B)", id="zero-width space in an id"),
    pytest.param({"id": "q\u202e1"}, "contains an invisible format character (U+202E)",
                 id="right-to-left override in an id"),
    pytest.param({"id": "q\u20281"}, "contains a line separator (U+2028)", id="line separator in an id"),
    pytest.param({"answers": ["Alice\u200bStone"]}, "contains an invisible format character (U+200B): no output",
                 id="zero-width space in an answer"),
    pytest.param({"answers": ["Alice\x07"]}, "contains a control character (U+0007)",
                 id="control character in an answer"),
    pytest.param({"answers": ["the"]}, "has no answer left: every answer is empty after normalisation",
                 id="the only answer normalises to nothing"),
    pytest.param({"answers": ["!!!", "\u201d"]}, "has no answer left", id="punctuation-only answers"),
    pytest.param({"doc_ids": float("nan")}, "NaN is not a JSON number", id="NaN in a question line"),
]


@rel("bad input", "ids and answers that can never match, and text that is not text, are corpus problems")
@pytest.mark.parametrize("edit, needle", ID_ANSWER_CASES)
def test_ids_and_answers(cli, tmp_path, edit, needle):
    c = write_corpus(tmp_path / "c")
    _question_line(c, edit)
    one_error(cli("corpus", "check", c), f"{c / 'questions.jsonl'}:1: ", needle)


@rel("bad input", "an answer that normalises to nothing beside a real one is dropped with a warning "
                  "(squadshifts_nyt has one)")
def test_empty_answer_beside_a_real_one(cli, tmp_path):
    from harness.data.benchmark import load_benchmark

    c = write_corpus(tmp_path / "c")
    _question_line(c, {"answers": ["Alice Stone", "\u201d"]})
    rc, err, out, _, _ = cli("corpus", "check", c)
    assert rc == 0, err
    assert "answer '\u201d' dropped: it is empty after normalisation" in out
    q1 = next(e for e in load_benchmark(str(c)).examples if e.id == "q1")
    assert q1.answers == ("Alice Stone",)
    from harness.analysis import metrics

    assert metrics.score("", q1.answers)["exact_match"] == 0.0  # an empty output matched the quote mark


@rel("bad input", "lone surrogates in documents, and multiple-choice options equal after normalisation")
@pytest.mark.parametrize("case", ["document text", "document title", "choices"])
def test_documents_and_choices(cli, tmp_path, case):
    c = write_corpus(tmp_path / "c")
    if case == "choices":
        (c / "benchmark.json").write_text(json.dumps({"name": "c", "task": "multiple_choice"}))
        rows = read_jsonl(c / "questions.jsonl")
        for r in rows:
            r["choices"] = [r["answers"][0], "Paris", "paris."]
            r["answers"] = r["answers"][:1]
        write_jsonl(c / "questions.jsonl", rows)
        target, needle = c / "questions.jsonl", "choices 'Paris', 'paris.' are the same after normalisation"
    else:
        rows = read_jsonl(c / "documents.jsonl")
        rows[0]["text" if case == "document text" else "title"] = "Harbor \udc00 City"
        (c / "documents.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        target, needle = c / "documents.jsonl", f"field '{case.split()[1]}' holds a lone surrogate"
    err = cli("corpus", "check", c)[1]
    assert f"{target}:1: " in err[0] and needle in err[0], err


# -- special files and links --------------------------------------------------------------------

@rel("security", "corpus: special files and links that leave the folder are refused, never read")
@pytest.mark.parametrize("case", ["document links outside", "documents/ links outside", "documents.jsonl -> /dev/zero",
                                  "questions.jsonl is a FIFO", "benchmark.json is a FIFO"])
def test_corpus_special_files(cli, tmp_path, case):
    c = write_corpus(tmp_path / "c")
    secret = tmp_path / "secret.txt"
    secret.write_text("the contents of a file outside the corpus")
    if case == "document links outside":
        (c / "documents.jsonl").unlink()
        (c / "documents").mkdir()
        for d in ("d1", "d2", "d3", "d4", "d5", "d6"):
            (c / "documents" / f"{d}.txt").write_text(f"text of {d}")
        (c / "documents" / "d7.txt").symlink_to(secret)
        target, needle = c / "documents" / "d7.txt", f"leads to {secret} (a link), outside the corpus folder"
    elif case == "documents/ links outside":
        (c / "documents.jsonl").unlink()
        outside = tmp_path / "elsewhere"
        outside.mkdir()
        (outside / "d1.txt").write_text("x")
        (c / "documents").symlink_to(outside)
        target, needle = c / "documents", "outside the corpus folder"
    elif case == "documents.jsonl -> /dev/zero":
        (c / "documents.jsonl").unlink()
        (c / "documents.jsonl").symlink_to("/dev/zero")
        target, needle = c / "documents.jsonl", "outside the corpus folder"
    else:
        name = case.split()[0]
        (c / name).unlink()
        os.mkfifo(c / name)
        target, needle = c / name, "is a FIFO: refused"
    rc, err, out, _, _ = cli("corpus", "check", c)
    if case == "document links outside":  # one bad document file is skipped and listed, never read (issue 18)
        assert rc == 0 and "documents/d7.txt: symlink leading outside the folder" in out, (out, err)
        assert "the contents of a file outside" not in out
        return
    assert rc == 2 and any(f"{target}: " in e and needle in e for e in err[0].split("\\n")), err
    assert "the contents of a file outside" not in err[0]


@rel("security", "run folder, price table, config and model folder: a FIFO is refused, never read (a read would block)")
@pytest.mark.parametrize("where", ["predictions.jsonl", "results.json", "--prices", "--config", "model folder"])
def test_fifo_inputs(cli, tmp_path, tiny_model, where):
    fifo = tmp_path / "fifo"
    if where in ("predictions.jsonl", "results.json"):
        run = copy_example(tmp_path / "run")
        (run / where).unlink()
        os.mkfifo(run / where)
        one_error(cli("report", run), str(run / where), "FIFO")
    elif where == "--prices":
        os.mkfifo(fifo)
        one_error(cli("report", copy_example(tmp_path / "run"), "--prices", fifo), str(fifo), "not a regular file")
    elif where == "--config":
        os.mkfifo(fifo)
        one_error(cli("run", "--config", fifo), str(fifo), "not a regular file")
    else:
        model = tmp_path / "m"
        shutil.copytree(tiny_model, model)
        (model / "tokenizer.json").unlink()
        os.mkfifo(model / "tokenizer.json")
        r = cli("run", "--benchmark", write_corpus(tmp_path / "c"), "--strategies", "zero-shot", "--model", model,
                "--quiet")
        one_error(r, str(model / "tokenizer.json"), "not a regular file")
        assert r[4] == []


# -- the cache, the lock, the context ---------------------------------------------------------------

@rel("fault", "HARNESS_CACHE unusable (a file, a read-only folder): exit 2 at the start, before the model loads")
@pytest.mark.parametrize("how", ["a file", "a read-only folder"])
def test_unusable_cache(cli, tmp_path, tiny_corpus, tiny_model, monkeypatch, how):
    if how == "a file":
        cache = tmp_path / "cache-file"
        cache.write_text("not a folder")
    else:  # the tests run as root, which writes through permissions: the refusal is simulated
        import errno
        import tempfile as tf

        from harness.cache import stages

        cache = tmp_path / "ro"
        cache.mkdir()
        real = tf.mkstemp

        def refuse(*a, dir=None, **k):
            if str(dir).startswith(str(cache)):
                raise PermissionError(errno.EACCES, "Permission denied")
            return real(*a, dir=dir, **k)

        monkeypatch.setattr(stages.tempfile, "mkstemp", refuse)
    monkeypatch.setenv("HARNESS_CACHE", str(cache))
    r = cli("run", "--benchmark", tiny_corpus, "--strategies", "zero-shot", "--model", tiny_model, "--quiet")
    one_error(r, "the stage cache", "cannot be written", "--no-cache")
    assert r[4] == []


@rel("fault", "harness report on a folder a live run is writing stops at once (it overwrote the final results.json)")
def test_report_takes_the_run_lock(cli, tmp_path):
    from harness.engine import runner

    run = copy_example(tmp_path / "run")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom harness.core.records import run_lock\n"
         "with run_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(60)\n", str(run)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "held"
        before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != ".lock"}
        one_error(cli("report", run), str(run), "being written by another harness process")
        assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != ".lock"} == before
    finally:
        holder.kill()
        holder.wait()
    assert cli("report", run)[0] == 0  # free again
    assert runner.run_lock is __import__("harness.core.records", fromlist=["x"]).run_lock  # the run takes the same


@rel("fault", "a prompt longer than the model's context fails its cell naming the question; the other cells are kept")
def test_prompt_longer_than_context(tmp_path, tiny_model, monkeypatch):
    from conftest import DOCS, QUESTIONS

    from harness.engine import runner

    long_q = ("q7", "Tell me " + "about the bridge and the river " * 1600 + "?", ["Gray River"], "test", ["d1"])
    corpus = write_corpus(tmp_path / "c", DOCS, QUESTIONS + [long_q])
    monkeypatch.setenv("HARNESS_REPORTS", str(tmp_path / "reports"))
    cfg = RunConfig(benchmarks=(str(corpus),), strategies=("zero-shot",), model=str(tiny_model), device="cpu",
                    max_new_tokens=4, limit=2)
    run_dir = runner.run(cfg, progress=False, log=lambda m: None, cache=False)
    assert json.loads((run_dir / "results.json").read_text())["cells"][0]["status"] == "ok"  # short ones fit
    cfg = RunConfig(benchmarks=(str(corpus),), strategies=("zero-shot",), model=str(tiny_model), device="cpu",
                    max_new_tokens=4)
    run_dir = runner.run(cfg, progress=False, log=lambda m: None, cache=False)
    cell = json.loads((run_dir / "results.json").read_text())["cells"][0]
    assert cell["status"] == "failed"
    assert "question 'q7'" in cell["error"] and "more than the model's context of 8,192" in cell["error"]
    assert "question 'q7'" in (run_dir / "report.md").read_text()


# -- records stay strict JSON ---------------------------------------------------------------------

@rel("bad input", "a NaN or infinite measurement is written as null: every record stays strict JSON")
def test_records_never_hold_nan(tmp_path):
    write_json(tmp_path / "r.json", {"loss": [1.0, float("nan")], "p95": float("inf"), "ok": 2.5})
    write_jsonl(tmp_path / "p.jsonl", [{"latency": -float("inf"), "f1": 0.5}])
    assert loads_strict((tmp_path / "r.json").read_text()) == {"loss": [1.0, None], "p95": None, "ok": 2.5}
    assert loads_strict((tmp_path / "p.jsonl").read_text()) == {"latency": None, "f1": 0.5}
    with pytest.raises(ValueError):
        loads_strict('{"a": NaN}')
    assert math.isnan(json.loads('{"a": NaN}')["a"])  # what Python's json alone would have let through
    assert HarnessError.exit_code == 2
