"""Questions from documents: `harness synth CORPUS --n 200 --out NEW_CORPUS`.

A chat model (harness/model/chat.py: the local runtime, or any model with the same `chat`) writes one
question/answer pair per passage of the documents, passages taken across the documents in turn, and
only the pairs that pass every filter are kept:

    unparsed            the reply has no "Question: ... / Answer: ..." pair
    not_a_question      no question mark, no question word among its first words, or under 3 / over 40 words
    needs_the_passage   it points at the passage ("this passage", "the author", "the text"...) or opens with
                        a pronoun that has nothing to refer to ("What did he...", "It is...")
    answer_not_supported  the answer is not in the passage: short answers (up to 5 words) must appear in it
                        word for word after SQuAD normalisation (a possessive "'s" aside); longer ones must share
                        80% of their words and 60% of their distinct word pairs with it
    answer_too_long     over 30 words: a copied paragraph, not an answer
    answer_is_a_question  the answer ends with a question mark: a question copied from the passage ("Q. Do you
                        miss being an entrepreneur?" for "What is the most forward-thinking agency?")
    answer_in_question  every word of the answer is already in the question ("Who is Alice Stone?" / "Alice Stone")
    question_not_grounded  the question names something (a capitalised word or a number) that neither the
                        passage nor its document's title mentions: it asks about something else
    duplicate           the same question again, or one whose MiniLM embedding has cosine >= 0.90 with a kept one
    round_trip_failed   (--round-trip) the model, given the passage, does not answer its own question right
    surplus             passed every filter after --n pairs were already kept

The pairs are split train/test by a seeded hash of their id (the test share as the corpus loader's
default, 0.3); `--paraphrases K` then asks the model for K rewordings of each train question (Ovadia et
al., EMNLP 2024: fine-tuning injects facts when it sees them stated in several ways), kept when they
pass the question filters, say the same thing (cosine >= 0.80 with the original) and are not a copy.

The output is a corpus folder that `harness corpus check` accepts: the documents (the same files,
copied), questions.jsonl (each row "synthetic": true, with its doc_ids and the source span),
benchmark.json ("synthetic": {...}, which every report on it shows at the top) and synth.json, the
generation record: model, prompts, seed, and every count (generated = kept + dropped, per reason).

The filters are English heuristics tuned for precision: a good question is sometimes dropped, so
that what is kept can be trusted; with the packaged 135M model most pairs are dropped, and the record
says how many. A stronger model goes through the same filters.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import re
import shutil
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from harness.analysis.scoring import contains, extract_answer, normalize, token_f1
from harness.core.errors import ConfigError, HarnessError
from harness.core.types import Document
from harness.data.chunks import chunk_spans, chunk_text
from harness.data.docids import file_id

PROMPT_VERSION = "synth-3"  # bump when a prompt or filter changes: it is in synth.json

# Passages of ~120 words (~160 tokens): one or two facts a question can be about, and short enough
# that the 135M model's 8k-token context and a 2-core CPU's prefill (~500 tokens/s) are no limit.
PASSAGE_WORDS = 120
# Shorter passages (page headers, captions, a lone heading) hold too little to ask about.
MIN_PASSAGE_WORDS = 25
MAX_NEW_TOKENS = 96  # a question and a short answer; a stronger model's sentence answer fits too

# Near-duplicate questions: cosine of all-MiniLM-L6-v2 embeddings. Measured on SQuADShifts NYT: of 994
# pairs of different questions about the same paragraph, 1.6% reach 0.90 (median 0.43; "When did
# Mr. Mora die?" / "What did Mr. Mora die of?" reach 0.97, which no threshold separates); 7 of 8
# hand-made rewordings of one question reach it (0.88 to 0.99, median 0.96).
DEDUP_THRESHOLD = 0.90
# A paraphrase must still ask the same thing: 90% of the different-question pairs above are below 0.75,
# every hand-made rewording above 0.87.
PARAPHRASE_MIN_SIMILARITY = 0.80
SHORT_ANSWER_WORDS = 5        # up to this many words an answer must appear in the passage as it is
LONG_ANSWER_SUPPORT = 0.8     # longer (sentence) answers: share of their words found in the passage
# ...and share of their distinct word pairs (bigrams, after normalisation; a repeated pair counts once).
# Words alone let through an answer built of the passage's words in another order: SmolLM2-135M on NYT
# (synth-2) wrote "Eileen Mora's daughter, Eileen Mora's daughter, was a daughter of her father's wife,
# Ernesta Mora" (all its words in the passage, 5 of its 11 pairs: 0.45), which is false; a sentence that
# restates the question around a copied span keeps most of its pairs ("Mario Draghi, the president of the
# European Central Bank, is the leader of the European Central Bank": 7 of 9, 0.78; "The bridge was opened
# by mayor Alice Stone in 1932" about "opened in 1932 by mayor Alice Stone": 6 of 8, 0.75).
LONG_ANSWER_BIGRAMS = 0.6
MAX_ANSWER_WORDS = 30
# 3 words: "Who is Mandiant?" stands on its own (a minimum of 4 dropped it on the NYT passages); the shorter
# questions a small model writes without a name ("What is it?") fail needs_the_passage instead.
MIN_QUESTION_WORDS, MAX_QUESTION_WORDS = 3, 40
ROUND_TRIP_F1 = 0.5           # the model's answer from the passage counts as right at this token F1 (or containing it)
MAX_PARAPHRASES = 5           # one instruction each (greedy decoding gives one reply per prompt)

SYSTEM = "You write exam questions about documents. You follow the requested format exactly."
GENERATE = (
    "Passage{title}:\n\"\"\"\n{passage}\n\"\"\"\n\n"
    "Write one question that this passage answers, and the answer.\n"
    "- The question must make sense to someone who has not seen the passage: name what it is about, and "
    "never say \"the passage\", \"the text\" or \"the author\".\n"
    "- The answer is a short phrase copied from the passage.\n"
    "Reply in exactly this form:\nQuestion: <the question>\nAnswer: <the answer>"
)
# One worked example as an earlier chat turn. Without it the packaged 135M model answered all 28 of 28
# NYT passages with a description of the passage ("The passage is about...") and no question (synth-1,
# 2026-12-02); as the common prefix of every prompt, it is computed once (the runtime's shared-prefix cache).
DEMO_PASSAGE = ("The Harbor City bridge was opened in 1932 by mayor Alice Stone. It spans the Gray River and "
                "carries four lanes of traffic; its steel came from mills in Pittsburgh.")
DEMO_PAIR = "Question: Who opened the Harbor City bridge in 1932?\nAnswer: mayor Alice Stone"
ROUND_TRIP_SYSTEM = "You answer questions from a passage with a short phrase copied from it."
ROUND_TRIP = "Passage:\n\"\"\"\n{passage}\n\"\"\"\n\nQuestion: {question}\nAnswer with a short phrase from the passage."
PARAPHRASE_SYSTEM = "You rewrite questions. You reply with the rewritten question only."
PARAPHRASE_STYLES = (
    "Rewrite this question with different words, keeping its meaning.",
    "Ask the same thing as this question, starting it with a different word.",
    "Rewrite this question in a more formal style, keeping its meaning.",
    "Rewrite this question as a short, plain question with the same meaning.",
    "Ask this question again with its parts in another order, keeping its meaning.",
)
PARAPHRASE = "{style}\nQuestion: {question}\nAnswer: {answer}\nRewritten question:"

DROP_REASONS = {
    "unparsed": "the reply has no 'Question: ... Answer: ...' pair",
    "not_a_question": f"no question mark, no question word among its first 6 words, or not "
                      f"{MIN_QUESTION_WORDS} to {MAX_QUESTION_WORDS} words",
    "needs_the_passage": "refers to the passage or the author, or opens with a pronoun that refers to nothing",
    "answer_not_supported": f"the answer is not in the passage (answers up to {SHORT_ANSWER_WORDS} words word for "
                            f"word after normalisation, longer ones {LONG_ANSWER_SUPPORT:.0%} of their words and "
                            f"{LONG_ANSWER_BIGRAMS:.0%} of their distinct word pairs)",
    "answer_too_long": f"answer over {MAX_ANSWER_WORDS} words",
    "answer_is_a_question": "the answer ends with a question mark",
    "answer_in_question": "every word of the answer is already in the question",
    "question_not_grounded": "the question names something (a capitalised word or a number) that neither the passage "
                             "nor its document's title mentions",
    "duplicate": f"the same question as a kept one, or MiniLM cosine >= the dedup threshold ({DEDUP_THRESHOLD})",
    "round_trip_failed": f"given the passage, the model's answer is not the pair's (token F1 < {ROUND_TRIP_F1} "
                         "and neither contains the other)",
    "surplus": "passed every filter after --n pairs were kept",
}
PARAPHRASE_DROP_REASONS = {
    "unparsed": "an empty reply",
    "not_a_question": DROP_REASONS["not_a_question"],
    "needs_the_passage": DROP_REASONS["needs_the_passage"],
    "answer_in_question": DROP_REASONS["answer_in_question"],
    "question_not_grounded": DROP_REASONS["question_not_grounded"],
    "copy": "the original question again, or an earlier paraphrase of it",
    "different_meaning": f"MiniLM cosine with the original below {PARAPHRASE_MIN_SIMILARITY}",
}


@dataclass(frozen=True)
class SynthConfig:
    n: int = 200                     # pairs to keep
    seed: int = 0                    # passage order and the train/test split
    paraphrases: int = 0             # rewordings of each train question (0 to MAX_PARAPHRASES)
    round_trip: bool = False         # keep only pairs the model answers right from their passage (a call each)
    test_ratio: float = 0.3          # share of kept pairs that are test questions (the corpus loader's default)
    passage_words: int = PASSAGE_WORDS
    dedup_threshold: float = DEDUP_THRESHOLD
    max_new_tokens: int = MAX_NEW_TOKENS
    max_passages: int | None = None  # passages tried at most (None: as many as it takes, up to every passage)

    def __post_init__(self):
        def positive(name):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"synth {name} must be a positive integer, got {v!r}")

        for name in ("n", "passage_words", "max_new_tokens"):
            positive(name)
        if self.max_passages is not None:
            positive("max_passages")
        if isinstance(self.paraphrases, bool) or not isinstance(self.paraphrases, int) \
                or not 0 <= self.paraphrases <= MAX_PARAPHRASES:
            raise ConfigError(f"--paraphrases must be 0 to {MAX_PARAPHRASES} (one instruction each), "
                              f"got {self.paraphrases!r}")
        if not isinstance(self.test_ratio, (int, float)) or isinstance(self.test_ratio, bool) \
                or not 0 < self.test_ratio < 1:
            raise ConfigError(f"--test-ratio must be in (0, 1), got {self.test_ratio!r}")
        if not isinstance(self.dedup_threshold, (int, float)) or not 0 < self.dedup_threshold <= 1:
            raise ConfigError(f"--dedup-threshold must be in (0, 1], got {self.dedup_threshold!r}")
        if self.passage_words < MIN_PASSAGE_WORDS:
            raise ConfigError(f"--passage-words must be at least {MIN_PASSAGE_WORDS}, got {self.passage_words}")


@dataclass(frozen=True)
class Passage:
    doc: Document
    start: int  # character offsets in doc.text
    end: int

    @property
    def text(self) -> str:
        return chunk_text(self.doc.text, self.start, self.end)


@dataclass
class Pair:
    passage: Passage
    reply: str
    question: str = ""
    answer: str = ""
    dropped: str | None = None
    round_trip_answer: str | None = None
    paraphrases: list[str] = field(default_factory=list)


# -- the filters (plain functions of text: each is tested on hand-made pairs) -----------------------------

_PAIR = re.compile(r"(?:^|\n)\W*(?:question|q)\s*[:.-]\s*(?P<q>.+?)\s*\n+\W*(?:answer|a)\s*[:.-]\s*(?P<a>[^\n]+)",
                   re.IGNORECASE | re.DOTALL)


def parse_pair(reply: str) -> tuple[str, str] | None:
    """(question, answer) from a reply "Question: ...\\nAnswer: ...", or None."""
    m = _PAIR.search(reply.replace("\r", ""))
    if not m:
        return None
    q = " ".join(m.group("q").split()).strip(" *\"'")
    a = " ".join(m.group("a").split()).strip(" *\"'")
    a = re.sub(r"[.;,]+$", "", a).strip()
    return (q, a) if q and a else None


_QUESTION_WORDS = {"what", "who", "whom", "whose", "which", "when", "where", "why", "how", "is", "are", "was",
                   "were", "do", "does", "did", "can", "could", "should", "would", "will", "has", "have", "had",
                   "name", "list"}
_WORD = re.compile(r"[A-Za-z0-9][\w'-]*")


def question_problem(question: str) -> str | None:
    """"not_a_question", "needs_the_passage" or None."""
    words = _WORD.findall(question)
    if (not question.rstrip().endswith("?") or not MIN_QUESTION_WORDS <= len(words) <= MAX_QUESTION_WORDS
            or not {w.lower() for w in words[:6]} & _QUESTION_WORDS):
        return "not_a_question"
    if needs_the_passage(question):
        return "needs_the_passage"
    return None


_PASSAGE_REF = re.compile(
    r"\b(?:(?:this|the|that|above|following|given|provided)\s+(?:passage|text|article|excerpt|paragraph|"
    r"document|context|extract|snippet|author|writer|narrator)s?\b|\bauthor's\b|according to (?:it|them)\b|"
    r"(?:mentioned|described|stated|discussed|shown) (?:above|here|earlier|below))", re.IGNORECASE)
_OPENING_PRONOUN = re.compile(r"^\W*(?:he|she|it|they|his|her|its|their|this|these|those)\b", re.IGNORECASE)
_WH_PRONOUN = re.compile(
    r"^\W*(?:what|who|whom|which|when|where|why|how)\s+(?:\w+\s+)?(?:is|was|are|were|do|does|did|has|have|had|"
    r"can|could|will|would|should)\s+(?:it|this|these|those|that|he|she|they)\b", re.IGNORECASE)
_PERSONAL = re.compile(r"\b(?:he|she|they|him|his|her|hers|them|their|theirs)\b", re.IGNORECASE)


def needs_the_passage(question: str) -> bool:
    """Whether a question only makes sense beside its passage: it names the passage or its author,
    opens with a pronoun, or uses he/she/they (him, her, their...) before naming anyone (no
    capitalised word other than the first one precedes it)."""
    if _PASSAGE_REF.search(question) or _OPENING_PRONOUN.search(question) or _WH_PRONOUN.search(question):
        return True
    m = _PERSONAL.search(question)
    if m:
        before = _WORD.findall(question[:m.start()])[1:]
        return not any(w[:1].isupper() for w in before)
    return False


def answer_problem(question: str, answer: str, passage: str) -> str | None:
    """"answer_too_long", "answer_is_a_question", "answer_not_supported", "answer_in_question" or None."""
    a_words = normalize(answer).split()
    if not a_words:
        return "answer_not_supported"
    if len(answer.split()) > MAX_ANSWER_WORDS:
        return "answer_too_long"
    if answer.rstrip().endswith("?"):  # kept one of 8 pairs on 40 NYT passages before this filter (synth-4)
        return "answer_is_a_question"
    if not supported(answer, passage):
        return "answer_not_supported"
    if set(a_words) <= set(normalize(question).split()):
        return "answer_in_question"
    return None


# A possessive ending is not part of the name: "University of California, Los Angeles" is copied from
# "the University of California, Los Angeles's Higher Education Research Institute", which SQuAD
# normalisation makes "angeless" (a correct NYT answer was dropped for it, synth-2).
_POSSESSIVE = re.compile(r"(?<=\w)['’]s\b")


def _words(text: str) -> list[str]:
    return normalize(_POSSESSIVE.sub("", text)).split()


def supported(answer: str, passage: str) -> bool:
    """Short answers appear in the passage word for word (SQuAD normalisation, possessive "'s" ignored);
    longer ones share LONG_ANSWER_SUPPORT of their words and LONG_ANSWER_BIGRAMS of their distinct word
    pairs with it."""
    a, p = _words(answer), _words(passage)
    if not a:
        return False
    if len(a) <= SHORT_ANSWER_WORDS:
        return f" {' '.join(a)} " in f" {' '.join(p)} "
    have = set(p)
    if sum(w in have for w in a) / len(a) < LONG_ANSWER_SUPPORT:
        return False
    pairs = set(zip(a, a[1:]))
    return len(pairs & set(zip(p, p[1:]))) / len(pairs) >= LONG_ANSWER_BIGRAMS


# Names and numbers a question uses must come from its passage (or its document's title). SmolLM2-135M,
# given the worked example, asked "Who opened the Harbor City bridge in 2016?" about a passage on
# Afghanistan, and "Who played the Flyers in 2022?" about one that has no 2022 (2 of the 9 pairs that
# passed every other filter on 39 NYT passages, synth-2). Measured on the 746 human-written questions of
# squadshifts_nyt against their own paragraph and title, this drops 36 (4.8%): 12 of them misspell a
# name ("Mr. Menedez"), the others bring knowledge from outside the paragraph ("China", "Europe") or
# capitalise a common noun ("the Law Practice"). A precision filter, like the others.
_RUN = re.compile(r"[^\W_]+")
_TOKEN = re.compile(r"[^\W_][\w'’.-]*")
_TITLES = {"mr", "mrs", "ms", "dr", "st", "jr", "sr"}


def _fold(text: str) -> str:
    """Lower case without accents ("Cézanne" = "Cezanne")."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).lower()


