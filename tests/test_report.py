"""`harness report` rebuilds every format from the records alone, rescoring predictions.jsonl;
`harness compare` pairs two runs. Uses the committed example run (no model is loaded)."""
import csv
import io
import json
import re
import shutil
from pathlib import Path

import pytest

from harness import cli
from harness.analysis import metrics
from harness.core.records import read_jsonl, write_jsonl

EXAMPLE = Path(__file__).resolve().parent.parent / "reports" / "example"


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory):
    run = tmp_path_factory.mktemp("ex") / "run"
    shutil.copytree(EXAMPLE, run)
    before = json.loads((run / "results.json").read_text())
    assert cli.main(["report", str(run)]) == 0
    return run, before


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_primary_metric_per_task():
    assert metrics.primary_metric("extractive_qa") == "f1"
    for task in ("yes_no", "classification", "multiple_choice"):
        assert metrics.primary_metric(task) == "exact_match"


def test_every_format_is_rebuilt(rebuilt):
    run, before = rebuilt
    results = json.loads((run / "results.json").read_text())
    # old keys kept (backwards compatible), analysis added
    assert set(before) <= set(results)
    assert results["schema_version"] == before["schema_version"]
    a = results["analysis"]
    assert a["primary_metric"] == {"squadshifts_nyt": "f1"}
    bench = a["benchmarks"]["squadshifts_nyt"]["0"]
    assert bench["comparisons"]["best"] == "lora-rag"
    verdict = a["decisions"]["squadshifts_nyt"]["verdict"]
    assert verdict["chosen"] in {c["strategy"] for c in results["cells"]} | {None}
    assert verdict["compared_with"] == "lora-rag"
    # the recomputed metrics equal the ones the run recorded from the same predictions
    for old, new in zip(before["cells"], results["cells"]):
        assert new["metrics"]["f1"]["mean"] == pytest.approx(old["metrics"]["f1"]["mean"])
    md = (run / "report.md").read_text()
    for heading in ("### Recommendation", "### Summary", "### Paired significance", "### Serving cost",
                    "### Break-even", "### Latency", "### Training", "### Retrieval diagnostics",
                    "### Answers, question by question", "What would change the answer"):
        assert heading in md
    rows = list(csv.DictReader(io.StringIO((run / "summary.csv").read_text())))
    assert len(rows) == len(results["cells"])
    assert {"accuracy", "accuracy_low", "one_time_usd", "usd_per_month", "usd_per_1k_queries", "usd_per_correct",
            "recommended", "verdict", "latency_source"} <= set(rows[0])
    rag = next(r for r in rows if r["strategy"] == "rag")
    assert float(rag["accuracy"]) == pytest.approx(float(rag["f1"]))


def test_html_is_one_self_contained_file(rebuilt):
    run, _ = rebuilt
    page = (run / "report.html").read_text()
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    imgs = re.findall(r'<img [^>]*src="([^"]*)"', page)
    assert len(imgs) >= 6 and all(src.startswith("data:image/png;base64,") for src in imgs)
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing fetched from anywhere
    assert "<script" not in page.lower()
    # best value of each column marked; answers folded in <details> (no script needed)
    assert page.count("<td class=best>") >= 6
    assert page.count("<details>") >= 3 and page.count("<summary>") == page.count("<details>")


def test_edited_predictions_are_rescored(tmp_path):
    run = _copy(EXAMPLE, tmp_path / "run")
    rows = read_jsonl(run / "predictions.jsonl")
    rag = [r for r in rows if r["strategy"] == "rag"]
    wrong = [r for r in rag if r["f1"] < 1.0][:10]
    gain = sum(1.0 - r["f1"] for r in wrong) / len(rag)
    for r in wrong:
        r["output"] = r["answers"][0]
        r["f1"] = 0.0  # stale scores in the file are ignored: everything is rescored
    write_jsonl(run / "predictions.jsonl", rows)
    old = next(c for c in json.loads((run / "results.json").read_text())["cells"] if c["strategy"] == "rag")
    assert cli.main(["report", str(run)]) == 0
    new = next(c for c in json.loads((run / "results.json").read_text())["cells"] if c["strategy"] == "rag")
    assert new["metrics"]["f1"]["mean"] == pytest.approx(old["metrics"]["f1"]["mean"] + gain)


def test_external_predictions_with_only_id_and_output(tmp_path):
    run = _copy(EXAMPLE, tmp_path / "run")
    rows = read_jsonl(run / "predictions.jsonl")
    ids = list(dict.fromkeys(r["id"] for r in rows))
    gold = {r["id"]: r["answers"][0] for r in rows}
    ext = [{"id": i, "output": gold[i] if n % 2 == 0 else "no idea"} for n, i in enumerate(ids)]
    write_jsonl(run / "predictions.jsonl", rows + ext)
    assert cli.main(["report", str(run)]) == 0
    results = json.loads((run / "results.json").read_text())
    cell = next(c for c in results["cells"] if c["strategy"] == "external")
    assert cell["metrics"]["exact_match"]["mean"] == pytest.approx(len(ids[::2]) / len(ids))
    assert "external" in (run / "report.md").read_text()
    write_jsonl(run / "predictions.jsonl", rows)  # the external lines removed: their cell goes too
    assert cli.main(["report", str(run)]) == 0
    results = json.loads((run / "results.json").read_text())
    assert "external" not in {c["strategy"] for c in results["cells"]}


