"""The report's decision, as a reader sees it: text and tables from `harness report` over small synthetic runs
whose numbers are computed by hand here, the CLI's decision flags, pooled seeds, the latency source, the
per-question section, and the committed examples (reports/example, reports/example-hosted, reports/cosmosqa)
being exactly what `harness report` makes from their records (`make examples`)."""
from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path

import pytest

from harness import cli
from harness.core.records import write_jsonl

ROOT = Path(__file__).resolve().parent.parent
N = 100         # questions
P = 0.085       # $/hour of c6i.large, the default cpu machine of configs/prices.yaml


def _run(tmp: Path, strategies: dict, seeds=(0,), decision: dict | None = None) -> Path:
    """A run folder over a synthetic corpus of N questions whose gold answer is `token{i}`.

    strategies: name -> {"right": {seed: set of question numbers answered right} (or one set for every seed),
    "prepare": the cell's prepare record, "wall_s": answering seconds for the N questions, "p95": batched p95,
    "probe": optional probe record}. A right answer is the gold (F1 1), a wrong one "nothing" (F1 0)."""
    corpus = tmp / "corpus"
    corpus.mkdir(parents=True)
    (corpus / "documents.jsonl").write_text("".join(
        json.dumps({"id": f"d{i}", "title": f"Doc {i}", "text": f"Document {i} says token{i}."}) + "\n"
        for i in range(N)))
    (corpus / "questions.jsonl").write_text("".join(
        json.dumps({"id": f"q{i:02d}", "question": f"What does document {i} say?", "answers": [f"token{i}"],
                    "split": "test", "doc_ids": [f"d{i}"]}) + "\n" for i in range(N)))
    run = tmp / "run"
    run.mkdir()
    cells, rows = [], []
    for seed in seeds:
        for name, s in strategies.items():
            right = s["right"][seed] if isinstance(s["right"], dict) else s["right"]
            rag = bool(s["prepare"].get("chunks"))
            cell = {"strategy": name, "benchmark": "corpus", "seed": seed, "status": "ok", "error": None,
                    "config": {}, "prepare": s["prepare"],
                    "answer": {"wall_s": s["wall_s"], "queries": N, "latency_p50_s": s["p95"] / 2,
                               "latency_p95_s": s["p95"], "prompt_tokens_mean": 100.0, "output_tokens_mean": 5.0,
                               **({"retrieval_p50_s": 0.01} if rag else {})}}
            if s.get("probe"):
                cell["probe"] = s["probe"]
            cells.append(cell)
            for i in range(N):
                rows.append({"strategy": name, "benchmark": "corpus", "seed": seed, "id": f"q{i:02d}",
                             "output": f"token{i}" if i in right else "nothing",
                             "usage": {"prompt_tokens": 100, "output_tokens": 5, "seconds": s["wall_s"] / N,
                                       "retrieval_seconds": 0.01 if rag else 0.0, "latency_seconds": s["p95"]},
                             "trace": {"retrieved_doc_ids": [f"d{i}", f"d{(i + 1) % N}"]} if rag else {}})
    results = {"schema_version": 1, "run": {"id": "synthetic", "started": "2026-01-01T00:00:00+00:00"},
               "config": {"benchmarks": [str(corpus)], "seeds": list(seeds), "batch_size": 8, "usd_per_hour": P,
                          "decision": decision or {}},
               "environment": {"device": "cpu", "cpu": "test", "cores": 2, "dtype": "float32", "gpu": None},
               "model": {"name": "tiny"},
               "benchmarks": [{"name": "corpus", "task": "extractive_qa", "documents": N, "train": 0, "test": N,
                               "test_used": N}],
               "cells": cells}
    (run / "results.json").write_text(json.dumps(results))
    write_jsonl(run / "predictions.jsonl", rows)
    return run


RAG = {"wall_s": 100.0, "chunks": 10, "artifact_bytes": 1000}
ADAPTER = {"wall_s": 360.0, "steps": 5, "peft_type": "LORA", "artifact_bytes": 2000, "loss_curve": [2.0, 1.0]}
PROMPT = {"wall_s": 0.0}
A = set(range(75))                  # a and b: right on the same 75 of 100 questions
D = (A - {73, 74}) | {75}           # d: two of them wrong, another one right: mean 0.74, differences -1, -1, +1
# scale to zero at full utilization, no refresh: monthly $ = queries x answering seconds a query / 3,600 x $/hour
LINEAR = {"min_replicas": 0, "target_utilization": 1.0, "refresh_days": None}