def ungrounded(question: str, passage: str, title: str = "") -> list[str]:
    """The words of `question` after its first that name something (capitalised, not an all-capitals
    acronym; or holding a digit) and that neither `passage` nor `title` has, a plural "s" either way."""
    have = set(_RUN.findall(_fold(f"{passage} {title}")))

    def known(run: str) -> bool:
        return run in have or f"{run}s" in have or (run.endswith("s") and run[:-1] in have)

    out = []
    for w in _TOKEN.findall(question)[1:]:
        if not (any(c.isdigit() for c in w) or (w[:1].isupper() and not w.replace(".", "").isupper())):
            continue
        runs = [r for r in _RUN.findall(_fold(w)) if r != "s" and r not in _TITLES]
        if not all(known(r) for r in runs):
            out.append(w)
    return out


def round_trip_ok(output: str, question: str, answer: str) -> bool:
    """The model's answer from the passage matches the pair's: token F1 >= ROUND_TRIP_F1 on the
    extracted answer, or either contains the other after normalisation (possessive "'s" ignored, as in
    `supported`: SmolLM2 answered "The University of California, Los Angeles's Higher Education Research
    Institute..." to its own pair "University of California, Los Angeles", and was failed for it, synth-2)."""
    output, answer = _POSSESSIVE.sub("", output), _POSSESSIVE.sub("", answer)
    got = extract_answer(output, question)
    return (token_f1(got, [answer]) >= ROUND_TRIP_F1 or contains(output, [answer]) == 1.0
            or (bool(normalize(got)) and normalize(got) in normalize(answer)))


