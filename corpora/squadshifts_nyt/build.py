#!/usr/bin/env python3
"""Build the ``squadshifts_nyt`` corpus (documents, questions, benchmark card).

Source: the SQuADShifts New York Times split (Miller et al., ICML 2020,
CC BY 4.0) as shipped in the PyPI source archive ``bigbench==1.0.0``
(member ``bigbench-1.0.0/bigbench/benchmark_tasks/squad_shifts/nyt_v1.0.json``).

Usage::

    python corpora/squadshifts_nyt/build.py [--sdist PATH]

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
import unicodedata
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # corpora/, for the shared buildkit module
from buildkit import pip_download, read_tar_member, sha256_file, write_corpus  # noqa: E402

PACKAGE = "bigbench==1.0.0"
SDIST_NAME = "bigbench-1.0.0.tar.gz"
MEMBER = "bigbench-1.0.0/bigbench/benchmark_tasks/squad_shifts/nyt_v1.0.json"
SEED = 20261127
TARGET_PARAGRAPHS = 300
N_TEST = 200
MAX_TRAIN = 1000
MIN_QUESTION_WORDS = 4
MAX_ANSWER_WORDS = 8

# Questions that mention any of these (case-insensitive, whole words) are
# assumed to lean on their passage and are dropped.
_REFERENCE_WORDS = [
    "it", "its", "this", "these", "those",
    "he", "she", "him", "his", "her", "hers",
    "they", "them", "their", "theirs", "thier",  # "thier": a common misspelling
    "we", "our", "you", "your", "i", "me", "my",
    "the author", "the writer", "the article", "the passage", "the text",
    "the story", "the reporter", "the paragraph",
    "mentioned",  # "What American city is mentioned?"
]
REFERENCE_RE = re.compile(
    r"\b(?:" + "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in _REFERENCE_WORDS) + r")\b",
    re.IGNORECASE,
)
# "us" is matched case-sensitively ("us", "Us") so that "US" (the country)
# does not drop a question.
US_RE = re.compile(r"\b[uU]s\b")
_FIRST_LETTER_RE = re.compile(r"[^\W\d_]")


def referential(question: str) -> bool:
    return bool(REFERENCE_RE.search(question) or US_RE.search(question))


def has_anchor(question: str) -> bool:
    """True if some word after the first starts with a capital letter.

    SQuAD questions were written next to their passage, so many lean on a
    definite description ("Where is the hospital located?"). Requiring a
    capitalised word (a name, place, organisation, title...) past the first
    word keeps the questions that say what they are about.
    """
    for word in question.split()[1:]:
        m = _FIRST_LETTER_RE.search(word)
        if m and m.group(0).isupper():
            return True
    return False


# ---------------------------------------------------------------------------
# Titles


_URL_RE = re.compile(r"^https?://(?:www\.)?nytimes\.com/(?:\d{4}/\d\d/\d\d/)?(?:[a-z0-9-]+/)*([a-z0-9-]+)\.html$")
# A word of the text: letters/digits, an optional apostrophe suffix ("China’s",
# "won’t"), and optional hyphenated parts ("Dodd-Frank", "Wi-Fi").
_PART = r"[^\W_]+(?:['’][^\W\d_]+)?"
_TOKEN_RE = re.compile(_PART + r"(?:-" + _PART + r")*")
_APOSTROPHES = "'’"
# Words after which a full stop does not end a sentence.
_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "st", "jr", "sr", "gen", "gov", "sen", "rep", "lt",
    "col", "capt", "sgt", "prof", "rev", "vs", "no", "inc", "corp", "co", "ft", "mt",
    "jan", "feb", "aug", "sept", "oct", "nov", "dec",
}


def _key(word: str) -> str:
    """Slug spelling of a word: accents, apostrophes and case dropped."""
    word = unicodedata.normalize("NFKD", word)
    word = "".join(ch for ch in word if not unicodedata.combining(ch) and ch not in _APOSTROPHES)
    return word.lower()


def _sentence_start(text: str, start: int) -> bool:
    before = text[max(0, start - 40):start].rstrip()
    if not before:
        return True
    last = before[-1]
    if last in "\"“(":
        return True
    if last in "”’'" and len(before) > 1 and before[-2] in ".?!":
        return True
    if last in "?!":
        return True
    if last == ".":
        m = re.search(r"([^\W\d_]+)\.$", before)
        if m and (len(m.group(1)) == 1 or m.group(1).lower() in _ABBREVIATIONS):
            return False  # "Mr. Bratton", "Donald B. Verrilli", "U.S. Army"
        return True
    return False


def _best(forms: Counter) -> str:
    # most frequent spelling; ties go to lower case, then alphabetical order
    return sorted(forms.items(), key=lambda kv: (-kv[1], kv[0] != kv[0].lower(), kv[0]))[0][0]


def title_from_url(url: str, article_text: str) -> str:
    """Human title from the URL slug (sentence case, names capitalised).

    The slug is lower case with punctuation removed, so each run of up to
    four slug words takes the spelling it most often has in the article's own
    text, counting only occurrences that do not start a sentence or a
    quotation: "mattingly" -> "Mattingly", "new york" -> "New York",
    "dodd frank" -> "Dodd-Frank", "chinas" -> "China’s", "nba" -> "N.B.A.".
    A word ending in "s" whose stem is a capitalised name becomes a
    possessive ("yorks" -> "York’s") unless the stem also occurs in lower
    case; "us" counts "United States" as "U.S."; "dollar70" becomes "$70". Other words
    stay as in the slug. The first word is capitalised.
    """
    m = _URL_RE.match(url)
    if not m:
        raise ValueError(f"unexpected title URL: {url}")
    words = [w for w in m.group(1).split("-") if w]

    # Spellings seen in the text, keyed by their slug form (a tuple of words).
    forms: dict[tuple, Counter] = {}

    def see(key: tuple, form: str, n: int = 1) -> None:
        forms.setdefault(key, Counter())[form] += n

    tokens = list(_TOKEN_RE.finditer(article_text))
    for i, tm in enumerate(tokens):
        if _sentence_start(article_text, tm.start()):
            continue  # casing says nothing here
        tok = tm.group(0)
        parts = tok.split("-")
        for j, part in enumerate(parts):
            if j > 0 and not part[:1].isupper() and parts[0][:1].isupper():
                continue  # the "led" of "Spike-led" says nothing about "led" alone
            see((_key(part),), part)
            stem = re.split(r"['’]", part)[0]
            if stem != part:
                see((_key(stem),), stem)
        # runs of 2-4 slug words: hyphenated tokens and space-separated names
        key, end = tuple(_key(p) for p in parts), i
        if len(key) > 1:
            see(key, tok)
        while end + 1 < len(tokens) and len(key) < 4:
            nxt = tokens[end + 1]
            if article_text[tokens[end].end():nxt.start()] != " ":
                break
            key += tuple(_key(p) for p in nxt.group(0).split("-"))
            if len(key) > 4:
                break
            end += 1
            see(key, article_text[tm.start():nxt.end()])
    for acr, n in Counter(re.findall(r"(?<![\w.])((?:[A-Z]\.){2,5})", article_text)).items():
        see((acr.replace(".", "").lower(),), acr, n)
    if "United States" in article_text:  # slugs write U.S. as "us"
        see(("us",), "U.S.", article_text.count("United States"))

    out, i = [], 0
    while i < len(words):
        for n in (4, 3, 2, 1):
            c = forms.get(tuple(words[i:i + n])) if i + n <= len(words) else None
            if c:
                out.append(_best(c))
                i += n
                break
        else:
            w = words[i]
            stem = forms.get((w[:-1],)) if w.endswith("s") else None
            if stem and _best(stem)[:1].isupper() and w[:-1] not in stem:
                out.append(_best(stem) + "’s")
            elif re.fullmatch(r"dollar\d+", w):
                out.append("$" + w[6:])
            else:
                out.append(w)
            i += 1
    if out:
        out[0] = out[0][:1].upper() + out[0][1:]
    return " ".join(out)


# ---------------------------------------------------------------------------
# Build


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
        return "pronoun or reference to the passage"
    if not has_anchor(question):
        return "no capitalised word after the first"
    return None


def build(data: dict) -> tuple[list[dict], list[dict], dict]:
    rng = random.Random(SEED)
    articles = data["data"]

    order = list(range(len(articles)))
    rng.shuffle(order)
    chosen, n_par = [], 0
    for ai in order:
        chosen.append(ai)
        n_par += len(articles[ai]["paragraphs"])
        if n_par >= TARGET_PARAGRAPHS:
            break
    chosen.sort()

    documents, candidates = [], []
    n_seen = 0
    # The source repeats some questions verbatim (one article asks each of its
    # questions up to 9 times); keep only the first of equal questions so that
    # no question text is in both splits.
    seen_questions: set[str] = set()
    dropped: Counter = Counter()
    for ai in chosen:
        art = articles[ai]
        text = "\n".join(p["context"] for p in art["paragraphs"])
        title = title_from_url(art["title"], text)
        for pi, par in enumerate(art["paragraphs"]):
            doc_id = f"nyt-{ai:04d}-p{pi:02d}"
            documents.append({"id": doc_id, "title": title, "text": par["context"].strip()})
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
                candidates.append({"id": qa["id"], "question": q, "answers": answers,
                                   "doc_ids": [doc_id]})

    rng.shuffle(candidates)
    questions = []
    for i, c in enumerate(candidates[: N_TEST + MAX_TRAIN]):
        questions.append({"id": c["id"], "question": c["question"], "answers": c["answers"],
                          "split": "test" if i < N_TEST else "train", "doc_ids": c["doc_ids"]})

    documents.sort(key=lambda d: d["id"])
    questions.sort(key=lambda q: (q["split"], q["id"]))
    stats = {"articles": len(chosen), "questions_seen": n_seen, "questions_kept": len(candidates),
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
    data = json.loads(raw.decode("utf-8"))

    documents, questions, stats = build(data)
    n_train = sum(q["split"] == "train" for q in questions)
    n_test = sum(q["split"] == "test" for q in questions)
    card = {
        "name": "squadshifts_nyt",
        "task": "extractive_qa",
        "description": ("Extractive QA over New York Times article paragraphs from SQuADShifts, "
                        "restricted to questions that read sensibly without their passage."),
        "source": "bigbench==1.0.0 sdist, squad_shifts/nyt_v1.0.json",
        "license": "CC BY 4.0",
        "sdist_sha256": sdist_sha,
        "member_sha256": member_sha,
        "seed": SEED,
        "counts": {"documents": len(documents), "train": n_train, "test": n_test},
    }

    write_corpus(args.out, documents, questions, card)

    print(f"sdist sha256:  {sdist_sha}")
    print(f"member sha256: {member_sha}")
    print(f"articles: {stats['articles']}, documents: {len(documents)}")
    print(f"questions: {stats['questions_seen']} seen, {stats['questions_kept']} kept by filter, "
          f"{n_test} test, {n_train} train")
    for reason, n in stats["dropped"].most_common():
        print(f"  dropped {n:4d}: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
