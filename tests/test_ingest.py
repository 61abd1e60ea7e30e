"""Documents in (harness/ingest.py): PDFs, HTML, Markdown/reST, .docx and text files -> Documents that
cite file and page or section; every file that yields no text is listed with its reason; extraction
is cached per file content; question tables (CSV, JSONL, Parquet, datasets folders) -> question rows."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness.core.errors import DataError
from harness.core.types import Document
from harness.data import ingest
from harness.data.docids import doc_matches
from harness.data.ingest import (
    Section,
    Skipped,
    extract,
    load_documents,
    load_question_table,
    slugify,
)

pytest.importorskip("pypdf")
pytest.importorskip("bs4")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """Each test gets its own extraction cache."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))


# -- files made in the test ----------------------------------------------------------------------------


def make_pdf(path: Path, pages: list[str]) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    pdf.output(str(path))
    return path


def make_scanned_pdf(path: Path) -> Path:
    """A page that is only an image, as a scanner makes it: no text layer."""
    from fpdf import FPDF
    from PIL import Image

    pdf = FPDF()
    pdf.add_page()
    pdf.image(Image.new("RGB", (60, 40), "gray"), x=10, y=10, w=120)
    pdf.output(str(path))
    return path


def encrypt_pdf(source: Path, target: Path, user_password: str, owner_password: str = "owner") -> Path:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(source))
    writer.encrypt(user_password=user_password, owner_password=owner_password, algorithm="RC4-128")
    with open(target, "wb") as f:
        writer.write(f)
    return target


PAGE = """<!DOCTYPE html>
<html><head><title>Pump manual</title><style>body { color: red }</style>
<script>var tracking = "SCRIPT-TEXT";</script></head>
<body>
<header class="site-header"><a href="/">ACME HOME</a><div class="search">Search the site</div></header>
<nav><ul><li><a href="/a">NAV-ONE</a></li><li><a href="/b">NAV-TWO</a></li></ul></nav>
<div class="cookie-banner">We use COOKIES to improve your experience. Accept?</div>
<main>
  <article>
    <header><h1>Pump P-100 <a class="headerlink" href="#p">¶</a></h1></header>
    <p>The P-100 pump moves <b>40 litres</b> a minute.</p>
    <h2 id="maint">Maintenance</h2>
    <p>Replace the seal every 6 months.</p>
    <table><tr><th>Part</th><th>Interval</th></tr><tr><td>Seal</td><td>6 months</td></tr></table>
    <aside class="note">Note: wear gloves when replacing the seal.</aside>
    <h2>Troubleshooting</h2>
    <pre>error 17:
    check the valve</pre>
  </article>
</main>
<aside class="sidebar">RELATED-ARTICLES you may like</aside>
<footer>FOOTER-TEXT Copyright 2026 ACME</footer>
</body></html>
"""

TABLE_LAYOUT_PAGE = """<html><body>
<table><tr>
<td><table class="layout"><tr><td><a href="/1">MENU-A</a></td></tr><tr><td><a href="/2">MENU-B</a></td></tr>
<tr><td><a href="/3">MENU-C</a></td></tr><tr><td><a href="/4">MENU-D</a></td></tr></table></td>
<td><h1>Old page</h1><p>The valve opens at 3 bar, see <a href="/v">the valve page</a>.</p>
<ul><li><a href="/x">See also one</a></li><li><a href="/y">See also two</a></li><li><a href="/z">See three</a></li></ul>
</td></tr></table>
<div id="footer">FOOTER-OLD</div>
</body></html>
"""

MARKDOWN = """---
title: front matter is not a heading
---
Intro text before any heading.

# Pump guide

The pump is blue.

```bash
# a comment in code, not a heading
pump --start
```

Installing on Linux
-------------------

Run the installer.

## Installing on Linux

Second section with the same heading.

## Empty heading
### Sub heading **bold** and `code`

Text under the sub heading.
"""

RST = """=========
Pump book
=========

The pump book intro.

Safety
======

Wear gloves.

::

    Literal block
    =============

Operation
---------

Press start.
"""