def near_duplicates(vectors, threshold: float, kept=None) -> list[bool]:
    """For each row of `vectors` (L2-normalised), whether it is within `threshold` cosine of a row
    before it that was not itself a duplicate, or of a row of `kept`."""
    import numpy as np

    vectors = np.asarray(vectors, dtype=np.float32)
    pool = [np.asarray(v, dtype=np.float32) for v in (kept if kept is not None else [])]
    out = []
    for v in vectors:
        dup = bool(pool) and float(np.max(np.stack(pool) @ v)) >= threshold
        out.append(dup)
        if not dup:
            pool.append(v)
    return out


# -- passages ------------------------------------------------------------------------------------------


def passages(documents: Sequence[Document], words: int, seed: int) -> list[Passage]:
    """Every passage of `words` words (no overlap; shorter than MIN_PASSAGE_WORDS left out), ordered
    so that the documents take turns: each file gives one passage (a random one of its own, pages and
    sections together) before any gives a second; the files' order is shuffled by `seed`."""
    rng = random.Random(seed)
    by_file: dict[str, list[Passage]] = {}
    for doc in documents:
        for start, end in chunk_spans(doc.text, words, 0):
            if len(doc.text[start:end].split()) >= MIN_PASSAGE_WORDS:
                by_file.setdefault(file_id(doc.id), []).append(Passage(doc, start, end))
    queues = list(by_file.values())
    rng.shuffle(queues)
    for q in queues:
        rng.shuffle(q)
    out = []
    while queues:
        out += [q.pop() for q in queues]
        queues = [q for q in queues if q]
    return out


