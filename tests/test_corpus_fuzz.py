"""Fuzz the corpus loader: any folder either loads as a valid Benchmark or raises HarnessError (the
documented DataError for corpus problems), never another exception."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.core.errors import HarnessError
from harness.core.types import Benchmark
from harness.data.benchmark import load_benchmark
from harness.data.corpus import check_corpus

ids = st.one_of(st.sampled_from(["d1", "d2", "q1", "q2", "../x", "/abs", "a\\b", "..", "", " ", "n\0l"]),
                st.text(max_size=6))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6)
answers = st.one_of(st.lists(st.text(max_size=6), max_size=3), json_values)
splits = st.sampled_from([None, "train", "test", "dev", "", "validation", 3])
doc_ids = st.one_of(st.lists(st.sampled_from(["d1", "d2", "d3", "zz"]), max_size=2), json_values)




good_text = st.from_regex(r"\w+( \w+){0,5}", fullmatch=True)


def good_doc(i: int, draw) -> bytes:
    return json.dumps({"id": f"d{i}", "text": draw(good_text)}).encode()


def good_question(i: int, draw) -> dict:
    return {"id": f"q{i}", "question": draw(good_text),
            "answers": draw(st.lists(good_text, min_size=1, max_size=2)),
            "split": draw(st.sampled_from(["test", "train", None])),
            "doc_ids": draw(st.lists(st.sampled_from(["d1", "d2"]), max_size=1))}


def mix(draw, good: list, bad) -> list:
    """Mostly good items, with up to two fuzzed ones put anywhere."""
    for item in draw(st.lists(bad, max_size=2)):
        good.insert(draw(st.integers(0, len(good))), item)
    return good


@st.composite
def doc_line(draw) -> bytes:
    kind = draw(st.sampled_from(["doc", "json", "bytes"]))
    if kind == "doc":
        obj = {"id": draw(ids), "text": draw(st.one_of(st.text(max_size=30), json_values)),
               "title": draw(st.one_of(st.text(max_size=5), json_values))}
        keep = draw(st.sets(st.sampled_from(list(obj)), min_size=1))
        return json.dumps({k: v for k, v in obj.items() if k in keep}).encode()
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    return draw(st.binary(max_size=20))


@st.composite
def question_record(draw) -> dict:
    obj = {"id": draw(ids), "question": draw(st.one_of(st.text(max_size=12), json_values)),
           "answers": draw(answers), "split": draw(splits), "doc_ids": draw(doc_ids)}
    keep = draw(st.sets(st.sampled_from(list(obj)), min_size=1))
    return {k: v for k, v in obj.items() if k in keep}


def csv_cell(value) -> str:
    if isinstance(value, list):
        value = "|".join(str(v) for v in value)
    text = "" if value is None else str(value)
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text


@st.composite
def corpus(draw) -> dict[str, bytes | None]:
    """file name (relative) -> bytes; None makes a folder."""
    files: dict[str, bytes | None] = {}
    if draw(st.booleans()):
        lines = mix(draw, [good_doc(i, draw) for i in range(1, draw(st.sampled_from([0, 3, 3, 4])))], doc_line())
        files["documents.jsonl"] = b"\n".join(lines) + draw(st.sampled_from([b"", b"\n"]))
    else:
        files["documents"] = None
        for i in range(1, draw(st.sampled_from([0, 3, 3, 4]))):
            files[f"documents/d{i}.txt"] = draw(good_text).encode()
        names = draw(st.lists(st.text(st.characters(blacklist_characters="/\0"), min_size=1, max_size=6)
                              .filter(lambda s: s not in (".", "..")), max_size=2, unique=True))
        for name in names:
            suffix = draw(st.sampled_from([".txt", ".md", ".pdf", ""]))
            files[f"documents/{name}{suffix}"] = draw(st.one_of(st.text(max_size=30).map(str.encode),
                                                                 st.binary(max_size=20)))
    records = mix(draw, [good_question(i, draw) for i in range(draw(st.integers(0, 5)))], question_record())
    if draw(st.booleans()):
        body = b"\n".join(json.dumps(r).encode() for r in records)
        if draw(st.integers(0, 3)) == 0:
            body += b"\n" + draw(st.binary(max_size=10))  # a broken or truncated last line
        files["questions.jsonl"] = body
    else:
        header = draw(st.one_of(
            st.just(["id", "question", "answers", "split", "doc_ids"]),
            st.lists(st.sampled_from(["id", "question", "answers", "split", "doc_ids", "x"]), min_size=1,
                     max_size=6)))
        rows = [",".join(header)] + [",".join(csv_cell(r.get(h)) for h in header) for r in records]
        files["questions.csv"] = "\n".join(rows).encode() + draw(st.sampled_from([b"", b"\n", b"\n", b"\xff"]))
    if draw(st.integers(0, 3)) == 0:
        files["benchmark.json"] = draw(st.one_of(
            st.fixed_dictionaries({}, optional={"name": st.one_of(ids, json_values), "task": json_values})
            .map(lambda v: json.dumps(v).encode()),
            json_values.map(lambda v: json.dumps(v).encode()), st.binary(max_size=10)))
    return files


def assert_valid(b: Benchmark) -> None:
    doc_ids = [d.id for d in b.documents]
    assert doc_ids and len(doc_ids) == len(set(doc_ids))
    assert all(isinstance(d.text, str) and d.text.strip() for d in b.documents)
    q_ids = [e.id for e in b.examples]
    assert len(q_ids) == len(set(q_ids))
    assert b.split("test")
    for e in b.examples:
        assert e.split in ("train", "dev", "test")
        assert e.answers and all(isinstance(a, str) and a.strip() for a in e.answers)
        assert set(e.doc_ids) <= set(doc_ids)
        assert "/" not in e.id and "\0" not in e.id


@pytest.mark.reliability("fuzz", "corpus loader (hypothesis): a Benchmark or a HarnessError")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corpus())
def test_loader_returns_a_benchmark_or_a_harness_error(files):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "c"
        root.mkdir()
        for name, data in files.items():
            path = root / name
            if data is None:
                path.mkdir(exist_ok=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
        result = check_corpus(root)  # never raises for a folder's content
        assert (result.benchmark is None) == bool(result.problems)
        try:
            b = load_benchmark(str(root))
        except HarnessError as exc:
            assert str(exc)
            return
        assert_valid(b)
