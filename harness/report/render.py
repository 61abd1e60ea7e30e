"""The report's building blocks and how they are written out: a Doc is a list of blocks (headings,
paragraphs, lists, tables, figures) that the Markdown and HTML renderers both turn into text, so the
two always say the same thing; summary.csv is rendered from the analysed records.
"""
from __future__ import annotations

import base64
import csv
import html
import io
import math
import re

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


# ---- formatting -------------------------------------------------------------------------------

def fmt_num(x, fmt="{:.2f}") -> str:
    return "–" if x is None else fmt.format(x)


def fmt_usd(x) -> str:
    """$1,234.56 from a dollar up; three significant digits below ($0.000621); below a millionth of a dollar
    (a prompt strategy's milliseconds of preparation) "<$0.000001", which a reader takes in at a glance."""
    if x is None:
        return "–"
    if x == 0:
        return "$0"
    if abs(x) >= 1:
        return f"${x:,.2f}"
    if abs(x) < 1e-6:
        return "<$0.000001" if x > 0 else "-<$0.000001"
    return f"${x:.{max(2, 2 - math.floor(math.log10(abs(x))))}f}"


def fmt_size(b) -> str:
    if b is None:
        return "–"
    if b == 0:
        return "none"
    for unit in ("B", "KB", "MB", "GB"):
        if b < 1024 or unit == "GB":
            return f"{b:.0f} {unit}" if unit == "B" else f"{b:.1f} {unit}"
        b /= 1024


def fmt_ci(m: dict | None) -> str:
    if not m or m.get("mean") is None:
        return "–"
    return f"{m['mean']:.3f} [{m['low']:.3f}, {m['high']:.3f}]"


def fmt_p(p) -> str:
    return "–" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")


def fmt_queries(q) -> str:
    return "never" if q is None else f"{q:,.0f}"


# ---- content ----------------------------------------------------------------------------------

class Doc:
    """Blocks shared by the Markdown and HTML renderers. Text is plain; **x** marks bold."""

    def __init__(self):
        self.blocks: list[tuple] = []

    def h(self, level, text):
        self.blocks.append(("h", level, text))

    def p(self, text, cls=""):
        self.blocks.append(("p", text, cls))

    def ul(self, items):
        if items:
            self.blocks.append(("ul", list(items)))

    def table(self, head, rows, best=None, mark=None):
        """best: set of (row index, column index) to mark as the best value of its column;
        mark: set of row indices to highlight (the recommended strategy's row)."""
        self.blocks.append(("table", head, rows, best or set(), mark or set()))

    def details(self, summary: str, html_only: bool = False):
        """Open a collapsible part (HTML <details>, no script needed); close it with end_details().
        In Markdown its summary is a bold line, or, html_only, the whole part is left out."""
        self.blocks.append(("details", summary, html_only))

    def end_details(self):
        self.blocks.append(("end_details",))

    def img(self, png: bytes, alt: str):
        self.blocks.append(("img", png, alt))


# ---- renderers --------------------------------------------------------------------------------

_MD_TAG = re.compile(r"<(?=[A-Za-z/!?])")  # what could open raw HTML or an autolink (<script>, <javascript:x>)
_MD_LINK = re.compile(r"\](?=[(\[:])")     # what could close a link or image text, or a link definition
_LINES = re.compile(r"[\r\n\x0b\x0c\x85\u2028\u2029]+")


def md_text(x: str) -> str:
    """Text for Markdown, neutral in its format: no raw HTML (`<script>`, `<img onerror>`), no link or
    image (`[x](javascript:...)`, `![x](http://tracker)`, `[x]: url` definitions), one line. The Doc's
    own markup (**bold**) passes; brackets that open no link ("0.035 [0.021, 0.049]") stay as written."""
    x = _LINES.sub(" ", x).replace("\\", "\\\\")  # first: a backslash of the text cannot undo an escape
    x = _MD_TAG.sub("&lt;", x)
    return _MD_LINK.sub("\\\\]", x)


def _md_cell(x: str) -> str:
    return md_text(x).replace("|", "\\|")


