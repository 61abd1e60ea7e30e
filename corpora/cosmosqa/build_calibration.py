#!/usr/bin/env python3
"""Build ``calibration.jsonl``: answers to the cosmosqa questions labelled right or wrong by people.

It calibrates and checks the model-based metrics (``semantic``'s threshold, the ``judge``): each line
pairs a question's first gold answer (the reference) with a candidate answer whose label comes from
Cosmos QA's crowd workers, never from a model:

- label 1, ``second gold``: the question's other gold answer (written independently: the same
  meaning in other words);
- label 1, ``ni correct``: the "Correct Answer" that Natural Instructions subtask 25 shows for the
  same narrative and question, when it differs from the reference;
- label 0, ``ni incorrect``: the wrong answers of subtask 25 (Cosmos QA's distractors, written to be
  plausible; many share most of their words with the correct answer).

Source: the same ``bigbench==1.0.0`` sdist as ``build.py``, members subtask024 (answer generation,
which ``build.py`` reads; a question's id is its example index there) and subtask025 (incorrect answer
generation: ``Context: ...\\nQuestion: ...\\nCorrect Answer: ...`` -> wrong answers). Questions are
matched on their exact raw context and question text. Standard library only, deterministic.

Usage::

    python corpora/cosmosqa/build_calibration.py --sdist PATH/bigbench-1.0.0.tar.gz
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
from build import MEMBER, MEMBER_SHA256, SDIST_SHA256, dedup, detokenize  # noqa: E402
from buildkit import jsonl, read_tar_member, sha256_file, write_atomic  # noqa: E402

MEMBER_025 = ("bigbench-1.0.0/bigbench/benchmark_tasks/natural_instructions/"
              "subtask025_cosmosqa_incorrect_answer_generation/task.json")
MEMBER_025_SHA256 = "c612d88db314086905c709629b04444994d6b3cd8dc688fffb3f3158ab854699"
INPUT_025 = re.compile(r"Context: (?P<context>.*)\nQuestion: (?P<question>.*)\nCorrect Answer: (?P<correct>.*)",
                       re.DOTALL)
INPUT_024 = re.compile(r"Context: (?P<context>.*)\nQuestion: (?P<question>.*)", re.DOTALL)


def _key(context: str, question: str) -> tuple[str, str]:
    return " ".join(context.split()), " ".join(question.split())


def _same(a: str, b: str) -> bool:
    return re.sub(r"\W+", " ", a.lower()).strip() == re.sub(r"\W+", " ", b.lower()).strip()


def build(questions: list[dict], data24: dict, data25: dict) -> tuple[list[dict], dict]:
    raw24 = {}
    for i, ex in enumerate(data24["examples"]):
        m = INPUT_024.fullmatch(ex["input"])
        raw24[f"cosmosqa-q{i:04d}"] = _key(m.group("context"), m.group("question"))
    by_key: dict[tuple[str, str], list[tuple[str, list[str]]]] = {}
    for ex in data25["examples"]:
        m = INPUT_025.fullmatch(ex["input"])
        if not m:
            raise SystemExit(f"subtask025 input not understood: {ex['input'][:80]!r}")
        targets = ex["target"] if isinstance(ex["target"], list) else [ex["target"]]
        by_key.setdefault(_key(m.group("context"), m.group("question")), []).append(
            (detokenize(m.group("correct")), dedup([detokenize(t) for t in targets])))
    rows, stats = [], {"questions": len(questions), "matched": 0, "second gold": 0, "ni correct": 0,
                       "ni incorrect": 0}
    for q in questions:
        ref = q["answers"][0]
        cands = [(a, 1, "second gold") for a in q["answers"][1:]]
        found = by_key.get(raw24[q["id"]], [])
        stats["matched"] += bool(found)
        for correct, wrong in found:
            if not any(_same(correct, a) for a in q["answers"]) and not any(_same(correct, c) for c, _, _ in cands):
                cands.append((correct, 1, "ni correct"))
            for w in wrong:
                if not any(_same(w, a) for a in q["answers"]) and not any(_same(w, c) for c, _, _ in cands):
                    cands.append((w, 0, "ni incorrect"))
        for cand, label, kind in cands:
            stats[kind] += 1
            rows.append({"id": q["id"], "split": q["split"], "question": q["question"], "reference": ref,
                         "candidate": cand, "label": label, "kind": kind})
    return rows, stats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sdist", required=True, help="path to bigbench-1.0.0.tar.gz")
    ap.add_argument("--out", default=os.path.join(HERE, "calibration.jsonl"))
    args = ap.parse_args(argv)
    if sha256_file(args.sdist) != SDIST_SHA256:
        raise SystemExit(f"{args.sdist}: not the bigbench 1.0.0 sdist (sha256 differs)")
    raw24, raw25 = read_tar_member(args.sdist, MEMBER), read_tar_member(args.sdist, MEMBER_025)
    for raw, want, name in ((raw24, MEMBER_SHA256, MEMBER), (raw25, MEMBER_025_SHA256, MEMBER_025)):
        got = hashlib.sha256(raw).hexdigest()
        if got != want:
            raise SystemExit(f"{name}: sha256 {got}, expected {want}")
    with open(os.path.join(HERE, "questions.jsonl"), encoding="utf-8") as f:
        questions = [json.loads(line) for line in f if line.strip()]
    rows, stats = build(questions, json.loads(raw24), json.loads(raw25))
    write_atomic(args.out, jsonl(rows))
    print(json.dumps(stats))
    for split in ("train", "test"):
        sub = [r for r in rows if r["split"] == split]
        print(f"{split}: {len(sub)} pairs, {sum(r['label'] for r in sub)} right, "
              f"{sum(1 - r['label'] for r in sub)} wrong, {len({r['id'] for r in sub})} questions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
