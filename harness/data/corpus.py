"""A user's corpus folder -> Benchmark, checked as a whole: every problem is reported, with file and line.

Layout (README, "Bring your own corpus"):
    PATH/documents/             files of text, Markdown, reST, HTML, PDF, .docx, in subfolders too
                                (harness/data/ingest.py): the path without suffix is the document id,
                                and a file that splits into parts gives "FILE#p3" / "FILE#section" ids
      or PATH/documents.jsonl   {"id", "title"?, "text"} per line
    PATH/questions.jsonl        {"id", "question", "answers": [...], "split"?, "doc_ids"?, "choices"?} per line
      or PATH/questions.csv     the same columns; answers, doc_ids and choices separated by "|"
      or questions.tsv, questions.parquet, or a questions/ folder written by datasets' save_to_disk
    PATH/benchmark.json         optional: {"name"?, "task"?, "columns"?: {field: column}, "synthetic"?, ...}
Questions without a split are split by a seeded hash of their id, so the split is stable when
questions are added. Ids are never turned into paths, and an id that could name one elsewhere
(path separators, "..", NUL or other control characters) is rejected, not rewritten.

A file in documents/ that yields no text (encrypted or scanned PDF, empty page, not UTF-8, unsupported
type...) is skipped and listed with its reason (`CheckResult.skipped`, the benchmark's
meta["skipped_documents"]); the rest of the corpus loads. One rule for every format: a bad file is
the same event for the user whatever its type, and one unreadable page must not stop a run over
a thousand good ones. A question whose doc_ids name only a skipped file is kept, with a warning.

A column mapping (benchmark.json "columns", or `columns=` here, which wins) reads the questions
through harness/data/ingest.py's load_question_table: {"question": "prompt", "answers": "gold", ...}.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import stat
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from harness.analysis.scoring import normalize
from harness.core.errors import DataError, HarnessError
from harness.core.types import Benchmark, Document, Example
from harness.data.docids import file_id, unknown_refs
from harness.data.tasks import ANSWER_STYLES, DEFAULT_TASK, TASK_TYPES, task_for_style, task_type

DEFAULT_SPLIT_SEED = 0
DEFAULT_TEST_RATIO = 0.3  # near the built-in benchmarks' test share (NYT: 200 of 746); the rest trains
SPLITS = ("train", "dev", "test")
CSV_REQUIRED = ("id", "question", "answers")
CSV_COLUMNS = (*CSV_REQUIRED, "split", "doc_ids", "choices")
# Question files a corpus may hold, in the order they are looked for; the last two (and any file
# with a column mapping) are read by harness/data/ingest.py's load_question_table.
QUESTION_FILES = ("questions.jsonl", "questions.csv", "questions.tsv", "questions.parquet", "questions")
MAX_SHOWN = 500  # problems printed; the count says how many more there are


@dataclass(frozen=True)
class Problem:
    path: Path
    line: int | None
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}" if self.line else f"{self.path}: {self.message}"


class CorpusError(DataError):
    """Every problem found in a corpus folder, one per line."""

    def __init__(self, root: Path, problems: list[Problem]):
        self.problems = problems
        shown = [str(p) for p in problems[:MAX_SHOWN]]
        if len(problems) > MAX_SHOWN:
            shown.append(f"... and {len(problems) - MAX_SHOWN} more")
        n = len(problems)
        if n == 1:  # one problem reads as one line, like every other input error
            HarnessError.__init__(self, shown[0])
        else:
            HarnessError.__init__(self, f"{n} problems in corpus {root}:\n  " + "\n  ".join(shown))


@dataclass
class CheckResult:
    root: Path
    benchmark: Benchmark | None
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    skipped: list[Problem] = field(default_factory=list)  # document files not loaded, each with its reason


def unsafe_id(value: str) -> str | None:
    """Why an id could name a path outside its folder or can never be matched, or None when neither."""
    if "\x00" in value:
        return "contains a NUL character"
    if "/" in value or "\\" in value:
        return "contains a path separator"
    if value.strip() in (".", ".."):
        return "is a relative folder name"
    return invisible(value)


_INVISIBLE = {"Cc": "a control character", "Cf": "an invisible format character", "Cs": "a lone surrogate",
              "Zl": "a line separator", "Zp": "a paragraph separator"}


def invisible(value: str, allow: str = "") -> str | None:
    """Why a string holds a character no one can see or type (control, format such as U+200B or
    U+202E, a lone surrogate escape such as \\ud800, line separators), or None. `allow`: characters
    that are fine here (a question may hold a tab or a newline)."""
    for c in value:
        what = _INVISIBLE.get(unicodedata.category(c))
        if what and c not in allow:
            return f"contains {what} (U+{ord(c):04X})"
    return None


def lone_surrogate(value: str) -> bool:
    """A lone surrogate (\\ud800 in JSON) is not text: no tokenizer encodes it, no file can hold it."""
    return any(0xD800 <= ord(c) <= 0xDFFF for c in value)


SURROGATE = "holds a lone surrogate escape (\\ud800-\\udfff), which is not text"


def _strict_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def load_corpus(root: str | Path, split_seed: int = DEFAULT_SPLIT_SEED,
                test_ratio: float = DEFAULT_TEST_RATIO, columns: dict | None = None) -> Benchmark:
    result = check_corpus(root, split_seed, test_ratio, columns)
    if result.problems:
        raise CorpusError(result.root, result.problems)
    return result.benchmark


def check_corpus(root: str | Path, split_seed: int = DEFAULT_SPLIT_SEED,
                 test_ratio: float = DEFAULT_TEST_RATIO, columns: dict | None = None) -> CheckResult:
    """Every problem of a corpus folder. `columns` maps question fields to the columns of its
    question table (and wins over benchmark.json's "columns")."""
    if isinstance(test_ratio, bool) or not isinstance(test_ratio, (int, float)) or not 0 < test_ratio <= 1:
        raise HarnessError(f"test_ratio must be a number in (0, 1], got {test_ratio!r}")
    return _Loader(Path(root), split_seed, test_ratio, columns).run()


def load_documents_only(root: str | Path) -> tuple[list[Document], list[Problem], Path]:
    """The documents of a corpus folder (its documents/ or documents.jsonl), or of a plain folder
    of document files, and no questions: what `harness synth` starts from. Returns the documents,
    the skipped files and where the documents were read from; raises CorpusError listing every
    problem (no documents at all is one)."""
    root = Path(root)
    loader = _Loader(root, DEFAULT_SPLIT_SEED, DEFAULT_TEST_RATIO)
    if not root.is_dir():
        raise DataError("folder not found" if not root.exists() else "not a folder of documents", root)
    if any((root / n).exists() for n in ("documents", "documents.jsonl")):
        docs = loader._documents()
        where = next(root / n for n in ("documents", "documents.jsonl") if (root / n).exists())
    else:
        docs, where = loader._document_files(root), root
        if not docs and not loader.result.problems:
            n = len(loader.result.skipped)
            loader.problem(root, None, "no documents" + (f": all {n} file{'s' * (n > 1)} skipped" if n else ""))
    if loader.result.problems:
        raise CorpusError(root, loader.result.problems + [Problem(p.path, None, f"skipped: {p.message}")
                                                          for p in loader.result.skipped])
    return docs or [], loader.result.skipped, where


def parse_columns(text: str) -> dict:
    """`question=q,answers=a` (the --columns flag) -> {"question": "q", "answers": "a"}."""
    from harness.data.ingest import QUESTION_FIELDS

    out = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise HarnessError(f"--columns {text!r}: expected FIELD=COLUMN pairs separated by commas, got {item!r}")
        if key not in QUESTION_FIELDS:
            raise HarnessError(f"--columns: unknown field {key!r} (known: {', '.join(QUESTION_FIELDS)})")
        if key in out:
            raise HarnessError(f"--columns: field {key!r} given twice")
        out[key] = value
    if not out:
        raise HarnessError("--columns: give at least one FIELD=COLUMN pair")
    return out


class _Loader:
    def __init__(self, root: Path, split_seed: int, test_ratio: float, columns: dict | None = None):
        self.root, self.split_seed, self.test_ratio, self.columns = root, split_seed, test_ratio, columns
        self.result = CheckResult(root, None)
        self.hash = hashlib.sha256()
        self.assigned = 0  # questions that had no split
        self.named: set[str] = set()  # document ids found, also of documents rejected for their content
        self.skipped_files: set[str] = set()  # file ids (path without suffix) of skipped document files
        self.meta_columns: dict | None = None  # benchmark.json's "columns"

    def problem(self, path, line, message) -> None:
        self.result.problems.append(Problem(path, line, message))

    def warn(self, path, line, message) -> None:
        self.result.warnings.append(Problem(path, line, message))

    def run(self) -> CheckResult:
        root = self.root
        if not root.exists():
            self.problem(root, None, "corpus folder not found")
            return self.result
        if not root.is_dir():
            self.problem(root, None, "not a folder; a corpus is a folder with documents and questions")
            return self.result
        try:
            entries = [p for p in root.iterdir() if not p.name.startswith(".")]
        except OSError as exc:
            self.problem(root, None, f"cannot read the folder ({exc.strerror or exc})")
            return self.result
        if not entries:
            self.problem(root, None, "corpus folder is empty: expected documents/ or documents.jsonl, "
                                     "and questions.jsonl or questions.csv")
            return self.result
        meta = self._meta(root / "benchmark.json")
        self.meta_columns = meta.get("columns")
        task = meta.get("task", DEFAULT_TASK)
        name = meta.get("name", root.resolve().name or "corpus")
        docs = self._documents()
        examples = self._questions(task, self.named if docs is not None else None)
        if self.result.problems or docs is None or examples is None:
            return self.result
        meta = {**meta, "path": str(root.resolve()), "data_sha256": self.hash.hexdigest()}
        if self.result.skipped:
            meta["skipped_documents"] = [[str(p.path.relative_to(root)), p.message] for p in self.result.skipped]
        if self.assigned:
            meta["split_assigned"] = {"seed": self.split_seed, "test_ratio": self.test_ratio,
                                      "questions": self.assigned}
        self.result.benchmark = Benchmark(name=name, task=task, documents=docs, examples=examples, meta=meta)
        return self.result

    # -- files -------------------------------------------------------------------------------------

    def _read(self, path: Path) -> bytes | None:
        why = self._special(path)
        if why:
            self.problem(path, None, why)
            return None
        try:
            data = path.read_bytes()
        except IsADirectoryError:
            self.problem(path, None, "cannot read: is a folder")
            return None
        except OSError as exc:
            self.problem(path, None, f"cannot read ({exc.strerror or exc})")
            return None
        return data

    def _special(self, path: Path) -> str | None:
        """Why a file of the corpus is not read: a link that leads out of the corpus folder, or not a
        regular file (a FIFO blocks a read forever, /dev/zero never ends). None: read it."""
        try:
            if not path.resolve().is_relative_to(self.root.resolve()):
                return f"leads to {os.path.realpath(path)} (a link), outside the corpus folder: refused"
            mode = path.stat().st_mode
        except OSError:
            return None  # the read names the problem
        if stat.S_ISDIR(mode):
            return None
        if not stat.S_ISREG(mode):
            kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) \
                else "not a regular file"
            return f"is {kind}: refused (a corpus holds regular files)"
        return None

    def _lines(self, path: Path, data: bytes):
        """(line number, text) of each line; lines that are not UTF-8 are reported and skipped."""
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        for n, raw in enumerate(data.split(b"\n"), 1):  # \n only: U+2028 may sit inside a JSON string
            try:
                yield n, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                self.problem(path, n, f"not UTF-8 text ({exc.reason} at byte {exc.start} of the line)")

    def _jsonl(self, path: Path, data: bytes):
        last = data.rstrip(b"\n").count(b"\n") + 1
        for n, line in self._lines(path, data):
            if not line.strip():
                continue
            try:
                obj = json.loads(line, parse_constant=_strict_constant)
            except json.JSONDecodeError as exc:
                cut = "; the file looks truncated here" if n == last and not data.endswith(b"\n") else ""
                self.problem(path, n, f"invalid JSON ({exc.msg}){cut}")
                continue
            except ValueError as exc:  # NaN, Infinity: Python reads them, JSON has no such numbers
                self.problem(path, n, f"invalid JSON ({exc})")
                continue
            if not isinstance(obj, dict):
                self.problem(path, n, "each line must be a JSON object")
                continue
            yield n, obj

    def _meta(self, path: Path) -> dict:
        if not path.exists():
            return {}
        data = self._read(path)
        if data is None:
            return {}
        try:
            meta = json.loads(data.decode("utf-8-sig"), parse_constant=_strict_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            self.problem(path, None, f"not valid JSON: {exc}")
            return {}
        if not isinstance(meta, dict):
            self.problem(path, None, "must hold a JSON object")
            return {}
        for key in ("name", "task"):
            if key in meta and (not isinstance(meta[key], str) or not meta[key].strip()):
                self.problem(path, None, f"{key!r} must be a non-empty string")
                meta.pop(key)
        if "task" in meta and meta["task"] not in TASK_TYPES:
            self.problem(path, None, f"unknown task {meta['task']!r}; known task types: {', '.join(TASK_TYPES)}")
            meta.pop("task")
        if "name" in meta and unsafe_id(meta["name"]):
            self.problem(path, None, f"name {meta['name']!r} {unsafe_id(meta['name'])}; it names the run's folders")
            meta.pop("name")
        if "columns" in meta and self._bad_columns(meta["columns"]):
            self.problem(path, None, f"'columns' {self._bad_columns(meta['columns'])}")
            meta.pop("columns")
        if "synthetic" in meta and not isinstance(meta["synthetic"], (bool, dict)):
            self.problem(path, None, "'synthetic' must be true, false or an object describing the generation")
            meta.pop("synthetic")
        self._answer_keys(path, meta)
        return meta

    @staticmethod
    def _bad_columns(columns) -> str | None:
        from harness.data.ingest import QUESTION_FIELDS

        if not isinstance(columns, dict) or not columns:
            return "must map question fields to column names, e.g. {\"question\": \"prompt\", \"answers\": \"gold\"}"
        unknown = sorted(str(k) for k in columns if k not in QUESTION_FIELDS)
        if unknown:
            return f"has unknown field(s) {', '.join(map(repr, unknown))} (known: {', '.join(QUESTION_FIELDS)})"
        bad = sorted(k for k, v in columns.items() if not isinstance(v, str) or not v.strip())
        if bad:
            return f"must name a column for {', '.join(map(repr, bad))}"
        return None

    def _answer_keys(self, path: Path, meta: dict) -> None:
        """`answer_style` (picks the question-answering task type), `max_new_tokens` and the headline
        `metric`: each wrong one is a problem, and is dropped so the rest can still be checked."""
        from harness.analysis.scoring import METRIC_REGISTRY

        style = meta.get("answer_style")
        if style is not None:
            if style not in ANSWER_STYLES:
                self.problem(path, None, f"unknown answer_style {style!r}; known: {', '.join(ANSWER_STYLES)}")
                meta.pop("answer_style")
            elif "task" not in meta:
                meta["task"] = task_for_style(style)
            elif task_type(meta["task"]).answer_style != style:
                self.problem(path, None, f"answer_style {style!r} is answered by task {task_for_style(style)!r}, "
                                         f"not {meta['task']!r}: drop one of them or make them agree")
                meta.pop("answer_style")
        n = meta.get("max_new_tokens")
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 4096):
            self.problem(path, None, f"max_new_tokens must be an integer from 1 to 4096, got {n!r}")
            meta.pop("max_new_tokens")
        m = meta.get("metric")
        if m is not None:
            task = meta.get("task", DEFAULT_TASK)
            metric = METRIC_REGISTRY.get(m) if isinstance(m, str) else None
            if metric is None or not metric.headline or not metric.applies_to(task):
                known = [k for k, v in METRIC_REGISTRY.items() if v.headline and v.applies_to(task)]
                self.problem(path, None, f"metric {m!r} cannot head a {task} benchmark; use one of {', '.join(known)}")
                meta.pop("metric")

    def _one_of(self, first: str, second: str, missing: str) -> Path | None:
        found = [self.root / n for n in (first, second) if (self.root / n).exists()]
        if len(found) > 1:
            self.problem(self.root, None, f"both {first} and {second}: keep one")
            return None
        if not found:
            self.problem(self.root / second, None, missing)
            return None
        return found[0]

    def _id(self, obj: dict, key: str, path: Path, n: int, kind: str) -> str | None:
        value = obj.get(key)
        if not isinstance(value, str) or not value.strip():
            self.problem(path, n, f"field {key!r} must be a non-empty string")
            return None
        why = unsafe_id(value)
        if why:
            self.problem(path, n, f"{kind} id {value!r} {why}: rejected")
            return None
        return value

    # -- documents ---------------------------------------------------------------------------------

    def _documents(self) -> list[Document] | None:
        found = self._one_of("documents", "documents.jsonl",
                             "not found (nor a documents/ folder of text, Markdown, HTML, PDF or .docx files)")
        if found is None:
            return None
        before = len(self.result.problems)
        docs = self._document_files(found) if found.is_dir() else self._document_lines(found)
        if not docs and len(self.result.problems) == before:
            n = len(self.result.skipped)
            self.problem(found, None,
                         "no documents" + (f": all {n} file{'s' * (n > 1)} skipped, see the list" if n else ""))
        return docs

    def _document_lines(self, path: Path) -> list[Document]:
        data = self._read(path)
        if data is None:
            return []
        self.hash.update(data)
        docs, seen = [], {}
        for n, obj in self._jsonl(path, data):
            doc_id = self._id(obj, "id", path, n, "document")
            text, title = obj.get("text"), obj.get("title")
            if not isinstance(text, str) or not text.strip():
                self.problem(path, n, "field 'text' must be a non-empty string")
                text = None
            elif lone_surrogate(text):
                self.problem(path, n, f"field 'text' {SURROGATE}")
                text = None
            if title is not None and not isinstance(title, str):
                self.problem(path, n, "field 'title' must be a string")
            elif title is not None and lone_surrogate(title):
                self.problem(path, n, f"field 'title' {SURROGATE}")
            if doc_id is None:
                continue
            if doc_id in seen:
                self.problem(path, n, f"duplicate document id {doc_id!r} (first on line {seen[doc_id]})")
                continue
            seen[doc_id] = n
            self.named.add(doc_id)
            if text is not None:
                docs.append(Document(id=doc_id, text=text, title=title if isinstance(title, str) else ""))
        return docs

    def _document_files(self, folder: Path) -> list[Document]:
        """Every file under documents/ through harness/data/ingest.py; files that yield no text are
        listed in `skipped`, never problems.

        data_sha256: a top-level .txt/.md file that loads as one document under its plain id is
        hashed as the loader before ingestion hashed it (name, length, bytes), so existing corpora
        keep their hash and their cached stages; any other file is hashed by the documents it
        gave (ids, titles, texts), so a change in extraction (a new parser version) is a new hash."""
        from harness.data.ingest import load_documents

        why = self._special(folder)  # documents/ itself a link out of the corpus: nothing under it is read
        if why:
            self.problem(folder, None, why)
            return []

        def hash_file(rel: str, kind: str, data: bytes, docs: list[Document]) -> None:
            path = Path(rel)
            if (len(path.parts) == 1 and path.suffix.lower() in (".txt", ".md") and len(docs) == 1
                    and docs[0].id == path.stem):
                self.hash.update(path.name.encode() + b"\0" + len(data).to_bytes(8, "little") + data)
            else:
                parts = json.dumps([[d.id, d.title, d.text] for d in docs], ensure_ascii=False)
                self.hash.update(b"\1" + rel.encode() + b"\0" + hashlib.sha256(parts.encode()).digest())

        try:
            docs, skipped = load_documents(folder, on_file=hash_file)
        except DataError as exc:
            self.problem(folder, None, str(exc).removeprefix(f"{folder}: "))
            return []
        for rel, reason in skipped:
            self.result.skipped.append(Problem(folder / rel, None, reason))
            self.skipped_files.add(Path(rel.rstrip("/")).with_suffix("").as_posix())
        self.named.update(d.id for d in docs)
        return docs

    # -- questions ---------------------------------------------------------------------------------

    def _question_file(self) -> Path | None:
        found = [self.root / n for n in QUESTION_FILES if (self.root / n).exists()]
        if len(found) > 1:
            self.problem(self.root, None, f"both {found[0].name} and {found[1].name}: keep one")
            return None
        if not found:
            self.problem(self.root / "questions.jsonl", None,
                         "not found (nor questions.csv, .tsv, .parquet, or a questions/ folder from datasets)")
            return None
        return found[0]

    def _questions(self, task: str, doc_ids: set[str] | None) -> list[Example] | None:
        found = self._question_file()
        if found is None:
            return None
        columns = self.columns if self.columns is not None else self.meta_columns
        if columns is not None or found.name not in ("questions.jsonl", "questions.csv"):
            rows = self._table_rows(found, columns)
            if rows is None:
                return None
        else:
            data = self._read(found)
            if data is None:
                return None
            self.hash.update(data)
            rows = self._csv_rows(found, data) if found.suffix == ".csv" else self._jsonl(found, data)
        out, seen = [], {}
        for n, obj in rows:
            before = (len(self.result.problems), len(self.result.warnings))
            ex = self._question(obj, found, n if isinstance(n, int) else None, task, doc_ids, seen)
            if isinstance(n, str):  # a row of a Parquet file or a saved dataset: no line, name the row
                for got, start in ((self.result.problems, before[0]), (self.result.warnings, before[1])):
                    got[start:] = [Problem(p.path, None, f"{n}: {p.message}") for p in got[start:]]
            if ex is not None:
                out.append(ex)
        if not out and not self.result.problems:
            self.problem(found, None, "no questions")
        out = self._assign_splits(out)
        if out and not any(e.split == "test" for e in out):
            self.problem(found, None, "no question has split 'test': nothing to evaluate")
        return out

    def _table_rows(self, path: Path, columns: dict | None) -> list[tuple[int | str, dict]] | None:
        """Rows of a question table read by harness/data/ingest.py (any format, with the column
        mapping), as (line, or "row N" where the format has no lines, question dict)."""
        from harness.data.ingest import QuestionTableError, load_question_table

        try:
            rows = load_question_table(path, columns)
        except QuestionTableError as exc:
            for p, line, message in exc.problems:
                self.problem(p, line, message)
            return None
        except DataError as exc:
            self.problem(path, None, str(exc).removeprefix(f"{path}: "))
            return None
        self._hash_table(path)
        if columns is not None:
            self.hash.update(b"\2columns\0" + json.dumps(columns, sort_keys=True).encode())
        by_lines = path.is_file() and path.suffix.lower() in (".csv", ".tsv", ".jsonl", ".ndjson")
        return [(r["line"] if by_lines else f"row {r['line']}" + (f" (split {r['split']})" if path.is_dir()
                 and "split" in r else ""), {k: v for k, v in r.items() if k != "line"}) for r in rows]

    def _hash_table(self, path: Path) -> None:
        """The question table's bytes; a saved dataset's files by relative path and content."""
        if path.is_file():
            data = self._read(path)
            if data is not None:
                self.hash.update(data)
            return
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            data = self._read(f)
            if data is not None:
                rel = f.relative_to(path).as_posix().encode()
                self.hash.update(rel + b"\0" + len(data).to_bytes(8, "little") + data)

    def _question(self, obj, path, n, task, doc_ids, seen) -> Example | None:
        qid = self._id(obj, "id", path, n, "question")
        if qid is not None:
            if qid in seen:
                self.problem(path, n, f"duplicate question id {qid!r} (first on line {seen[qid]})")
                qid = None
            else:
                seen[qid] = n
        question = obj.get("question")
        if not isinstance(question, str) or not question.strip():
            self.problem(path, n, "field 'question' must be a non-empty string")
            question = None
        elif lone_surrogate(question):
            self.problem(path, n, f"field 'question' {SURROGATE}: no tokenizer can encode it")
            question = None
        answers = obj.get("answers")
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            self.problem(path, n, "field 'answers' must be a list of strings")
            answers = None
        else:
            answers = [a for a in answers if a.strip()]
            if not answers:
                self.problem(path, n, f"question {qid or obj.get('id')!r} has no answers")
                answers = None
            else:
                answers = self._answers(answers, task, path, n, qid or obj.get("id"))
        split = obj.get("split")
        if split in (None, ""):
            split = None
        elif split not in SPLITS:
            self.problem(path, n, f"split must be 'train', 'dev' or 'test', got {split!r}")
        refs = obj.get("doc_ids", [])
        if refs is None:
            refs = []
        if not isinstance(refs, list) or not all(isinstance(d, str) for d in refs):
            self.problem(path, n, "field 'doc_ids' must be a list of strings")
            refs = None
        elif doc_ids is not None:
            missing = unknown_refs(refs, doc_ids)  # a whole file ("manual") names its parts ("manual#p3")
            skipped = [d for d in missing if file_id(d) in self.skipped_files]
            if skipped:
                self.warn(path, n, f"doc_ids name a skipped document file: {', '.join(skipped)}")
            missing = [d for d in missing if d not in skipped]
            if missing:
                self.problem(path, n, f"doc_ids name no document: {', '.join(missing)}")
        choices = self._choices(obj, answers, task, path, n)
        if qid is None or question is None or answers is None or refs is None or choices is None:
            return None
        return Example(id=qid, input=question, answers=tuple(answers), split=split, task=task,
                       doc_ids=tuple(refs), choices=choices)

    def _answers(self, answers: list[str], task: str, path, n, qid) -> list[str] | None:
        """The answers that can be matched fairly. One with an invisible character (an output never
        holds the U+200B a reader cannot see) is a problem. One with nothing left after normalisation
        ("the", a lone quote mark) would be matched by an empty output: it is dropped with a warning,
        and a question left without answers is a problem. Multiple choice is exempt from the second
        rule: its output is always one of the choices, which must differ after normalisation."""
        bad = False
        for a in answers:
            why = invisible(a)
            if why:
                self.problem(path, n, f"answer {a!r} {why}: no output can match it")
                bad = True
        if bad:
            return None
        if task_type(task).needs_choices:
            return answers
        kept = [a for a in answers if normalize(a)]
        for a in answers if kept else ():  # a question left without answers is the problem, below
            if not normalize(a):
                self.warn(path, n, f"answer {a!r} dropped: it is empty after normalisation (lower case, no "
                                   "punctuation, no articles), so an empty output would match it")
        if not kept:
            self.problem(path, n, f"question {qid!r} has no answer left: every answer is empty after "
                                  "normalisation (lower case, no punctuation, no articles)")
            return None
        return kept

    def _choices(self, obj, answers, task, path, n) -> tuple[str, ...] | None:
        """Multiple choice: at least two distinct non-empty options, and the answer among them."""
        choices = obj.get("choices")
        needs = task_type(task).needs_choices
        if choices is None and not needs:
            return ()
        if not isinstance(choices, list) or not all(isinstance(c, str) and c.strip() for c in choices):
            self.problem(path, n, "field 'choices' must be a list of non-empty strings")
            return None
        if len(choices) < 2 or len(set(choices)) < len(choices):
            self.problem(path, n, "field 'choices' needs at least two options, all different")
            return None
        if any(lone_surrogate(c) for c in choices):
            self.problem(path, n, f"field 'choices' {SURROGATE}")
            return None
        same = {}
        for c in choices:
            same.setdefault(normalize(c), []).append(c)
        clash = next((v for v in same.values() if len(v) > 1), None)
        if clash:
            self.problem(path, n, f"choices {', '.join(map(repr, clash))} are the same after normalisation (lower "
                                  "case, no punctuation, no articles): the scorer cannot tell them apart")
            return None
        if needs and answers is not None and not all(a in choices for a in answers):
            self.problem(path, n, "the answer of a multiple-choice question must be one of its choices")
            return None
        return tuple(choices)

    def _csv_rows(self, path: Path, data: bytes):
        """Rows of questions.csv as question dicts (answers and doc_ids split on '|'), with their line."""
        for _ in self._lines(path, data):  # reports lines that are not UTF-8; the rest still parses
            pass
        text = data.decode("utf-8-sig", errors="replace")
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            header = next(reader, None)
            if header is None:
                self.problem(path, None, f"empty file: expected a header row {','.join(CSV_COLUMNS)}")
                return
            header = [h.strip().lower() for h in header]
            missing = [c for c in CSV_REQUIRED if c not in header]
            if missing:
                self.problem(path, 1, f"missing column{'s' * (len(missing) > 1)} {', '.join(missing)} "
                                      f"(header: {', '.join(header)}; needed: {', '.join(CSV_REQUIRED)})")
                return
            dupes = sorted({h for h in header if header.count(h) > 1 and h in CSV_COLUMNS})
            if dupes:
                self.problem(path, 1, f"column {', '.join(dupes)} appears twice")
                return
            col = {h: header.index(h) for h in CSV_COLUMNS if h in header}
            while True:
                n = reader.line_num + 1
                row = next(reader, None)
                if row is None:
                    return
                if not any(v.strip() for v in row):
                    continue
                if len(row) != len(header):
                    self.problem(path, n, f"row has {len(row)} fields, the header has {len(header)}")
                    continue
                obj = {"id": row[col["id"]].strip(), "question": row[col["question"]],
                       "answers": [a.strip() for a in row[col["answers"]].split("|")]}
                if "split" in col:
                    obj["split"] = row[col["split"]].strip()
                if "doc_ids" in col:
                    obj["doc_ids"] = [d.strip() for d in row[col["doc_ids"]].split("|") if d.strip()]
                if "choices" in col:
                    obj["choices"] = [c.strip() for c in row[col["choices"]].split("|") if c.strip()]
                yield n, obj
        except csv.Error as exc:
            self.problem(path, reader.line_num or None, f"invalid CSV ({exc})")

    def _assign_splits(self, examples: list[Example]) -> list[Example]:
        """Questions without a split: the test_ratio share with the lowest seeded hash of their id is test."""
        free = [e for e in examples if e.split is None]
        self.assigned = len(free)
        if not free:
            return examples
        n_test = min(len(free), max(1, round(self.test_ratio * len(free))))
        rank = sorted(free, key=lambda e: hashlib.sha256(f"{self.split_seed}\0{e.id}".encode()).digest())
        test = {e.id for e in rank[:n_test]}
        return [e if e.split is not None else
                dataclasses.replace(e, split="test" if e.id in test else "train") for e in examples]


