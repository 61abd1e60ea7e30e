"""Documents in: a folder of PDFs, HTML pages, Markdown/reST wikis, Word files and plain text becomes
Documents whose ids cite their file and page or section; question tables users already have (CSV,
JSONL, Parquet, a `datasets.save_to_disk` folder) become question rows.

    extract(path) -> list[Section]                 one file; raises Skipped with the reason it yields no text
    load_documents(folder) -> (documents, skipped)  a whole folder, recursively; never raises for one bad file
    load_question_table(path, columns) -> list[dict]

Document ids. A file's id is its path relative to the folder without its suffix ("guides/install"),
so a corpus of top-level .txt/.md files keeps the ids it always had (the file name without suffix).
A file that splits into parts gets one Document per part:
    PDF                       one per page with text: "manual#p3" (the page's position in the file,
                              1 = first; printed page labels such as "iv" are not used)
    Markdown, reST, HTML, docx  one per heading when the file has two parts or more: "guide#installing-on-linux"
                              (GitHub's anchor of the heading: lower case, punctuation dropped, spaces
                              to "-"; a repeated one gets "-1", "-2"); text before the first heading is
                              "guide#top"
    .txt, and any file with a single part   one Document under the plain file id
Each part's title is "file — section" ("manual.pdf — page 3"); a single-part file keeps the title
the corpus loader always gave it (its heading, or ""). A question's doc_ids may name a whole file
("manual"): harness/data/docids.py's `doc_matches` says it is found when any of its parts is retrieved.

Extraction is cached per file content under `<HARNESS_CACHE>/extract/` (default
~/.cache/rag-or-finetune/extract/): the key hashes the file's bytes, its format, EXTRACTOR_VERSION and
the parsing library's version, so an unchanged folder is not parsed twice and an upgrade is a miss,
never a stale hit.

Parsers: pypdf (PDF text layer), BeautifulSoup with lxml (HTML main text; trafilatura was measured and
not taken, see _html), python-docx; Markdown and reST headings are found line by line here. They are
imported when a file needs them: `pip install 'rag-or-finetune[ingest]'`.
"""
from __future__ import annotations

import codecs
import csv
import functools
import hashlib
import io
import json
import logging
import os
import re
import warnings
from dataclasses import asdict, dataclass, replace
from importlib import metadata
from pathlib import Path, PurePosixPath

from harness.core.errors import DataError, HarnessError
from harness.core.types import Document

log = logging.getLogger(__name__)

# Bump when any extractor's output changes for the same bytes: every cached extraction becomes a miss.
EXTRACTOR_VERSION = "ingest-1"
# A file above this is listed as skipped, not read: the whole file is held in memory while it is
# parsed. 256 MiB is above any text-layer PDF or HTML page we have met; bigger PDFs are scans.
MAX_FILE_BYTES = 256 * 2**20
FORMATS = {".pdf": "pdf", ".html": "html", ".htm": "html", ".md": "markdown", ".markdown": "markdown",
           ".rst": "rst", ".txt": "text", ".docx": "docx"}
# The library whose version decides each format's output (part of the cache key).
LIBRARIES = {"pdf": ("pypdf",), "html": ("beautifulsoup4", "lxml"), "docx": ("python-docx",)}
INSTALL = "pip install 'rag-or-finetune[ingest]'"
MAX_SHOWN = 500  # problems of a question table listed; the count says how many more there are


@dataclass(frozen=True)
class Section:
    """One part of a file: a page of a PDF, the text under one heading, or a whole text file."""

    text: str
    page: int | None = None  # PDF: 1 = the file's first page
    section: str | None = None  # the heading this text sits under (None: before the first one, or none)
    source: str = ""  # the file, relative to the documents folder ("guides/install.md")


class Skipped(DataError):
    """A file that yields no text: `reason` says why, for the list of skipped files."""

    def __init__(self, reason: str, path=None, cacheable: bool = True):
        self.reason = reason
        self.cacheable = cacheable  # False when the cause is this machine (a missing package), not the file
        super().__init__(reason, path)


# -- one file ----------------------------------------------------------------------------------------


def extract(path: str | Path, source: str | None = None) -> list[Section]:
    """The sections of one file (no cache). Raises Skipped when the file yields no text."""
    path = Path(path)
    kind = _kind(path)
    sections = _parse(_read(path), kind)
    return [replace(s, source=source or path.name) for s in sections]


def _kind(path: Path) -> str:
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        what = f"file type {path.suffix!r}" if path.suffix else "file without a suffix"
        raise Skipped(f"unsupported {what} (supported: {', '.join(FORMATS)})")
    return kind


