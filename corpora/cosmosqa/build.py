#!/usr/bin/env python3
"""Build the ``cosmosqa`` corpus (documents, questions, benchmark card).

Source: Cosmos QA (Huang et al., EMNLP 2019, CC BY 4.0) in the answer
generation form of Natural Instructions v1 (Mishra et al., ACL 2022), as
shipped in the PyPI source archive ``bigbench==1.0.0`` (member
``bigbench-1.0.0/bigbench/benchmark_tasks/natural_instructions/subtask024_cosmosqa_answer_generation/task.json``).
Each example is a short personal narrative from a blog, a question that
needs common sense about it, and one or two crowd-written answers that are
a sentence long and were written to reuse few words of the narrative.

Usage::

    python corpora/cosmosqa/build.py [--sdist PATH]

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
SDIST_SHA256 = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"
MEMBER = ("bigbench-1.0.0/bigbench/benchmark_tasks/natural_instructions/"
          "subtask024_cosmosqa_answer_generation/task.json")
MEMBER_SHA256 = "d6a0ea85df8d409ad919fa27789d2fe53b663ae55f890fc6cf664b6795444f4c"
SEED = 20261127
N_TEST = 200
MAX_TRAIN = 600
MIN_ANSWER_WORDS = 4   # every gold answer must be at least a short sentence ("I had bad breath.")
MIN_SHARED_WORDS = 2   # content words the question shares with its narrative, so retrieval has a hook
SHINGLE_WORDS = 10     # narratives sharing a run of this many words are kept in one split
# Chosen from the gold answers' lengths in SmolLM2 tokens (p90 18, p99 26, max 39 over the 979
# answers; see SOURCE.md): p90 plus 50 % (27), rounded up to a multiple of 8.
MAX_NEW_TOKENS = 32

INPUT_RE = re.compile(r"Context: (?P<context>.*)\nQuestion: (?P<question>.*)", re.DOTALL)
# Cosmos QA was multiple choice; a few questions still point at options that are not shown.
OPTIONS_RE = re.compile(r"\bwhich (?:of|if) the following\b", re.IGNORECASE)

# Words that say nothing about which narrative a question is about: English function words,
# and the words Cosmos QA questions are built from ("What may be the reason the narrator ...").
STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have
having he her here hers herself him himself his how i if in into is it its itself just me more most
my myself no nor not now of off on once only or other our ours ourselves out over own same she should
so some such than that the their theirs them themselves then there these they this those through to
too under until up very was we were what when where which while who whom why will with would you your
yours yourself yourselves
may might must shall also even ever still get got getting go going gone went come came make made take
took let lets like likely probably possibly possible plausible reason reasons happen happened
happening happens fact facts true following statement describe something someone thing things way one
ones time person people narrator writer author speaker post posting writing story mentioned said say
says know known think thought feel feeling felt type kind sort many much well really cant dont im ive
wont didnt doesnt isnt wasnt arent
""".split())


# ---------------------------------------------------------------------------
# Text


def detokenize(text: str) -> str:
    """Undo the PTB-style tokenisation of Cosmos QA text, conservatively.

    Whitespace runs become one space; clitics join their word ("did n't" ->
    "didn't", "I ' m" -> "I'm", "it 's" -> "it's"); the space before
    . , ! ? ; : % ) ] and after ( [ $ goes. Straight double quotes are
    re-attached (the space inside each pair goes) only when a text has an even
    number of them; otherwise they stay as they are. Dashes and single quotes
    are left alone ("T - shirt", "' bedhead '").
    """
    text = " ".join(text.split())
    text = re.sub(r" n't\b", "n't", text)
    text = re.sub(r" ' ?(s|m|re|ve|ll|d)\b", r"'\1", text, flags=re.IGNORECASE)
    text = re.sub(r" ([.,!?;:%)\]])", r"\1", text)
    text = re.sub(r"([(\[$]) ", r"\1", text)
    if text.count('"') % 2 == 0 and '"' in text:
        parts = text.split('"')
        out = parts[0]
        for i, part in enumerate(parts[1:]):
            if i % 2 == 0:  # opening quote: no space after it
                out += '"' + part.lstrip()
            else:  # closing quote: no space before it
                out = out.rstrip() + '"' + part
        text = out
    return text.strip()