def summary(result: CheckResult, chunk_words: int, chunk_overlap: int) -> str:
    from harness.data.chunks import count_chunks

    b = result.benchmark
    splits = {s: len(b.split(s)) for s in SPLITS if b.split(s)}
    size = sum(len(d.text) for d in b.documents)
    lines = [f"{result.root}: OK ({b.name}, task {b.task})",
             f"  {len(b.documents)} documents, {size:,} characters; "
             f"{count_chunks(b.documents, chunk_words, chunk_overlap)} chunks of {chunk_words} words "
             f"(overlap {chunk_overlap})",
             f"  {len(b.examples)} questions: " + ", ".join(f"{v} {k}" for k, v in splits.items())]
    if b.meta.get("split_assigned"):
        a = b.meta["split_assigned"]
        lines.append(f"  {a['questions']} questions had no split: assigned with seed {a['seed']}, "
                     f"test ratio {a['test_ratio']}")
    if b.meta.get("synthetic"):
        lines.append("  synthetic questions (benchmark.json 'synthetic'): reports on this corpus say so at the top")
    if result.skipped:
        lines.append(f"  {len(result.skipped)} document file{'s' * (len(result.skipped) > 1)} skipped (not loaded):")
        lines += [f"    {p.path.relative_to(result.root)}: {p.message}" for p in result.skipped]
    lines += [f"  warning: {w}" for w in result.warnings]
    return "\n".join(lines)