def render_markdown(doc: Doc) -> str:
    """Every text is escaped (md_text): names, errors and source fields come from benchmark files,
    configs and model output, and code hosts render report.md as HTML."""
    out = []
    skip = 0  # depth inside html_only details
    for blk in doc.blocks:
        kind = blk[0]
        if kind == "details":
            if skip or blk[2]:
                skip += 1
            else:
                out += [f"**{blk[1]}**", ""]
            continue
        if kind == "end_details":
            skip = max(skip - 1, 0)
            continue
        if skip:
            continue
        if kind == "h":
            out += ["#" * blk[1] + " " + md_text(blk[2]), ""]
        elif kind == "p":
            out += [md_text(blk[1]), ""]
        elif kind == "ul":
            out += [f"- {md_text(x)}" for x in blk[1]] + [""]
        elif kind == "table":
            _, head, rows, best, _mark = blk
            out.append("| " + " | ".join(_md_cell(h) for h in head) + " |")
            out.append("|" + "---|" * len(head))
            for i, r in enumerate(rows):
                out.append("| " + " | ".join(f"**{_md_cell(x)}**" if (i, j) in best and x else _md_cell(x)
                                             for j, x in enumerate(r)) + " |")
            out.append("")
        elif kind == "img":
            out += [f"*Figure in report.html: {md_text(blk[2])}.*", ""]
    return "\n".join(out)


def _inline(text: str) -> str:
    """Escape, then turn **x** into bold: the markup is added after escaping, so text cannot inject any."""
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(text))
    return re.sub(r"`([^`<>]+)`", r"<code>\1</code>", text)


STYLE = (
    "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;color:#222}"
    "h2{border-bottom:2px solid #4c78a8;padding-bottom:.2em;margin-top:2em}h3{margin-top:1.6em}"
    "table{border-collapse:collapse;margin:.5em 0 1em;font-size:13px}"
    "th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}"
    "th{background:#f3f3f3}td.best{font-weight:bold;background:#fff4d6}td.hit{background:#e3f4e3}"
    "td small{color:#666;white-space:nowrap}.fail{color:#a00}.note{color:#555;font-size:12.5px}"
    ".wide{overflow-x:auto}img{max-width:100%;height:auto;display:block;margin:.5em 0 1em}"
    "ul.rec li{margin:.2em 0}"
    "tr.mark td{background:#e6f0fa;border-top:2px solid #4c78a8;border-bottom:2px solid #4c78a8}"
    "tr.mark td.best{background:#fff4d6}details{margin:.3em 0 .6em}summary{cursor:pointer;font-weight:600}"
    "details>.wide{margin-left:1em}td small.src{display:block;white-space:normal}"
)


def render_html(doc: Doc, title: str) -> str:
    e = html.escape
    body = []
    for blk in doc.blocks:
        kind = blk[0]
        if kind == "h":
            body.append(f"<h{blk[1]}>{_inline(blk[2])}</h{blk[1]}>")
        elif kind == "p":
            cls = f" class={blk[2]}" if blk[2] else ""
            body.append(f"<p{cls}>{_inline(blk[1])}</p>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{_inline(x)}</li>" for x in blk[1]) + "</ul>")
        elif kind == "details":
            body.append(f"<details><summary>{_inline(blk[1])}</summary>")
        elif kind == "end_details":
            body.append("</details>")
        elif kind == "table":
            _, head, rows, best, mark = blk
            t = ["<div class=wide><table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in head)
                 + "</tr></thead><tbody>"]
            for i, r in enumerate(rows):
                tds = []
                for j, x in enumerate(r):
                    x = re.sub(r" (\[[^\]]*\])$", r" <small>\1</small>", e(x))
                    tds.append(f"<td class=best>{x}</td>" if (i, j) in best and x else f"<td>{x}</td>")
                t.append(("<tr class=mark>" if i in mark else "<tr>") + "".join(tds) + "</tr>")
            t.append("</tbody></table></div>")
            body.append("".join(t))
        elif kind == "img":
            data = base64.b64encode(blk[1]).decode("ascii")
            body.append(f'<img alt="{e(blk[2])}" src="data:image/png;base64,{data}">')
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{e(title)}</title>"
            f"<meta http-equiv=Content-Security-Policy content=\"{CSP}\">"
            f"<meta name=viewport content=\"width=device-width,initial-scale=1\">"
            f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n")


CSV_HEAD = ["benchmark", "strategy", "seed", "status", "exact_match", "exact_match_low", "exact_match_high",
            "f1", "f1_low", "f1_high", "contains", "prepare_wall_s", "prepare_usd", "artifact_bytes",
            "prompt_tokens_mean", "output_tokens_mean", "latency_p50_s", "latency_p95_s",
            "usd_per_1k_queries", "peak_rss_mb", "error",
            # added with the decision report; older readers of this file see the same first columns
            "primary_metric", "accuracy", "accuracy_low", "accuracy_high", "one_time_usd", "usd_per_month",
            "refresh", "refresh_usd",
            # the serving-cost model and the decision (pooled over seeds: the same on every seed's row)
            "usd_per_correct", "kind", "machine", "decision_latency_s", "latency_source", "verdict", "recommended"]