def content_words(text: str) -> set[str]:
    words = re.findall(r"[a-z]+", text.lower().replace("'", "").replace("’", ""))
    return {w for w in words if len(w) >= 3 and w not in STOPWORDS}


def dedup(answers: list[str]) -> list[str]:
    seen, out = set(), []
    for a in answers:
        if a and a not in seen:
            seen.add(a)
            out.append(a)
    return out


def drop_reason(context: str, question: str, answers: list[str]) -> str | None:
    """Why a question is dropped, or None if it is kept (checks in this order)."""
    if not answers:
        return "no answers"
    if OPTIONS_RE.search(question):
        return "refers to answer options that are not shown"
    if any(len(a.split()) < MIN_ANSWER_WORDS for a in answers):
        return f"an answer shorter than {MIN_ANSWER_WORDS} words"
    if len(content_words(question) & content_words(context)) < MIN_SHARED_WORDS:
        return f"shares fewer than {MIN_SHARED_WORDS} content words with its narrative"
    return None


# ---------------------------------------------------------------------------
# Build


def parse(data: dict) -> list[tuple[str, str, list[str]]]:
    """(context, question, answers) of each example, detokenised, in file order."""
    rows = []
    for i, ex in enumerate(data["examples"]):
        if set(ex) != {"input", "target"}:
            raise SystemExit(f"example {i}: unexpected keys {sorted(ex)}")
        m = INPUT_RE.fullmatch(ex["input"])
        if not m:
            raise SystemExit(f"example {i}: input is not 'Context: ...\\nQuestion: ...'")
        targets = ex["target"] if isinstance(ex["target"], list) else [ex["target"]]
        rows.append((detokenize(m.group("context")), detokenize(m.group("question")),
                     dedup([detokenize(t) for t in targets])))
    return rows


def shingles(text: str) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i:i + SHINGLE_WORDS]) for i in range(len(words) - SHINGLE_WORDS + 1)}