def _four(tmp):
    return _run(tmp, {"a": {"right": A, "prepare": RAG, "wall_s": 100.0, "p95": 4.0},
                      "b": {"right": A, "prepare": ADAPTER, "wall_s": 10.0, "p95": 3.0},
                      "c": {"right": set(), "prepare": PROMPT, "wall_s": 1.0, "p95": 1.0},
                      "d": {"right": D, "prepare": PROMPT, "wall_s": 2.0, "p95": 1.0}}, decision=LINEAR)


def _analysis(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())["analysis"]


def _section(md: str, title: str) -> str:
    start = md.index(f"### {title}")
    nxt = md.find("\n### ", start + 1)
    return md[start: nxt if nxt > 0 else None]


def _honest(text: str) -> None:
    """'No significant difference' is never written as 'as good' or 'as accurate'."""
    cleaned = text.replace("not shown to be as good", "").replace("does not mean 'as good'", "")
    assert "as good" not in cleaned and "as accurate" not in cleaned


def test_recommendation_text_follows_from_the_numbers(tmp_path):
    run = _four(tmp_path)
    assert cli.main(["report", str(run)]) == 0
    md = (run / "report.md").read_text()
    rec = _section(md, "Recommendation")
    v = _analysis(run)["decisions"]["corpus"]["verdict"]
    # b answers the same 75 questions as a (every paired difference 0: interval [0, 0], within the margin of 0.02)
    # and costs a tenth: 100,000 x 10 / 100 s / 3,600 x $0.085 = $0.2361 a month against a's $2.36
    assert v["reference"] == "a" and v["chosen"] == "b"
    assert re.search(r"\*\*b\*\*, token F1 0\.750 \(95% CI 0\.\d+–0\.\d+, 100 questions, 1 seed\), \$0\.2361 a month "
                     r"\(\$0\.00000236 per query, \$0\.00000315 per correct answer", rec), rec
    assert ("b differs from it by +0.000 (95% CI +0.000 to +0.000): the interval lies above -0.02, so b is within "
            "the margin (it may be up to 0.02 worse, not shown to be as good)") in rec
    # margin, quality bar and cost tolerance in plain words
    assert "stays above -0.02 token F1: the data rule out a drop larger than 0.02" in rec
    assert "meet no quality bar (none is set" in rec and "within 10% of the cheapest count as equal" in rec
    # d: differences -1, -1, +1 on three questions, 0 on 97: mean -0.01, s^2 = (3 - 100 x 0.01^2) / 99 = 0.030202;
    # inconclusive at the margin 0.02, and n > 0.030202 x 1.96^2 / (-0.01 + 0.02)^2 = 1,160.2 -> 1,161 questions
    assert re.search(r"\| d \| 0\.740 \[[^]]*\] \| -0\.010 \[-0\.\d+, \+0\.\d+\] \| inconclusive \| ~1,161 "
                     r"questions \(1,061 more\) \|", rec), rec
    assert "d ($0.0472 a month against $0.2361) would be chosen if more questions showed it within the margin" in rec
    assert "| c | 0.000 [0.000, 0.000] | -0.750 [" in rec and "below by more than the margin" in rec
    _honest(md)
    # the recommended row is highlighted in the verdict table, the summary and the cost table
    page = (run / "report.html").read_text()
    assert page.count("<tr class=mark><td>b (recommended)</td>") == 3
    assert re.search(r"\| b \(recommended\) \| (\*\*)?0\.750 \[0\.\d+, 0\.\d+\](\*\*)? \|", _section(md, "Summary"))
    rows = {r["strategy"]: r for r in csv.DictReader(io.StringIO((run / "summary.csv").read_text()))}
    b_usd = 100_000 * 10 / N / 3600 * P
    assert rows["b"]["recommended"] == "True" and rows["a"]["recommended"] == "False"
    assert float(rows["b"]["usd_per_month"]) == pytest.approx(b_usd)
    assert float(rows["b"]["usd_per_correct"]) == pytest.approx(b_usd / 75_000)