def test_bad_decision_flags_exit_2_before_any_work(capsys):
    assert cli.main(["run", "--monthly-queries", "-5"]) == 2
    assert "monthly_queries" in capsys.readouterr().err
    assert cli.main(["report", str(EXAMPLE), "--monthly-queries", "-5"]) == 2


def test_bad_prediction_lines_fail_with_file_and_line(tmp_path, capsys):
    run = _copy(EXAMPLE, tmp_path / "run")
    with open(run / "predictions.jsonl", "a") as f:
        f.write(json.dumps({"id": "not-a-question", "output": "x", "strategy": "external"}) + "\n")
    n = len((run / "predictions.jsonl").read_text().splitlines())
    html_before = (run / "report.html").read_bytes()
    assert cli.main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"predictions.jsonl:{n}:" in err and "not-a-question" in err
    assert (run / "report.html").read_bytes() == html_before  # nothing half-written
    (run / "predictions.jsonl").write_text('{"output": "no id"}\n')
    assert cli.main(["report", str(run)]) == 2
    assert "predictions.jsonl:1:" in capsys.readouterr().err


def test_old_run_whose_benchmark_is_gone_still_renders(tmp_path):
    run = _copy(EXAMPLE, tmp_path / "run")
    results = json.loads((run / "results.json").read_text())
    results["config"]["benchmarks"] = [str(tmp_path / "moved-away")]
    results["benchmarks"][0]["name"] = "moved-away"
    results["benchmarks"][0]["path"] = str(tmp_path / "moved-away")  # the folder it was scored against is gone too
    for c in results["cells"]:
        c["benchmark"] = "moved-away"
    (run / "results.json").write_text(json.dumps(results))
    rows = read_jsonl(run / "predictions.jsonl")
    for r in rows:
        r["benchmark"] = "moved-away"
    write_jsonl(run / "predictions.jsonl", rows)
    assert cli.main(["report", str(run)]) == 0
    md = (run / "report.md").read_text()
    assert "could not be loaded" in md and "gold answers taken from predictions.jsonl" in md


def test_decision_flags_change_the_recommendation(tmp_path):
    run = _copy(EXAMPLE, tmp_path / "run")
    cells = {c["strategy"]: c for c in json.loads((run / "results.json").read_text())["cells"]}
    p95 = {n: c["probe"]["latency_p95_s"] for n, c in cells.items()}  # one query answered alone
    fastest, second = sorted(p95, key=p95.get)[:2]
    target = round((p95[fastest] + p95[second]) / 2, 3)  # only the fastest strategy meets it
    assert cli.main(["report", str(run), "--monthly-queries", "10", "--refresh-days", "7",
                     "--latency-target", str(target), "--min-quality", "none"]) == 0
    results = json.loads((run / "results.json").read_text())
    d = results["analysis"]["decision"]
    assert (d["monthly_queries"], d["refresh_days"], d["latency_target_s"]) == (10, 7.0, target)
    rec = results["analysis"]["decisions"]["squadshifts_nyt"]["verdict"]
    assert rec["chosen"] == fastest
    assert any(f"Over the p95 latency target of {target:g} s" in line
               and f"{second} ({p95[second]:.2f} s, batch-1)" in line for line in rec["reasons"])
    assert "10 queries a month" in (run / "report.md").read_text()


def test_compare_two_runs(tmp_path, capsys):
    a = _copy(EXAMPLE, tmp_path / "a")
    b = _copy(EXAMPLE, tmp_path / "b")
    rows = read_jsonl(b / "predictions.jsonl")
    for r in rows:
        if r["strategy"] == "zero-shot":
            r["output"] = r["answers"][0]
    write_jsonl(b / "predictions.jsonl", rows)
    out = tmp_path / "cmp.html"
    assert cli.main(["compare", str(a), str(b), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    zs = next(line for line in text.splitlines() if line.startswith("| zero-shot |"))
    assert "B better" in zs
    rag = next(line for line in text.splitlines() if line.startswith("| rag |"))
    assert "no significant difference" in rag
    assert "<table>" in out.read_text()


def test_compare_needs_the_same_questions(tmp_path, capsys):
    a = _copy(EXAMPLE, tmp_path / "a")
    b = _copy(EXAMPLE, tmp_path / "b")
    rows = read_jsonl(b / "predictions.jsonl")
    drop = rows[0]["id"]
    write_jsonl(b / "predictions.jsonl", [r for r in rows if r["id"] != drop])
    assert cli.main(["compare", str(a), str(b)]) == 2
    assert "different questions" in capsys.readouterr().err
