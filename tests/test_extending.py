"""README's "Extending": a metric, a report section and a task type are each one entry, and show up in
the report without edits anywhere else."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.analysis import metrics
from harness.data import tasks
from harness.report import sections
from harness.report.document import write_reports

EXAMPLE = Path(__file__).resolve().parent.parent / "reports" / "example"


@pytest.fixture
def registered():
    """A metric and a section registered for one test, and removed after it."""
    words = metrics.register_metric(metrics.Metric(
        "answer_words", "Words", higher_is_better=False,
        description="words in the raw output", compute=lambda output, answers, question, trace, scored:
        len(output.split())))

    def verbosity(doc, part):
        doc.h(3, "Verbosity")
        doc.p(f"{len(part.rows)} answers read for their length.")

    sections.register_section(verbosity, after="summary")
    try:
        yield words
    finally:
        metrics.METRIC_REGISTRY.pop("answer_words")
        sections.SECTIONS.remove(verbosity)


def test_a_registered_metric_and_section_reach_the_report(registered, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(EXAMPLE, run)
    write_reports(run)
    md = (run / "report.md").read_text()
    assert "### Verbosity" in md and md.index("### Summary") < md.index("### Verbosity") < md.index(
        "### Paired significance")
    summary = md[md.index("### Summary"):]
    header = next(line for line in summary.splitlines() if line.startswith("| Strategy |"))
    assert "| Words |" in header
    results = json.loads((run / "results.json").read_text())
    cell = next(c for c in results["cells"] if c["strategy"] == "zero-shot")
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines() if line.strip()]
    mine = [r for r in rows if r["strategy"] == "zero-shot"]
    assert cell["metrics"]["answer_words"]["mean"] == pytest.approx(
        sum(len(r["output"].split()) for r in mine) / len(mine))


def test_a_registered_task_type_is_one_entry(tmp_path):
    from harness.data.benchmark import load_benchmark
    from harness.methods.prompts import Prompter

    task = tasks.register_task_type(tasks.TaskType(
        name="echo_qa", description="answers that repeat a word of the question", scorer="span",
        primary_metric="contains", answered_by="generation", lmeval_output_type="generate_until",
        lmeval_metric="contains", system="Answer with one word of the question.",
        context_system="Answer with one word of the question.", context_request="One word."))
    try:
        root = tmp_path / "echo"
        root.mkdir()
        (root / "benchmark.json").write_text(json.dumps({"name": "echo", "task": "echo_qa"}))
        (root / "documents.jsonl").write_text(json.dumps({"id": "d", "text": "red green blue"}) + "\n")
        (root / "questions.jsonl").write_text("".join(json.dumps(
            {"id": f"q{i}", "question": f"Say {w}", "answers": [w], "split": s, "doc_ids": ["d"]}) + "\n"
            for i, (w, s) in enumerate([("red", "test"), ("green", "train"), ("blue", "train")])))
        bench = load_benchmark(str(root))
        assert bench.task == "echo_qa"
        assert Prompter.for_benchmark(bench).system == task.system
        assert metrics.primary_metric("echo_qa") == "contains"
        assert metrics.score("well, red", ["red"], "Say red", "echo_qa")["contains"] == 1.0
    finally:
        tasks.TASK_TYPES.pop("echo_qa")
