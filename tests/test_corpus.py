"""A user's corpus folder: both layouts load, every problem is reported with file and line, a broken
corpus stops `harness run` before the model loads, and the seeded split is stable."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DOCS, QUESTIONS, write_corpus

from harness import cli
from harness.core.errors import DataError, HarnessError
from harness.data.benchmark import load_benchmark
from harness.data.corpus import CorpusError, check_corpus, load_corpus, unsafe_id
from harness.engine import runner

REPO = Path(__file__).resolve().parent.parent


def write_user_corpus(root: Path, docs=DOCS, questions=QUESTIONS, split=True) -> Path:
    """The documents/*.txt + questions.csv layout."""
    (root / "documents").mkdir(parents=True)
    for i, _title, text in docs:
        (root / "documents" / f"{i}.txt").write_text(text + "\n", encoding="utf-8")
    lines = ["id,question,answers,doc_ids" + (",split" if split else "")]
    for i, q, a, s, d in questions:
        row = [i, f'"{q}"', "|".join(a), "|".join(d)] + ([s] if split else [])
        lines.append(",".join(row))
    (root / "questions.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def problems(root: Path) -> list[str]:
    """Every reported problem as 'file[:line]: message', with paths relative to the corpus."""
    result = check_corpus(root)
    return [str(p).replace(f"{root}/", "") for p in result.problems]


# -- layouts that load ----------------------------------------------------------------------------

def test_txt_and_csv_layout_loads_like_the_jsonl_layout(tmp_path):
    a = load_benchmark(str(write_user_corpus(tmp_path / "user")))
    b = load_benchmark(str(write_corpus(tmp_path / "tiny")))
    assert a.name == "user" and a.task == "extractive_qa"
    assert [(d.id, d.text.strip()) for d in a.documents] == [(d.id, d.text) for d in b.documents]
    assert [(e.id, e.input, e.answers, e.split, e.doc_ids) for e in a.examples] == \
        [(e.id, e.input, e.answers, e.split, e.doc_ids) for e in b.examples]
    assert len(a.meta["data_sha256"]) == 64 and "split_assigned" not in a.meta


def test_md_documents_jsonl_questions_and_benchmark_json(tmp_path):
    root = tmp_path / "mixed"
    (root / "documents").mkdir(parents=True)
    (root / "documents" / "guide.md").write_text("# Setup guide\n\nRun the installer twice.\n")
    (root / "documents" / "faq.txt").write_text("The warranty lasts two years.")
    (root / "documents" / ".DS_Store").write_bytes(b"\x00\x01")  # hidden files are skipped silently
    (root / "questions.jsonl").write_text(
        json.dumps({"id": "a", "question": "How long is the warranty?", "answers": ["two years"],
                    "doc_ids": ["faq"]}) + "\n")
    (root / "benchmark.json").write_text(json.dumps({"name": "manuals", "task": "extractive_qa"}))
    b = load_benchmark(str(root))
    assert b.name == "manuals"
    assert {d.id: d.title for d in b.documents} == {"faq": "", "guide": "Setup guide"}
    assert [e.split for e in b.examples] == ["test"]  # one unsplit question: it is the test split
    assert b.meta["split_assigned"] == {"seed": 0, "test_ratio": 0.3, "questions": 1}


def test_builtin_corpora_load_the_same_by_path_and_by_name():
    from harness.data.benchmark import builtin_benchmarks

    for name in builtin_benchmarks():
        a, b = load_benchmark(name), load_benchmark(str(REPO / "corpora" / name))
        assert (a.documents, a.examples, a.task, a.name) == (b.documents, b.examples, b.task, b.name)
        assert a.meta["data_sha256"] == b.meta["data_sha256"]


# -- the seeded split -----------------------------------------------------------------------------

def many_questions(n):
    return [(f"q{i}", f"Question {i}?", [f"answer {i}"], "", ["d1"]) for i in range(n)]


def test_seeded_split_is_deterministic_and_respects_the_ratio(tmp_path):
    root = write_user_corpus(tmp_path / "c", questions=many_questions(200), split=False)
    a = load_corpus(root, split_seed=7, test_ratio=0.25)
    again = load_corpus(root, split_seed=7, test_ratio=0.25)
    other = load_corpus(root, split_seed=8, test_ratio=0.25)
    assert len(a.split("test")) == 50 and len(a.split("train")) == 150
    assert [e.split for e in a.examples] == [e.split for e in again.examples]
    assert {e.id for e in a.split("test")} != {e.id for e in other.split("test")}
    assert len(load_corpus(root, test_ratio=0.1).split("test")) == 20
    assert len(load_corpus(root, test_ratio=1.0).split("train")) == 0


def test_given_splits_are_kept_and_only_the_rest_is_split(tmp_path):
    qs = many_questions(20)
    qs[0] = ("q0", "Question 0?", ["x"], "train", ["d1"])
    qs[1] = ("q1", "Question 1?", ["x"], "dev", ["d1"])
    root = write_user_corpus(tmp_path / "c", questions=qs)
    b = load_corpus(root, test_ratio=0.5)
    splits = {e.id: e.split for e in b.examples}
    assert splits["q0"] == "train" and splits["q1"] == "dev"
    assert sum(s == "test" for s in splits.values()) == 9
    assert b.meta["split_assigned"]["questions"] == 18


def test_split_flags_reach_the_loader_through_the_cli(tmp_path, monkeypatch):
    root = write_user_corpus(tmp_path / "c", questions=many_questions(10), split=False)
    seen = {}

    def fake_run(cfg, progress, log, **_):
        seen["benches"] = runner.plan(cfg)[2]
        raise HarnessError("stop here")

    monkeypatch.setattr(runner, "run", fake_run)
    assert cli.main(["run", "--corpus", str(root), "--test-ratio", "0.5", "--split-seed", "3",
                     "--strategies", "zero-shot"]) == 2
    (bench,) = seen["benches"]
    assert len(bench.split("test")) == 5 and bench.meta["split_assigned"]["seed"] == 3


@pytest.mark.parametrize("ratio", [0, -0.1, 1.5, float("nan")])
def test_bad_test_ratio(tmp_path, ratio):
    from harness.core.errors import ConfigError
    from harness.engine.config import RunConfig

    with pytest.raises(ConfigError):
        RunConfig(test_ratio=ratio)
    with pytest.raises(HarnessError):
        load_corpus(write_user_corpus(tmp_path / "c"), test_ratio=ratio)


# -- a folder of deliberately broken files: every problem, exactly -------------------------------

@pytest.mark.reliability("bad input", "documents/*.txt + questions.csv with many faults: bad files skipped and "
                                      "listed, every question problem with file:line")
def test_broken_txt_and_csv_folder_reports_every_problem(tmp_path):
    """Bad document files are skipped and listed with their reason (the rest loads); bad questions
    are problems with file:line."""
    root = tmp_path / "broken"
    d = root / "documents"
    d.mkdir(parents=True)
    (d / "good.txt").write_text("Alice Stone opened the bridge in 1932.")
    (d / "empty.txt").write_bytes(b"")
    (d / "blank.md").write_text("  \n\n")
    (d / "latin1.txt").write_bytes("line one\ncaf\u00e9 au lait\n".encode("latin-1"))
    (d / "good.md").write_text("duplicate of good.txt's id")
    (d / "folder.txt").mkdir()  # a folder, read as one (empty)
    (d / "slides.pdf").write_bytes(b"%PDF")
    (d / "back\\slash.txt").write_text("an id with a path separator")
    (root / "questions.csv").write_text(
        "id,question,answers,doc_ids,split\n"
        "q1,Who opened the bridge?,Alice Stone,good,test\n"
        "q1,Who again?,Alice,good,test\n"
        "q2,No answer here?,,good,train\n"
        "q3,Which document?,x,good|missing,test\n"
        "q4,Wrong split?,x,good,validation\n"
        "q5,Too many fields,x,good,test,extra\n"
        "../q6,Escaping id?,x,good,test\n"
        '"q7","A question over\ntwo lines","y|z","good",""\n'
        ",Missing id,x,good,test\n"
        "q8,About the empty file?,x,empty,test\n"
    )
    result = check_corpus(root)
    assert problems(root) == [
        "questions.csv:3: duplicate question id 'q1' (first on line 2)",
        "questions.csv:4: question 'q2' has no answers",
        "questions.csv:5: doc_ids name no document: missing",
        "questions.csv:6: split must be 'train', 'dev' or 'test', got 'validation'",
        "questions.csv:7: row has 6 fields, the header has 5",
        "questions.csv:8: question id '../q6' contains a path separator: rejected",
        "questions.csv:11: field 'id' must be a non-empty string",
    ]
    assert [str(p).replace(f"{root}/", "") for p in result.skipped] == [
        "documents/back\\slash.txt: a backslash or control character in the path; rename it",
        "documents/blank.md: empty file (only whitespace)",
        "documents/empty.txt: empty file (0 bytes)",
        "documents/good.txt: same document id 'good' as good.md: rename one of them",
        "documents/latin1.txt: not UTF-8 text (invalid continuation byte at byte 12, line 2); save it as UTF-8",
        "documents/slides.pdf: not a PDF: the file is text",
    ]
    assert [str(w).replace(f"{root}/", "") for w in result.warnings] == \
        ["questions.csv:12: doc_ids name a skipped document file: empty"]


@pytest.mark.reliability("bad input", "empty or non-UTF-8 document files: skipped and listed, the rest loads")
def test_bad_document_files_never_stop_the_corpus_from_loading(tmp_path):
    """The same bad files without the bad questions: the corpus loads, the skips are in its meta."""
    root = write_user_corpus(tmp_path / "c")
    (root / "documents" / "d7.txt").write_bytes(b"")
    (root / "documents" / "d8.txt").write_bytes(b"caf\xe9\n")
    b = load_benchmark(str(root))
    assert len(b.documents) == 6
    assert b.meta["skipped_documents"] == [["documents/d7.txt", "empty file (0 bytes)"],
                                           ["documents/d8.txt", "not UTF-8 text (invalid continuation byte at "
                                                                "byte 3, line 1); save it as UTF-8"]]
    root2 = write_user_corpus(tmp_path / "all-bad", docs=[])
    (root2 / "documents" / "x.txt").write_bytes(b"")
    assert problems(root2)[0] == "documents: no documents: all 1 file skipped, see the list"


@pytest.mark.reliability("bad input", "documents.jsonl + questions.jsonl with many faults: every problem listed with "
                                      "file:line")
def test_broken_jsonl_folder_reports_every_problem(tmp_path):
    root = tmp_path / "broken"
    root.mkdir()
    docs = [
        {"id": "d1", "text": "Lake Mira is 310 meters deep."},
        {"id": "d1", "text": "again"},
        {"id": "/etc/passwd", "text": "absolute"},
        {"id": "nul\u0000id", "text": "nul"},
        {"id": "..", "text": "dots"},
        {"id": "d2", "text": ""},
        {"id": 7, "text": "numeric id"},
        ["not", "an", "object"],
    ]
    lines = [json.dumps(x) for x in docs]
    (root / "documents.jsonl").write_bytes(("\n".join(lines) + "\n").encode() + b'{"id": "d3", "text": "\xff"}\n')
    qs = [
        {"id": "q1", "question": "How deep is Lake Mira?", "answers": ["310 meters"], "doc_ids": ["d1"],
         "split": "test"},
        {"id": "q2", "question": "Answers not a list?", "answers": "310", "split": "test"},
        {"id": "q3", "question": "Unknown doc?", "answers": ["x"], "doc_ids": ["d9"], "split": "test"},
        {"id": "q4", "question": "", "answers": ["x"], "split": "train"},
    ]
    text = "\n".join(json.dumps(x) for x in qs) + '\n{"id": "q5", "question": "broken\n'
    text += json.dumps({"id": "q6", "question": "ok?", "answers": ["y"], "split": "train"}) + "\n"
    text += '{"id": "q7", "question": "cut off", "answ'  # truncated last line, no newline
    (root / "questions.jsonl").write_text(text)
    assert problems(root) == [
        "documents.jsonl:2: duplicate document id 'd1' (first on line 1)",
        "documents.jsonl:3: document id '/etc/passwd' contains a path separator: rejected",
        "documents.jsonl:4: document id 'nul\\x00id' contains a NUL character: rejected",
        "documents.jsonl:5: document id '..' is a relative folder name: rejected",
        "documents.jsonl:6: field 'text' must be a non-empty string",
        "documents.jsonl:7: field 'id' must be a non-empty string",
        "documents.jsonl:8: each line must be a JSON object",
        "documents.jsonl:9: not UTF-8 text (invalid start byte at byte 22 of the line)",
        "questions.jsonl:2: field 'answers' must be a list of strings",
        "questions.jsonl:3: doc_ids name no document: d9",
        "questions.jsonl:4: field 'question' must be a non-empty string",
        "questions.jsonl:5: invalid JSON (Unterminated string starting at)",
        "questions.jsonl:7: invalid JSON (Unterminated string starting at); the file looks truncated here",
    ]


@pytest.mark.reliability("bad input", "questions.csv missing a column")
def test_csv_missing_a_column(tmp_path):
    root = write_user_corpus(tmp_path / "c")
    (root / "questions.csv").write_text("id,question,doc_ids\nq1,Who?,d1\n")
    assert problems(root) == ["questions.csv:1: missing column answers (header: id, question, doc_ids; "
                              "needed: id, question, answers)"]


def test_empty_test_split(tmp_path):
    root = write_user_corpus(tmp_path / "c", questions=[(i, q, a, "train", d) for i, q, a, _, d in QUESTIONS])
    assert problems(root) == ["questions.csv: no question has split 'test': nothing to evaluate"]


@pytest.mark.parametrize("setup,expected", [
    (lambda r: None, "broken: corpus folder not found"),
    (lambda r: r.mkdir(), "broken: corpus folder is empty"),
    (lambda r: r.write_text("a file"), "broken: not a folder"),
    (lambda r: (r.mkdir(), (r / "documents.jsonl").write_text("")),
     "broken/documents.jsonl: no documents"),
    (lambda r: (write_user_corpus(r), (r / "documents.jsonl").write_text("{}")),
     "broken: both documents and documents.jsonl: keep one"),
    (lambda r: (write_user_corpus(r), (r / "questions.csv").unlink()),
     "broken/questions.jsonl: not found (nor questions.csv, .tsv, .parquet, or a questions/ folder"),
    (lambda r: (write_user_corpus(r), (r / "questions.parquet").write_bytes(b"x")),
     "broken: both questions.csv and questions.parquet: keep one"),
    (lambda r: (write_user_corpus(r), (r / "questions.csv").write_text("")),
     "broken/questions.csv: empty file: expected a header row"),
    (lambda r: (write_user_corpus(r), (r / "benchmark.json").write_text('{"name": "../../etc"}')),
     "broken/benchmark.json: name '../../etc' contains a path separator"),
])
def test_folder_level_problems(tmp_path, setup, expected):
    root = tmp_path / "broken"
    setup(root)
    found = [str(p).replace(f"{tmp_path}/", "") for p in check_corpus(root).problems]
    assert any(p.startswith(expected) for p in found), found


def test_load_raises_one_error_listing_every_problem(tmp_path):
    root = write_user_corpus(tmp_path / "c")
    with open(root / "questions.csv", "a") as f:
        f.write("q98,no answer,,d1,test\nq99,bad split,x,d1,later\n")
    with pytest.raises(CorpusError) as exc:
        load_benchmark(str(root))
    assert isinstance(exc.value, DataError) and len(exc.value.problems) == 2
    msg = str(exc.value)
    assert msg.startswith(f"2 problems in corpus {root}:")
    assert f"{root / 'questions.csv'}:20: question 'q98' has no answers" in msg
    assert f"{root / 'questions.csv'}:21: split must be" in msg


@pytest.mark.reliability("security", "document and question ids with ../, separators, NUL are rejected")
def test_unsafe_ids():
    for bad in ("../x", "/abs", "a/b", "a\\b", "..", ".", "nul\0", "tab\there"):
        assert unsafe_id(bad), bad
    for ok in ("d1", "nyt-0001", "Paris (France)", "caf\u00e9", "a.b"):
        assert unsafe_id(ok) is None, ok


@pytest.mark.reliability("bad input", "a 50 MB single document is chunked, not rejected")
def test_a_50mb_document_is_chunked_not_rejected(tmp_path):
    root = write_user_corpus(tmp_path / "big")
    (root / "documents" / "d1.txt").write_text("The Harbor City bridge was opened in 1932. " * 1_200_000)
    b = load_benchmark(str(root))
    big = next(d for d in b.documents if d.id == "d1")
    assert len(big.text) > 50_000_000
    from harness.data.chunks import iter_chunks

    first = next(iter_chunks(b.documents, 100, 20))
    assert first[0] == 0 and len(big.text[first[1]:first[2]].split()) == 100


# -- the CLI: `harness corpus check` and `harness run --corpus` -----------------------------------

def test_corpus_check_clean(tmp_path, capsys):
    root = write_user_corpus(tmp_path / "c", split=False)
    assert cli.main(["corpus", "check", str(root), "--chunk-words", "16", "--chunk-overlap", "4"]) == 0
    out = capsys.readouterr().out
    assert f"{root}: OK" in out
    assert "6 documents" in out and "7 chunks of 16 words (overlap 4)" in out
    assert "18 questions: 13 train, 5 test" in out
    assert "18 questions had no split: assigned with seed 0, test ratio 0.3" in out


def test_corpus_check_lists_every_problem_and_exits_2(tmp_path, capsys):
    root = write_user_corpus(tmp_path / "c")
    (root / "documents" / "d3.txt").write_bytes(b"")
    with open(root / "questions.csv", "a") as f:
        f.write("q1,dup,x,d1,test\nq99,no answer,,d1,test\nq100,where?,x,nowhere,test\n")
    assert cli.main(["corpus", "check", str(root)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"error: 3 problems in corpus {root}:" in err
    for where in (f"{root / 'questions.csv'}:20:", f"{root / 'questions.csv'}:21:", f"{root / 'questions.csv'}:22:"):
        assert where in err
    # the empty document is listed as skipped, and questions about it warned of, before the problems
    assert f"skipped: {root / 'documents' / 'd3.txt'}: empty file (0 bytes)" in err
    assert "doc_ids name a skipped document file: d3" in err


def test_corpus_check_lists_skipped_files_and_exits_0(tmp_path, capsys):
    root = write_user_corpus(tmp_path / "c")
    (root / "documents" / "notes.xlsx").write_bytes(b"PK\x03\x04")
    assert cli.main(["corpus", "check", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"{root}: OK" in out and "6 documents" in out
    assert "1 document file skipped (not loaded):\n    documents/notes.xlsx: unsupported file type '.xlsx'" in out


def _truncate_questions(r):
    p = r / "questions.jsonl"
    p.write_text(p.read_text()[:-20])


def _edit_question(r, n, **changes):
    p = r / "questions.jsonl"
    lines = p.read_text().splitlines()
    lines[n - 1] = json.dumps({**json.loads(lines[n - 1]), **changes})
    p.write_text("\n".join(lines) + "\n")


def _to_txt(r, doc_id, data: bytes):
    """Turn a jsonl corpus into the documents/ layout, with one document's bytes replaced."""
    (r / "documents").mkdir()
    for line in (r / "documents.jsonl").read_text().splitlines():
        d = json.loads(line)
        (r / "documents" / f"{d['id']}.txt").write_bytes(data if d["id"] == doc_id else d["text"].encode())
    (r / "documents.jsonl").unlink()


# issue 8's corpus cases: (how to break the tiny corpus, text that must be in the message)
ISSUE8_CASES = {
    "missing folder": (lambda r: __import__("shutil").rmtree(r), "{r}: corpus folder not found"),
    "empty folder": (lambda r: [p.unlink() for p in r.iterdir()], "{r}: corpus folder is empty"),
    # issue 8's unreadable, non-UTF-8 and zero-byte document files are skipped and listed since issue 18
    # (test_bad_document_files_never_stop_the_corpus_from_loading); a question naming one still stops the run
    "doc_ids naming no document, beside a skipped file": (
        lambda r: (_to_txt(r, "d4", b""), _edit_question(r, 4, doc_ids=["d9"])),
        "{r}/questions.jsonl:4: doc_ids name no document: d9"),
    "duplicate document id": (lambda r: open(r / "documents.jsonl", "a").write('{"id": "d1", "text": "x"}\n'),
                              "{r}/documents.jsonl:7: duplicate document id 'd1'"),
    "duplicate question id": (lambda r: _edit_question(r, 2, id="q1"),
                              "{r}/questions.jsonl:2: duplicate question id 'q1'"),
    "truncated last line": (_truncate_questions, "{r}/questions.jsonl:18: invalid JSON"),
    "answers not a list": (lambda r: _edit_question(r, 3, answers="Denver"),
                           "{r}/questions.jsonl:3: field 'answers' must be a list"),
    "document id escaping the folder": (lambda r: open(r / "documents.jsonl", "a").write(
        '{"id": "../../x", "text": "x"}\n'), "{r}/documents.jsonl:7: document id '../../x'"),
}


@pytest.mark.reliability("bad input", "corpus folder case, through harness run")
@pytest.mark.parametrize("case", sorted(ISSUE8_CASES))
def test_run_with_a_broken_corpus_stops_before_the_model(case, tmp_path, monkeypatch, capsys):
    root = write_corpus(tmp_path / "corpus")
    break_it, expected = ISSUE8_CASES[case]
    break_it(root)
    reports = tmp_path / "reports"
    monkeypatch.setenv("HARNESS_REPORTS", str(reports))

    class NoModel:
        def __init__(self, *a, **k):
            raise AssertionError("the model must not load for a broken corpus")

    import harness.model.runtime

    monkeypatch.setattr(harness.model.runtime, "Runtime", NoModel)
    assert cli.main(["run", "--corpus", str(root), "--strategies", "zero-shot,rag", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert expected.format(r=root) in err, err
    assert not reports.exists()


@pytest.mark.reliability("bad input", "broken corpus in a harness run subprocess: no traceback, nothing under reports/")
def test_run_subprocess_broken_corpus_no_traceback_and_no_reports(tmp_path):
    root = write_corpus(tmp_path / "corpus")
    _truncate_questions(root)
    (root / "documents.jsonl").write_text((root / "documents.jsonl").read_text() + '{"id": "d1", "text": "x"}\n')
    env = {"PYTHONPATH": str(REPO), "HARNESS_REPORTS": str(tmp_path / "reports"), "HF_HUB_OFFLINE": "1",
           "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--corpus", str(root), "--strategies",
                           "zero-shot"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"{root / 'documents.jsonl'}:7: duplicate document id 'd1'" in proc.stderr
    assert f"{root / 'questions.jsonl'}:18: invalid JSON" in proc.stderr
    assert not (tmp_path / "reports").exists()
