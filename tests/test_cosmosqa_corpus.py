"""The cosmosqa benchmark: sentence-length gold answers, the card keys the harness will read
(task generative_qa, answer_style, max_new_tokens), splits that share no narrative, and a build
that reproduces the committed files byte for byte from the bigbench sdist."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.data.benchmark import CORPORA_DIR, builtin_benchmarks, load_benchmark

NAME = "cosmosqa"
# where the other corpora's tests look for source packages; BIGBENCH_SDIST points elsewhere
SDIST = Path(os.environ.get("BIGBENCH_SDIST", "/tmp/pkgs/bigbench-1.0.0.tar.gz"))


@pytest.fixture(scope="module")
def bench():
    return load_benchmark(NAME)


def test_loads_with_documented_counts_and_card(bench):
    assert NAME in builtin_benchmarks()
    assert (bench.name, bench.task) == (NAME, "generative_qa")
    assert (len(bench.documents), len(bench.split("train")), len(bench.split("test"))) == (776, 600, 200)
    assert bench.meta["counts"] == {"documents": 776, "train": 600, "test": 200}
    assert bench.meta["answer_style"] == "sentence"
    assert bench.meta["max_new_tokens"] == 32
    assert bench.meta["license"] == "CC BY 4.0" and bench.meta["source"]
    assert (CORPORA_DIR / NAME / "SOURCE.md").is_file()


def test_rows_are_well_formed(bench):
    docs = {d.id for d in bench.documents}
    assert len({e.id for e in bench.examples}) == len(bench.examples)
    for e in bench.examples:
        assert len(e.doc_ids) == 1 and e.doc_ids[0] in docs, e.id
        assert not e.choices and 1 <= len(e.answers) <= 2, e.id
        assert all(len(a.split()) >= 4 for a in e.answers), e.id  # sentences, not phrases
        assert " n't" not in e.input and " ." not in e.input, e.id  # detokenised
    used = {e.doc_ids[0] for e in bench.examples}
    assert used == docs  # every document is some question's narrative


def test_no_narrative_in_both_splits(bench):
    test_docs = {e.doc_ids[0] for e in bench.split("test")}
    train_docs = {e.doc_ids[0] for e in bench.split("train")}
    assert not test_docs & train_docs


def test_detokenize_rules():
    sys.path.insert(0, str(CORPORA_DIR / NAME))
    try:
        from build import detokenize
    finally:
        sys.path.pop(0)
    assert detokenize("I did n't know , so I ' m here .") == "I didn't know, so I'm here."
    assert detokenize('He said , " Hi there . " ( ok )') == 'He said, "Hi there." (ok)'
    assert detokenize('one " odd quote .') == 'one " odd quote.'  # unbalanced quotes stay put


def test_build_reproduces_the_committed_files(tmp_path):
    if not SDIST.is_file():
        pytest.skip(f"source package {SDIST} is not here")
    script = CORPORA_DIR / NAME / "build.py"
    subprocess.run([sys.executable, str(script), "--sdist", str(SDIST), "--out", str(tmp_path)],
                   check=True, capture_output=True)
    for f in ("documents.jsonl", "questions.jsonl", "benchmark.json"):
        assert (tmp_path / f).read_bytes() == (CORPORA_DIR / NAME / f).read_bytes(), f
    assert json.loads((tmp_path / "benchmark.json").read_text())["name"] == NAME
