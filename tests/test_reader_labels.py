"""`harness report --labels`: people's labels of answers held against every metric (issue 18). The labels
are the reference on sentence answers, where token overlap is not: the report says, per answer and per
pair of strategies, which metric agrees with the reader. Figures here are computed by hand."""
from __future__ import annotations

import json

import pytest
from test_decision_report import PROMPT, _run

from harness import cli
from harness.analysis.trust import against_labels, auc, headline_conflicts, read_labels
from harness.core.errors import DataError


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_read_labels_keys_answers_by_question_and_text(tmp_path):
    f = _write(tmp_path / "l.jsonl", [{"id": "q1", "output": " Paris \n", "right": True, "strategy": "rag"},
                                      {"id": "q1", "output": "Lyon", "right": False, "note": "wrong city"},
                                      "", {"id": "q1", "output": "Paris", "right": True}])
    assert read_labels(f) == {("q1", "Paris"): 1, ("q1", "Lyon"): 0}


@pytest.mark.parametrize("line, problem", [
    ("{not json", "not JSON"),
    ('["q1", "x", true]', "a label is an object"),
    ('{"id": "q1", "right": true}', "missing output"),
    ('{"id": "q1", "output": "x", "right": "yes"}', "must be true or false"),
    ('{"id": 1, "output": "x", "right": true}', "must be strings"),
    ('{"id": "q0", "output": "a", "right": false}', "labelled both right and wrong"),
])
def test_a_bad_label_names_its_file_and_line(tmp_path, line, problem):
    f = _write(tmp_path / "l.jsonl", ['{"id": "q0", "output": "a", "right": true}', line])
    with pytest.raises(DataError, match=rf"l\.jsonl:2: .*{problem}"):
        read_labels(f)


def test_an_empty_labels_file_is_refused(tmp_path):
    with pytest.raises(DataError, match="no labels"):
        read_labels(_write(tmp_path / "l.jsonl", [""]))


def test_auc_by_hand():
    assert auc([0.9, 0.8, 0.1, 0.8], [1, 1, 0, 0]) == pytest.approx((1 + 1 + 1 + 0.5) / 4)
    assert auc([1, 1], [1, 1]) is None


def _rows(strategy, right_ids, n=40, metric=None):
    return [{"strategy": strategy, "id": f"q{i}", "output": f"{strategy}-{i}", "f1": float(i in right_ids),
             **({"semantic": metric(i)} if metric else {})} for i in range(n)]


def test_against_labels_per_answer_and_per_pair():
    """a is right on 30 of 40 questions by the reader, b on 5, all of them among a's: McNemar p = 2 / 2^25,
    so the pair is separated. f1 is high on b's wrong answers only: it reverses the pair; semantic is the
    labels themselves: kappa 1, AUC 1, the pair ordered alike."""
    right = {"a": set(range(30)), "b": set(range(5))}
    rows = (_rows("a", set(), metric=lambda i: float(i < 30))
            + [dict(r, f1=float(i >= 5)) for i, r in enumerate(_rows("b", set(), metric=lambda i: float(i < 5)))])
    labels = {(r["id"], r["output"]): int(int(r["id"][1:]) in right[r["strategy"]]) for r in rows}
    out = against_labels(rows, labels, metrics=("f1", "semantic"))
    assert out["answers"] == 80 and out["right"] == 35
    assert out["strategies"]["a"]["reader"]["mean"] == pytest.approx(0.75)
    assert out["strategies"]["b"]["f1"] == pytest.approx(35 / 40)
    (pair,) = out["pairs"]
    assert (pair["only_a"], pair["only_b"], pair["reader_order"]) == (25, 0, 1)
    assert pair["p"] == pytest.approx(2 / 2 ** 25) and pair["separated"]
    assert pair["metric_order"] == {"f1": -1, "semantic": 1}
    sem, f1 = out["metrics"]["semantic"], out["metrics"]["f1"]
    assert sem["kappa"] == pytest.approx(1.0) and sem["auc"] == 1.0 and sem["separated_as_reader"] == 1
    assert f1["separated_reversed"] == 1 and f1["separated_as_reader"] == 0
    # only labelled answers count: an unlabelled one is left out, never guessed
    assert against_labels(rows + [{"strategy": "a", "id": "q99", "output": "x", "f1": 1.0, "semantic": 1.0}],
                          labels, metrics=("f1", "semantic"))["answers"] == 80


