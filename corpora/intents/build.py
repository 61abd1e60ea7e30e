#!/usr/bin/env python3
"""Build the ``intents`` corpus (documents, questions, benchmark card).

Source: the BIG-bench task ``intent_recognition`` (Madotto, Winata,
Yosinski, Lee, Fung, Liu; utterances and intents of the SNIPS NLU
benchmark) as shipped in the PyPI source archive ``bigbench==1.0.0``
(member ``bigbench-1.0.0/bigbench/benchmark_tasks/intent_recognition/task.json``).

Usage::

    python corpora/intents/build.py [--sdist PATH]

Without ``--sdist`` the sdist is fetched with
``python -m pip download --no-deps --no-binary :all: bigbench==1.0.0``
into a temporary directory. Only the one JSON member is read from the
tar.gz; the archive is never extracted. Standard library only, and
deterministic: rerunning regenerates byte-identical files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import tempfile
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # corpora/, for the shared buildkit module
from buildkit import pip_download, read_tar_member, sha256_file, write_corpus  # noqa: E402

PACKAGE = "bigbench==1.0.0"
SDIST_NAME = "bigbench-1.0.0.tar.gz"
MEMBER = "bigbench-1.0.0/bigbench/benchmark_tasks/intent_recognition/task.json"
SEED = 20261127
N_TEST = 200
MAX_TRAIN = 800
INPUT_PREFIX = "Utterance: "
QUESTION = 'Which intent does this utterance express? Utterance: "{utterance}"'

# The task has no label descriptions, so these were written for this corpus
# (one sentence each), from the label names and the task's own utterances.
DESCRIPTIONS = {
    "add_to_playlist": (
        "Intent 'add_to_playlist': the user wants to add a song, track, album or artist to "
        "one of their music playlists, usually named by its title."),
    "book_restaurant": (
        "Intent 'book_restaurant': the user wants to reserve a table at a restaurant, bar, "
        "pub or other eatery, often giving the party size, time, place or cuisine."),
    "get_weather": (
        "Intent 'get_weather': the user asks about the weather or forecast (rain, snow, wind, "
        "temperature) for a place and/or a date or time."),
    "play_music": (
        "Intent 'play_music': the user wants music played now, such as a song, album, artist, "
        "genre or decade, sometimes on a named service."),
    "rate_book": (
        "Intent 'rate_book': the user wants to give a rating, in stars or points (usually out "
        "of six), to a book, novel, textbook, series or (in this data) album, named or the "
        "current one."),
    "search_creative_work": (
        "Intent 'search_creative_work': the user wants to find a creative work by its title "
        "or kind, such as a movie, TV show, song, album, book or video game."),
    "search_screening_event": (
        "Intent 'search_screening_event': the user wants movie showtimes or schedules, i.e. "
        "which films are playing at a cinema or nearby and when."),
}


# ---------------------------------------------------------------------------
# Build


def parse(task: dict) -> tuple[list[str], list[tuple[int, str, str]]]:
    """The label set (in task order) and (index, utterance, label) per example."""
    examples = task["examples"]
    labels = list(examples[0]["target_scores"])
    if sorted(labels) != sorted(DESCRIPTIONS):
        raise SystemExit(f"unexpected label set: {labels}")
    rows = []
    for i, ex in enumerate(examples):
        scores = ex["target_scores"]
        gold = [k for k, v in scores.items() if v == 1]
        if sorted(scores) != sorted(labels) or len(gold) != 1 or sum(scores.values()) != 1:
            raise SystemExit(f"example {i}: expected exactly one gold label, got {scores}")
        text = ex["input"]
        if not text.startswith(INPUT_PREFIX):
            raise SystemExit(f"example {i}: input does not start with {INPUT_PREFIX!r}")
        utterance = " ".join(text[len(INPUT_PREFIX):].split())
        if not utterance:
            raise SystemExit(f"example {i}: empty utterance")
        rows.append((i, utterance, gold[0]))
    return labels, rows


def test_quota(counts: Counter, n_test: int) -> dict[str, int]:
    """Test questions per label, proportional to its size (largest remainder, ties by label)."""
    total = sum(counts.values())
    exact = {lab: n_test * n / total for lab, n in counts.items()}
    quota = {lab: int(x) for lab, x in exact.items()}
    for lab in sorted(exact, key=lambda k: (-(exact[k] - quota[k]), k))[: n_test - sum(quota.values())]:
        quota[lab] += 1
    return quota


def build(task: dict) -> tuple[list[dict], list[dict], list[str], dict]:
    rng = random.Random(SEED)
    labels, rows = parse(task)

    seen: dict[str, int] = {}
    kept = []
    for i, utterance, label in rows:  # drop repeated utterances (case-insensitive)
        key = utterance.lower()
        if key in seen:
            continue
        seen[key] = i
        kept.append((i, utterance, label))

    by_label: dict[str, list[tuple[int, str, str]]] = {lab: [] for lab in sorted(labels)}
    for row in kept:
        by_label[row[2]].append(row)
    counts = Counter({lab: len(v) for lab, v in by_label.items()})
    quota = test_quota(counts, N_TEST)

    test, train = [], []
    for lab in sorted(by_label):  # stratified: shuffle each label's examples, cut at its quota
        group = by_label[lab]
        rng.shuffle(group)
        test += group[: quota[lab]]
        train += group[quota[lab]:]
    if len(train) > MAX_TRAIN:  # cap (not reached with 693 examples)
        rng.shuffle(train)
        train = train[:MAX_TRAIN]

    documents = [{"id": f"intent-{lab}", "title": lab, "text": DESCRIPTIONS[lab]}
                 for lab in sorted(labels)]
    questions = []
    for split, group in (("test", test), ("train", train)):
        for i, utterance, label in group:
            questions.append({"id": f"intents-{i:03d}", "question": QUESTION.format(utterance=utterance),
                              "answers": [label], "split": split, "doc_ids": [f"intent-{label}"]})
    questions.sort(key=lambda q: (q["split"], q["id"]))
    stats = {"examples": len(rows), "kept": len(kept), "per_label": counts, "test_quota": quota}
    return documents, questions, sorted(labels), stats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sdist", help=f"path to {SDIST_NAME} (downloaded with pip if omitted)")
    ap.add_argument("--out", default=HERE, help="output folder (default: this script's folder)")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.sdist or pip_download(PACKAGE, SDIST_NAME, tmp, wheel=False)
        sdist_sha = sha256_file(sdist)
        raw = read_tar_member(sdist, MEMBER)
    member_sha = hashlib.sha256(raw).hexdigest()
    task = json.loads(raw.decode("utf-8"))

    documents, questions, labels, stats = build(task)
    n_train = sum(q["split"] == "train" for q in questions)
    n_test = sum(q["split"] == "test" for q in questions)
    card = {
        "name": "intents",
        "task": "classification",
        "description": ("Intent recognition: label a short voice-assistant request with one of seven "
                        "SNIPS intents (BIG-bench intent_recognition). One document per intent "
                        "holds a one-sentence description of it."),
        "source": "bigbench==1.0.0 sdist, intent_recognition/task.json",
        "license": "Apache-2.0 (BIG-bench task); utterances from the SNIPS NLU benchmark, see SOURCE.md",
        "labels": labels,
        "sdist_sha256": sdist_sha,
        "member_sha256": member_sha,
        "seed": SEED,
        "counts": {"documents": len(documents), "train": n_train, "test": n_test},
    }

    write_corpus(args.out, documents, questions, card)

    print(f"sdist sha256:  {sdist_sha}")
    print(f"member sha256: {member_sha}")
    print(f"examples: {stats['examples']}, kept after removing repeated utterances: {stats['kept']}")
    print(f"documents: {len(documents)}, questions: {n_test} test, {n_train} train")
    split_counts = Counter((q["answers"][0], q["split"]) for q in questions)
    for lab in labels:
        print(f"  {lab:24s} {stats['per_label'][lab]:4d} = {split_counts[lab, 'test']:3d} test "
              f"+ {split_counts[lab, 'train']:3d} train")
    return 0


if __name__ == "__main__":
    sys.exit(main())
