"""`harness synth` (harness/data/synth.py): each filter drops what it should on hand-made pairs; a run with a
scripted chat model writes a corpus that `corpus check` accepts, with counts that add up, paraphrases
and the synthetic flag every report shows; the tiny model runs through the same path (and keeps nothing)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import DOCS, write_corpus

from harness import cli
from harness.core.errors import ConfigError, HarnessError
from harness.core.types import Document
from harness.data import synth
from harness.data.corpus import check_corpus, load_corpus
from harness.data.synth import (
    SynthConfig,
    answer_problem,
    near_duplicates,
    parse_pair,
    passages,
    question_problem,
    round_trip_ok,
    supported,
    ungrounded,
)

PASSAGE = ("The Harbor City bridge was opened in 1932 by mayor Alice Stone. It spans the Gray River and carries "
           "four lanes of traffic. Its steel came from the Pittsburgh mills of the Carnegie company.")


# -- each filter, on hand-made pairs -----------------------------------------------------------------------

@pytest.mark.parametrize("reply, expected", [
    ("Question: Who opened the bridge?\nAnswer: Alice Stone", ("Who opened the bridge?", "Alice Stone")),
    ("Sure!\n**Question:** Who opened the bridge?\n**Answer:** Alice Stone.",
     ("Who opened the bridge?", "Alice Stone")),
    ("Q: Who opened the bridge?\nA: Alice Stone", ("Who opened the bridge?", "Alice Stone")),
    ("question - Who opened\nthe bridge?\nanswer: Alice Stone\nMore text", ("Who opened the bridge?", "Alice Stone")),
    ("Who opened the bridge? Alice Stone", None),
    ("Question: Who opened the bridge?", None),
    ("Question: Who opened the bridge?\nAnswer:", None),
    ("", None),
])
def test_parse_pair(reply, expected):
    assert parse_pair(reply) == expected


@pytest.mark.parametrize("question, expected", [
    ("Who opened the Harbor City bridge?", None),
    ("In what year was the Harbor City bridge opened?", None),
    ("According to Alice Stone, when did the bridge open?", None),
    ("What did Alice Stone do after she became mayor?", None),  # "she" refers to a name before it
    ("The bridge was opened in 1932.", "not_a_question"),  # no question mark
    ("Bridge?", "not_a_question"),  # too short
    ("Who is Mandiant?", None),  # three words that stand on their own
    ("What is it?", "needs_the_passage"),  # three words that do not
    ("The Harbor City bridge opened in 1932 by Alice Stone?", "not_a_question"),  # no question word
    ("What does the passage say about the bridge?", "needs_the_passage"),
    ("According to the text, who opened the bridge?", "needs_the_passage"),
    ("What does the author think of the bridge?", "needs_the_passage"),
    ("Which river is mentioned above?", "needs_the_passage"),
    ("What did he open in 1932?", "needs_the_passage"),  # a pronoun with nothing before it
    ("When was it opened to traffic?", "needs_the_passage"),
    ("It was opened by whom?", "needs_the_passage"),
    ("What is this bridge called?", "needs_the_passage"),  # which bridge?
    ("What is the name of this bridge over the Gray River?", None),  # named after all
    ("What river does their bridge span?", "needs_the_passage"),
])
def test_question_filter(question, expected):
    assert question_problem(question) == expected


@pytest.mark.parametrize("question, answer, expected", [
    ("Who opened the Harbor City bridge?", "mayor Alice Stone", None),
    ("Who opened the Harbor City bridge?", "Alice Stone.", None),  # punctuation and case do not matter
    ("Who opened the Harbor City bridge?", "Bob Stone", "answer_not_supported"),
    ("When was the Harbor City bridge opened?", "1933", "answer_not_supported"),
    ("Who opened the Harbor City bridge?", "Alice", None),
    ("Who opened the Harbor City bridge?", "Ali", "answer_not_supported"),  # whole words only
    ("Where did the steel come from?", "It came from the Pittsburgh mills of the Carnegie company", None),  # 80%
    ("Where did the steel come from?", "It came from the Chicago factories of the Ford company",
     "answer_not_supported"),
    ("What does the bridge carry?", " ".join(["lanes"] * 31), "answer_too_long"),
    ("Which river does the Gray River bridge span?", "the Gray River", "answer_in_question"),
    ("Who is Alice Stone?", "Alice Stone", "answer_in_question"),
    ("What is the most forward-thinking agency?", "Do you miss the bridge?", "answer_is_a_question"),
    ("Who opened the Harbor City bridge?", "", "answer_not_supported"),
    # a sentence that restates the question around a copied span: most of its word pairs are the passage's
    ("Who opened the Harbor City bridge?", "The bridge was opened by mayor Alice Stone in 1932", None),
    # the passage's words in another order, saying something false: every word is there, few pairs are
    ("Who opened the Harbor City bridge?", "Alice Stone opened the Gray River steel mills of Harbor City",
     "answer_not_supported"),
    # repeating a true span earns no more support than saying it once
    ("What does the bridge carry?", "four lanes, four lanes, four lanes of the steel Gray River mills",
     "answer_not_supported"),
])
def test_answer_filter(question, answer, expected):
    assert answer_problem(question, answer, PASSAGE) == expected


def test_a_possessive_in_the_passage_does_not_hide_a_copied_answer():
    """NYT: "the University of California, Los Angeles's Higher Education Research Institute" holds the
    answer "University of California, Los Angeles" (SQuAD normalisation alone makes it "angeless")."""
    passage = ("Conducted by the Cooperative Institutional Research Program at the University of California, "
               "Los Angeles’s Higher Education Research Institute, the survey assesses many matters.")
    assert supported("University of California, Los Angeles", passage)
    assert supported("Los Angeles's Higher Education Research Institute", passage)
    assert not supported("University of California, San Diego", passage)
    assert not supported("Los Angeles Times", passage)


@pytest.mark.parametrize("question, title, expected", [
    ("Who opened the Harbor City bridge?", "", []),
    ("Which river does the bridge opened by mayor Alice Stone span?", "", []),
    ("In what year did the Gray River bridge open?", "", []),  # a number only when it holds a digit
    ("Who opened the bridge in 1932?", "", []),
    # the worked example's bridge, asked about a passage that never mentions it (SmolLM2 did, on NYT)
    ("Who opened the Lake Mira dam in 1932?", "", ["Lake", "Mira"]),
    ("Who opened the Harbor City bridge in 2016?", "", ["2016"]),  # an invented year
    ("Who opened the bridge in Harbor City's 1932 ceremony?", "", []),  # a possessive
    ("Which Carnegie mills made the steel of the bridge?", "", []),
    ("What did the Stones give Harbor City in 1932?", "", []),  # a plural of the passage's "Stone"
    ("What did Mr. Stone's daughter say at the opening?", "", []),  # Mr. is a title, not a name
    ("Did the US pay for the Harbor City bridge?", "", []),  # an acronym may stand for a name
    ("Who owns the Harbor City ferry company?", "City guide: ferries", []),  # the title counts
    ("Who paid for the bridge, according to the Harbor City Council?", "", ["Council"]),
    ("Who painted the Cézanne copy on the bridge?", "Notes on Cezanne", []),  # accents do not matter
])
def test_question_names_only_what_the_passage_does(question, title, expected):
    assert ungrounded(question, PASSAGE, title) == expected


def test_round_trip_check():
    assert round_trip_ok("Alice Stone", "Who opened the bridge?", "mayor Alice Stone")
    assert round_trip_ok("The bridge was opened by mayor Alice Stone.", "Who opened the bridge?", "Alice Stone")
    assert not round_trip_ok("Bob", "Who opened the bridge?", "Alice Stone")
    assert not round_trip_ok("", "Who opened the bridge?", "Alice Stone")
    # the model's answer runs on past a possessive: the pair's answer is still in it
    q = "What is the name of the university that conducted the survey?"
    assert round_trip_ok("The University of California, Los Angeles’s Higher Education Research Institute",
                         q, "University of California, Los Angeles")
    assert not round_trip_ok("The Cooperative Institutional Research Program", q,
                             "University of California, Los Angeles")


def unit(*rows):
    v = np.asarray(rows, dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_near_duplicates_against_each_other_and_the_kept():
    vecs = unit([1, 0, 0], [0.99, 0.1, 0], [0, 1, 0], [0, 0.95, 0.3], [0, 0, 1])
    assert near_duplicates(vecs, 0.9) == [False, True, False, True, False]
    assert near_duplicates(vecs, 0.999) == [False] * 5
    assert near_duplicates(vecs[2:], 0.9, kept=list(vecs[:1])) == [False, True, False]
    assert near_duplicates(vecs[:1], 0.9, kept=list(unit([0.99, 0.1, 0]))) == [True]


def test_passages_take_turns_across_files():
    words = lambda tag, n: " ".join(f"{tag}{i}" for i in range(n))  # noqa: E731
    docs = [Document("big#p1", words("a", 300)), Document("big#p2", words("b", 300)),
            Document("small", words("c", 60)), Document("tiny", words("d", 10))]
    ps = passages(docs, 50, seed=1)
    assert len(ps) == 12 + 1  # 6 + 6 passages of the big file, 1 of the small one, none of 10 words
    first = {synth.file_id(p.doc.id) for p in ps[:2]}
    assert first == {"big", "small"}  # every file gives one before any gives two
    assert ps == passages(docs, 50, seed=1) and ps != passages(docs, 50, seed=2)
    assert all(len(p.text.split()) <= 50 for p in ps)


def test_config_is_checked():
    for bad in ({"n": 0}, {"paraphrases": 6}, {"paraphrases": -1}, {"test_ratio": 1.0}, {"test_ratio": 0},
                {"dedup_threshold": 0}, {"passage_words": 10}, {"max_passages": 0}):
        with pytest.raises(ConfigError):
            SynthConfig(**bad)


# -- a whole run, with a scripted chat model ---------------------------------------------------------------

@dataclass
class Reply:
    text: str


class Scripted:
    """A chat model whose replies are written here: per passage subject, a good or a bad pair."""

    name = "scripted"
    PAIRS = {
        "Harbor City": "Question: Who opened the Harbor City bridge?\nAnswer: mayor Alice Stone",
        "Pine Valley": "Question: What does the passage say about the fair?\nAnswer: every October",
        "Orion Labs": "I am sorry, I cannot help with that.",
        "Lake Mira": "Question: What is the depth of Lake Mira?\nAnswer: 310 meters",
        "Blue Note": "Question: Which instrument does Marta Ruiz play at the Blue Note Cafe?\nAnswer: the trumpet",
        "Redwood": "Question: How deep is Lake Mira?\nAnswer: 310 meters",  # not in its passage
        "Gray Lake": "Question: What is the depth of the Lake Mira?\nAnswer: 310 meters",  # a near-duplicate
        "Elm Street": "Question: Who founded the Elm Street library?\nAnswer: Ruth Park",
    }

    def __init__(self):
        self.asked = {"generate": 0, "round_trip": 0, "paraphrase": 0}

    def fingerprint(self):
        return {"backend": "test", "model": "scripted"}

    def chat(self, messages_list, max_new_tokens, stop=None, *, stop_at_newline=True):
        assert not stop_at_newline
        out = []
        for m in messages_list:
            user = m[-1]["content"]
            if "Write one question" in user:
                self.asked["generate"] += 1
                out.append(Reply(next(v for k, v in self.PAIRS.items() if k in user)))
            elif user.endswith("Rewritten question:"):
                self.asked["paraphrase"] += 1
                q = user.split("Question: ")[1].split("\n")[0]
                style = user.split("\n")[0]
                out.append(Reply({
                    synth.PARAPHRASE_STYLES[0]: "Which person opened the bridge of Harbor City?",
                    synth.PARAPHRASE_STYLES[1]: q,  # a copy
                    synth.PARAPHRASE_STYLES[2]: "What did the passage say?",  # needs the passage
                    synth.PARAPHRASE_STYLES[3]: "Who opened the bridge for Governor Oakley?",  # a name of its own
                }.get(style, "") if "Harbor" in q else f"Rewritten: {q[:-1]} exactly?"))
            else:
                self.asked["round_trip"] += 1
                out.append(Reply("a teacher" if "Elm Street" in user else "Alice Stone" if "Harbor" in user
                                 else "310 meters" if "Mira" in user else "no idea"))
        return out


def hash_encoder(texts):
    """Embeddings that are near for the same words: a bag of hashed words (enough to find the duplicate)."""
    out = np.zeros((len(texts), 64), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in t.lower().replace("?", "").split():
            out[i, hashlib.sha256(w.encode()).digest()[0] % 64] += 1
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


hash_encoder.name = "hashed words (test)"


def source_corpus(root: Path) -> Path:
    docs = [(i, t, (x + " ") * 4) for i, t, x in DOCS] + [
        ("d7", "Gray Lake", "Gray Lake lies north of Lake Mira, which is 310 meters deep. " * 4),
        ("d8", "Elm Street", "The Elm Street library was founded by Ruth Park, a teacher. " * 5)]
    return write_corpus(root, docs=docs)


def test_synth_writes_a_corpus_that_corpus_check_accepts(tmp_path):
    out = tmp_path / "syn"
    model = Scripted()
    record = synth.synthesize(source_corpus(tmp_path / "src"), out, model, hash_encoder,
                              SynthConfig(n=10, test_ratio=0.5), log=lambda m: None)
    c = record["counts"]
    assert c["generated"] == 8 and c["kept"] + sum(c["dropped"].values()) == c["generated"]
    assert c["kept"] == 3
    assert {k: v for k, v in c["dropped"].items() if v} == {
        "unparsed": 1, "needs_the_passage": 1, "answer_not_supported": 2, "duplicate": 1}
    assert c["passages_tried"] == 8 and model.asked == {"generate": 8, "round_trip": 0, "paraphrase": 0}
    assert record["dropped_examples"]["needs_the_passage"][0]["question"].startswith("What does the passage")
    assert json.loads((out / "synth.json").read_text()) == record
    meta = json.loads((out / "benchmark.json").read_text())
    assert meta["synthetic"] == {"model": "scripted", "generated": 8, "kept": 3, "record": "synth.json",
                                 "prompt_version": synth.PROMPT_VERSION}
    result = check_corpus(out)
    assert result.problems == [] and result.warnings == []
    b = result.benchmark
    assert b.meta["synthetic"]["kept"] == 3 and len(b.documents) == 8
    assert b.documents == load_corpus(tmp_path / "src").documents  # the same documents, same ids
    rows = [json.loads(line) for line in (out / "questions.jsonl").read_text().splitlines()]
    assert all(r["synthetic"] is True for r in rows)
    by_q = {r["question"]: r for r in rows}
    harbor = by_q["Who opened the Harbor City bridge?"]
    assert harbor["doc_ids"] == ["d1"] and harbor["answers"] == ["mayor Alice Stone"]
    text = next(d.text for d in b.documents if d.id == "d1")
    s = harbor["source"]
    assert text[s["answer_start"]:].startswith("mayor Alice Stone") and s["start"] <= s["answer_start"] < s["end"]
    assert sorted(r["split"] for r in rows) == ["test", "test", "train"] or \
        sorted(r["split"] for r in rows) == ["test", "train", "train"]
    assert record["splits"] == {s: sum(r["split"] == s for r in rows) for s in ("train", "test")}


def test_round_trip_and_paraphrases(tmp_path):
    out = tmp_path / "syn"
    model = Scripted()
    record = synth.synthesize(source_corpus(tmp_path / "src"), out, model, hash_encoder,
                              SynthConfig(n=10, test_ratio=0.01, paraphrases=4, round_trip=True),
                              log=lambda m: None)
    c = record["counts"]
    assert c["kept"] + sum(c["dropped"].values()) == c["generated"] == 8
    assert model.asked["round_trip"] == 3  # only pairs that passed every other filter
    assert c["dropped"]["round_trip_failed"] == 1  # Elm Street: the model answers "a teacher", not "Ruth Park"
    assert record["dropped_examples"]["round_trip_failed"][0]["round_trip_answer"] == "a teacher"
    rows = [json.loads(line) for line in (out / "questions.jsonl").read_text().splitlines()]
    originals = [r for r in rows if "paraphrase_of" not in r]
    paraphrases = [r for r in rows if "paraphrase_of" in r]
    assert len(originals) == c["kept"] == 2
    assert sum(r["split"] == "test" for r in originals) == 1  # at least one test question, even at 1%
    train = [r for r in originals if r["split"] == "train"]
    p = record["paraphrases"]
    assert p["asked"] == 4 * len(train) == model.asked["paraphrase"]
    assert p["kept"] + sum(p["dropped"].values()) == p["asked"]
    assert p["kept"] == len(paraphrases)
    assert all(r["split"] == "train" and r["synthetic"] for r in paraphrases)  # never in the test split
    by_id = {r["id"]: r for r in originals}
    for r in paraphrases:
        orig = by_id[r["paraphrase_of"]]
        assert r["answers"] == orig["answers"] and r["doc_ids"] == orig["doc_ids"] and r["question"] != orig["question"]
    harbor = [r for r in paraphrases if by_id[r["paraphrase_of"]]["question"].startswith("Who opened the Harbor")]
    if harbor:  # the Harbor pair is a train pair for this seed: one good rewording, a copy, one needing the passage
        assert [r["question"] for r in harbor] == ["Which person opened the bridge of Harbor City?"]
        assert p["dropped"]["copy"] >= 1 and p["dropped"]["needs_the_passage"] >= 1
        assert p["dropped"]["question_not_grounded"] >= 1
    assert check_corpus(out).problems == []


class OnePerReason:
    """A chat model whose reply to each passage (found by its document's title) trips one filter, so that a
    whole run must drop exactly one pair for each reason and keep the one good pair that is left."""

    name = "one-per-reason"
    DOCS = [  # (title, text, reply, the reason it must be dropped for)
        ("Harbor City", "The Harbor City bridge was opened in 1932 by mayor Alice Stone.",
         "Question: Who opened the Harbor City bridge?\nAnswer: mayor Alice Stone", None),
        ("Maple Hall", "Maple Hall stands beside the Harbor City bridge, opened in 1932 by mayor Alice Stone.",
         "Question: Who opened the Harbor City bridge?\nAnswer: mayor Alice Stone", "duplicate"),
        ("Pine Valley", "Pine Valley grows apples and pears, and its fair is held every October.",
         "Pine Valley is a nice place to visit.", "unparsed"),
        ("Orion Labs", "Orion Labs builds small satellites in Denver for weather services.",
         "Question: Orion Labs builds satellites in Denver.\nAnswer: Denver", "not_a_question"),
        ("Lake Mira", "Lake Mira is the deepest lake in the region, with a depth of 310 meters.",
         "Question: How deep is it?\nAnswer: 310 meters", "needs_the_passage"),
        ("Blue Note Cafe", "The owner of the Blue Note Cafe, Marta Ruiz, plays the saxophone on Fridays.",
         "Question: Which instrument does Marta Ruiz play?\nAnswer: the trumpet", "answer_not_supported"),
        ("Redwood School", "Redwood School has 420 students and was founded by the Miller family.",
         "Question: How many students does Redwood School have?\nAnswer: " + " ".join(["students"] * 31),
         "answer_too_long"),
        ("Birch Road", "Birch Road asks its readers: do you miss the old tram? The tram closed in 1958.",
         "Question: Which tram closed in 1958?\nAnswer: do you miss the old tram?", "answer_is_a_question"),
        ("Elm Street", "The Elm Street library was founded by Ruth Park, a teacher from Elm Street.",
         "Question: Who founded the Elm Street library?\nAnswer: Elm Street", "answer_in_question"),
        ("Gray Lake", "Gray Lake lies north of Lake Mira and freezes over every winter.",
         "Question: Which lake lies north of the Harbor City bridge?\nAnswer: Lake Mira", "question_not_grounded"),
        ("Cedar Park", "Cedar Park was laid out by the gardener Tom Reed for the city council.",
         "Question: Who laid out Cedar Park?\nAnswer: the gardener Tom Reed", "round_trip_failed"),
        ("Oak Hill", "The Oak Hill tower was built of granite from the quarries of Vermont.",
         "Question: Where did the granite of the Oak Hill tower come from?\nAnswer: the quarries of Vermont",
         "surplus"),
    ]
    ROUND_TRIP = {"Harbor City": "mayor Alice Stone", "Cedar Park": "the city council",
                  "Oak Hill": "the quarries of Vermont"}

    def fingerprint(self):
        return {"backend": "test", "model": self.name}

    def chat(self, messages_list, max_new_tokens, stop=None, *, stop_at_newline=True):
        out = []
        for m in messages_list:
            user = m[-1]["content"]
            if "Write one question" in user:
                out.append(Reply(next(r for t, _, r, _ in self.DOCS if f"(from {t})" in user)))
            else:  # the round trip: this passage's answer
                passage = user.split("Question:")[0]
                out.append(Reply(next((a for k, a in self.ROUND_TRIP.items() if k in passage), "no idea")))
        return out


def test_each_filter_drops_its_pair_in_a_whole_run(tmp_path):
    """Every reason of DROP_REASONS, through synthesize: one pair each, counted under its own reason
    (the earlier filters see each pair first, so each reply is bad in one way only)."""
    docs = [(f"r{i}", t, (x + " ") * 4) for i, (t, x, _, _) in enumerate(OnePerReason.DOCS)]
    src = write_corpus(tmp_path / "src", docs=docs)
    record = synth.synthesize(src, tmp_path / "syn", OnePerReason(), hash_encoder,
                              SynthConfig(n=1, round_trip=True, test_ratio=0.5), log=lambda m: None)
    c = record["counts"]
    assert set(c["dropped"]) == set(synth.DROP_REASONS)
    assert c["dropped"] == dict.fromkeys(synth.DROP_REASONS, 1)
    assert c["generated"] == len(OnePerReason.DOCS) and c["kept"] == 1
    examples = record["dropped_examples"]
    why = {t: r for t, _, _, r in OnePerReason.DOCS}
    by_reason = {reason: [e["doc_id"] for e in examples[reason]] for reason in examples}
    titles = {f"r{i}": t for i, (t, *_) in enumerate(OnePerReason.DOCS)}
    for reason in ("unparsed", "not_a_question", "needs_the_passage", "answer_not_supported", "answer_too_long",
                   "answer_is_a_question", "answer_in_question", "question_not_grounded", "round_trip_failed"):
        assert [why[titles[d]] for d in by_reason[reason]] == [reason]
    # the duplicate and the surplus: which of each two passages came first depends on the seeded order
    assert titles[by_reason["duplicate"][0]] in {"Harbor City", "Maple Hall"}
    assert titles[by_reason["surplus"][0]] in {"Harbor City", "Maple Hall", "Oak Hill"}
    rows = [json.loads(line) for line in (tmp_path / "syn" / "questions.jsonl").read_text().splitlines()]
    assert [r["question"] for r in rows] in (["Who opened the Harbor City bridge?"],
                                             ["Where did the granite of the Oak Hill tower come from?"])


def test_surplus_pairs_are_counted_and_n_is_kept(tmp_path):
    record = synth.synthesize(source_corpus(tmp_path / "src"), tmp_path / "syn", Scripted(), hash_encoder,
                              SynthConfig(n=1, test_ratio=0.5), log=lambda m: None)
    c = record["counts"]
    assert c["kept"] == 1 and c["dropped"]["surplus"] == 2
    assert c["kept"] + sum(c["dropped"].values()) == c["generated"]


def test_a_plain_folder_of_documents_is_a_source(tmp_path):
    """A folder of files (no documents/ inside, no questions): the start of the "from documents" path."""
    src = tmp_path / "docs"
    src.mkdir()
    for i, title, text in DOCS:
        (src / f"{title.replace(' ', '_')}.txt").write_text(f"{title}. " + (text + " ") * 4)
    (src / "empty.txt").write_text("")
    record = synth.synthesize(src, tmp_path / "syn", Scripted(), hash_encoder, SynthConfig(n=5, test_ratio=0.5),
                              log=lambda m: None)
    assert record["source"]["skipped_files"] == [["empty.txt", "empty file (0 bytes)"]]
    b = load_corpus(tmp_path / "syn")
    assert {d.id for d in b.documents} == {t.replace(" ", "_") for _, t, _ in DOCS}  # the empty file not copied
    assert all(e.doc_ids[0] in {d.id for d in b.documents} for e in b.examples)


def test_out_folder_must_be_new_and_nothing_is_half_written(tmp_path):
    src = source_corpus(tmp_path / "src")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("mine")
    with pytest.raises(HarnessError, match="exists and is not an empty folder"):
        synth.synthesize(src, tmp_path / "full", Scripted(), hash_encoder, log=lambda m: None)

    class Silent(Scripted):
        def chat(self, messages_list, *a, **k):
            return [Reply("no") for _ in messages_list]

    with pytest.raises(HarnessError, match=r"none of the 8 generated pairs passed the filters \(dropped: unparsed 8\)"):
        synth.synthesize(src, tmp_path / "out", Silent(), hash_encoder, log=lambda m: None)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


# -- the tiny model, through the CLI and the local chat model -----------------------------------------------

def test_synth_cli_with_the_tiny_model(tmp_path, tiny_model, capsys, monkeypatch):
    """A random model writes nothing usable: every pair is dropped, the command says so in one line and
    exits 2, and no folder is left behind. The path (runtime, chat template, MiniLM) is the real one."""
    src = source_corpus(tmp_path / "src")
    argv = ["synth", str(src), "--out", str(tmp_path / "syn"), "--n", "3", "--model", str(tiny_model), "--quiet"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "error: none of the" in err and "generated pairs passed the filters" in err and "Traceback" not in err
    assert not (tmp_path / "syn").exists()

    # the same run with replies replaced by good pairs: the corpus is written and checks clean
    from harness.model import chat

    real = chat.LocalChatModel.chat

    def scripted_after_real(self, messages_list, max_new_tokens, stop=None, *, stop_at_newline=True,
                            on_result=None):
        got = real(self, messages_list, max_new_tokens, stop_at_newline=stop_at_newline)
        assert len(got) == len(messages_list) and all(isinstance(g.text, str) for g in got)
        return Scripted().chat(messages_list, max_new_tokens, stop_at_newline=stop_at_newline)

    monkeypatch.setattr(chat.LocalChatModel, "chat", scripted_after_real)
    assert cli.main(argv + ["--test-ratio", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "question/answer pairs kept of 8 generated" in out and f"harness corpus check {tmp_path / 'syn'}" in out
    record = json.loads((tmp_path / "syn" / "synth.json").read_text())
    assert record["model"]["backend"] == "local" and record["embedder"] == "all-MiniLM-L6-v2"
    assert cli.main(["corpus", "check", str(tmp_path / "syn")]) == 0
    assert "synthetic questions" in capsys.readouterr().out


def test_cli_rejects_bad_arguments_before_the_model(tmp_path, capsys):
    src = source_corpus(tmp_path / "src")
    assert cli.main(["synth", str(src), "--out", str(tmp_path / "o"), "--paraphrases", "9"]) == 2
    assert "--paraphrases must be 0 to 5" in capsys.readouterr().err
    assert cli.main(["synth", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "folder not found" in capsys.readouterr().err


# -- the report on a synthetic corpus says so at the top -----------------------------------------------------

def test_report_on_a_synthetic_corpus_says_so_at_the_top(tmp_path, tiny_model, capsys):
    synth.synthesize(source_corpus(tmp_path / "src"), tmp_path / "syn", Scripted(), hash_encoder,
                     SynthConfig(n=10, test_ratio=0.5), log=lambda m: None)
    out = tmp_path / "run"
    assert cli.main(["run", "--corpus", str(tmp_path / "syn"), "--strategies", "zero-shot", "--model",
                     str(tiny_model), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "Synthetic questions. The questions of syn were generated from its documents by scripted" in printed
    md = (out / "report.md").read_text()
    first = md.split("\n## ")[0]  # before the first benchmark's section
    assert "**Synthetic questions.** The questions of syn were generated from its documents by scripted " \
           "(`harness synth`, 3 of 8 generated pairs kept by its filters)" in first
    results = json.loads((out / "results.json").read_text())
    assert results["benchmarks"][0]["synthetic"]["kept"] == 3


def test_answer_start_matches_any_apostrophe():
    """A model that writes "Macy's" for the passage's "Macy’s" still gets its answer's place in the document."""
    doc = Document(id="d", title="", text="The parade starts at Macy’s on 34th Street at nine.")
    pair = synth.Pair(passage=synth.Passage(doc, 0, len(doc.text)), reply="", question="Where does it start?",
                      answer="Macy's on 34th Street")
    assert synth._answer_start(doc, pair) == doc.text.index("Macy’s")
    assert synth._answer_start(doc, synth.Pair(passage=pair.passage, reply="", answer="Gimbels")) is None


def test_a_paraphrase_that_brings_in_a_name_is_dropped():
    """Rewordings pass the grounding filter too: a name the passage never mentions is not a paraphrase."""
    doc = Document(id="d", title="Harbor", text="The Harbor City bridge was opened in 1932 by mayor Alice Stone.")
    pair = synth.Pair(passage=synth.Passage(doc, 0, len(doc.text)), reply="",
                      question="Who opened the Harbor City bridge?", answer="mayor Alice Stone")

    class Two:
        def chat(self, messages_list, max_new_tokens, stop=None, *, stop_at_newline=True):
            texts = ["Which person opened the bridge of Harbor City?", "Who opened the bridge for Governor Oakley?"]
            return [type("R", (), {"text": t})() for t in texts[:len(messages_list)]]

    syn = synth.Synthesizer(Two(), lambda texts: np.ones((len(texts), 4), dtype=np.float32) / 2,
                            SynthConfig(n=1, paraphrases=2), log=lambda *a: None)
    syn.paraphrase([pair])
    assert pair.paraphrases == ["Which person opened the bridge of Harbor City?"]
    assert syn.paraphrase_counts["dropped"]["question_not_grounded"] == 1