# -- the run -----------------------------------------------------------------------------------------------


def _messages(system: str, user: str) -> list[dict]:
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def generate_prompt(p: Passage) -> list[dict]:
    title = f" (from {p.doc.title})" if p.doc.title else ""
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": GENERATE.format(title=" (from a city guide)", passage=DEMO_PASSAGE)},
            {"role": "assistant", "content": DEMO_PAIR},
            {"role": "user", "content": GENERATE.format(title=title, passage=p.text)}]


def pair_id(p: Pair) -> str:
    key = f"{p.passage.doc.id}\0{p.passage.start}\0{p.question}"
    return "syn-" + hashlib.sha256(key.encode()).hexdigest()[:12]


class Synthesizer:
    """Generate, filter, split and paraphrase; `write` puts the corpus folder on disk."""

    def __init__(self, chat, encode: Callable[[list[str]], "object"], config: SynthConfig, log=print):
        self.chat, self.encode, self.config, self.log = chat, encode, config, log
        self.pairs: list[Pair] = []  # every generated pair, dropped or kept, in generation order
        self.kept: list[Pair] = []
        self.kept_vectors: list = []
        self.passages_tried = 0
        self.seconds = {"generate": 0.0, "filter": 0.0, "round_trip": 0.0, "paraphrase": 0.0}
        self.paraphrase_counts = {"asked": 0, "kept": 0, "dropped": dict.fromkeys(PARAPHRASE_DROP_REASONS, 0)}

    def _replies(self, conversations: list[list[dict]], what: str) -> list[str]:
        from harness.model.chat import reply_texts

        t0 = time.perf_counter()
        out = reply_texts(self.chat, conversations, self.config.max_new_tokens)
        self.seconds[what] += time.perf_counter() - t0
        return out

    def run(self, candidates: list[Passage]) -> None:
        c = self.config
        limit = min(len(candidates), c.max_passages or len(candidates))
        rounds = 0
        while len(self.kept) < c.n and self.passages_tried < limit:
            rounds += 1
            need = c.n - len(self.kept)
            rate = len(self.kept) / max(len(self.pairs), 1) if self.pairs else None
            # first round: 3 passages per wanted pair; then as many as the keep rate so far says, plus a fifth
            size = 3 * need if rate is None else math.ceil(1.2 * need / max(rate, 0.05))
            size = max(16, min(size, limit - self.passages_tried))
            batch = candidates[self.passages_tried:self.passages_tried + size]
            self.passages_tried += len(batch)
            self._round(batch)
            self.log(f"round {rounds}: {len(batch)} passages, {len(self.kept)} of {c.n} pairs kept so far "
                     f"({len(self.pairs)} generated)")

    def _round(self, batch: list[Passage]) -> None:
        replies = self._replies([generate_prompt(p) for p in batch], "generate")
        t0 = time.perf_counter()
        fresh = [Pair(p, r) for p, r in zip(batch, replies)]
        self.pairs += fresh
        alive = []
        for pair in fresh:
            parsed = parse_pair(pair.reply)
            if parsed is None:
                pair.dropped = "unparsed"
                continue
            pair.question, pair.answer = parsed
            pair.dropped = (question_problem(pair.question)
                            or answer_problem(pair.question, pair.answer, pair.passage.text)
                            or ("question_not_grounded" if ungrounded(pair.question, pair.passage.text,
                                                                      pair.passage.doc.title) else None))
            if pair.dropped is None:
                alive.append(pair)
        alive, vectors = self._dedup(alive)
        self.seconds["filter"] += time.perf_counter() - t0
        if self.config.round_trip and alive:
            outs = self._replies([_messages(ROUND_TRIP_SYSTEM, ROUND_TRIP.format(passage=p.passage.text,
                                                                                  question=p.question))
                                  for p in alive], "round_trip")
            for pair, out in zip(alive, outs):
                pair.round_trip_answer = out
                if not round_trip_ok(out, pair.question, pair.answer):
                    pair.dropped = "round_trip_failed"
        for pair, vec in zip(alive, vectors):
            if pair.dropped is not None:
                continue
            if len(self.kept) >= self.config.n:
                pair.dropped = "surplus"
                continue
            self.kept.append(pair)
            self.kept_vectors.append(vec)

    def _dedup(self, alive: list[Pair]) -> tuple[list[Pair], list]:
        """Drops exact and near-duplicate questions (against the kept ones and each other); returns
        the survivors and their embeddings."""
        if not alive:
            return [], []
        seen = {normalize(p.question) for p in self.kept}
        vecs = self.encode([p.question for p in alive])
        dup = near_duplicates(vecs, self.config.dedup_threshold, self.kept_vectors)
        out, vectors = [], []
        for pair, vec, is_dup in zip(alive, vecs, dup):
            key = normalize(pair.question)
            if is_dup or key in seen:
                pair.dropped = "duplicate"
                continue
            seen.add(key)
            out.append(pair)
            vectors.append(vec)
        return out, vectors

    def split(self) -> dict[str, str]:
        """id -> "train" or "test": the test_ratio share with the lowest seeded hash of the id is test."""
        ids = [pair_id(p) for p in self.kept]
        n_test = max(1, round(self.config.test_ratio * len(ids))) if ids else 0
        rank = sorted(ids, key=lambda i: hashlib.sha256(f"{self.config.seed}\0{i}".encode()).digest())
        test = set(rank[:n_test])
        return {i: "test" if i in test else "train" for i in ids}

    def paraphrase(self, train: list[Pair]) -> None:
        """K rewordings of each train question, filtered (PARAPHRASE_DROP_REASONS)."""
        k = self.config.paraphrases
        if not k or not train:
            return
        asks = [(pair, style) for pair in train for style in PARAPHRASE_STYLES[:k]]
        replies = self._replies([_messages(PARAPHRASE_SYSTEM, PARAPHRASE.format(style=s, question=p.question,
                                                                                 answer=p.answer))
                                 for p, s in asks], "paraphrase")
        counts = self.paraphrase_counts
        counts["asked"] += len(asks)
        texts = [_first_question(r) for r in replies]
        vecs = self.encode([t or "-" for t in texts] + [p.question for p in train])
        original = {id(p): vecs[len(texts) + i] for i, p in enumerate(train)}
        for (pair, _), text, vec in zip(asks, texts, vecs[:len(texts)]):
            why = None
            if not text:
                why = "unparsed"
            else:
                why = question_problem(text)
                if why is None and set(normalize(pair.answer).split()) <= set(normalize(text).split()):
                    why = "answer_in_question"
                if why is None and ungrounded(text, pair.passage.text, pair.passage.doc.title):
                    why = "question_not_grounded"  # a rewording may bring in a name or number of its own
                if why is None and normalize(text) in {normalize(q) for q in [pair.question, *pair.paraphrases]}:
                    why = "copy"
                if why is None and float(vec @ original[id(pair)]) < PARAPHRASE_MIN_SIMILARITY:
                    why = "different_meaning"
            if why:
                counts["dropped"][why] += 1
            else:
                pair.paraphrases.append(text)
                counts["kept"] += 1

    # -- the record and the folder ------------------------------------------------------------------

    def counts(self) -> dict:
        dropped = dict.fromkeys(DROP_REASONS, 0)
        for p in self.pairs:
            if p.dropped:
                dropped[p.dropped] += 1
        generated = len(self.pairs)
        return {"passages_tried": self.passages_tried, "generated": generated, "kept": len(self.kept),
                "dropped": dropped, "keep_rate": round(len(self.kept) / generated, 4) if generated else None}

    def examples(self, per_reason: int = 3) -> dict:
        """A few dropped pairs per reason, to read what the filters caught."""
        out: dict[str, list] = {}
        for p in self.pairs:
            if p.dropped and len(out.setdefault(p.dropped, [])) < per_reason:
                out[p.dropped].append({"doc_id": p.passage.doc.id, "question": p.question, "answer": p.answer,
                                       "reply": p.reply[:300],
                                       **({"round_trip_answer": p.round_trip_answer[:200]}
                                          if p.round_trip_answer is not None else {})})
        return out


