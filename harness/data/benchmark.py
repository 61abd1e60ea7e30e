"""Find a benchmark by name (corpora/<name>/) or path; harness/data/corpus.py loads and checks it."""
from __future__ import annotations

import math
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


# Default max_new_tokens from the gold answers, when neither the run nor benchmark.json sets it:
# p90 of the gold answers' words x tokens per word x headroom, rounded up to a multiple of 8.
# Tokens per word of gold answers in the default model's tokenizer (SmolLM2), measured 2026-12-01 on
# all gold answers: squadshifts_nyt 1.57 (names, numbers), squadshifts_amazon 1.37, cosmosqa 1.16.
TOKENS_PER_WORD = 1.4
HEADROOM = 1.5  # room for the answer to be worded differently from the gold (cosmosqa's card uses the same)
# Never below the harness's short-answer default: the default model opens with a lead-in ("The answer
# to this question is:", about 8 tokens) before even a one-word answer. Never above 512: a paragraph.
MIN_NEW_TOKENS, MAX_DEFAULT_NEW_TOKENS = 24, 512


def answer_budget(bench: Benchmark) -> tuple[int, str]:
    """Greedy tokens an answer may take on this benchmark, and where the number comes from: its
    benchmark.json `max_new_tokens`, else the p90 length of its gold answers (see above)."""
    given = bench.meta.get("max_new_tokens")
    if isinstance(given, int) and not isinstance(given, bool):
        return given, "benchmark.json"
    words = sorted(len(a.split()) for e in bench.examples for a in e.answers)
    if not words:
        return MIN_NEW_TOKENS, "default"
    p90 = words[min(len(words) - 1, int(0.9 * len(words)))]
    n = -(-math.ceil(p90 * TOKENS_PER_WORD * HEADROOM) // 8) * 8
    return max(MIN_NEW_TOKENS, min(MAX_DEFAULT_NEW_TOKENS, n)), f"gold answers (p90 {p90} words)"
