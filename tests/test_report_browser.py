"""The report as a person sees it: rendered by headless Chromium, screenshot taken, no console errors,
every plot loaded; and hostile corpus or model text shows as text and runs nothing.

Chromium and its driver are installed with apt-get (Debian packages `chromium`, `chromium-driver`) when
missing, so CI runs these tests rather than skipping them; the browser is driven through Selenium
WebDriver (tests/browser.py; selenium is in the `dev` extra).
"""
import json
import shutil
import struct
from pathlib import Path

import pytest
from browser import Page, ensure_chromium
from selenium.webdriver.common.by import By

from harness.core.records import write_jsonl
from harness.report.document import write_reports

EXAMPLE = Path(__file__).resolve().parent.parent / "reports" / "example"

IMAGES_OK = ("JSON.stringify([...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight]))")


@pytest.fixture(scope="module")
def chromium():
    return ensure_chromium()


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", head[16:24])


def test_example_report_renders_cleanly(chromium, tmp_path):
    run = tmp_path / "example"
    shutil.copytree(EXAMPLE, run)
    write_reports(run)
    page_file = run / "report.html"
    n_img = page_file.read_text().count("<img ")
    assert n_img >= 6
    with Page(chromium) as page:
        page.open(page_file.as_uri())
        images = json.loads(page.evaluate(IMAGES_OK))
        assert len(images) == n_img
        assert all(done and w > 100 and h > 100 for done, w, h in images), images
        assert page.evaluate("document.querySelectorAll('table').length") >= 6
        assert "Recommendation" in page.evaluate("document.body.innerText")
        # every answer, folded: a <details> opens on a click under the strict CSP, no script needed
        n_details = page.evaluate("document.querySelectorAll('details').length")
        assert n_details >= 3 and page.evaluate("document.querySelectorAll('details[open]').length") == 0
        last = page.driver.find_elements(By.CSS_SELECTOR, "details > summary")[-1]
        page.driver.execute_script("arguments[0].scrollIntoView()", last)
        last.click()
        assert page.evaluate("document.querySelectorAll('details')[%d].open" % (n_details - 1)) is True
        assert page.evaluate("document.querySelectorAll('tr.mark').length") in (0, 3)  # recommended row, if any
        shot = tmp_path / "report.png"
        page.screenshot(shot)
        problems = page.problems()
    assert problems == []
    width, height = _png_size(shot)
    assert width >= 1000 and height > 3000  # the whole page, not an empty viewport
    assert shot.stat().st_size > 100_000


HOSTILE = [
    "<script>window.__pwned = 1; alert('script')</script>",
    "<img src=x onerror=\"window.__pwned = 2; alert('img')\">",
    "<a href=\"javascript:window.__pwned=3\">click me</a> javascript:alert(4)",
    "\"'><svg onload=\"window.__pwned = 5\"></svg>",
    "costs $5 and $x^{2 is not closed",  # matplotlib would read $...$ as mathtext
]


def _hostile_run(tmp_path: Path) -> Path:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    docs = [{"id": f"d{i}", "title": "t", "text": f"Document {i} says {h}"} for i, h in enumerate(HOSTILE)]
    qs = [{"id": f"q{i}", "question": f"What does {h} do?", "answers": [h, "nothing"], "split": "test",
           "doc_ids": [f"d{i}"]} for i, h in enumerate(HOSTILE)]
    (corpus / "documents.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (corpus / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in qs))
    run = tmp_path / "run"
    run.mkdir()
    usage = {"prompt_tokens": 10, "output_tokens": 3, "seconds": 0.1, "retrieval_seconds": 0.01,
             "latency_seconds": 0.4}
    results = {
        "schema_version": 1, "run": {"id": "hostile", "started": "2026-01-01T00:00:00+00:00"},
        "config": {"benchmarks": [str(corpus)], "seeds": [0], "batch_size": 4, "usd_per_hour": 0.085},
        "environment": {"device": "cpu", "cpu": "test", "cores": 2, "dtype": "float32", "gpu": None},
        "model": {"name": "tiny"},
        "benchmarks": [{"name": "corpus", "task": "extractive_qa", "documents": 5, "train": 0, "test": 5,
                        "test_used": 5}],
        "cells": [{"strategy": "rag", "benchmark": "corpus", "seed": 0, "status": "ok", "error": None,
                   "config": {}, "prepare": {"wall_s": 1.0, "peak_rss_mb": 100.0, "chunks": 4, "artifact_bytes": 10},
                   "answer": {"wall_s": 0.5, "queries": 5, "peak_rss_mb": 100.0}},
                  {"strategy": HOSTILE[0] + HOSTILE[4], "benchmark": "corpus", "seed": 0, "status": "ok",
                   "error": None, "config": {}, "prepare": {"wall_s": 9.0, "peak_rss_mb": 90.0, "steps": 2,
                                                           "loss_curve": [3.0, 2.0], "eval_loss": [2.5]},
                   "answer": {"wall_s": 0.2, "queries": 5, "peak_rss_mb": 90.0}},
                  {"strategy": "zero-shot", "benchmark": "corpus", "seed": 0, "status": "failed",
                   "error": HOSTILE[1], "config": {}}],
    }
    (run / "results.json").write_text(json.dumps(results))
    rows = [{"strategy": "rag", "benchmark": "corpus", "seed": 0, "id": f"q{i}", "output": h, "usage": usage,
             "trace": {"retrieved_doc_ids": [f"d{i}"]}} for i, h in enumerate(HOSTILE)]
    rows += [{"strategy": HOSTILE[0] + HOSTILE[4], "id": f"q{i}", "output": HOSTILE[(i + 1) % 5], "usage": usage}
             for i in range(5)]
    write_jsonl(run / "predictions.jsonl", rows)
    return run


@pytest.mark.reliability("security", "<script>, <img onerror>, javascript: and <svg onload> in documents, questions, "
                                     "answers and names: shown as text in headless Chromium, nothing runs")
def test_hostile_text_is_shown_and_runs_nothing(chromium, tmp_path):
    run = _hostile_run(tmp_path)
    write_reports(run)
    with Page(chromium) as page:
        page.open((run / "report.html").as_uri())
        for summary in page.driver.find_elements(By.CSS_SELECTOR, "details > summary"):  # open every answer
            page.driver.execute_script("arguments[0].scrollIntoView()", summary)
            summary.click()
        text = page.evaluate("document.body.innerText")
        injected = page.evaluate(
            "document.querySelectorAll('script, iframe, object, embed, svg, a').length"
            " + [...document.querySelectorAll('*')].filter(e => [...e.attributes]"
            ".some(a => a.name.startsWith('on'))).length")
        pwned = page.evaluate("typeof window.__pwned")
        images = json.loads(page.evaluate(IMAGES_OK))
        problems = page.problems()
    assert problems == []  # a blocked script or handler would have logged a CSP violation
    assert injected == 0
    assert pwned == "undefined"
    assert len(images) >= 4 and all(w > 0 for _, w, _ in images)  # only our own embedded plots, all loaded
    for h in HOSTILE:  # the text is there, as text
        assert h.split(">")[0] in text
    assert "javascript:alert(4)" in text
