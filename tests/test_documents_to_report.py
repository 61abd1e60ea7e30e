"""From documents to a decision, end to end (issue 18): a folder holding only a PDF and two HTML pages,
no questions -> `harness synth` -> `harness corpus check` -> `harness run --metric semantic` with
zero-shot and rag -> the report, whose headline is the semantic match rate and which opens with the
synthetic-questions warning.

What is scripted, and only that: the question writer's replies. The tiny random model of conftest.py
cannot write a usable question, so the local chat model's `chat` is patched (as test_synth.py does):
the real runtime still generates for every prompt, then its reply is replaced by a pair written from the
passage the prompt holds, a question about one of the documents' own sentences with its answer copied
from that sentence, so that synth's real filters (answer found in the passage, question standing on its
own, no duplicate) keep it. One passage gets a reply that points at "the passage", which the filters must
drop. Everything else is the real path: fpdf2 writes a real PDF, pypdf and BeautifulSoup extract it and
the HTML pages, the corpus loader reads the generated folder, the tiny model answers, the packaged MiniLM
scores the answers (semantic) and the report is built from the records.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest
from test_ingest import make_pdf  # the PDF writer the ingest tests use

from harness import cli
from harness.analysis.scoring import normalize
from harness.data.benchmark import load_benchmark

pytest.importorskip("fpdf")  # the dev extra
pytest.importorskip("pypdf")  # the ingest extra
pytest.importorskip("bs4")

# Each document's text, and per text one fact: (a phrase that finds the passage, question, answer copied
# from the sentence). The PDF's three pages are three documents (manual#p1..p3); each HTML page has two
# <h2> sections, each a document (care#cleaning, ...).
PDF_PAGES = [
    "The Kestrel K-40 water pump moves 40 litres of water a minute through its main pipe. Its electric motor "
    "runs on a 24 volt supply and the whole unit weighs about three kilograms. The pump is meant for small "
    "farms and gardens that draw their water from shallow wells or rain tanks.",
    "The Kestrel K-40 was designed in 2019 by the engineer Helen Carter at a workshop in Norwich. She wanted "
    "a pump that one person could carry and repair in the field without special tools, so every part of "
    "the casing is held by six brass screws.",
    "Error code 17 on the display of the Kestrel K-40 means that the inlet valve is stuck. Switch the pump "
    "off, open the front cover and turn the valve by hand until it moves freely, then restart the pump and "
    "wait one minute before you use it again.",
]
CARE_PAGE = """<!DOCTYPE html>
<html><head><title>Caring for the Kestrel K-40</title><script>var tracking = 1;</script></head>
<body>
<nav><a href="/">Home</a> <a href="/shop">Shop</a> <a href="/help">Help</a></nav>
<main>
<h2>Cleaning</h2>
<p>The filter of the Kestrel K-40 should be rinsed in clean water every two weeks during the summer. A
clogged filter makes the motor run hot and shortens its life, so check it more often when the well water
carries sand or leaves.</p>
<h2>Storage</h2>
<p>Before the first frost, drain all water from the Kestrel K-40 and store it indoors. Water left inside
the casing can freeze and crack the pump housing, which the warranty does not cover, so keep the unit
in a dry shed or a cellar until spring.</p>
</main>
<footer>Copyright 2026 Kestrel Pumps</footer>
</body></html>
"""
WARRANTY_PAGE = """<!DOCTYPE html>
<html><head><title>Warranty and service</title></head>
<body>
<header><a href="/">Kestrel Pumps</a></header>
<main>
<h2>Warranty</h2>
<p>Every Kestrel K-40 comes with a warranty of five years from the day of delivery. The warranty covers
the motor and the valves but not damage from frost, sand or a wrong supply voltage, and it moves to a new
owner when the pump is sold.</p>
<h2>Service</h2>
<p>Spare parts for the Kestrel K-40 are sent from the service centre in Leeds within three working days.
Owners can order seals, filters and valves by phone or by post, and a repair guide comes free with every
order of parts.</p>
</main>
</body></html>
"""
FACTS = [
    ("moves 40 litres", "How many litres of water a minute does the Kestrel K-40 pump move?", "40 litres"),
    ("designed in 2019", "Who designed the Kestrel K-40 water pump?", "the engineer Helen Carter"),
    ("Error code 17", None, None),  # a reply the filters drop: it points at the passage
    ("filter of the Kestrel", "How often should the filter of the Kestrel K-40 be rinsed in summer?",
     "every two weeks"),
    ("Before the first frost", "Where should the Kestrel K-40 be stored over the winter?", "indoors"),
    ("warranty of five years", "How long is the warranty on a Kestrel K-40 pump?", "five years"),
    ("service centre in Leeds", "From which city are spare parts for the Kestrel K-40 sent?", "Leeds"),
]
BAD_REPLY = "Question: What does the passage say about the display?\nAnswer: Error code 17"


@dataclass
class Reply:
    text: str


def passage_of(user_message: str) -> str:
    """The passage a generation prompt (harness/data/synth.py GENERATE) shows the model."""
    m = re.search(r'"""\n(.*?)\n"""', user_message, re.DOTALL)
    assert m, user_message
    return m.group(1)


def scripted_reply(user_message: str) -> str:
    """The pair a capable question writer would give for this passage: about the document's own sentence."""
    text = " ".join(passage_of(user_message).split())
    hits = [(q, a) for key, q, a in FACTS if key in text]
    assert len(hits) == 1, f"every passage holds exactly one fact of FACTS: {text!r}"
    q, a = hits[0]
    return BAD_REPLY if q is None else f"Question: {q}\nAnswer: {a}"


