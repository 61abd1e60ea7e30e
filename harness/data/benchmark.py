"""Find a benchmark by name (corpora/<name>/) or path; harness/data/corpus.py loads and checks it."""
from __future__ import annotations

from pathlib import Path

from harness.core.errors import HarnessError
from harness.core.paths import CORPORA_DIR
from harness.core.types import Benchmark

DEFAULT_BENCHMARK = "squadshifts_nyt"


def builtin_benchmarks() -> list[str]:
    return sorted(p.parent.name for p in CORPORA_DIR.glob("*/questions.jsonl"))


def load_benchmark(name_or_path: str, split_seed: int | None = None, test_ratio: float | None = None,
                   columns: dict | None = None) -> Benchmark:
    """A built-in benchmark by name, or a corpus folder (either layout, see harness/data/corpus.py) by path.

    Both go through the one corpus loader, which reports every problem of a folder with file and line.
    `columns` (the question table's column mapping) applies to corpus folders, not to built-in names.
    """
    from harness.data import corpus

    path = Path(name_or_path)
    builtin = name_or_path in builtin_benchmarks()
    # a folder wins over a built-in of the same name when it holds questions; a path is never a name
    has_questions = path.is_dir() and any((path / q).exists() for q in corpus.QUESTION_FILES)
    if not has_questions:
        if not builtin and not (path.exists() or "/" in name_or_path or "\\" in name_or_path):
            raise HarnessError(
                f"unknown benchmark {name_or_path!r}; built-in benchmarks: {', '.join(builtin_benchmarks())}; "
                "or give the path of a corpus folder"
            )
        if builtin:
            path = CORPORA_DIR / name_or_path
    return corpus.load_corpus(path, corpus.DEFAULT_SPLIT_SEED if split_seed is None else split_seed,
                              corpus.DEFAULT_TEST_RATIO if test_ratio is None else test_ratio,
                              columns=None if builtin and not has_questions else columns)