def _first_question(reply: str) -> str:
    """The rewritten question of a paraphrase reply: its first line with text, without a label."""
    for line in reply.splitlines():
        line = re.sub(r"^\W*(?:rewritten question|question|q)\s*[:.-]\s*", "", line.strip(), flags=re.IGNORECASE)
        line = " ".join(line.split()).strip(" *\"'")
        if line:
            return line
    return ""


def _answer_start(doc: Document, p: Pair) -> int | None:
    """Where the answer sits in its document (case-insensitive, within the passage; any apostrophe matches
    any other, "'" for "’"), or None."""
    words = p.answer.split()
    if not words:
        return None
    pattern = r"\s+".join(re.sub(r"['’‘]", "['’‘]", re.escape(w)) for w in words)
    m = re.compile(pattern, re.IGNORECASE).search(doc.text, p.passage.start, p.passage.end)
    return m.start() if m else None


def synthesize(source: str | Path, out: str | Path, chat, encode: Callable[[list[str]], "object"],
               config: SynthConfig = SynthConfig(), log=print) -> dict:
    """Write a corpus of generated questions about the documents of `source` (a corpus folder or a
    plain folder of document files) to the new folder `out`; returns the generation record (also
    out/synth.json). `chat`: a ChatModel (harness/model/chat.py); `encode(texts)`: L2-normalised
    embeddings (MiniLM by default, see cli)."""
    from harness.data.corpus import check_corpus, load_documents_only

    source, out = Path(source), Path(out)
    _check_out(out)
    documents, skipped, where = load_documents_only(source)
    candidates = passages(documents, config.passage_words, config.seed)
    if not candidates:
        raise HarnessError(f"{where}: no passage of {MIN_PASSAGE_WORDS} words or more in the documents: "
                           "nothing to ask about")
    log(f"{len(documents)} documents, {len(candidates)} passages of up to {config.passage_words} words; "
        f"asking {chat.name} for {config.n} question/answer pairs")
    t0 = time.perf_counter()
    syn = Synthesizer(chat, encode, config, log)
    syn.run(candidates)
    splits = syn.split()
    syn.paraphrase([p for p in syn.kept if splits[pair_id(p)] == "train"])
    counts = syn.counts()
    record = {
        "schema": PROMPT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "source": {"path": str(source.resolve()), "documents_from": str(where.resolve()),
                   "documents": len(documents), "files": len({file_id(d.id) for d in documents}),
                   "skipped_files": [[str(p.path.relative_to(where)) if p.path.is_relative_to(where) else str(p.path),
                                      p.message] for p in skipped],
                   "passages": len(candidates)},
        "model": chat.fingerprint() if hasattr(chat, "fingerprint") else {"model": chat.name},
        "embedder": getattr(encode, "name", None),
        "seed": config.seed,
        "config": dataclasses.asdict(config),
        "prompts": {"system": SYSTEM, "generate": GENERATE, "demonstration": {"passage": DEMO_PASSAGE,
                                                                              "reply": DEMO_PAIR},
                    "round_trip_system": ROUND_TRIP_SYSTEM,
                    "round_trip": ROUND_TRIP, "paraphrase_system": PARAPHRASE_SYSTEM, "paraphrase": PARAPHRASE,
                    "paraphrase_styles": list(PARAPHRASE_STYLES[:config.paraphrases])},
        "filters": DROP_REASONS,
        "thresholds": {"dedup_cosine": config.dedup_threshold, "paraphrase_min_cosine": PARAPHRASE_MIN_SIMILARITY,
                       "short_answer_words": SHORT_ANSWER_WORDS, "long_answer_support": LONG_ANSWER_SUPPORT,
                       "long_answer_bigrams": LONG_ANSWER_BIGRAMS,
                       "max_answer_words": MAX_ANSWER_WORDS, "round_trip_f1": ROUND_TRIP_F1},
        "counts": counts,
        "splits": {s: sum(v == s for v in splits.values()) for s in ("train", "test")},
        "paraphrases": {**syn.paraphrase_counts, "per_pair": config.paraphrases,
                        "filters": PARAPHRASE_DROP_REASONS} if config.paraphrases else None,
        "seconds": {k: round(v, 2) for k, v in syn.seconds.items()} | {"total": round(time.perf_counter() - t0, 2)},
        "dropped_examples": syn.examples(),
    }
    if counts["kept"] == 0:
        seen = [p.reply for p in syn.pairs[:2]]
        raise HarnessError(f"none of the {counts['generated']} generated pairs passed the filters "
                           f"(dropped: {_reasons(counts['dropped'])}); try a stronger --model. First replies: "
                           + " | ".join(repr(r[:160]) for r in seen))
    _write(out, source, where, documents, syn, splits, record)
    result = check_corpus(out)
    if result.problems:  # a bug here, never the user's input: say so loudly
        raise HarnessError(f"the generated corpus {out} does not pass `harness corpus check`: {result.problems[0]}")
    log(f"kept {counts['kept']} of {counts['generated']} generated pairs ({_reasons(counts['dropped'])}); "
        f"{record['splits']['train']} train, {record['splits']['test']} test"
        + (f"; {syn.paraphrase_counts['kept']} paraphrases of {syn.paraphrase_counts['asked']} asked"
           if config.paraphrases else ""))
    return record