def make_docx(path: Path) -> Path:
    docx = pytest.importorskip("docx")
    document = docx.Document()
    document.add_heading("Pump report", level=1)
    document.add_paragraph("The pump ran for 300 hours.")
    document.add_heading("Findings", level=2)
    document.add_paragraph("The seal was worn.")
    table = document.add_table(rows=2, cols=2)
    for r, row in enumerate([("Part", "State"), ("Seal", "worn")]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    document.save(str(path))
    return path


@pytest.fixture
def folder(tmp_path) -> Path:
    """A documents folder with one file of each kind, good and bad."""
    d = tmp_path / "documents"
    (d / "guides").mkdir(parents=True)
    make_pdf(d / "manual.pdf", ["Page one says the pump is blue.", "Page two says the valve is red.",
                                "Page three says the seal lasts six months."])
    make_scanned_pdf(d / "scanned.pdf")
    encrypt_pdf(d / "manual.pdf", d / "locked.pdf", user_password="secret")
    encrypt_pdf(d / "manual.pdf", d / "owner_only.pdf", user_password="")  # opens without a password
    (d / "page.html").write_text(PAGE)
    (d / "old.htm").write_text(TABLE_LAYOUT_PAGE)
    (d / "empty.html").write_text("<html><head><title>Nothing</title></head><body><nav><a href='/'>Home</a>"
                                  "</nav><footer>Copyright</footer></body></html>")
    (d / "guides" / "pump.md").write_text(MARKDOWN)
    (d / "guides" / "book.rst").write_text(RST)
    (d / "notes.txt").write_text("# not a heading in a text file\nPlain notes.\n")
    (d / "single.md").write_text("# Setup guide\n\nRun the installer twice.\n")
    (d / "plain.md").write_text("No headings here.\n")
    make_docx(d / "report.docx")
    (d / "fake.pdf").write_text("this is not a PDF at all")
    (d / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")
    (d / "latin1.txt").write_bytes("café au lait\n".encode("latin-1"))
    (d / "zero.md").write_bytes(b"")
    (d / "blank.txt").write_text("  \n\n")
    (d / "fake.docx").write_text("not a zip")
    (d / "sheet.xlsx").write_bytes(b"PK\x03\x04")
    (d / "C# notes.txt").write_text("hash in the name")
    (d / ".hidden.txt").write_text("ignored")
    return d


EXPECTED_SKIPS = {
    "scanned.pdf": "no text layer (scanned?)",
    "locked.pdf": "encrypted: it cannot be opened without a password",
    "empty.html": "no main text (an empty page, or only navigation and boilerplate)",
    "fake.pdf": "not a PDF: the file is text",
    "image.txt": "binary content, not text: looks like a PNG image",
    "latin1.txt": "not UTF-8 text (invalid continuation byte at byte 3, line 1); save it as UTF-8",
    "zero.md": "empty file (0 bytes)",
    "blank.txt": "empty file (only whitespace)",
    "fake.docx": "not a .docx file: it is text",
    "sheet.xlsx": "unsupported file type '.xlsx' (supported: .pdf, .html, .htm, .md, .markdown, .rst, .txt, .docx)",
    "C# notes.txt": "'#' in the path: it separates a file from its page or section in document ids; rename it",
}


# -- a whole folder ----------------------------------------------------------------------------------------


def test_every_bad_file_is_listed_with_its_reason_and_the_rest_loads(folder):
    docs, skipped = load_documents(folder)
    assert dict(skipped) == EXPECTED_SKIPS
    files = {d.id.partition("#")[0] for d in docs}
    assert files == {"manual", "owner_only", "page", "old", "guides/pump", "guides/book", "notes", "single",
                     "plain", "report"}
    assert len({d.id for d in docs}) == len(docs)  # ids are unique
    assert all(d.text.strip() for d in docs)


def test_pdf_pages_keep_their_numbers(folder):
    docs, _ = load_documents(folder)
    pages = {d.id: d for d in docs if d.id.startswith("manual#")}
    assert list(pages) == ["manual#p1", "manual#p2", "manual#p3"]
    assert "valve is red" in pages["manual#p2"].text
    assert pages["manual#p3"].title == "manual.pdf — page 3"
    # a PDF that only restricts permissions opens with the empty password
    assert [d.id for d in docs if d.id.startswith("owner_only")] == ["owner_only#p1", "owner_only#p2",
                                                                     "owner_only#p3"]


def test_extract_pdf_sections(folder):
    sections = extract(folder / "manual.pdf")
    assert [(s.page, s.section, s.source) for s in sections] == [(1, None, "manual.pdf"), (2, None, "manual.pdf"),
                                                                 (3, None, "manual.pdf")]
    assert "pump is blue" in sections[0].text


def test_html_main_text_without_boilerplate(folder):
    sections = extract(folder / "page.html")
    text = "\n".join(s.text for s in sections)
    for gone in ("NAV-ONE", "NAV-TWO", "ACME HOME", "Search the site", "COOKIES", "FOOTER-TEXT",
                 "RELATED-ARTICLES", "SCRIPT-TEXT", "color: red", "¶"):
        assert gone not in text, gone
    assert "The P-100 pump moves 40 litres a minute." in text  # inline tags joined without breaks
    assert "Seal | 6 months" in text  # table rows kept, cells apart
    assert "wear gloves when replacing the seal" in text  # an aside inside the article is content
    assert "error 17:\n    check the valve" in text  # <pre> keeps its lines
    assert [s.section for s in sections] == ["Pump P-100", "Maintenance", "Troubleshooting"]


def test_html_page_without_main_drops_link_menus(folder):
    text = "\n".join(s.text for s in extract(folder / "old.htm"))
    assert "MENU-A" not in text and "FOOTER-OLD" not in text
    assert "The valve opens at 3 bar, see the valve page." in text
    assert "See also one" in text  # a list of links under a heading is content


def test_html_wrapper_named_like_chrome_is_kept(tmp_path):
    """A class such as "has-sidebar" on the box that holds the page is not a sidebar."""
    (tmp_path / "wp.html").write_text(
        '<html><body class="has-sidebar"><div class="site-wrapper menu-open"><div class="entry">'
        + "<p>The long article text about pumps and valves.</p>" * 5
        + '</div><div class="sidebar-widgets">Recent posts</div></div></body></html>')
    text = extract(tmp_path / "wp.html")[0].text
    assert "article text about pumps" in text and "Recent posts" not in text


def test_html_ids_cite_sections(folder):
    docs, _ = load_documents(folder)
    by_id = {d.id: d for d in docs}
    assert [i for i in by_id if i.startswith("page#")] == ["page#pump-p-100", "page#maintenance",
                                                           "page#troubleshooting"]
    assert by_id["page#maintenance"].title == "page.html — Maintenance"
    assert by_id["page#maintenance"].text.startswith("Maintenance\n")  # retrieval sees the heading


def test_html_charset_declared_in_meta(tmp_path):
    page = '<html><head><meta charset="windows-1252"></head><body><p>Caf\xe9 cr\xe8me</p></body></html>'
    (tmp_path / "legacy.html").write_bytes(page.encode("cp1252"))
    assert extract(tmp_path / "legacy.html")[0].text == "Café crème"


def test_markdown_splits_on_headings(folder):
    sections = extract(folder / "guides" / "pump.md")
    assert [s.section for s in sections] == [None, "Pump guide", "Installing on Linux", "Installing on Linux",
                                             "Sub heading bold and code"]
    assert sections[0].text.startswith("---\ntitle: front matter")  # front matter stays in the first part
    assert "# a comment in code, not a heading" in sections[1].text
    assert sections[2].text.startswith("Installing on Linux\n-------------------")
    docs, _ = load_documents(folder)
    ids = [d.id for d in docs if d.id.startswith("guides/pump")]
    assert ids == ["guides/pump#top", "guides/pump#pump-guide", "guides/pump#installing-on-linux",
                   "guides/pump#installing-on-linux-1", "guides/pump#sub-heading-bold-and-code"]


def test_rst_splits_on_titles(folder):
    sections = extract(folder / "guides" / "book.rst")
    assert [s.section for s in sections] == ["Pump book", "Safety", "Operation"]
    assert "Literal block" in sections[1].text  # an indented literal block is not a title
    assert sections[0].text.startswith("=========\nPump book\n=========")


def test_docx_headings_are_sections(folder):
    sections = extract(folder / "report.docx")
    assert [s.section for s in sections] == ["Pump report", "Findings"]
    assert "The pump ran for 300 hours." in sections[0].text
    assert "Seal | worn" in sections[1].text


def test_text_and_single_part_files_keep_their_plain_ids(folder):
    """A corpus of top-level .txt/.md files keeps the ids and titles the corpus loader gave."""
    docs, _ = load_documents(folder)
    by_id = {d.id: d for d in docs}
    assert by_id["notes"].text == "# not a heading in a text file\nPlain notes.\n"  # the text as it was
    assert (by_id["single"].title, by_id["single"].text) == ("Setup guide",
                                                             "# Setup guide\n\nRun the installer twice.\n")
    assert (by_id["plain"].title, by_id["plain"].text) == ("", "No headings here.\n")


def test_top_level_text_and_markdown_load_as_the_corpus_loader_loads_them(tmp_path):
    """Same ids, texts and titles as harness/corpus.py gives a documents/ folder of .txt/.md files
    (so their fingerprints, and the stage cache keyed on them, do not change)."""
    files = {"a.txt": "plain text\nwith lines\n", "b.md": "# Title\n\nBody text.\n", "c.md": "No heading\n",
             "d.md": "#hashtag first\n\nbody\n", "e.md": "# **Bold** title\n\nx\n",
             "f.md": "  # Indented title\n\nbody\n", "g.txt": "windows\r\nlines\r\n",
             "i.md": "Setext\n======\n\nbody\n",
             "k.txt": "control \x07 character\n", "l.md": "# Only a heading\n"}
    for name, text in files.items():
        (tmp_path / name).write_bytes(text.encode())
    (tmp_path / "h.md").write_bytes(b"\xef\xbb\xbf# BOM title\n\nbody\n")
    docs, skipped = load_documents(tmp_path)
    assert skipped == []
    # What corpus.py's _document_files returned for this folder on 2026-12-01 (checked by running it).
    titles = {"a": "", "b": "Title", "c": "", "d": "hashtag first", "e": "**Bold** title", "f": "Indented title",
              "g": "", "h": "BOM title", "i": "", "k": "", "l": "Only a heading"}
    texts = {n.split(".")[0]: t for n, t in files.items()} | {"h": "# BOM title\n\nbody\n"}
    assert docs == [Document(id=i, text=texts[i], title=titles[i]) for i in sorted(titles)]


def test_the_same_id_twice_is_skipped(tmp_path):
    (tmp_path / "manual.md").write_text("From markdown.")
    (tmp_path / "manual.txt").write_text("From text.")
    docs, skipped = load_documents(tmp_path)
    assert [d.text for d in docs] == ["From markdown."]
    assert skipped == [("manual.txt", "same document id 'manual' as manual.md: rename one of them")]


def test_symlinks(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    d = tmp_path / "docs"
    (d / "sub").mkdir(parents=True)
    (d / "real.txt").write_text("real text")
    (d / "store").mkdir()
    (d / "store" / ".blob").write_text("linked text")
    os.symlink(outside / "secret.txt", d / "leak.txt")
    os.symlink(outside, d / "leakdir")
    os.symlink(d / "real.txt", d / "again.txt")
    os.symlink(d / "store" / ".blob", d / "linked.txt")
    os.symlink(d / "sub", d / "loop")
    os.symlink(d / "missing.txt", d / "broken.txt")
    docs, skipped = load_documents(d)
    assert sorted(x.id for x in docs) == ["linked", "real"]
    reasons = dict(skipped)
    outside_file = (outside / "secret.txt").resolve()
    assert reasons["leak.txt"] == f"symlink leading outside the folder (to {outside_file}): refused"
    assert reasons["leakdir"].startswith("symlink leading outside the folder")
    assert reasons["again.txt"] == "symlink to real.txt, which is loaded under its own name"
    assert reasons["loop"] == "symlink to a folder: not followed"
    assert reasons["broken.txt"] == "broken symlink (or a loop)"


def test_encodings_fifos_and_size(tmp_path, monkeypatch):
    (tmp_path / "utf16.txt").write_bytes("notes in UTF-16\n".encode("utf-16"))  # Windows Notepad's "Unicode"
    (tmp_path / "latin.html").write_bytes("<p>caf\xe9</p>".encode("latin-1"))  # and no charset declared
    (tmp_path / "nul.md").write_bytes(b"text\0with a NUL")
    (tmp_path / "big.txt").write_text("x" * 2000)
    os.mkfifo(tmp_path / "pipe.txt")  # reading it would block forever
    monkeypatch.setattr(ingest, "MAX_FILE_BYTES", 1000)
    docs, skipped = load_documents(tmp_path)
    assert [(d.id, d.text) for d in docs] == [("utf16", "notes in UTF-16\n")]
    assert dict(skipped) == {
        "big.txt": "too large (2,000 bytes; the limit is 1,000, ingest.MAX_FILE_BYTES)",
        "latin.html": "not UTF-8 text (invalid continuation byte at byte 6, line 1); save it as UTF-8",
        "nul.md": "binary content, not text: looks like binary data",
        "pipe.txt": "not a regular file"}


def test_an_unwritable_cache_costs_speed_not_the_load(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("text")
    (tmp_path / "blocker").write_text("a file where the cache folder would be")
    docs, skipped = load_documents(tmp_path / "docs", cache_dir=tmp_path / "blocker" / "extract")
    assert [d.id for d in docs] == ["a"] and skipped == []


def test_a_parser_crash_is_listed_not_raised(tmp_path, monkeypatch):
    (tmp_path / "a.html").write_text("<p>x</p>")
    (tmp_path / "b.txt").write_text("fine")

    def boom(text):
        raise RuntimeError("parser bug")

    monkeypatch.setattr(ingest, "_html", boom)
    docs, skipped = load_documents(tmp_path)
    assert [d.id for d in docs] == ["b"]
    assert skipped == [("a.html", "could not be read (RuntimeError: parser bug)")]


def test_a_damaged_pdf_is_skipped(tmp_path):
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> garbage")
    docs, skipped = load_documents(tmp_path)
    assert docs == [] and len(skipped) == 1 and skipped[0][0] == "broken.pdf" and skipped[0][1]


def test_missing_folder_is_an_error(tmp_path):
    with pytest.raises(DataError, match="documents folder not found"):
        load_documents(tmp_path / "nope")


def test_extract_raises_skipped(tmp_path):
    (tmp_path / "x.pdf").write_text("hello")
    with pytest.raises(Skipped) as info:
        extract(tmp_path / "x.pdf")
    assert info.value.reason == "not a PDF: the file is text"


# -- cache ---------------------------------------------------------------------------------------------------


def test_second_load_does_not_parse_again(folder, tmp_path, monkeypatch):
    calls = []
    parse = ingest._parse

    def counting(data, kind):
        calls.append(kind)
        return parse(data, kind)

    monkeypatch.setattr(ingest, "_parse", counting)
    first = load_documents(folder)
    parsed = len(calls)
    assert parsed == 19  # every supported file once (the '#' file and the .xlsx are never parsed)
    assert (tmp_path / "cache" / "extract").is_dir()
    second = load_documents(folder)
    assert len(calls) == parsed  # nothing parsed: sections and skip reasons both come from the cache
    assert second == first

    (folder / "notes.txt").write_text("Changed notes.")
    docs, _ = load_documents(folder)
    assert calls[parsed:] == ["text"]  # only the changed file
    assert next(d for d in docs if d.id == "notes").text == "Changed notes."

    load_documents(folder, cache=False)
    assert len(calls) == parsed + 1 + 19


def test_damaged_cache_entry_is_parsed_again(tmp_path):
    d = tmp_path / "docs"
    d.mkdir()
    (d / "a.md").write_text("# A\n\none\n\n# B\n\ntwo\n")
    store = tmp_path / "store"
    first, _ = load_documents(d, cache_dir=store)
    entries = list(store.rglob("*.json"))
    assert len(entries) == 1
    assert json.loads(entries[0].read_text())["extractor"] == ingest.EXTRACTOR_VERSION
    entries[0].write_text("{not json")
    again, _ = load_documents(d, cache_dir=store)
    assert again == first
    assert json.loads(entries[0].read_text())["sections"][0]["section"] == "A"


def test_cache_key_depends_on_content_format_and_version(monkeypatch):
    key = ingest.cache_key(b"same bytes", "markdown")
    assert key != ingest.cache_key(b"other bytes", "markdown")
    assert key != ingest.cache_key(b"same bytes", "text")
    monkeypatch.setattr(ingest, "EXTRACTOR_VERSION", "ingest-test")
    assert key != ingest.cache_key(b"same bytes", "markdown")


def test_cache_root_follows_harness_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "c"))
    assert ingest.cache_root() == tmp_path / "c"
    monkeypatch.delenv("HARNESS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ingest.cache_root() == tmp_path / "xdg" / "rag-or-finetune"


# -- ids -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("retrieved, gold, expected", [
    ("manual#p3", "manual", True),
    ("manual", "manual", True),
    ("manual#p3", "manual#p3", True),
    ("manual#p2", "manual#p3", False),
    ("manual", "manual#p3", False),
    ("manuals#p3", "manual", False),
    ("guides/install#linux", "guides/install", True),
    ("guides/install#linux", "install", False),
])
def test_doc_matches(retrieved, gold, expected):
    assert doc_matches(retrieved, gold) is expected


@pytest.mark.parametrize("heading, slug", [
    ("Installing on Linux", "installing-on-linux"),
    ("What is rustdoc?", "what-is-rustdoc"),
    ("path.basename(path)", "pathbasenamepath"),
    ("Größe & Gewicht", "größe--gewicht"),
    ("!!!", "section"),
])
def test_slugify_like_github_anchors(heading, slug):
    assert slugify(heading) == slug


def test_section_defaults():
    assert Section("x") == Section(text="x", page=None, section=None, source="")


# -- question tables ---------------------------------------------------------------------------------------


ROWS = [{"q": "What colour is the pump?", "gold": ["blue"], "docs": ["manual"], "part": "test", "key": "q1"},
        {"q": "How often is the seal replaced?", "gold": ["every 6 months", "6 months"], "docs": ["manual#p3"],
         "part": "train", "key": "q2"}]
COLUMNS = {"question": "q", "answers": "gold", "doc_ids": "docs", "split": "part", "id": "key"}
EXPECTED = [{"id": "q1", "question": "What colour is the pump?", "answers": ["blue"], "doc_ids": ["manual"],
             "split": "test"},
            {"id": "q2", "question": "How often is the seal replaced?", "answers": ["every 6 months", "6 months"],
             "doc_ids": ["manual#p3"], "split": "train"}]


def without_line(rows):
    return [{k: v for k, v in r.items() if k != "line"} for r in rows]


def write_csv(path: Path, rows=ROWS) -> Path:
    lines = ["key,q,gold,docs,part"]
    lines += [f'{r["key"]},"{r["q"]}",{"|".join(r["gold"])},{"|".join(r["docs"])},{r["part"]}' for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_csv_questions(tmp_path):
    rows = load_question_table(write_csv(tmp_path / "q.csv"), COLUMNS)
    assert without_line(rows) == EXPECTED
    assert [r["line"] for r in rows] == [2, 3]


def test_jsonl_questions(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    assert without_line(load_question_table(path, COLUMNS)) == EXPECTED


def test_parquet_questions(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "q.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    rows = load_question_table(path, COLUMNS)
    assert without_line(rows) == EXPECTED
    assert [r["line"] for r in rows] == [1, 2]


def test_datasets_folders(tmp_path):
    datasets = pytest.importorskip("datasets")
    plain = [{"question": r["q"], "answers": {"text": r["gold"], "answer_start": [0] * len(r["gold"])}}
             for r in ROWS]  # SQuAD-style answers, no id column, no split column
    datasets.DatasetDict({"train": datasets.Dataset.from_list(plain[1:]),
                          "validation": datasets.Dataset.from_list(plain[:1])}).save_to_disk(tmp_path / "dd")
    rows = load_question_table(tmp_path / "dd")
    assert [(r["question"], r["answers"], r["split"]) for r in rows] == [
        (ROWS[1]["q"], ROWS[1]["gold"], "train"), (ROWS[0]["q"], ROWS[0]["gold"], "dev")]
    assert all(r["id"].startswith("q-") for r in rows)
    assert [r["id"] for r in load_question_table(tmp_path / "dd")] == [r["id"] for r in rows]  # stable ids

    datasets.Dataset.from_list(ROWS).save_to_disk(tmp_path / "ds")
    assert without_line(load_question_table(tmp_path / "ds", COLUMNS)) == EXPECTED


def test_default_columns_and_generated_ids(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text("question,answers\nWhat?,yes\nWhat?,no\n")
    rows = load_question_table(path)
    assert [r["answers"] for r in rows] == [["yes"], ["no"]]
    assert rows[1]["id"] == rows[0]["id"] + "-2"  # the same question twice still gets two ids


@pytest.mark.parametrize("name, content, columns, message", [
    ("q.csv", "key,q\n1,Why?\n", COLUMNS,
     ("q.csv:1: missing columns 'gold' (for 'answers'), 'docs' (for 'doc_ids'), 'part' (for 'split'); "
      "the table has: key, q")),
    ("q.csv", "question,answers\n\" \",yes\n", None, "q.csv:2: empty question (column 'question')"),
    ("q.csv", "question,answers\nWhy?, | \n", None, "q.csv:2: no answers (column 'answers' is empty)"),
    ("q.csv", 'question,answers\n"Why\nnot?",\n', None, "q.csv:2: no answers (column 'answers' is empty)"),
    ("q.csv", 'question,answers\n"a\nb",x\nWhy?,\n', None, "q.csv:4: no answers (column 'answers' is empty)"),
    ("q.csv", "question,answers\nWhy?,yes,extra\n", None, "q.csv:2: row has 3 fields, the header has 2"),
    ("q.jsonl", '{"question": "Why?", "answers": ["a"]}\n{"question": "How?"\n', None,
     "q.jsonl:2: invalid JSON (Expecting ',' delimiter)"),
    ("q.jsonl", '{"question": "Why?", "answers": ["a"]}\n{"question": "", "answers": []}\n', None,
     "2 problems in"),
    ("q.jsonl", '{"question": "Why?", "answers": [{"t": 1}]}\n', None,
     "q.jsonl:1: answers must be a list of strings, found {'t': 1} (column 'answers')"),
    ("q.jsonl", '{"question": "Why?", "answers": "a", "id": "x"}\n{"question": "How?", "answers": "b", "id": "x"}\n',
     None, "q.jsonl:2: duplicate id 'x' (first on line 1)"),
    ("q.txt", "whatever", None, "unsupported question file type '.txt'"),
])
def test_question_table_errors(tmp_path, name, content, columns, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError) as info:
        load_question_table(path, columns)
    assert message in str(info.value)
    if "problems in" not in message:
        assert str(path) in str(info.value)


def test_parquet_errors_name_the_row(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "q.parquet"
    pq.write_table(pa.Table.from_pylist([{"question": "Why?", "answers": ["a"]},
                                         {"question": "How?", "answers": []}]), path)
    with pytest.raises(DataError, match=r"q\.parquet: row 2: no answers \(column 'answers' is empty\)"):
        load_question_table(path)
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        load_question_table(tmp_path / "bad.parquet")


def test_problems_are_listed_as_path_line_message(tmp_path):
    """The shape of corpus.py's Problem, so a corpus check can list them with its own."""
    path = tmp_path / "q.csv"
    path.write_text("question,answers\nWhy?,\n,yes\nFine?,yes\n")
    with pytest.raises(ingest.QuestionTableError) as info:
        load_question_table(path)
    assert info.value.problems == [(path, 2, "no answers (column 'answers' is empty)"),
                                   (path, 3, "empty question (column 'question')")]
    assert str(info.value).startswith(f"2 problems in {path}:\n  {path}:2: no answers")


def test_datasets_errors_name_split_and_row(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.DatasetDict({"test": datasets.Dataset.from_list([{"question": "Why?", "answers": ["a"]},
                                                              {"question": "How?", "answers": [""]}])
                          }).save_to_disk(tmp_path / "dd")
    with pytest.raises(ingest.QuestionTableError) as info:
        load_question_table(tmp_path / "dd")
    assert info.value.problems == [(tmp_path / "dd", None,
                                    "split 'test' row 2: no answers (column 'answers' is empty)")]


def test_column_mapping_errors(tmp_path):
    path = write_csv(tmp_path / "q.csv")
    with pytest.raises(DataError, match="unknown field 'anwsers' in 'columns'"):
        load_question_table(path, {"question": "q", "anwsers": "gold"})
    with pytest.raises(DataError, match="'columns' must name a column for 'answers'"):
        load_question_table(path, {"question": "q", "answers": ""})
    with pytest.raises(DataError, match="not one written by datasets' save_to_disk"):
        load_question_table(tmp_path)
