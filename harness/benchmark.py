"""Load a benchmark folder: documents.jsonl + questions.jsonl (+ benchmark.json), validated line by line."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .errors import DataError, HarnessError
from .types import Benchmark, Document, Example

CORPORA_DIR = Path(__file__).resolve().parent.parent / "corpora"
DEFAULT_BENCHMARK = "squadshifts_nyt"


def builtin_benchmarks() -> list[str]:
    return sorted(p.parent.name for p in CORPORA_DIR.glob("*/questions.jsonl"))


def load_benchmark(name_or_path: str, split_seed: int | None = None, test_ratio: float | None = None) -> Benchmark:
    """A built-in benchmark by name, or a corpus folder (either layout, see harness/corpus.py) by path."""
    path = Path(name_or_path)
    builtin = name_or_path in builtin_benchmarks()
    # a folder wins over a built-in of the same name when it holds questions; a path is never a name
    has_questions = path.is_dir() and any((path / q).exists() for q in ("questions.jsonl", "questions.csv"))
    if has_questions or (not builtin and (path.exists() or "/" in name_or_path or "\\" in name_or_path)):
        from . import corpus

        return corpus.load_corpus(path, corpus.DEFAULT_SPLIT_SEED if split_seed is None else split_seed,
                                  corpus.DEFAULT_TEST_RATIO if test_ratio is None else test_ratio)
    if not builtin:
        raise HarnessError(
            f"unknown benchmark {name_or_path!r}; built-in benchmarks: {', '.join(builtin_benchmarks())}; "
            "or give the path of a corpus folder"
        )
    path = CORPORA_DIR / name_or_path
    meta = {}
    if (path / "benchmark.json").exists():
        try:
            meta = json.loads((path / "benchmark.json").read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"not valid JSON: {exc}", path / "benchmark.json") from None
        if not isinstance(meta, dict):
            raise DataError("must hold a JSON object", path / "benchmark.json")
    name = meta.get("name", path.name)
    task = meta.get("task", "extractive_qa")
    documents = _load_documents(path / "documents.jsonl")
    examples = _load_questions(path / "questions.jsonl", task, {d.id for d in documents})
    if not any(e.split == "test" for e in examples):
        raise DataError("no question has split 'test': nothing to evaluate", path / "questions.jsonl")
    meta = {**meta, "path": str(path.resolve()), "data_sha256": _data_hash(path)}
    return Benchmark(name=name, task=task, documents=documents, examples=examples, meta=meta)


def _data_hash(path: Path) -> str:
    h = hashlib.sha256()
    for name in ("documents.jsonl", "questions.jsonl"):
        h.update((path / name).read_bytes())
    return h.hexdigest()


def _jsonl(path: Path):
    if not path.is_file():
        raise DataError("file not found", path)
    try:
        # split on \n only: str.splitlines() also breaks at U+2028 and friends inside JSON strings
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path) from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON ({exc.msg})", path, n) from None
        if not isinstance(obj, dict):
            raise DataError("each line must be a JSON object", path, n)
        yield n, obj


def _str_field(obj, key, path, n, required=True) -> str:
    value = obj.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise DataError(f"field {key!r} must be a non-empty string", path, n)
    return value


def _load_documents(path: Path) -> list[Document]:
    docs, seen = [], {}
    for n, obj in _jsonl(path):
        doc_id = _str_field(obj, "id", path, n)
        if doc_id in seen:
            raise DataError(f"duplicate document id {doc_id!r} (first on line {seen[doc_id]})", path, n)
        seen[doc_id] = n
        docs.append(Document(id=doc_id, text=_str_field(obj, "text", path, n),
                             title=_str_field(obj, "title", path, n, required=False)))
    if not docs:
        raise DataError("no documents", path)
    return docs


def _load_questions(path: Path, task: str, doc_ids: set[str]) -> list[Example]:
    out, seen = [], {}
    for n, obj in _jsonl(path):
        qid = _str_field(obj, "id", path, n)
        if qid in seen:
            raise DataError(f"duplicate question id {qid!r} (first on line {seen[qid]})", path, n)
        seen[qid] = n
        answers = obj.get("answers")
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            raise DataError("field 'answers' must be a list of strings", path, n)
        answers = [a for a in answers if a.strip()]
        if not answers:
            raise DataError(f"question {qid!r} has no answers", path, n)
        split = obj.get("split", "test")
        if split not in ("train", "test", "dev"):
            raise DataError(f"split must be 'train', 'dev' or 'test', got {split!r}", path, n)
        refs = obj.get("doc_ids", [])
        if not isinstance(refs, list) or not all(isinstance(d, str) for d in refs):
            raise DataError("field 'doc_ids' must be a list of strings", path, n)
        missing = [d for d in refs if d not in doc_ids]
        if missing:
            raise DataError(f"doc_ids name no document: {', '.join(missing)}", path, n)
        choices = _choices(obj, answers, task, path, n)
        out.append(Example(id=qid, input=_str_field(obj, "question", path, n), answers=tuple(answers),
                           split=split, task=task, doc_ids=tuple(refs), choices=choices))
    if not out:
        raise DataError("no questions", path)
    return out


def _choices(obj, answers, task, path, n) -> tuple[str, ...]:
    """Multiple choice: at least two distinct non-empty options, and the answer among them."""
    choices = obj.get("choices")
    if choices is None and task != "multiple_choice":
        return ()
    if not isinstance(choices, list) or not all(isinstance(c, str) and c.strip() for c in choices):
        raise DataError("field 'choices' must be a list of non-empty strings", path, n)
    if len(choices) < 2 or len(set(choices)) < len(choices):
        raise DataError("field 'choices' needs at least two options, all different", path, n)
    if task == "multiple_choice" and not all(a in choices for a in answers):
        raise DataError("the answer of a multiple-choice question must be one of its choices", path, n)
    return tuple(choices)