def _reasons(dropped: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in dropped.items() if v) or "none dropped"


class MiniLMEncoder:
    """L2-normalised sentence embeddings from the packaged all-MiniLM-L6-v2 (or a local embedder folder)."""

    def __init__(self, device: str = "cpu", embedder: str | None = None):
        from sentence_transformers import SentenceTransformer

        from harness.methods.retrieval import DEFAULT_EMBEDDER, embedder_path

        self.name = embedder or DEFAULT_EMBEDDER
        self.model = SentenceTransformer(embedder_path(self.name), device=device)

    def __call__(self, texts: list[str]):
        return self.model.encode(list(texts), batch_size=64, normalize_embeddings=True, convert_to_numpy=True,
                                 show_progress_bar=False)


def check_out(out: str | Path) -> None:
    """The generated corpus goes to a new (or empty) folder, never over anything."""
    _check_out(Path(out))


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise HarnessError(f"{out}: exists and is not an empty folder; give a new folder for the generated corpus")


def _write(out: Path, source: Path, where: Path, documents, syn: Synthesizer, splits: dict, record: dict) -> None:
    """The corpus folder, written next to `out` and renamed into place: never half-written."""
    tmp = out.parent / f".{out.name}.synth-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if where.is_file():  # documents.jsonl
            shutil.copy2(where, tmp / "documents.jsonl")
        else:
            skipped = {str(Path(r)) for r, _ in record["source"]["skipped_files"]}
            _copy_documents(where, tmp / "documents", skipped)
        rows = []
        for p in syn.kept:
            qid = pair_id(p)
            doc = p.passage.doc
            src = {"doc_id": doc.id, "start": p.passage.start, "end": p.passage.end,
                   "answer_start": _answer_start(doc, p)}
            rows.append({"id": qid, "question": p.question, "answers": [p.answer], "split": splits[qid],
                         "doc_ids": [doc.id], "synthetic": True, "source": src})
            for j, text in enumerate(p.paraphrases, 1):
                rows.append({"id": f"{qid}-p{j}", "question": text, "answers": [p.answer], "split": "train",
                             "doc_ids": [doc.id], "synthetic": True, "paraphrase_of": qid, "source": src})
        with open(tmp / "questions.jsonl", "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        counts = record["counts"]
        meta = {"name": out.name, "task": "extractive_qa",
                "description": f"Questions generated by {record['model'].get('model', '?')} from the documents of "
                               f"{source.name} with `harness synth` ({counts['kept']} of {counts['generated']} "
                               "generated pairs kept by its filters; synth.json has the record).",
                "synthetic": {"model": record["model"].get("model"), "generated": counts["generated"],
                              "kept": counts["kept"], "record": "synth.json", "prompt_version": PROMPT_VERSION}}
        (tmp / "benchmark.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        (tmp / "synth.json").write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        if out.exists():
            out.rmdir()  # empty (checked before the work)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _copy_documents(src: Path, dst: Path, skipped: set[str]) -> None:
    """The files the documents came from, at the same relative paths (so they load to the same ids):
    every file that was not skipped; hidden files and the corpus's own records are left out."""
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if any(part.startswith(".") for part in rel.parts) or str(rel) in skipped or not path.is_file():
            continue
        if path.is_symlink() and not path.resolve().is_relative_to(src.resolve()):
            continue
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
