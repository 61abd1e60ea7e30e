"""tests/browser.py itself: the report tests pass when Page.problems() is empty, so it must see every kind
of problem: a page that has each of them. (A clean page reporting none is what the report tests check.)"""
import json

from browser import Page, ensure_chromium

BAD = """<!doctype html><html><head><meta http-equiv=Content-Security-Policy
content="default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; img-src data: file:"></head><body>
<p id=p>text</p>
<img src="missing.png">
<script>
console.error("an error"); console.warn("a warning"); console.assert(false, "an assertion");
alert("an alert"); confirm("a confirm");
eval("document.head.appendChild(Object.assign(document.createElement('style'), {textContent: 'p {}'}))");
setTimeout(() => { throw new Error("thrown later") }, 0);
</script></body></html>"""


def test_page_reports_every_kind_of_problem(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text(BAD)
    with Page(ensure_chromium()) as page:
        page.open(bad.as_uri())
        assert page.evaluate("document.getElementById('p').textContent") == "text"
        assert json.loads(page.evaluate("JSON.stringify([1, 'a'])")) == [1, "a"]
        problems = "\n".join(page.problems())
        log = page.log
    assert page.dialogs == ["an alert", "a confirm"]  # accepted, so the page went on
    for needle in ('"an error"', '"a warning"', '"an assertion"', "thrown later", "missing.png",
                   "Content Security Policy", "dialog: an alert", "dialog: a confirm"):
        assert needle in problems, (needle, problems)
    assert {e["source"] for e in log} >= {"console-api", "javascript", "network", "security"}