def test_no_strategy_meets_the_bar_names_the_closest(tmp_path):
    run = _four(tmp_path)
    assert cli.main(["report", str(run), "--min-quality", "0.9"]) == 0
    md = (run / "report.md").read_text()
    rec = _section(md, "Recommendation")
    assert "No strategy can be recommended: none meets the requirements." in rec
    assert "None reaches the quality bar of 0.9 token F1; the closest, a, scores 0.750" in rec and "0.150 short" in rec
    assert "| d | 0.740 [" in rec and "below the quality bar |" in rec
    assert "A quality bar of 0.750 or less (now 0.9) would make it b." in rec
    assert "No query volume, refresh interval or machine price changes this" in rec
    assert "(recommended)" not in md and "class=mark" not in (run / "report.html").read_text()
    # the differences are still shown, against the most accurate, for reading
    assert "the differences are against the most accurate of all, a" in rec
    # and `none` lifts the bar again
    assert cli.main(["report", str(run), "--min-quality", "none"]) == 0
    assert _analysis(run)["decision"]["min_quality"] is None
    assert _analysis(run)["decisions"]["corpus"]["verdict"]["chosen"] == "b"


def test_every_decision_flag_reaches_the_costs(tmp_path):
    run = _four(tmp_path)
    assert cli.main(["report", str(run), "--monthly-queries", "2000", "--refresh-days", "10", "--margin", "0.05",
                     "--cost-tolerance", "0.2", "--min-replicas", "2", "--target-utilization", "0.25",
                     "--hours-per-month", "100", "--measured-on", "h100-80gb", "--latency-target", "3.5"]) == 0
    a = _analysis(run)
    d = a["decision"]
    assert (d["monthly_queries"], d["refresh_days"], d["margin"], d["cost_tolerance"], d["min_replicas"],
            d["target_utilization"], d["hours_per_month"], d["measured_on"], d["latency_target_s"]) == \
        (2000, 10.0, 0.05, 0.2, 2.0, 0.25, 100.0, "h100-80gb", 3.5)
    dec = a["decisions"]["corpus"]
    assert dec["machine"]["name"] == "h100-80gb" and a["prices"]["machine"]["usd_per_hour"] == 3.0
    # a on the GPU machine: floor 2 x 100 h x $3 = $600 against 2,000 x 1 s / 3,600 / 0.25 x $3 = $6.67;
    # refresh: 30.4375 / 10 a month x 100 s x $3 / 3,600
    assert dec["costs"]["a"]["total_usd"] == pytest.approx(600 + 30.4375 / 10 * 100 * 3 / 3600)
    assert dec["verdict"]["chosen"] != "a"  # its p95 of 4 s misses the 3.5 s target
    assert "Over the p95 latency target of 3.5 s: a (4.00 s, batched)" in (run / "report.md").read_text()


def test_break_even_says_same_cost_while_both_are_on_the_floor(tmp_path):
    """Two strategies on one always-on machine cost the same until the slower needs more than its floor; they
    never cross, and the column said "never" (reports/example's $62.05 against $62.05)."""
    run = _run(tmp_path, {"a": {"right": A, "prepare": RAG, "wall_s": 100.0, "p95": 1.0},
                          "b": {"right": A, "prepare": ADAPTER, "wall_s": 10.0, "p95": 1.0}},
               decision={"refresh_days": None})
    assert cli.main(["report", str(run)]) == 0
    # a: 100 questions in 100 s = 1 query/s, b: 10 queries/s; each pays the floor 1 x 730 h x $0.085 = $62.05
    # until its busy machine-hours pass it: Q / (3600 x 1 x 0.5) x $0.085 = $62.05 -> Q = 730 x 3600 x 0.5 =
    # 1,314,000 for a (b: 13,140,000); a is 10% dearer at 1.1 x 1,314,000 = 1,445,400
    rows = [r for r in _section((run / "report.md").read_text(), "Break-even").splitlines() if r.startswith("| ")]
    assert rows[1].endswith("| $62.05 against $62.05 | same cost up to 1,314,000 (both at the always-on floor); "
                            "b cheaper above | within 10% below 1,445,400; b cheaper above 1,445,400 |"), rows


