"""Benchmark loading: the embedded corpus, and line-precise errors for broken corpora."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import DOCS, QUESTIONS, write_corpus

from harness.core.errors import DataError, HarnessError
from harness.data.benchmark import builtin_benchmarks, load_benchmark

# -- the embedded benchmark ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def nyt():
    return load_benchmark("squadshifts_nyt")


def test_builtin_benchmarks_lists_nyt():
    assert "squadshifts_nyt" in builtin_benchmarks()


def test_nyt_counts(nyt):
    assert nyt.name == "squadshifts_nyt"
    assert nyt.task == "extractive_qa"
    assert len(nyt.documents) == 300
    assert len(nyt.split("test")) == 200
    assert len(nyt.split("train")) == 546
    counts = nyt.meta["counts"]
    assert counts == {"documents": 300, "train": 546, "test": 200}


def test_nyt_ids_unique_and_references_resolve(nyt):
    doc_ids = [d.id for d in nyt.documents]
    assert len(doc_ids) == len(set(doc_ids))
    q_ids = [e.id for e in nyt.examples]
    assert len(q_ids) == len(set(q_ids))
    known = set(doc_ids)
    for e in nyt.examples:
        assert len(e.answers) >= 1, e.id
        assert all(a.strip() for a in e.answers), e.id
        assert e.doc_ids, e.id
        assert set(e.doc_ids) <= known, e.id


def test_nyt_meta_hash(nyt):
    sha = nyt.meta["data_sha256"]
    assert isinstance(sha, str) and len(sha) == 64
    int(sha, 16)
    assert Path(nyt.meta["path"]).is_dir()


def test_nyt_answers_are_extractive(nyt):
    text = {d.id: d.text for d in nyt.documents}
    for e in nyt.split("test"):
        for a in e.answers:
            assert any(a in text[d] for d in e.doc_ids), (e.id, a)


def test_load_by_path_equals_load_by_name(nyt):
    by_path = load_benchmark(nyt.meta["path"])
    assert by_path.meta["data_sha256"] == nyt.meta["data_sha256"]
    assert [e.id for e in by_path.examples] == [e.id for e in nyt.examples]


# -- the tiny corpus ----------------------------------------------------------------------------

def test_tiny_corpus_loads(tiny_corpus):
    b = load_benchmark(str(tiny_corpus))
    assert b.name == "tiny"
    assert len(b.documents) == len(DOCS)
    assert len(b.split("test")) == 6 and len(b.split("train")) == 12
    q2 = next(e for e in b.examples if e.id == "q2")
    assert q2.answers == ("October", "every October")
    assert q2.doc_ids == ("d2",)


def test_data_hash_changes_with_the_data(tmp_path):
    a = load_benchmark(str(write_corpus(tmp_path / "a")))
    b = load_benchmark(str(write_corpus(tmp_path / "b", questions=QUESTIONS[1:])))
    assert a.meta["data_sha256"] != b.meta["data_sha256"]


def test_blank_lines_are_skipped_but_counted(tmp_path):
    root = write_corpus(tmp_path / "c")
    lines = (root / "questions.jsonl").read_text().splitlines()
    lines.insert(1, "")
    lines.append(lines[1 + 1])  # q2 again, now on line 20
    (root / "questions.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as exc:
        load_benchmark(str(root))
    msg = str(exc.value)
    assert "questions.jsonl:20:" in msg and "first on line 3" in msg


# -- broken corpora -----------------------------------------------------------------------------

def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _edit_question(root: Path, lineno: int, **changes) -> None:
    p = root / "questions.jsonl"
    lines = _lines(p)
    obj = json.loads(lines[lineno - 1])
    obj.update(changes)
    lines[lineno - 1] = json.dumps(obj)
    _write_lines(p, lines)


def _load_error(root: Path, kind=DataError) -> str:
    with pytest.raises(kind) as exc:
        load_benchmark(str(root))
    return str(exc.value)


@pytest.fixture
def corpus(tmp_path) -> Path:
    return write_corpus(tmp_path / "broken")


def test_duplicate_document_id(corpus):
    p = corpus / "documents.jsonl"
    lines = _lines(p)
    lines.append(json.dumps({"id": "d3", "title": "x", "text": "again"}))
    _write_lines(p, lines)
    msg = _load_error(corpus)
    assert f"{p}:7:" in msg
    assert "'d3'" in msg and "first on line 3" in msg


def test_duplicate_question_id(corpus):
    p = corpus / "questions.jsonl"
    lines = _lines(p)
    lines.append(lines[4])  # q5 again, on line 19
    _write_lines(p, lines)
    msg = _load_error(corpus)
    assert f"{p}:19:" in msg
    assert "'q5'" in msg and "first on line 5" in msg


def test_truncated_last_line(corpus):
    p = corpus / "questions.jsonl"
    text = p.read_text(encoding="utf-8").rstrip("\n")
    p.write_text(text[:-15], encoding="utf-8")  # cut mid-object, no final newline
    msg = _load_error(corpus)
    assert f"{p}:{len(QUESTIONS)}:" in msg
    assert "invalid JSON" in msg


def test_line_that_is_not_an_object(corpus):
    p = corpus / "documents.jsonl"
    lines = _lines(p)
    lines[1] = '["d2", "text"]'
    _write_lines(p, lines)
    msg = _load_error(corpus)
    assert f"{p}:2:" in msg and "JSON object" in msg


def test_answers_not_a_list(corpus):
    _edit_question(corpus, 3, answers="Denver")
    msg = _load_error(corpus)
    assert f"{corpus / 'questions.jsonl'}:3:" in msg
    assert "answers" in msg


def test_answers_with_a_non_string(corpus):
    _edit_question(corpus, 4, answers=["310 meters", 310])
    msg = _load_error(corpus)
    assert f"{corpus / 'questions.jsonl'}:4:" in msg and "answers" in msg


@pytest.mark.parametrize("answers", [[], ["  ", ""]])
def test_empty_answers(corpus, answers):
    _edit_question(corpus, 2, answers=answers)
    msg = _load_error(corpus)
    assert f"{corpus / 'questions.jsonl'}:2:" in msg
    assert "'q2' has no answers" in msg


def test_doc_ids_naming_a_missing_document(corpus):
    _edit_question(corpus, 4, doc_ids=["d4", "d99"])
    msg = _load_error(corpus)
    assert f"{corpus / 'questions.jsonl'}:4:" in msg
    assert "d99" in msg and "d4," not in msg


def test_bad_split(corpus):
    _edit_question(corpus, 6, split="validation")
    msg = _load_error(corpus)
    assert f"{corpus / 'questions.jsonl'}:6:" in msg and "'validation'" in msg


def test_missing_question_text(corpus):
    _edit_question(corpus, 1, question="   ")
    msg = _load_error(corpus)
    assert f"{corpus / 'questions.jsonl'}:1:" in msg and "'question'" in msg


def test_document_without_text(corpus):
    p = corpus / "documents.jsonl"
    lines = _lines(p)
    lines[4] = json.dumps({"id": "d5", "title": "Blue Note Cafe"})
    _write_lines(p, lines)
    msg = _load_error(corpus)
    assert f"{p}:5:" in msg and "'text'" in msg


def test_documents_not_utf8(corpus):
    p = corpus / "documents.jsonl"
    p.write_bytes(p.read_bytes().replace(b"Pine Valley", "Pine Vall\u00e9e".encode("latin-1")))
    msg = _load_error(corpus)
    assert str(p) in msg
    assert "UTF-8" in msg


def test_missing_documents_file(corpus):
    (corpus / "documents.jsonl").unlink()
    msg = _load_error(corpus)
    assert str(corpus / "documents.jsonl") in msg
    assert "not found" in msg


def test_empty_documents_file(corpus):
    (corpus / "documents.jsonl").write_text("\n\n")
    msg = _load_error(corpus)
    assert str(corpus / "documents.jsonl") in msg and "no documents" in msg


def test_no_test_split(tmp_path):
    train_only = [(i, q, a, "train", d) for i, q, a, _, d in QUESTIONS]
    root = write_corpus(tmp_path / "train_only", questions=train_only)
    msg = _load_error(root)
    assert str(root / "questions.jsonl") in msg
    assert "test" in msg


def test_invalid_benchmark_json(corpus):
    (corpus / "benchmark.json").write_text('{"name": "tiny",')
    msg = _load_error(corpus)
    assert str(corpus / "benchmark.json") in msg and "JSON" in msg


def test_benchmark_json_not_an_object(corpus):
    (corpus / "benchmark.json").write_text("[]")
    msg = _load_error(corpus)
    assert str(corpus / "benchmark.json") in msg


def test_unicode_line_separator_inside_a_string(tmp_path):
    docs = list(DOCS)
    root = write_corpus(tmp_path / "u2028", docs=docs)
    with open(root / "documents.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"id": "d7", "text": "first part\u2028second part"}, ensure_ascii=False) + "\n")
    b = load_benchmark(str(root))
    assert b.documents[-1].text == "first part\u2028second part"


def test_unknown_benchmark_name():
    with pytest.raises(HarnessError) as exc:
        load_benchmark("no_such_benchmark")
    msg = str(exc.value)
    assert "'no_such_benchmark'" in msg
    for name in builtin_benchmarks():
        assert name in msg
    assert "squadshifts_nyt" in msg


def test_folder_without_questions_is_not_loaded(tmp_path):
    root = write_corpus(tmp_path / "noq")
    (root / "questions.jsonl").unlink()
    with pytest.raises(HarnessError) as exc:
        load_benchmark(str(root))
    assert str(root) in str(exc.value)