def _read(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise Skipped(f"too large ({size:,} bytes; the limit is {MAX_FILE_BYTES:,}, ingest.MAX_FILE_BYTES)")
        return path.read_bytes()
    except OSError as exc:
        raise Skipped(f"cannot read ({exc.strerror or exc})", cacheable=False) from None


def _parse(data: bytes, kind: str) -> list[Section]:
    """Sections (without `source`) of a file's bytes read as `kind`. The unit that is cached."""
    if not data:
        raise Skipped("empty file (0 bytes)")
    if kind == "pdf":
        return _pdf(data)
    if kind == "docx":
        return _docx(data)
    text = _decode(data, kind)
    if not text.strip():
        raise Skipped("empty file (only whitespace)")
    if kind == "text":  # the text as the corpus loader always gave it, so existing corpora hash the same
        return [Section(text)]
    sections = {"markdown": _markdown, "rst": _rst, "html": _html}[kind](_clean(text))
    if len(sections) == 1 and kind != "html":  # one part: the whole file, as for .txt
        return [replace(sections[0], text=text)]
    return sections


_MAGIC = ((b"%PDF-", "a PDF"), (b"PK\x03\x04", "a ZIP archive (.docx, .xlsx, .zip...)"),
          (b"\xd0\xcf\x11\xe0", "an old Office file (.doc, .xls) or a password-protected Office file"),
          (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
          (b"\x1f\x8b", "gzip-compressed data"), (b"\x7fELF", "a program"))


def _looks_like(data: bytes) -> str:
    for magic, what in _MAGIC:
        if data.startswith(magic):
            return what
    head = data[:1024].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return "an HTML page"
    if b"\0" in data[:8192]:
        return "binary data"
    return "text"


def _decode(data: bytes, kind: str) -> str:
    """Text of a .txt/.md/.rst/.html file: UTF-8 (a BOM is dropped), UTF-16 with a BOM, or for HTML the
    charset its <meta> declares. Binary content and other encodings are skipped, never guessed."""
    what = _looks_like(data)
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise Skipped("not text: starts with a UTF-16 byte order mark but does not decode as UTF-16") from None
    if what not in ("text", "an HTML page"):
        raise Skipped(f"binary content, not text: looks like {what}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        err = exc
    if kind == "html":
        m = re.search(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", data[:4096], re.IGNORECASE)
        if m:
            charset = m.group(1).decode("ascii")
            try:
                return data.decode(charset)
            except LookupError:
                raise Skipped(f"declares an unknown charset {charset!r}") from None
            except UnicodeDecodeError as exc:
                raise Skipped(f"not {charset} text as it declares ({exc.reason} at byte {exc.start})") from None
    line = data.count(b"\n", 0, err.start) + 1
    raise Skipped(f"not UTF-8 text ({err.reason} at byte {err.start}, line {line}); save it as UTF-8")


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def _clean(text: str) -> str:
    """Newlines as \\n, form feeds as newlines, no other control characters, no lone surrogates (the
    cache writes UTF-8)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\f", "\n")
    text = _CONTROL.sub("", text)
    return text.encode("utf-8", "replace").decode("utf-8")


# -- PDF -----------------------------------------------------------------------------------------------


def _pdf(data: bytes) -> list[Section]:
    if b"%PDF-" not in data[:1024]:  # the header may follow a little junk, as readers allow
        raise Skipped(f"not a PDF: the file is {_looks_like(data)}")
    try:
        from pypdf import PasswordType, PdfReader
        from pypdf.errors import DependencyError
    except ImportError:
        raise Skipped(f"reading PDFs needs the package 'pypdf': {INSTALL}", cacheable=False) from None
    if logging.getLogger("pypdf").level == logging.NOTSET:  # unless the caller set it: its warnings on
        logging.getLogger("pypdf").setLevel(logging.ERROR)  # repairable files are noise in a folder's load
    try:
        reader = PdfReader(io.BytesIO(data))
        # Many "secured" PDFs only restrict printing or copying: they open with an empty password.
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise Skipped("encrypted: it cannot be opened without a password")
        pages = list(reader.pages)
    except Skipped:
        raise
    except DependencyError as exc:
        raise Skipped(f"encrypted with AES, which needs the package 'cryptography' ({exc})",
                      cacheable=False) from None
    except Exception as exc:  # malformed files raise all sorts (PdfReadError, KeyError, ValueError...)
        raise Skipped(f"unreadable PDF ({type(exc).__name__}: {exc})") from None
    if not pages:
        raise Skipped("PDF without pages")
    sections, failed = [], None
    for number, page in enumerate(pages, 1):
        try:
            text = _clean(page.extract_text() or "")
        except Exception as exc:  # one broken page does not lose the others
            failed = failed or f"page {number}: {type(exc).__name__}: {exc}"
            continue
        if text.strip():
            sections.append(Section(text.strip(), page=number))
    if not sections:
        raise Skipped(f"text extraction failed ({failed})" if failed else "no text layer (scanned?)")
    return sections


# -- Word ------------------------------------------------------------------------------------------------


def _docx(data: bytes) -> list[Section]:
    if not data.startswith(b"PK\x03\x04"):
        raise Skipped(f"not a .docx file: it is {_looks_like(data)}")
    try:
        import docx
    except ImportError:
        raise Skipped(f"reading .docx files needs the package 'python-docx': {INSTALL}", cacheable=False) from None
    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # a ZIP without word/document.xml, a damaged archive
        raise Skipped(f"not a Word document ({type(exc).__name__}: {exc})") from None
    blocks: list[tuple[str | None, str]] = []  # (heading, None) or (None, text)
    for item in document.iter_inner_content():  # paragraphs and tables in document order
        if hasattr(item, "rows"):
            for row in item.rows:
                cells = []
                for cell in row.cells:  # a merged cell repeats in each column it spans
                    text = " ".join(cell.text.split())
                    if text and (not cells or cells[-1] != text):
                        cells.append(text)
                if cells:
                    blocks.append((None, " | ".join(cells)))
            continue
        text = _clean(item.text).strip()
        if not text:
            continue
        style = (item.style.name if item.style is not None else "") or ""
        if style == "Title" or re.fullmatch(r"Heading \d", style):
            blocks.append((" ".join(text.split()), None))
        else:
            blocks.append((None, text))
    sections = _from_blocks(blocks)
    if not sections:
        raise Skipped("no text (an empty document, or only images)")
    return sections


def _from_blocks(blocks) -> list[Section]:
    """Sections from (heading, None) / (None, text) blocks: each heading starts one."""
    parts: list[tuple[str | None, list[str]]] = [(None, [])]
    for heading, text in blocks:
        if heading is not None:
            parts.append((heading, [heading]))
        else:
            parts[-1][1].append(text)
    return _keep_content([(h, "\n".join(lines), len(lines) > (h is not None)) for h, lines in parts])


_WORDY = re.compile(r"\w")


def _keep_content(parts: list[tuple[str | None, str, bool]]) -> list[Section]:
    """Sections from (heading, text, has text besides the heading). A heading with nothing under it
    (one directly followed by a sub-heading) is dropped; when every heading is bare, the whole text
    is one section, named after its first heading."""
    kept = [Section(text.strip(), section=h) for h, text, body in parts if body and _WORDY.search(text)]
    if kept or not any(_WORDY.search(text) for _, text, _ in parts):
        return kept
    first = next((h for h, _, _ in parts if h is not None), None)
    return [Section("\n".join(t for _, t, _ in parts).strip(), section=first)]


# -- Markdown and reStructuredText --------------------------------------------------------------------

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_NOT_PARAGRAPH = re.compile(r"^\s*$|^ {4}|^\s*(?:[-*+]|\d+[.)])(?:\s|$)|^\s*>|^ {0,3}(?:#|`{3}|~{3}|<)")


def _markdown(text: str) -> list[Section]:
    """Split at ATX (`## Title`) and setext (Title / ====) headings; `#` lines inside fenced code
    blocks and YAML front matter are not headings."""
    lines = text.split("\n")
    headings: dict[int, tuple[int, str]] = {}  # first line of the heading -> (lines it takes, name)
    start = 0
    if lines and lines[0].strip() == "---":  # front matter: up to the next --- or ...
        end = next((i for i in range(1, min(len(lines), 200)) if lines[i].strip() in ("---", "...")), None)
        start = end + 1 if end is not None else 0
    fence = None
    for i in range(start, len(lines)):
        line = lines[i]
        m = _FENCE.match(line)
        if fence is not None:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not line[m.end():].strip():
                fence = None
            continue
        if m:
            fence = m.group(1)
            continue
        m = _ATX.match(line)
        if m and (m.group(2) or "").strip():
            headings[i] = (1, m.group(2).strip())
        elif (_SETEXT.match(line) and i > start and i - 1 not in headings
              and not _NOT_PARAGRAPH.match(lines[i - 1]) and not _SETEXT.match(lines[i - 1])):
            headings[i - 1] = (2, lines[i - 1].strip())
    return _split_lines(lines, headings, _md_name)


def _md_name(title: str) -> str:
    """A Markdown heading as plain words: links and images to their text, emphasis and code marks gone."""
    title = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", title)
    title = re.sub(r"(\*{1,3}|_{1,3}|`+)(\S(?:.*?\S)?)\1", r"\2", title)
    return " ".join(title.split())


_RST_ADORN = re.compile(r"^([!-/:-@\[-`{-~])\1{2,}[ \t]*$")  # one punctuation character, 3 or more times


def _rst(text: str) -> list[Section]:
    """Split at reST section titles: a text line underlined (and maybe overlined) by a line of one
    repeated punctuation character, after a blank line. Indented lines (literal blocks, directive
    bodies) are never titles."""
    lines = text.split("\n")
    headings: dict[int, tuple[int, str]] = {}
    i = 0
    while i < len(lines) - 1:
        line, below = lines[i], lines[i + 1]
        blank_before = i == 0 or not lines[i - 1].strip()
        over = _RST_ADORN.match(line)
        if (over and blank_before and i + 2 < len(lines) and lines[i + 1].strip()
                and lines[i + 2].rstrip() == line.rstrip()):
            headings[i] = (3, lines[i + 1].strip())
            i += 3
            continue
        if (line.strip() and not line[0].isspace() and not over and blank_before
                and _RST_ADORN.match(below) and len(below.rstrip()) >= min(len(line.rstrip()), 4)):
            headings[i] = (2, line.strip())
            i += 2
            continue
        i += 1
    return _split_lines(lines, headings, lambda t: " ".join(t.replace("``", "").split()))


def _split_lines(lines: list[str], headings: dict[int, tuple[int, str]], name) -> list[Section]:
    """Sections of a text cut before each heading line; each keeps its heading lines as they were."""
    parts, current, body, buf = [], None, False, []
    i = 0
    while i < len(lines):
        if i in headings:
            parts.append((current, "\n".join(buf), body))
            span, title = headings[i]
            current, body, buf = name(title) or None, False, lines[i:i + span]
            i += span
            continue
        buf.append(lines[i])
        body = body or bool(lines[i].strip())
        i += 1
    parts.append((current, "\n".join(buf), body))
    return _keep_content(parts)


# -- HTML ------------------------------------------------------------------------------------------------
#
# BeautifulSoup + lxml, not trafilatura. Measured on 155 real documentation pages whose Markdown source
# ships beside them (64 Node.js API pages, 91 npm pages), the source's words as gold, word precision /
# recall of the extracted text:
#                      Node.js API      npm docs       adds to an environment that has lxml
#   all visible text   0.893 / 0.943    0.955 / 0.996
#   these rules        0.984 / 0.934    0.990 / 0.995  1.3 MB (beautifulsoup4, soupsieve), pip 1.1 s
#   trafilatura 2.3.1  0.998 / 0.839    0.989 / 0.985  46 MB (babel 36 MB, dateparser, justext, tld,
#                                                      htmldate, courlan...), pip 3.9 s
# trafilatura drops Node's parameter lists and "Added in" lines, and the numbered <h2> headings of the
# DocBook pages (valgrind), which sections are cut at; both take about the same time a page.

_NEVER_TEXT = ("script", "style", "noscript", "template", "svg", "canvas", "head", "object", "embed", "iframe")
_CHROME = ("nav", "form", "button", "select", "input", "textarea", "menu", "dialog")
_OUTSIDE_CONTENT = ("header", "footer", "aside")  # boilerplate outside <main>/<article>, content inside
_ROLES = {"navigation", "banner", "contentinfo", "complementary", "search", "menu", "menubar", "toolbar",
          "dialog", "alertdialog"}
_CHROME_NAME = re.compile(
    r"(?:^|[\s_-])(?:nav\w*|menu\w*|sidebar\w*|breadcrumbs?|footer\w*|masthead|cookie\w*|consent|banner"
    r"|toc|skip\w*|share|social\w*|advert\w*|ads|popup|modal|headerlink)(?:$|[\s_-])|table[-_]of[-_]contents",
    re.IGNORECASE)
_BLOCK = {"p", "div", "section", "article", "main", "li", "ul", "ol", "dl", "dt", "dd", "table", "thead",
          "tbody", "tfoot", "tr", "pre", "blockquote", "figure", "figcaption", "header", "footer", "aside",
          "details", "summary", "address", "hr", "br", "h1", "h2", "h3", "h4", "h5", "h6", "caption", "center"}
_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
# Share of a box's characters inside links above which it is a menu. Only used on pages that do not
# mark their content; 0.8 drops the link tables of the libxslt pages and none of the npm docs' text.
LINK_DENSITY = 0.8


def _html_parser() -> str:
    try:
        import lxml  # noqa: F401  (the fast parser; html.parser is the slower fallback in the standard library)
        return "lxml"
    except ImportError:
        return "html.parser"


def _html(text: str) -> list[Section]:
    try:
        from bs4 import BeautifulSoup
    except ImportError:
        raise Skipped(f"reading HTML needs the package 'beautifulsoup4': {INSTALL}", cacheable=False) from None
    with warnings.catch_warnings():  # XHTML read as HTML is fine here
        warnings.simplefilter("ignore")
        soup = BeautifulSoup(text, _html_parser())
    for tag in soup.find_all(_NEVER_TEXT):
        tag.decompose()
    page_chars = len(soup.get_text())
    removed: set[int] = set()
    for tag in soup.find_all(True):
        if tag.name in ("html", "body") or tag.get("role") == "main" or _inside(tag, removed):
            continue
        why = _chrome(tag)
        if why is None or tag.find(["main", "article", "h1"]):  # never the box the content is in
            continue
        if why == "named" and len(tag.get_text()) > page_chars / 2:  # "has-sidebar" on the page wrapper
            continue
        removed.add(id(tag.extract()))
    root = _main_element(soup)
    if root.name not in ("main", "article") and root.get("role") != "main":
        _drop_link_lists(root)
    sections = _from_blocks(_html_blocks(root))
    if not sections:
        raise Skipped("no main text (an empty page, or only navigation and boilerplate)")
    return sections


def _inside(tag, removed: set[int]) -> bool:
    """Whether `tag` sits in a subtree already taken out of the page. (bs4's `Tag.decomposed` would
    search the whole subtree for a child tag named "_decomposed" on every call.)"""
    node = tag
    while node is not None:
        if id(node) in removed:
            return True
        node = node.parent
    return False


def _chrome(tag) -> str | None:
    """Why a tag is page chrome: "marked" (its tag, role or hidden attribute says so), "named" (its
    class or id reads like a menu, sidebar, footer...), or None."""
    if tag.name in _CHROME or tag.has_attr("hidden") or tag.get("aria-hidden") == "true":
        return "marked"
    if tag.get("role") in _ROLES:
        return "marked"
    if tag.name in _OUTSIDE_CONTENT and not tag.find_parent(["main", "article"]):
        return "marked"
    names = " ".join(tag.get("class") or []) + " " + (tag.get("id") or "")
    return "named" if _CHROME_NAME.search(names) else None


def _drop_link_lists(root) -> None:
    """On a page that does not mark its content (<main>, <article>): drop tables and boxes that are
    almost only links, the menus of table-layout pages. Lists are kept: a "See also" list of links
    under a heading is content."""
    removed: set[int] = set()
    for tag in root.find_all(["table", "td", "div"]):
        if _inside(tag, removed):
            continue
        links = tag.find_all("a")
        if len(links) < 3:
            continue
        text = len("".join(tag.get_text().split()))
        linked = sum(len("".join(a.get_text().split())) for a in links)
        if text and linked / text > LINK_DENSITY and not tag.find(_HEADINGS[:2]):
            removed.add(id(tag.extract()))


def _main_element(soup):
    """<main> (or role=main), else the one <article>, else <body>: the page's own content."""
    for found in (soup.find_all("main"), soup.find_all(attrs={"role": "main"}), soup.find_all("article")):
        found = [t for t in found if t.get_text(strip=True)]
        if len(found) == 1 or (found and found[0].name != "article"):
            return max(found, key=lambda t: len(t.get_text()))
    return soup.body or soup


def _html_blocks(root):
    """(heading, None) / (None, line) blocks in document order; whitespace collapsed outside <pre>."""
    from bs4 import NavigableString, Tag

    blocks, line = [], []

    def flush():
        text = " ".join("".join(line).split())
        line.clear()
        if text:
            blocks.append((None, text))

    stack = [root]
    while stack:
        node = stack.pop()
        if node is None:  # end of a block element
            flush()
            continue
        if isinstance(node, NavigableString):
            if type(node) is NavigableString:  # not a comment, doctype or CDATA
                line.append(str(node))
            continue
        if not isinstance(node, Tag):
            continue
        if node.name in _HEADINGS:
            flush()
            title = " ".join(node.get_text().split()).rstrip("#¶§🔗 ").strip()
            if title:
                blocks.append((title, None))
            continue
        if node.name == "pre":
            flush()
            code = _clean(node.get_text()).strip("\n")
            if code.strip():
                blocks.append((None, code))
            continue
        if node.name in ("td", "th"):
            line.append(" | " if line else "")
        if node.name in _BLOCK:
            flush()
            stack.append(None)
        stack.extend(reversed(node.contents))
    flush()
    return blocks


# -- a folder ----------------------------------------------------------------------------------------------


def load_documents(folder: str | Path, *, cache: bool = True, cache_dir: str | Path | None = None,
                   on_file=None) -> tuple[list[Document], list[tuple[str, str]]]:
    """Every supported file under `folder` (recursively; hidden files and folders are ignored) as
    Documents, and (relative file, reason) for each file that was not loaded. Symlinks that lead
    outside the folder, or to a folder, are refused and listed. Raises only when `folder` itself
    cannot be read.

    `on_file(rel, kind, data, documents)`, when given, is called for each loaded file in order, with
    its bytes: the corpus loader hashes them (harness/data/corpus.py)."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError("documents folder not found" if not root.exists() else "not a folder", root)
    store = Path(cache_dir) if cache_dir is not None else cache_root() / "extract"
    files, skipped = _walk(root)
    documents, owner = [], {}  # owner: document id of a file -> the file that has it
    for rel, path in files:
        file_id = PurePosixPath(rel).with_suffix("").as_posix()
        why = _bad_name(file_id)
        if why:
            skipped.append((rel, why))
            continue
        if file_id in owner:
            skipped.append((rel, f"same document id {file_id!r} as {owner[file_id]}: rename one of them"))
            continue
        try:
            kind = _kind(path)
            data = _read(path)
            sections = _extract_cached(data, kind, store if cache else None)
        except Skipped as exc:
            skipped.append((rel, exc.reason))
            continue
        except Exception as exc:  # a parser bug on one odd file must not stop the folder
            log.debug("extracting %s failed", path, exc_info=True)
            skipped.append((rel, f"could not be read ({type(exc).__name__}: {exc})"))
            continue
        owner[file_id] = rel
        docs = _documents(file_id, rel, kind, [replace(s, source=rel) for s in sections])
        if on_file is not None:
            on_file(rel, kind, data, docs)
        documents += docs
    skipped.sort()
    return documents, skipped


def _bad_name(file_id: str) -> str | None:
    if "#" in file_id:
        return "'#' in the path: it separates a file from its page or section in document ids; rename it"
    if "\\" in file_id or any(ord(c) < 32 or ord(c) == 127 for c in file_id):
        return "a backslash or control character in the path; rename it"
    return None


def _walk(root: Path) -> tuple[list[tuple[str, Path]], list[tuple[str, str]]]:
    real_root = root.resolve()
    found, links, skipped = [], [], []
    folders = [root]
    while folders:
        folder = folders.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            skipped.append((folder.relative_to(root).as_posix() + "/", f"cannot read the folder ({exc.strerror})"))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            rel = path.relative_to(root).as_posix()
            if entry.is_symlink():
                try:
                    target = path.resolve(strict=True)
                except (OSError, RuntimeError):
                    skipped.append((rel, "broken symlink (or a loop)"))
                    continue
                if not target.is_relative_to(real_root):
                    skipped.append((rel, f"symlink leading outside the folder (to {target}): refused"))
                elif target.is_dir():
                    skipped.append((rel, "symlink to a folder: not followed"))
                elif not target.is_file():
                    skipped.append((rel, "not a regular file"))
                else:
                    links.append((rel, path, target))
            elif entry.is_dir(follow_symlinks=False):
                folders.append(path)
            elif entry.is_file(follow_symlinks=False):
                found.append((rel, path))
            else:  # a FIFO would block a read forever; sockets and devices are no documents
                skipped.append((rel, "not a regular file"))
    real = {p.resolve(): rel for rel, p in found}
    for rel, path, target in links:
        if target in real:
            skipped.append((rel, f"symlink to {real[target]}, which is loaded under its own name"))
        else:
            found.append((rel, path))
    return sorted(found), skipped


def _documents(file_id: str, rel: str, kind: str, sections: list[Section]) -> list[Document]:
    if kind == "pdf":
        return [Document(id=f"{file_id}#p{s.page}", text=s.text, title=f"{rel} — page {s.page}") for s in sections]
    if len(sections) == 1:  # the plain file id, and for Markdown the title the corpus loader always gave
        text = sections[0].text
        if kind == "markdown":
            first = text.lstrip().split("\n", 1)[0]
            return [Document(id=file_id, text=text, title=first.lstrip("#").strip() if first.startswith("#") else "")]
        return [Document(id=file_id, text=text, title=sections[0].section or "")]
    used = {"top"}
    docs = []
    for s in sections:
        if s.section is None:
            docs.append(Document(id=f"{file_id}#top", text=s.text, title=rel))
            continue
        slug = base = slugify(s.section)
        n = 0
        while slug in used:
            n += 1
            slug = f"{base}-{n}"
        used.add(slug)
        docs.append(Document(id=f"{file_id}#{slug}", text=s.text, title=f"{rel} — {s.section}"))
    return docs


def slugify(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, each space a '-'."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
    return slug or "section"


# -- cache ---------------------------------------------------------------------------------------------------


def cache_root() -> Path:
    """HARNESS_CACHE, else $XDG_CACHE_HOME/rag-or-finetune, else ~/.cache/rag-or-finetune (as the stage cache)."""
    root = os.environ.get("HARNESS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "rag-or-finetune")
    return Path(root)


@functools.cache
def _library_versions(kind: str) -> str:
    out = []
    for name in LIBRARIES.get(kind, ()):
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(f"{name}==none")
    return ",".join(out)


def cache_key(data: bytes, kind: str) -> str:
    head = f"{EXTRACTOR_VERSION}\0{kind}\0{_library_versions(kind)}\0".encode()
    return hashlib.sha256(head + hashlib.sha256(data).digest()).hexdigest()


def _extract_cached(data: bytes, kind: str, store: Path | None) -> list[Section]:
    if store is None:
        return _parse(data, kind)
    key = cache_key(data, kind)
    entry = store / key[:2] / f"{key}.json"
    hit = _load_entry(entry)
    if hit is not None:
        if "skip" in hit:
            raise Skipped(hit["skip"])
        return hit["sections"]
    try:
        sections = _parse(data, kind)
    except Skipped as exc:
        if exc.cacheable:
            _store_entry(entry, {"skip": exc.reason})
        raise
    _store_entry(entry, {"sections": [{k: v for k, v in asdict(s).items() if k != "source"} for s in sections]})
    return sections


def _load_entry(entry: Path) -> dict | None:
    try:
        obj = json.loads(entry.read_text(encoding="utf-8"))
        if isinstance(obj.get("skip"), str):
            return {"skip": obj["skip"]}
        return {"sections": [Section(text=s["text"], page=s.get("page"), section=s.get("section"))
                             for s in obj["sections"]]}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # damaged: parse again, rewrite
        log.warning("ignoring a damaged extraction cache entry %s", entry)
        return None


def _store_entry(entry: Path, obj: dict) -> None:
    from harness.core.records import write_json

    try:
        write_json(entry, {"extractor": EXTRACTOR_VERSION, **obj})
    except (OSError, HarnessError) as exc:  # a read-only or full cache costs speed, not the load
        log.warning("cannot write the extraction cache %s: %s", entry, exc)


# -- question tables ----------------------------------------------------------------------------------------

QUESTION_FIELDS = ("id", "question", "answers", "doc_ids", "split", "choices")
REQUIRED_FIELDS = ("question", "answers")
SPLIT_NAMES = {"validation": "dev", "valid": "dev", "val": "dev"}  # the datasets library's names


# Where in a table a row or a problem is: (the file's line, None for Parquet and datasets; a label
# such as "row 3" or "split 'train' row 3" where there are no lines).
Where = tuple[int | None, str]


class QuestionTableError(DataError):
    """Every problem of a question table, one per line, each naming the file and the line or row.
    `problems` holds (path, line or None, message), the shape of corpus.py's Problem."""

    def __init__(self, path: Path, problems: list[tuple[Path, int | None, str]]):
        self.problems = problems
        shown = [f"{p}:{line}: {m}" if line else f"{p}: {m}" for p, line, m in problems[:MAX_SHOWN]]
        if len(problems) > MAX_SHOWN:
            shown.append(f"... and {len(problems) - MAX_SHOWN} more")
        if len(problems) == 1:
            HarnessError.__init__(self, shown[0])
        else:
            HarnessError.__init__(self, f"{len(problems)} problems in {path}:\n  " + "\n  ".join(shown))


def load_question_table(path: str | Path, columns: dict | None = None) -> list[dict]:
    """Questions from a CSV/TSV, JSONL, Parquet file or a `datasets.save_to_disk` folder.

    `columns` maps the harness's fields to the table's columns: {"question": "prompt", "answers":
    "gold", "doc_ids"?: ..., "split"?: ..., "id"?: ..., "choices"?: ...} (benchmark.json's
    "columns"); fields left out are read from a column of their own name when there is one.
    answers, doc_ids and choices may be lists or strings separated by "|" (a SQuAD-style
    {"text": [...]} answers column works too). A table without an id column gets ids "q-" + a hash
    of the question, stable when rows are added or reordered. A saved DatasetDict gives each row its
    split's name ("validation" -> "dev") unless a split column is mapped.

    Returns one dict per row: {"id", "question", "answers": [...], "split"?, "doc_ids"?, "choices"?,
    "line"}, where "line" is the file's line (CSV, JSONL) or the 1-based row (Parquet, datasets).
    Raises QuestionTableError (a DataError) listing every problem with its file and line or row."""
    path = Path(path)
    mapping = _column_mapping(columns, path)
    if path.is_dir():
        tables = _datasets_folder(path)
    elif not path.exists():
        raise DataError("question file not found", path)
    else:
        suffix = path.suffix.lower()
        readers = {".csv": _csv_table, ".tsv": _csv_table, ".jsonl": _jsonl_table, ".ndjson": _jsonl_table,
                   ".parquet": _parquet_table, ".pq": _parquet_table}
        if suffix not in readers:
            raise DataError(f"unsupported question file type {suffix!r} (supported: .csv, .tsv, .jsonl, "
                            ".parquet, or a datasets.save_to_disk folder)", path)
        tables = [readers[suffix](path)]
    problems: list[tuple[Path, int | None, str]] = []

    def problem(where: Where, message: str) -> None:
        line, label = where
        problems.append((path, line, f"{label}: {message}" if label else message))

    rows, ids = [], {}
    for table in tables:
        fields = _resolve_columns(mapping, columns is not None, table, problem)
        if fields is None:
            continue
        for where, number, raw in table["rows"]:
            if isinstance(raw, str):  # a problem found while reading the row
                problem(where, raw)
                continue
            row = _question_row(raw, fields, lambda message, where=where: problem(where, message))
            if row is None:
                continue
            if "split" not in row and table.get("split"):
                row["split"] = table["split"]
            if "id" not in row:
                base = "q-" + hashlib.sha256(row["question"].encode()).hexdigest()[:10]
                row["id"], n = base, 1
                while row["id"] in ids:
                    n += 1
                    row["id"] = f"{base}-{n}"
            elif row["id"] in ids:
                first = ids[row["id"]]
                problem(where, f"duplicate id {row['id']!r} (first on {f'line {first[0]}' if first[0] else first[1]})")
                continue
            ids[row["id"]] = where
            rows.append({**row, "line": number})
    if not rows and not problems:
        problems.append((path, None, "no questions"))
    if problems:
        raise QuestionTableError(path, problems)
    return rows


def _column_mapping(columns, path: Path) -> dict:
    if columns is None:
        return {f: f for f in QUESTION_FIELDS}
    if not isinstance(columns, dict):
        raise DataError(f"'columns' must map fields to column names, got {type(columns).__name__}", path)
    unknown = sorted(set(columns) - set(QUESTION_FIELDS))
    if unknown:
        raise DataError(f"unknown field{'s' * (len(unknown) > 1)} {', '.join(map(repr, unknown))} in 'columns' "
                        f"(known: {', '.join(QUESTION_FIELDS)})", path)
    bad = [k for k, v in columns.items() if not isinstance(v, str) or not v.strip()]
    if bad:
        raise DataError(f"'columns' must name a column for {', '.join(map(repr, bad))}", path)
    return {**{f: f for f in QUESTION_FIELDS}, **columns}


def _resolve_columns(mapping: dict, explicit: bool, table: dict, problem) -> dict | None:
    """field -> column for the columns this table has; a missing required or explicitly mapped
    column is a problem (reported once per table)."""
    have = table["columns"]
    fields, missing = {}, []
    for field, column in mapping.items():
        if column in have:
            fields[field] = column
        elif field in REQUIRED_FIELDS or (explicit and column != field):
            missing.append(f"{column!r}" + (f" (for {field!r})" if column != field else ""))
    if missing:
        problem(table["header"], f"missing column{'s' * (len(missing) > 1)} {', '.join(missing)}; "
                                 f"the table has: {', '.join(map(str, have)) or 'no columns'}")
        return None
    return fields


def _question_row(raw: dict, fields: dict, problem) -> dict | None:
    out, ok = {}, True

    def bad(message):
        nonlocal ok
        problem(message)
        ok = False

    question = raw.get(fields["question"])
    if isinstance(question, str) and question.strip():
        out["question"] = question.strip()
    elif question is None or isinstance(question, str):
        bad(f"empty question (column {fields['question']!r})")
    else:
        bad(f"question must be text, got {type(question).__name__} (column {fields['question']!r})")
    answers = _text_list(raw.get(fields["answers"]), answers=True)
    if isinstance(answers, str):
        bad(f"answers {answers} (column {fields['answers']!r})")
    elif not answers:
        bad(f"no answers (column {fields['answers']!r} is empty)")
    else:
        out["answers"] = answers
    for field in ("doc_ids", "choices"):
        if field in fields:
            values = _text_list(raw.get(fields[field]))
            if isinstance(values, str):
                bad(f"{field} {values} (column {fields[field]!r})")
            elif values:
                out[field] = values
    if "id" in fields:
        value = raw.get(fields["id"])
        if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
            bad(f"empty id (column {fields['id']!r})" if value in (None, "")
                else f"id must be text or a whole number, got {value!r}")
        else:
            out["id"] = str(value).strip()
    if "split" in fields:
        value = raw.get(fields["split"])
        if isinstance(value, str) and value.strip():
            out["split"] = SPLIT_NAMES.get(value.strip().lower(), value.strip())
        elif value not in (None, ""):
            bad(f"split must be text, got {value!r}")
    return out if ok else None


def _text_list(value, answers: bool = False) -> list[str] | str:
    """A list of non-empty strings from a list, a '|'-separated string, a number, or (answers) a
    SQuAD-style {"text": [...]}; a string saying what is wrong otherwise."""
    if value is None:
        return []
    if answers and isinstance(value, dict) and "text" in value:
        value = value["text"]
    if isinstance(value, str):
        return [v.strip() for v in value.split("|") if v.strip()]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [str(value)]
    if isinstance(value, (list, tuple)):
        out = []
        for v in value:
            if isinstance(v, bool) or not isinstance(v, (str, int, float)):
                return f"must be a list of strings, found {v!r}"
            if str(v).strip():
                out.append(str(v).strip())
        return out
    return f"must be a list of strings or a '|'-separated string, got {type(value).__name__}"


def _read_table(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read ({exc.strerror or exc})", path) from None


def _csv_table(path: Path) -> dict:
    data = _read_table(path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(f"not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8", path, line) from None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise DataError(f"invalid CSV ({exc})", path, 1) from None
    if header is None:
        raise DataError("empty file: expected a header row naming the columns", path)
    header = [h.strip() for h in header]
    dupes = sorted({h for h in header if h and header.count(h) > 1})
    if dupes:
        raise DataError(f"column {', '.join(dupes)} appears twice", path, 1)

    def rows():
        while True:
            n = reader.line_num + 1
            try:
                row = next(reader, None)
            except csv.Error as exc:
                yield (n, ""), n, f"invalid CSV ({exc})"
                return
            if row is None:
                return
            if not any(v.strip() for v in row):
                continue
            if len(row) != len(header):
                yield (n, ""), n, f"row has {len(row)} fields, the header has {len(header)}"
                continue
            yield (n, ""), n, dict(zip(header, row))

    return {"header": (1, ""), "columns": header, "rows": rows()}


def _jsonl_table(path: Path) -> dict:
    data = _read_table(path)
    if data.startswith(codecs.BOM_UTF8):
        data = data[3:]
    parsed, columns = [], {}
    for n, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            parsed.append(((n, ""), n, f"not UTF-8 text ({exc.reason} at byte {exc.start} of the line)"))
            continue
        except json.JSONDecodeError as exc:
            parsed.append(((n, ""), n, f"invalid JSON ({exc.msg})"))
            continue
        if not isinstance(obj, dict):
            parsed.append(((n, ""), n, "each line must be a JSON object"))
            continue
        columns.update(dict.fromkeys(obj))
        parsed.append(((n, ""), n, obj))
    return {"header": (None, ""), "columns": list(columns), "rows": parsed}


def _parquet_table(path: Path) -> dict:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"reading Parquet needs the package 'pyarrow': {INSTALL}", path) from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow.lib.ArrowInvalid and friends
        raise DataError(f"not a readable Parquet file ({type(exc).__name__}: {exc})", path) from None
    return _arrow_rows(table.column_names, table.to_pylist())


def _arrow_rows(columns, records, split: str | None = None) -> dict:
    label = f"split {split!r} " if split else ""
    return {"header": (None, label.strip()), "columns": list(columns),
            "split": SPLIT_NAMES.get(split, split) if split else None,
            "rows": [((None, f"{label}row {i}"), i, r) for i, r in enumerate(records, 1)]}


def _datasets_folder(path: Path) -> list[dict]:
    if not ((path / "dataset_dict.json").exists() or (path / "state.json").exists()):
        raise DataError("a folder, but not one written by datasets' save_to_disk (no dataset_dict.json "
                        "or state.json in it)", path)
    try:
        import datasets
    except ImportError:
        raise DataError(f"reading a saved dataset needs the package 'datasets': {INSTALL}", path) from None
    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:
        raise DataError(f"cannot load the saved dataset ({type(exc).__name__}: {exc})", path) from None
    if isinstance(loaded, datasets.DatasetDict):
        return [_arrow_rows(ds.column_names, ds.to_list(), split=name) for name, ds in loaded.items()]
    return [_arrow_rows(loaded.column_names, loaded.to_list())]