REFRESH = {"prompting": "none", "rag": "re-index", "adapter": "re-train", "full": "re-train",
           "adapter+rag": "re-train + re-index", "full+rag": "re-train + re-index"}


_FORMULA = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet runs a cell starting so as a formula


def csv_cell(x):
    """A CSV value a spreadsheet shows as text: a string that would start a formula ("=HYPERLINK(...)",
    "@SUM", "-2+3") gets a leading apostrophe (OWASP's CSV-injection rule). Numbers are left alone."""
    if isinstance(x, str) and x.startswith(_FORMULA):
        return "'" + x
    return x


class _NeutralWriter:
    def __init__(self, buf):
        self.w = csv.writer(buf)

    def writerow(self, row):
        self.w.writerow([csv_cell(x) for x in row])


def render_csv(results: dict) -> str:
    """One row per cell. Cost columns come from the benchmark's decision (serving-cost model, pooled over
    seeds): usd_per_1k_queries is the monthly cost / monthly queries x 1,000, prepare_usd and one_time_usd
    the preparation's measured seconds at the machine's price, refresh_usd one refresh."""
    from harness.analysis.serving import cell_model, run_models

    buf = io.StringIO()
    several = len(run_models(results)) > 1  # several models: a last column says which one each row ran on
    w = _NeutralWriter(buf)
    w.writerow(CSV_HEAD + ["model"] * several)
    a = results["analysis"]
    for c in results["cells"]:
        tail = [cell_model(c, results)[0]] * several
        if c["status"] != "ok" or "metrics" not in c:
            w.writerow([c["benchmark"], c["strategy"], c.get("seed"), c["status"]] + [""] * 16
                       + [c.get("error") or ""] + [""] * (len(CSV_HEAD) - 21) + tail)
            continue
        primary = a["primary_metric"][c["benchmark"]]
        dec = (a.get("decisions") or {}).get(c["benchmark"]) or {}
        d = a["benchmarks"][c["benchmark"]][str(c.get("seed"))]["strategies"].get(c["strategy"], {})
        co = (dec.get("costs") or {}).get(c["strategy"]) or {}
        facts = (dec.get("facts") or {}).get(c["strategy"]) or {}
        row = next((r for r in (dec.get("verdict") or {}).get("rows", []) if r["name"] == c["strategy"]), {})
        lat_d = (dec.get("latency") or {}).get(c["strategy"]) or {}
        lat = d.get("latency") or {}
        m, p, ans = c["metrics"], c.get("prepare") or {}, c.get("answer") or {}
        peak = max([x for x in (p.get("peak_rss_mb"), ans.get("peak_rss_mb")) if x is not None], default="")
        usd_h = co.get("usd_per_hour")
        per1k = co["per_query_usd"] * 1000 if co.get("per_query_usd") is not None else ""
        rf = co.get("refresh") or {}
        w.writerow([c["benchmark"], c["strategy"], c.get("seed"), "ok",
                    m["exact_match"]["mean"], m["exact_match"]["low"], m["exact_match"]["high"],
                    m["f1"]["mean"], m["f1"]["low"], m["f1"]["high"], m["contains"]["mean"],
                    p.get("wall_s", ""),
                    p["wall_s"] * usd_h / 3600 if p.get("wall_s") is not None and usd_h is not None else "",
                    p.get("artifact_bytes", 0) if p else "", ans.get("prompt_tokens_mean", ""),
                    ans.get("output_tokens_mean", ""), lat.get("p50", ""), lat.get("p95", ""), per1k, peak, "",
                    primary, m[primary]["mean"], m[primary]["low"], m[primary]["high"],
                    _blank(co.get("one_time_usd")), _blank(co.get("total_usd")),
                    REFRESH.get(facts.get("kind"), ""), _blank(rf.get("each_usd")),
                    _blank(co.get("per_correct_usd")), facts.get("kind", ""), co.get("machine", ""),
                    _blank(lat_d.get("p95_s")), lat_d.get("source") or "", row.get("status", ""),
                    c["strategy"] == (dec.get("verdict") or {}).get("chosen")] + tail)
    return buf.getvalue()


def _blank(x):
    return "" if x is None else x