def test_from_a_folder_of_pdf_and_html_to_a_report_on_synthetic_questions(tmp_path, tiny_model, capsys,
                                                                           monkeypatch):
    docs = tmp_path / "kestrel_docs"
    docs.mkdir()
    make_pdf(docs / "manual.pdf", PDF_PAGES)
    (docs / "care.html").write_text(CARE_PAGE, encoding="utf-8")
    (docs / "warranty.html").write_text(WARRANTY_PAGE, encoding="utf-8")
    corpus = tmp_path / "kestrel"

    # 1. harness synth: the real local chat model runs, its replies are replaced by the scripted pairs
    from harness.model import chat

    real_chat = chat.LocalChatModel.chat
    prompts: list[str] = []

    def write_pairs(self, messages_list, max_new_tokens, stop=None, *, stop_at_newline=True, on_result=None):
        got = real_chat(self, messages_list, max_new_tokens, stop_at_newline=stop_at_newline)
        assert len(got) == len(messages_list)
        prompts.extend(m[-1]["content"] for m in messages_list)
        return [Reply(scripted_reply(m[-1]["content"])) for m in messages_list]

    with monkeypatch.context() as patched:
        patched.setattr(chat.LocalChatModel, "chat", write_pairs)
        assert cli.main(["synth", str(docs), "--out", str(corpus), "--n", "20", "--test-ratio", "0.5",
                         "--model", str(tiny_model), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "6 question/answer pairs kept of 7 generated" in printed
    assert len(prompts) == 7  # one per passage: 3 PDF pages, 2 sections of each HTML page
    record = json.loads((corpus / "synth.json").read_text())
    assert record["counts"]["generated"] == 7 and record["counts"]["kept"] == 6
    assert {k: v for k, v in record["counts"]["dropped"].items() if v} == {"needs_the_passage": 1}
    assert record["source"]["files"] == 3 and record["source"]["skipped_files"] == []

    # 2. harness corpus check accepts the generated folder
    assert cli.main(["corpus", "check", str(corpus)]) == 0
    checked = capsys.readouterr().out
    assert f"{corpus}: OK" in checked and "synthetic questions" in checked and "7 documents" in checked

    # the questions came from the documents' text: each answer sits, word for word, in the text the real
    # extractors took out of the PDF page or HTML section its doc_ids name, where its source span says
    bench = load_benchmark(str(corpus))
    text_of = {d.id: d.text for d in bench.documents}
    assert set(text_of) == {"manual#p1", "manual#p2", "manual#p3", "care#cleaning", "care#storage",
                            "warranty#warranty", "warranty#service"}
    assert "Home" not in text_of["care#cleaning"] and "Copyright" not in text_of["care#storage"]  # boilerplate
    rows = [json.loads(line) for line in (corpus / "questions.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(r["synthetic"] is True for r in rows)
    assert {r["question"] for r in rows} == {q for _, q, _ in FACTS if q}
    assert {i for r in rows for i in r["doc_ids"]} == set(text_of) - {"manual#p3"}  # the dropped pair's page
    for r in rows:
        (doc_id,), answer, src = r["doc_ids"], r["answers"][0], r["source"]
        text = text_of[doc_id]
        assert src["doc_id"] == doc_id and src["start"] <= src["answer_start"] < src["end"] <= len(text)
        assert text[src["answer_start"]:src["answer_start"] + len(answer)].lower() == answer.lower()
        assert normalize(answer) in normalize(text[src["start"]:src["end"]])
    assert sum(r["split"] == "test" for r in rows) == 3

    # 3. harness run: zero-shot and rag on the tiny model, the semantic match rate as the headline
    out = tmp_path / "run"
    assert cli.main(["run", "--benchmark", str(corpus), "--strategies", "zero-shot,rag", "--metric", "semantic",
                     "--model", str(tiny_model), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "Synthetic questions. The questions of kestrel were generated from its documents" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["benchmarks"][0]["synthetic"]["kept"] == 6
    cells = {c["strategy"]: c for c in results["cells"]}
    assert set(cells) == {"zero-shot", "rag"} and all(c["status"] == "ok" for c in cells.values())
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 2 * 3 and all("semantic" in p for p in preds)  # every answer scored by MiniLM

    # 4. the report: opens with the warning, then the decision on the semantic match rate
    md = (out / "report.md").read_text()
    head = md.split("\n## ")[0]
    assert ("**Synthetic questions.** The questions of kestrel were generated from its documents by "
            f"{record['model']['model']} (`harness synth`, 6 of 7 generated pairs kept by its filters)") in head
    assert "read a sample of them before trusting the decision" in head
    body = md[len(head):]
    assert results["analysis"]["primary_metric"] == {"kestrel": "semantic"}
    assert "Headline metric: semantic match rate." in body.split("### Recommendation")[0]
    verdict = body.split("### Recommendation")[1].split("\n### ")[0]
    first = verdict.split("\n- ")[1]  # the recommendation's first line names the strategy and its score
    assert first.startswith("For 100,000 queries a month") and ", semantic match rate " in first
    assert "| Strategy | Semantic match rate [95% CI] |" in verdict
