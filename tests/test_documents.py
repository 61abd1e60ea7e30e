"""Documents in (issue 18): a documents/ folder of PDFs, HTML, Markdown and text through `corpus check`
and `harness run`, skipped files listed, whole-file doc_ids matched by their parts in recall@k, question
tables with a column mapping, and existing .txt/.md corpora loading to the very same documents and hash."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_ingest import PAGE, encrypt_pdf, make_pdf, make_scanned_pdf

from harness import cli
from harness.analysis.metrics import recall_at
from harness.core.errors import HarnessError
from harness.data.benchmark import load_benchmark
from harness.data.corpus import check_corpus, load_corpus, parse_columns
from harness.data.docids import any_match, doc_matches, unknown_refs

pytest.importorskip("pypdf")
pytest.importorskip("bs4")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_REPORTS", str(tmp_path / "reports"))


# -- existing corpora keep their documents and their hash -----------------------------------------------


def plain_corpus(root: Path) -> Path:
    d = root / "documents"
    d.mkdir(parents=True)
    files = {"a.txt": "plain text\nwith lines\n", "b.md": "# Title\n\nBody text.\n", "c.md": "No heading\n",
             "g.txt": "windows\r\nlines\r\n", "i.md": "Setext\n======\n\nbody\n", "l.md": "# Only a heading\n",
             "Z.TXT": "upper-case suffix\n"}
    for name, text in files.items():
        (d / name).write_bytes(text.encode())
    (d / "h.md").write_bytes(b"\xef\xbb\xbf# BOM title\n\nbody\n")
    (root / "questions.jsonl").write_text(json.dumps({"id": "q1", "question": "What?", "answers": ["x"],
                                                      "doc_ids": ["a"], "split": "test"}) + "\n")
    return root


def test_a_txt_and_md_folder_loads_to_the_same_documents_and_hash_as_before_ingestion(tmp_path):
    """What main's loader (before documents went through harness/data/ingest.py) gave this folder on
    2026-12-02, checked by running it: the data hash keys every cached stage of a run."""
    b = load_corpus(plain_corpus(tmp_path / "c"))
    assert b.meta["data_sha256"] == "554773abeb553191706baf25be08ac73f3fbc77f9167ba3fcbaa9a5a15743d08"
    assert [(d.id, d.title) for d in b.documents] == [
        ("Z", ""), ("a", ""), ("b", "Title"), ("c", ""), ("g", ""), ("h", "BOM title"), ("i", ""),
        ("l", "Only a heading")]
    assert next(d for d in b.documents if d.id == "g").text == "windows\r\nlines\r\n"
    assert "skipped_documents" not in b.meta


def test_a_markdown_file_with_sections_loads_as_sections_and_moves_the_hash(tmp_path):
    root = plain_corpus(tmp_path / "c")
    before = load_corpus(root).meta["data_sha256"]
    (root / "documents" / "guide.md").write_text("# Install\n\nRun setup twice.\n\n# Remove\n\nDelete the folder.\n")
    with open(root / "questions.jsonl", "a") as f:
        f.write(json.dumps({"id": "q2", "question": "How?", "answers": ["twice"], "doc_ids": ["guide"],
                            "split": "test"}) + "\n")
    b = load_corpus(root)
    assert [d.id for d in b.documents if d.id.startswith("guide")] == ["guide#install", "guide#remove"]
    assert b.meta["data_sha256"] != before  # other documents: cached stages must not be reused
    (root / "documents" / "guide.md").write_text("# Install\n\nRun setup three times.\n\n# Remove\n\nDelete.\n")
    assert load_corpus(root).meta["data_sha256"] != b.meta["data_sha256"]


# -- whole-file ids ----------------------------------------------------------------------------------------


def test_whole_file_ids_are_found_by_their_parts():
    assert doc_matches("manual#p3", "manual") and not doc_matches("manual#p3", "manual#p2")
    assert recall_at(["page#maintenance", "manual#p3"], ["manual"], 1) == 0.0
    assert recall_at(["page#maintenance", "manual#p3"], ["manual"], 2) == 1.0
    assert recall_at(["d1", "d2"], ["d2"], 2) == 1.0 and recall_at(["d1"], [], 1) is None
    assert any_match(["guides/install#linux"], ["guides/install"])
    assert unknown_refs(["manual", "manual#p3", "manual#p9", "page", "nope"], {"manual#p3", "page"}) == \
        ["manual#p9", "nope"]


# -- a documents folder of PDFs and HTML, through corpus check and a run -----------------------------------


def documents_corpus(root: Path) -> Path:
    d = root / "documents"
    (d / "guides").mkdir(parents=True)
    make_pdf(d / "manual.pdf", ["The P-100 pump moves 40 litres of water a minute through the main pipe.",
                                "Replace the rubber seal of the P-100 pump every 6 months.",
                                "Error 17 on the display means the valve of the pump is stuck."])
    (d / "page.html").write_text(PAGE)
    (d / "guides" / "setup.md").write_text("# Install\n\nRun the setup program twice on Linux.\n\n"
                                           "# Remove\n\nDelete the install folder by hand.\n")
    (d / "notes.txt").write_text("The warranty of the P-100 pump lasts two years from delivery.\n")
    make_scanned_pdf(d / "scan.pdf")
    encrypt_pdf(d / "manual.pdf", d / "locked.pdf", user_password="secret")
    (root / "questions.csv").write_text(
        "key,prompt,gold,source\n"
        "q1,How many litres a minute does the P-100 pump move?,40 litres,manual\n"
        "q2,How often is the seal replaced?,every 6 months|6 months,manual#p2\n"
        "q3,What does error 17 mean?,the valve is stuck,manual\n"
        "q4,How long is the warranty?,two years,notes\n"
        "q5,How is the software installed on Linux?,run the setup program twice,guides/setup#install\n"
        "q6,What interval is given for the seal in the table?,6 months,page#maintenance\n"
        "q7,How do you remove the software?,delete the install folder,guides/setup\n")
    (root / "benchmark.json").write_text(json.dumps({"name": "pumps", "columns": {
        "id": "key", "question": "prompt", "answers": "gold", "doc_ids": "source"}}))
    return root


EXPECTED_SKIPS = [["documents/locked.pdf", "encrypted: it cannot be opened without a password"],
                  ["documents/scan.pdf", "no text layer (scanned?)"]]


@pytest.mark.reliability("bad input", "documents/ with an encrypted and a scanned PDF: both listed as skipped with "
                                      "the reason, PDF pages, HTML and Markdown sections load")
def test_corpus_check_reads_pdf_html_markdown_and_lists_skipped_files(tmp_path, capsys):
    root = documents_corpus(tmp_path / "pumps")
    assert cli.main(["corpus", "check", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"{root}: OK (pumps, task extractive_qa)" in out
    assert "9 documents" in out  # 3 PDF pages, 3 HTML sections, 2 Markdown sections, 1 text file
    assert "7 questions" in out
    assert ("2 document files skipped (not loaded):\n    documents/locked.pdf: encrypted: it cannot be opened "
            "without a password\n    documents/scan.pdf: no text layer (scanned?)") in out
    b = load_benchmark(str(root))
    titles = {d.id: d.title for d in b.documents}
    assert titles["manual#p2"] == "manual.pdf — page 2" and titles["page#maintenance"] == "page.html — Maintenance"
    assert titles["guides/setup#install"] == "guides/setup.md — Install"
    assert b.meta["skipped_documents"] == EXPECTED_SKIPS
    assert {e.id: e.doc_ids for e in b.examples}["q1"] == ("manual",)


def test_a_run_over_a_documents_folder_cites_pages_and_matches_whole_files(tmp_path, tiny_model, capsys):
    root = documents_corpus(tmp_path / "pumps")
    out = tmp_path / "run"
    assert cli.main(["run", "--corpus", str(root), "--strategies", "zero-shot,rag", "--model", str(tiny_model),
                     "--out", str(out), "--quiet", "--test-ratio", "1"]) == 0
    printed = capsys.readouterr().out
    assert ("pumps: 2 document files skipped (not loaded): documents/locked.pdf (encrypted: it cannot be opened "
            "without a password); documents/scan.pdf (no text layer (scanned?))") in printed
    results = json.loads((out / "results.json").read_text())
    assert results["benchmarks"][0]["skipped_documents"] == EXPECTED_SKIPS
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    rag = {r["id"]: r for r in rows if r["strategy"] == "rag"}
    assert len(rag) == 7
    ids = {i for r in rag.values() for i in r["trace"]["retrieved_doc_ids"]}
    assert ids <= {"manual#p1", "manual#p2", "manual#p3", "page#pump-p-100", "page#maintenance",
                   "page#troubleshooting", "guides/setup#install", "guides/setup#remove", "notes"}
    # recall@k counts a part of a whole-file gold id as found, in the run and in the rebuilt report
    cell = next(c for c in results["cells"] if c["strategy"] == "rag")
    k = len(rag["q1"]["trace"]["retrieved_doc_ids"])
    expected = sum(any_match(r["trace"]["retrieved_doc_ids"], {"q1": ["manual"], "q2": ["manual#p2"],
                                                               "q3": ["manual"], "q4": ["notes"],
                                                               "q5": ["guides/setup#install"],
                                                               "q6": ["page#maintenance"],
                                                               "q7": ["guides/setup"]}[i])
                   for i, r in rag.items()) / 7
    assert cell["retrieval"][f"recall@{k}"] == pytest.approx(expected)
    assert rag["q1"]["trace"]["gold_retrieved"] == float(any(i.startswith("manual#")
                                                             for i in rag["q1"]["trace"]["retrieved_doc_ids"]))
    md = (out / "report.md").read_text()
    assert "2 document files could not be read and were left out: documents/locked.pdf" in md
    html = (out / "report.html").read_text()
    assert "manual.pdf — page" in html  # the answers name the pages and sections they were given


# -- question tables with a column mapping ------------------------------------------------------------------


def txt_documents(root: Path) -> Path:
    (root / "documents").mkdir(parents=True)
    for i, text in (("d1", "Alice Stone opened the bridge in 1932."), ("d2", "Lake Mira is 310 meters deep.")):
        (root / "documents" / f"{i}.txt").write_text(text)
    return root


ROWS = [{"q": "Who opened the bridge?", "gold": ["Alice Stone"], "docs": ["d1"], "part": "test"},
        {"q": "How deep is Lake Mira?", "gold": ["310 meters"], "docs": ["d2"], "part": "train"},
        {"q": "When was the bridge opened?", "gold": ["1932"], "docs": ["d1"], "part": "validation"}]
MAPPING = "question=q,answers=gold,doc_ids=docs,split=part"


def test_parquet_questions_with_columns_on_the_command_line(tmp_path, capsys):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    root = txt_documents(tmp_path / "c")
    pq.write_table(pa.Table.from_pylist(ROWS), root / "questions.parquet")
    assert cli.main(["corpus", "check", str(root), "--columns", MAPPING]) == 0
    assert "3 questions: 1 train, 1 dev, 1 test" in capsys.readouterr().out
    # without the mapping the columns are not found: one problem, naming the file
    assert cli.main(["corpus", "check", str(root)]) == 2
    err = capsys.readouterr().err
    assert f"{root / 'questions.parquet'}: missing columns 'question', 'answers'" in err
    a = load_corpus(root, columns=parse_columns(MAPPING))
    b = load_corpus(root, columns=parse_columns(MAPPING.replace(",split=part", "")))
    assert a.meta["data_sha256"] != b.meta["data_sha256"]  # the mapping decides the questions: it is hashed


def test_a_parquet_row_problem_names_the_row(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    root = txt_documents(tmp_path / "c")
    bad = [dict(ROWS[0]), {**ROWS[1], "docs": ["d9"]}, {**ROWS[2], "gold": []}]
    pq.write_table(pa.Table.from_pylist(bad), root / "questions.parquet")
    found = [str(p).replace(f"{root}/", "") for p in check_corpus(root, columns=parse_columns(MAPPING)).problems]
    assert found == ["questions.parquet: row 3: no answers (column 'gold' is empty)"]
    pq.write_table(pa.Table.from_pylist(bad[:2]), root / "questions.parquet")
    found = [str(p).replace(f"{root}/", "") for p in check_corpus(root, columns=parse_columns(MAPPING)).problems]
    assert found == ["questions.parquet: row 2: doc_ids name no document: d9"]


def test_a_saved_dataset_folder_with_its_splits(tmp_path, capsys):
    datasets = pytest.importorskip("datasets")
    root = txt_documents(tmp_path / "c")
    plain = [{"question": r["q"], "answers": r["gold"], "doc_ids": r["docs"]} for r in ROWS]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(plain[1:2]),
                          "validation": datasets.Dataset.from_list(plain[2:]),
                          "test": datasets.Dataset.from_list(plain[:1])}).save_to_disk(root / "questions")
    assert cli.main(["corpus", "check", str(root)]) == 0
    assert "3 questions: 1 train, 1 dev, 1 test" in capsys.readouterr().out
    first = load_corpus(root).meta["data_sha256"]
    assert load_corpus(root).meta["data_sha256"] == first


def test_csv_and_jsonl_tables_with_columns_in_benchmark_json(tmp_path):
    root = txt_documents(tmp_path / "c")
    (root / "questions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    (root / "benchmark.json").write_text(json.dumps({"columns": {"question": "q", "answers": "gold",
                                                                 "doc_ids": "docs", "split": "part"}}))
    b = load_corpus(root)
    assert [(e.input, e.answers, e.split, e.doc_ids) for e in b.examples] == [
        ("Who opened the bridge?", ("Alice Stone",), "test", ("d1",)),
        ("How deep is Lake Mira?", ("310 meters",), "train", ("d2",)),
        ("When was the bridge opened?", ("1932",), "dev", ("d1",))]
    assert all(e.id.startswith("q-") for e in b.examples)  # no id column: stable ids from the question
    (root / "questions.jsonl").unlink()
    (root / "questions.tsv").write_text("q\tgold\tdocs\tpart\n" + "".join(
        f"{r['q']}\t{'|'.join(r['gold'])}\t{'|'.join(r['docs'])}\t{r['part']}\n" for r in ROWS))
    assert [e.input for e in load_corpus(root).examples] == [r["q"] for r in ROWS]


@pytest.mark.parametrize("columns, message", [
    ({"question": "q", "anwsers": "gold"}, "benchmark.json: 'columns' has unknown field(s) 'anwsers'"),
    ({"question": ""}, "benchmark.json: 'columns' must name a column for 'question'"),
    ([], "benchmark.json: 'columns' must map question fields to column names"),
])
def test_bad_columns_in_benchmark_json(tmp_path, columns, message):
    root = txt_documents(tmp_path / "c")
    (root / "questions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    (root / "benchmark.json").write_text(json.dumps({"columns": columns}))
    found = [str(p).replace(f"{root}/", "") for p in check_corpus(root).problems]
    assert any(p.startswith(message) for p in found), found


def test_columns_flag(tmp_path, monkeypatch, capsys):
    assert parse_columns(MAPPING) == {"question": "q", "answers": "gold", "doc_ids": "docs", "split": "part"}
    for bad in ("question", "question=q,question=r", "colour=q", ","):
        with pytest.raises(HarnessError):
            parse_columns(bad)
    with pytest.raises(SystemExit) as info:
        cli.main(["corpus", "check", str(tmp_path), "--columns", "anwsers=gold"])
    assert info.value.code == 2
    assert "unknown field 'anwsers'" in capsys.readouterr().err
    # `harness run --columns` reaches the loader through the run config, and is recorded for `harness report`
    from harness.engine import runner

    root = txt_documents(tmp_path / "c")
    (root / "questions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    seen = {}

    def fake_run(cfg, progress, log, **_):
        seen["cfg"], seen["benches"] = cfg, runner.plan(cfg)[2]
        raise HarnessError("stop here")

    monkeypatch.setattr(runner, "run", fake_run)
    assert cli.main(["run", "--corpus", str(root), "--columns", MAPPING, "--strategies", "zero-shot"]) == 2
    assert seen["cfg"].to_dict()["columns"] == parse_columns(MAPPING)
    assert [e.input for e in seen["benches"][0].examples] == [r["q"] for r in ROWS]