def group_contexts(contexts: list[str]) -> list[int]:
    """For each context, the smallest index of a context it is linked to by shared shingles."""
    parent = list(range(len(contexts)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    first: dict[tuple[str, ...], int] = {}
    for i, c in enumerate(contexts):
        for s in sorted(shingles(c)):
            j = first.setdefault(s, i)
            a, b = find(i), find(j)
            if a != b:
                parent[max(a, b)] = min(a, b)
    return [find(i) for i in range(len(contexts))]


def build(data: dict) -> tuple[list[dict], list[dict], dict]:
    rows = parse(data)

    # One document per distinct narrative, numbered by its first example.
    doc_of: dict[str, int] = {}
    for i, (context, _, _) in enumerate(rows):
        doc_of.setdefault(context, i)
    contexts = sorted(doc_of, key=doc_of.get)
    root = dict(zip(contexts, group_contexts(contexts)))

    dropped: Counter = Counter()
    seen_questions: set[str] = set()
    by_group: dict[int, list[dict]] = {}
    for i, (context, question, answers) in enumerate(rows):
        reason = drop_reason(context, question, answers)
        key = " ".join(re.findall(r"\w+", question.lower()))
        if reason is None and key in seen_questions:
            reason = "repeats an earlier question"
        if reason is not None:
            dropped[reason] += 1
            continue
        seen_questions.add(key)
        by_group.setdefault(root[context], []).append(
            {"id": f"cosmosqa-q{i:04d}", "question": question, "answers": answers,
             "doc_ids": [f"cosmosqa-{doc_of[context]:04d}"]})

    groups = sorted(by_group)
    rng = random.Random(SEED)
    rng.shuffle(groups)
    questions, split_of = [], {}
    for split, cap in (("test", N_TEST), ("train", MAX_TRAIN)):
        n = 0
        for g in groups:
            if g in split_of or n + len(by_group[g]) > cap:
                continue
            split_of[g] = split
            n += len(by_group[g])
            for q in by_group[g]:
                questions.append({"id": q["id"], "question": q["question"], "answers": q["answers"],
                                  "split": split, "doc_ids": q["doc_ids"]})
            if n == cap:
                break

    used = {q["doc_ids"][0] for q in questions}
    documents = [{"id": f"cosmosqa-{doc_of[c]:04d}", "text": c} for c in contexts
                 if f"cosmosqa-{doc_of[c]:04d}" in used]
    documents.sort(key=lambda d: d["id"])
    questions.sort(key=lambda q: (q["split"], q["id"]))
    kept = sum(len(v) for v in by_group.values())
    stats = {"examples": len(rows), "contexts": len(contexts), "groups": len(set(root.values())),
             "kept": kept, "kept_groups": len(by_group), "dropped": dropped}
    return documents, questions, stats


def percentile(sorted_values: list[int], p: float) -> int:
    """Nearest-rank percentile of an ascending list."""
    k = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sdist", help=f"path to {SDIST_NAME} (downloaded with pip if omitted)")
    ap.add_argument("--out", default=HERE, help="output folder (default: this script's folder)")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.sdist or pip_download(PACKAGE, SDIST_NAME, tmp, wheel=False)
        sdist_sha = sha256_file(sdist)
        if sdist_sha != SDIST_SHA256:
            raise SystemExit(f"{sdist}: sha256 {sdist_sha}, expected {SDIST_SHA256}")
        raw = read_tar_member(sdist, MEMBER)
    member_sha = hashlib.sha256(raw).hexdigest()
    if member_sha != MEMBER_SHA256:
        raise SystemExit(f"{MEMBER}: sha256 {member_sha}, expected {MEMBER_SHA256}")
    data = json.loads(raw.decode("utf-8"))

    documents, questions, stats = build(data)
    n_train = sum(q["split"] == "train" for q in questions)
    n_test = sum(q["split"] == "test" for q in questions)
    card = {
        "name": "cosmosqa",
        "task": "generative_qa",
        "answer_style": "sentence",
        "max_new_tokens": MAX_NEW_TOKENS,
        "description": ("Commonsense questions about short personal narratives from Cosmos QA, "
                        "answered in one sentence. The gold sentences were written to reuse few words "
                        "of the narrative, so token overlap with them understates correct answers."),
        "source": ("bigbench==1.0.0 sdist, natural_instructions/subtask024_cosmosqa_answer_generation/"
                   "task.json (Cosmos QA)"),
        "license": "CC BY 4.0",
        "sdist_sha256": sdist_sha,
        "member_sha256": member_sha,
        "seed": SEED,
        "counts": {"documents": len(documents), "train": n_train, "test": n_test},
    }

    write_corpus(args.out, documents, questions, card)

    print(f"sdist sha256:  {sdist_sha}")
    print(f"member sha256: {member_sha}")
    print(f"examples: {stats['examples']}, distinct narratives: {stats['contexts']} "
          f"in {stats['groups']} groups by shared {SHINGLE_WORDS}-word runs")
    print(f"questions kept by the filters: {stats['kept']} in {stats['kept_groups']} groups")
    for reason, n in stats["dropped"].most_common():
        print(f"  dropped {n:4d}: {reason}")
    print(f"documents: {len(documents)}, test: {n_test}, train: {n_train}")
    for split in ("test", "train", None):
        qs = [q for q in questions if split in (None, q["split"])]
        words = sorted(len(a.split()) for q in qs for a in q["answers"])
        print(f"gold answer words ({split or 'all'}, {len(words)} answers of {len(qs)} questions): "
              f"p10 {percentile(words, 10)}, median {percentile(words, 50)}, "
              f"p90 {percentile(words, 90)}, max {words[-1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