def test_semantic_auc_is_over_its_cosine_not_its_cut():
    """Thresholded, both wrong answers and one right one score 0; the stored cosines still order them."""
    rows = [{"strategy": "a", "id": f"q{i}", "output": "x", "semantic": float(c >= 0.55),
             "judgments": {"semantic": {"similarity": c}}} for i, c in enumerate([0.2, 0.3, 0.5, 0.9])]
    labels = {("q0", "x"): 0, ("q1", "x"): 0, ("q2", "x"): 1, ("q3", "x"): 1}
    assert against_labels(rows, labels, metrics=("semantic",))["metrics"]["semantic"]["auc"] == 1.0
    assert auc([r["semantic"] for r in rows], [0, 0, 1, 1]) == 0.75


def test_headline_conflicts_name_the_metrics_that_agree():
    labels = {"pairs": [
        {"a": "x", "b": "y", "separated": True, "reader_order": -1, "metric_order": {"f1": -1, "semantic": 0}},
        {"a": "x", "b": "z", "separated": False, "reader_order": 1, "metric_order": {"f1": -1, "semantic": -1}},
        {"a": "y", "b": "z", "separated": True, "reader_order": 1, "metric_order": {"f1": 1, "semantic": 1}}]}
    (c,) = headline_conflicts(labels, "semantic")
    assert (c["higher"], c["lower"], c["agree"]) == ("y", "x", ["f1"])
    assert headline_conflicts(labels, "f1") == []  # f1 orders both separated pairs as the reader


def test_a_pair_the_reader_does_not_separate_is_not_claimed():
    """One question apart: p = 1; the report may not say that any metric ranks them as the reader."""
    rows = _rows("a", {0}, n=10) + _rows("b", set(), n=10)
    labels = {(r["id"], r["output"]): int(r["f1"]) for r in rows}
    out = against_labels(rows, labels, metrics=("f1",))
    assert out["separated"] == 0 and out["metrics"]["f1"]["pairs_as_reader"] == 1


def test_report_with_labels_says_which_metric_ranks_as_the_reader(tmp_path):
    """F1 ranks a (60 gold answers) above b (20), but the reader says 40 of a's gold-looking answers are
    wrong and b's "nothing" is right on q20-q79: the reader ranks b (80) above a (40). The report shows it,
    and says F1 reverses the pair the reader separates."""
    run = _run(tmp_path, {"a": {"right": set(range(60)), "prepare": PROMPT, "wall_s": 10.0, "p95": 1.0},
                          "b": {"right": set(range(20)), "prepare": PROMPT, "wall_s": 10.0, "p95": 1.0}})
    labels = ([{"id": f"q{i:02d}", "output": f"token{i}", "right": i < 20} for i in range(60)]
              + [{"id": f"q{i:02d}", "output": "nothing", "right": 20 <= i < 80} for i in range(20, 100)])
    f = _write(tmp_path / "labels.jsonl", labels)
    assert cli.main(["report", str(run), "--labels", str(f)]) == 0
    md = (run / "report.md").read_text()
    sec = md[md.index("### Against a reader's labels"):]
    sec = sec[:sec.index("\n### ", 5)]
    assert "200 of this run's answers were read and labelled" in sec and "labels.jsonl; 120 right" in sec
    assert "| a | 100 | 0.400 [" in sec and "| b | 100 | 0.800 [" in sec
    assert "| a vs b | 100 | 0 / 40 | <0.001 | < | > | > | > |" in sec
    assert "The reader separates one pair of the 1 (b above a): EM, F1, Contains reverse it." in sec
    # the decision rests on F1, which the reader contradicts: the recommendation says so
    rec = md[md.index("### Recommendation"):md.index("### Summary")]
    assert ("**A reader's labels disagree with the token F1 here**: the reader finds b right more often than a "
            "(0.800 against 0.400") in rec
    assert "the token F1 ranks them the other way round (0.200 against 0.600). No computed metric orders them" in rec
    res = json.loads((run / "results.json").read_text())
    assert res["analysis"]["benchmarks"]["corpus"]["0"]["labels"]["separated"] == 1
    # without --labels the section is not there
    assert cli.main(["report", str(run)]) == 0
    assert "Against a reader's labels" not in (run / "report.md").read_text()


def test_report_refuses_a_bad_labels_file_before_writing(tmp_path, capsys):
    run = _run(tmp_path, {"a": {"right": set(range(60)), "prepare": PROMPT, "wall_s": 10.0, "p95": 1.0}})
    assert cli.main(["report", str(run)]) == 0
    before = (run / "report.md").read_text()
    f = _write(tmp_path / "labels.jsonl", ['{"id": "q00", "output": "token0", "right": true}', '{"id": "q01"}'])
    assert cli.main(["report", str(run), "--labels", str(f)]) == 2
    assert "labels.jsonl:2: missing output, right" in capsys.readouterr().err
    assert (run / "report.md").read_text() == before