def test_bad_decision_flags_exit_2_and_write_nothing(tmp_path, capsys):
    run = _four(tmp_path)
    assert cli.main(["report", str(run), "--measured-on", "my-laptop"]) == 2
    assert "no machine named 'my-laptop'" in capsys.readouterr().err
    assert not (run / "report.md").exists()
    with pytest.raises(SystemExit) as exc:
        cli.main(["report", str(run), "--margin", "-1"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        cli.main(["report", str(run), "--target-utilization", "1.5"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        cli.main(["report", str(run), "--min-quality", "high"])


def test_the_latency_target_is_held_against_the_probe_when_recorded(tmp_path):
    probe = {"n": 16, "latency_p50_s": 1.5, "latency_p95_s": 2.0, "ttft_p50_s": 0.1, "ttft_p95_s": 0.2,
             "decode_s_per_token": 0.01, "retrieval_p50_s": 0.01, "ids": []}
    run = _run(tmp_path, {"a": {"right": A, "prepare": RAG, "wall_s": 100.0, "p95": 10.0, "probe": probe},
                          "b": {"right": set(range(25)), "prepare": ADAPTER, "wall_s": 10.0, "p95": 3.0}},
               decision={"latency_target_s": 5})
    assert cli.main(["report", str(run)]) == 0
    dec = _analysis(run)["decisions"]["corpus"]
    assert dec["latency"]["a"]["source"] == "probe" and dec["latency"]["a"]["p95_s"] == 2.0
    assert dec["latency"]["b"]["source"] == "batched" and dec["latency"]["b"]["p95_s"] == 3.0
    assert dec["verdict"]["chosen"] == "a"  # 2 s alone meets the 5 s target; its batched 10 s would not
    md = (run / "report.md").read_text()
    assert ("Latency held against the target: p95 of the batch-1 probe: one query answered alone for a; of the "
            "batched run: one query's wait for its whole batch for b.") in md
    assert "| 2.00 (batch-1) |" in md and "| 3.00 (batched) |" in md
    assert "| Batch-1 p95 s |" in md or "Batch-1 p95 s" in md


def test_several_seeds_give_one_pooled_recommendation(tmp_path):
    # a right on 75, 70, 65 of 100 by seed: pooled mean (0.75 + 0.70 + 0.65) / 3 = 0.70; b on 50 every seed: 0.50
    run = _run(tmp_path, {"a": {"right": {0: set(range(75)), 1: set(range(70)), 2: set(range(65))},
                                "prepare": RAG, "wall_s": 100.0, "p95": 4.0},
                          "b": {"right": set(range(50)), "prepare": ADAPTER, "wall_s": 10.0, "p95": 3.0}},
               seeds=(0, 1, 2))
    assert cli.main(["report", str(run)]) == 0
    md = (run / "report.md").read_text()
    assert md.count("### Recommendation") == 1 and "### Recommendation (pooled over seeds 0, 1, 2)" in md
    for s in (0, 1, 2):
        assert f"## corpus, seed {s}" in md
    assert md.count("### Summary") == 3 and md.count("### Serving cost") == 1
    dec = _analysis(run)["decisions"]["corpus"]
    est = {r["name"]: r["estimate"] for r in dec["verdict"]["rows"]}
    assert est["a"]["mean"] == pytest.approx(0.70) and est["a"]["n_seeds"] == 3
    assert est["a"]["seed_means"] == pytest.approx([0.75, 0.70, 0.65])
    assert dec["seeds"] == [0, 1, 2] and dec["verdict"]["chosen"] == "a"
    assert "Token F1 [95% CI over questions and seeds]" in md and "token F1 0.700 (95% CI" in md
    assert f"{N} questions, 3 seeds" in md
    # the pooled interval carries the variance between seeds: wider than seed 0's alone over the same questions
    seed0 = next(c for c in json.loads((run / "results.json").read_text())["cells"]
                 if c["strategy"] == "a" and c["seed"] == 0)["metrics"]["f1"]
    assert est["a"]["high"] - est["a"]["low"] > seed0["high"] - seed0["low"]


def test_every_answer_grouped_by_where_strategies_disagree(tmp_path):
    run = _four(tmp_path)
    assert cli.main(["report", str(run)]) == 0
    md = (run / "report.md").read_text()
    ans = _section(md, "Answers, question by question")
    # a, b, d right on 0..72; a, b on 73, 74; d alone on 75; nobody on 76..99
    assert "| All but c get it | 73 |" in ans
    assert "| a, b get it; the others do not | 2 |" in ans
    assert "| Only d gets it | 1 |" in ans and "| No strategy gets it | 24 |" in ans
    lines = [x for x in ans.splitlines() if x.startswith("| ") and not x.startswith("| Group")]
    assert sum(int(x.rsplit("|", 2)[1]) for x in lines) == N
    assert ans.index("Only d gets it") < ans.index("No strategy gets it")  # disagreements first
    page = (run / "report.html").read_text()
    assert "<details><summary>Only d gets it: 1 question</summary>" in page
    for i in range(N):
        assert page.count(f"What does document {i} say?") == 1
    # each answer with its score, the retrieved sources with the gold one marked and its title
    assert "token75 <small>[1.00]</small>" in page
    assert "d75 (gold) \u201cDoc 75\u201d, d76 \u201cDoc 76\u201d" in page
    assert "<script" not in page.lower()


EXAMPLES = {"example": ["--min-quality", "0.5"],
            "example-hosted": ["--prices", str(ROOT / "configs" / "prices-hosted.yaml"), "--monthly-queries",
                               "1000000", "--min-quality", "none"],
            # sentence answers, headed by the stored semantic values, and every answer's label by a reader (issue 18)
            "cosmosqa": ["--labels", str(ROOT / "corpora" / "cosmosqa" / "reader_labels.jsonl")]}


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_committed_examples_are_what_harness_report_makes(tmp_path, name):
    """`make examples` rebuilds each from its records; a stale committed report fails here."""
    src = ROOT / "reports" / name
    run = tmp_path / name
    run.mkdir()
    for f in ("results.json", "predictions.jsonl"):
        shutil.copy(src / f, run / f)
    assert cli.main(["report", str(run), *EXAMPLES[name]]) == 0
    for f in ("report.md", "summary.csv"):
        assert (run / f).read_text() == (src / f).read_text(), f"{name}/{f} is stale: run `make examples`"


def test_hosted_example_prices_the_base_model_per_token():
    """reports/example-hosted: rag and the prompting strategies answered by the provider at $0.15 / $0.60 per
    million tokens (retrieval on one always-on c6i.large); the tuned models on one c6i.large. By hand from the
    recorded token counts and preparation times."""
    res = json.loads((ROOT / "reports" / "example-hosted" / "results.json").read_text())
    dec = res["analysis"]["decisions"]["squadshifts_nyt"]
    cells = {c["strategy"]: c for c in res["cells"]}
    q, floor, refresh = 1_000_000, 730 * P, 30.4375 / 30
    ans = cells["rag"]["answer"]
    tokens = q * (ans["prompt_tokens_mean"] * 0.15 + ans["output_tokens_mean"] * 0.60) / 1e6
    rag = dec["costs"]["rag"]
    assert rag["answering"]["usd"] == pytest.approx(tokens)
    assert rag["total_usd"] == pytest.approx(tokens + floor + refresh * cells["rag"]["prepare"]["wall_s"] / 3600 * P)
    assert sorted(dec["hosted_for"]) == ["few-shot", "rag", "rag-k1", "zero-shot"]  # the prompting and RAG kinds
    lora = dec["costs"]["lora"]
    assert lora["answering"]["bound"] == "floor"
    assert lora["total_usd"] == pytest.approx(floor + refresh * cells["lora"]["prepare"]["wall_s"] / 3600 * P)
    md = (ROOT / "reports" / "example-hosted" / "report.md").read_text()
    assert "Hosted prices for model smollm2-135m: $0.15 per million prompt tokens and $0.6 per million output" in md
    assert "not the provider's" in md
    _honest(md)
    _honest((ROOT / "reports" / "example" / "report.md").read_text())


def test_a_tie_for_most_accurate_is_said(tmp_path):
    """Two strategies right on 60 questions each (different ones): neither is 'the most accurate' alone, and
    the report says which one the rule took as the reference and why."""
    run = _run(tmp_path, {"b": {"right": set(range(60)), "prepare": PROMPT, "wall_s": 10.0, "p95": 1.0},
                          "a": {"right": set(range(40, 100)), "prepare": PROMPT, "wall_s": 10.0, "p95": 1.0}})
    assert cli.main(["report", str(run)]) == 0
    md = (run / "report.md").read_text()
    assert ("a is the most accurate strategy that meets the requirements, tied with b at 0.600 (of equal scores "
            "the one with fewer moving parts, then the first by name, is the reference).") in md
    assert "Each strategy against the most accurate (b; tied with a)" in md or \
        "Each strategy against the most accurate (a; tied with b)" in md
