"""A user's corpus folder -> Benchmark, checked as a whole: every problem is reported, with file and line.

Layout (README, "Bring your own corpus"):
    PATH/documents/*.txt|*.md   one document per file, file name without suffix = document id
      or PATH/documents.jsonl   {"id", "title"?, "text"} per line
    PATH/questions.jsonl        {"id", "question", "answers": [...], "split"?, "doc_ids"?, "choices"?} per line
      or PATH/questions.csv     the same columns; answers, doc_ids and choices separated by "|"
    PATH/benchmark.json         optional: {"name"?, "task"?, ...}
Questions without a split are split by a seeded hash of their id, so the split is stable when
questions are added. Ids are never turned into paths, and an id that could name one elsewhere
(path separators, "..", NUL or other control characters) is rejected, not rewritten.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from harness.core.errors import DataError, HarnessError
from harness.core.types import Benchmark, Document, Example
from harness.data.tasks import ANSWER_STYLES, DEFAULT_TASK, TASK_TYPES, task_for_style, task_type

DEFAULT_SPLIT_SEED = 0
DEFAULT_TEST_RATIO = 0.3  # near the built-in benchmarks' test share (NYT: 200 of 746); the rest trains
SPLITS = ("train", "dev", "test")
CSV_REQUIRED = ("id", "question", "answers")
CSV_COLUMNS = (*CSV_REQUIRED, "split", "doc_ids", "choices")
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


def unsafe_id(value: str) -> str | None:
    """Why an id could name a path outside its folder, or None when it cannot."""
    if "\x00" in value:
        return "contains a NUL character"
    if "/" in value or "\\" in value:
        return "contains a path separator"
    if value.strip() in (".", ".."):
        return "is a relative folder name"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return "contains a control character"
    return None


def load_corpus(root: str | Path, split_seed: int = DEFAULT_SPLIT_SEED,
                test_ratio: float = DEFAULT_TEST_RATIO) -> Benchmark:
    result = check_corpus(root, split_seed, test_ratio)
    if result.problems:
        raise CorpusError(result.root, result.problems)
    return result.benchmark


def check_corpus(root: str | Path, split_seed: int = DEFAULT_SPLIT_SEED,
                 test_ratio: float = DEFAULT_TEST_RATIO) -> CheckResult:
    if isinstance(test_ratio, bool) or not isinstance(test_ratio, (int, float)) or not 0 < test_ratio <= 1:
        raise HarnessError(f"test_ratio must be a number in (0, 1], got {test_ratio!r}")
    return _Loader(Path(root), split_seed, test_ratio).run()


class _Loader:
    def __init__(self, root: Path, split_seed: int, test_ratio: float):
        self.root, self.split_seed, self.test_ratio = root, split_seed, test_ratio
        self.result = CheckResult(root, None)
        self.hash = hashlib.sha256()
        self.assigned = 0  # questions that had no split
        self.named: set[str] = set()  # document ids found, also of documents rejected for their content

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
        task = meta.get("task", DEFAULT_TASK)
        name = meta.get("name", root.resolve().name or "corpus")
        docs = self._documents()
        examples = self._questions(task, self.named if docs is not None else None)
        if self.result.problems or docs is None or examples is None:
            return self.result
        meta = {**meta, "path": str(root.resolve()), "data_sha256": self.hash.hexdigest()}
        if self.assigned:
            meta["split_assigned"] = {"seed": self.split_seed, "test_ratio": self.test_ratio,
                                      "questions": self.assigned}
        self.result.benchmark = Benchmark(name=name, task=task, documents=docs, examples=examples, meta=meta)
        return self.result

    # -- files -------------------------------------------------------------------------------------

    def _read(self, path: Path) -> bytes | None:
        try:
            data = path.read_bytes()
        except IsADirectoryError:
            self.problem(path, None, "cannot read: is a folder")
            return None
        except OSError as exc:
            self.problem(path, None, f"cannot read ({exc.strerror or exc})")
            return None
        return data

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
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                cut = "; the file looks truncated here" if n == last and not data.endswith(b"\n") else ""
                self.problem(path, n, f"invalid JSON ({exc.msg}){cut}")
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
            meta = json.loads(data.decode("utf-8-sig"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
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
        self._answer_keys(path, meta)
        return meta

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
                             "not found (nor a documents/ folder of .txt or .md files)")
        if found is None:
            return None
        before = len(self.result.problems)
        docs = self._document_files(found) if found.is_dir() else self._document_lines(found)
        if not docs and len(self.result.problems) == before:
            self.problem(found, None, "no documents")
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
            if title is not None and not isinstance(title, str):
                self.problem(path, n, "field 'title' must be a string")
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
        try:
            files = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
        except OSError as exc:
            self.problem(folder, None, f"cannot read the folder ({exc.strerror or exc})")
            return []
        docs, seen = [], {}
        for p in files:
            if p.suffix.lower() not in (".txt", ".md"):
                self.warn(p, None, "ignored: documents are .txt or .md files" if p.is_file()
                          else "ignored: subfolders of documents/ are not read")
                continue
            why = unsafe_id(p.stem)
            if why:
                self.problem(p, None, f"document id {p.stem!r} {why}: rejected")
                continue
            if p.stem in seen:
                self.problem(p, None, f"duplicate document id {p.stem!r} (also {seen[p.stem].name})")
                continue
            seen[p.stem] = p
            self.named.add(p.stem)
            data = self._read(p)
            if data is None:
                continue
            self.hash.update(p.name.encode() + b"\0" + len(data).to_bytes(8, "little") + data)
            if data.startswith(b"\xef\xbb\xbf"):
                data = data[3:]
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                line = data.count(b"\n", 0, exc.start) + 1
                self.problem(p, line, f"not UTF-8 text ({exc.reason} at byte {exc.start})")
                continue
            if not text.strip():
                self.problem(p, None, "empty document (0 bytes)" if not data else "empty document (only whitespace)")
                continue
            title = ""
            if p.suffix.lower() == ".md":
                first = text.lstrip().split("\n", 1)[0]
                title = first.lstrip("#").strip() if first.startswith("#") else ""
            docs.append(Document(id=p.stem, text=text, title=title))
        return docs

    # -- questions ---------------------------------------------------------------------------------

    def _questions(self, task: str, doc_ids: set[str] | None) -> list[Example] | None:
        found = self._one_of("questions.csv", "questions.jsonl", "not found (nor questions.csv)")
        if found is None:
            return None
        data = self._read(found)
        if data is None:
            return None
        self.hash.update(data)
        rows = self._csv_rows(found, data) if found.suffix == ".csv" else self._jsonl(found, data)
        out, seen = [], {}
        for n, obj in rows:
            ex = self._question(obj, found, n, task, doc_ids, seen)
            if ex is not None:
                out.append(ex)
        if not out and not self.result.problems:
            self.problem(found, None, "no questions")
        out = self._assign_splits(out)
        if out and not any(e.split == "test" for e in out):
            self.problem(found, None, "no question has split 'test': nothing to evaluate")
        return out

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
        answers = obj.get("answers")
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            self.problem(path, n, "field 'answers' must be a list of strings")
            answers = None
        else:
            answers = [a for a in answers if a.strip()]
            if not answers:
                self.problem(path, n, f"question {qid or obj.get('id')!r} has no answers")
                answers = None
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
            missing = [d for d in refs if d not in doc_ids]
            if missing:
                self.problem(path, n, f"doc_ids name no document: {', '.join(missing)}")
        choices = self._choices(obj, answers, task, path, n)
        if qid is None or question is None or answers is None or refs is None or choices is None:
            return None
        return Example(id=qid, input=question, answers=tuple(answers), split=split, task=task,
                       doc_ids=tuple(refs), choices=choices)

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
    lines += [f"  warning: {w}" for w in result.warnings]
    return "\n".join(lines)
