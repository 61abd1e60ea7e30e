"""The report's building blocks and how they are written out: a Doc is a list of blocks (headings,
paragraphs, lists, tables, figures) that the Markdown and HTML renderers both turn into text, so the
two always say the same thing; summary.csv is rendered from the analysed records.
"""
from __future__ import annotations

import base64
import csv
import html
import io
import re

from harness.analysis.cost import Costs
from harness.analysis.decision import DecisionConfig

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


# ---- formatting -------------------------------------------------------------------------------

def fmt_num(x, fmt="{:.2f}") -> str:
    return "–" if x is None else fmt.format(x)


def fmt_usd(x) -> str:
    if x is None:
        return "–"
    if x == 0:
        return "$0"
    return f"${x:,.2f}" if abs(x) >= 1 else f"${x:.4f}" if abs(x) >= 1e-4 else f"${x:.2e}"


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

    def table(self, head, rows, best=None):
        """best: set of (row index, column index) to mark as the best value of its column."""
        self.blocks.append(("table", head, rows, best or set()))

    def img(self, png: bytes, alt: str):
        self.blocks.append(("img", png, alt))


# ---- renderers --------------------------------------------------------------------------------

def _md_cell(x: str) -> str:
    return x.replace("|", "\\|").replace("\n", " ")


def render_markdown(doc: Doc) -> str:
    out = []
    for blk in doc.blocks:
        kind = blk[0]
        if kind == "h":
            out += ["#" * blk[1] + " " + blk[2], ""]
        elif kind == "p":
            out += [blk[1], ""]
        elif kind == "ul":
            out += [f"- {x}" for x in blk[1]] + [""]
        elif kind == "table":
            _, head, rows, best = blk
            out.append("| " + " | ".join(_md_cell(h) for h in head) + " |")
            out.append("|" + "---|" * len(head))
            for i, r in enumerate(rows):
                out.append("| " + " | ".join(f"**{_md_cell(x)}**" if (i, j) in best and x else _md_cell(x)
                                             for j, x in enumerate(r)) + " |")
            out.append("")
        elif kind == "img":
            out += [f"*Figure in report.html: {blk[2]}.*", ""]
    return "\n".join(out)


def _inline(text: str) -> str:
    """Escape, then turn **x** into bold: the markup is added after escaping, so text cannot inject any."""
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(text))
    return re.sub(r"`([^`<>]+)`", r"<code>\1</code>", text)


def _samples_html(cells, brows) -> str:
    e = html.escape
    ok = [c for c in cells if c["status"] == "ok" and "metrics" in c]
    by = {(r["strategy"], r["id"]): r for r in brows}
    qids = list(dict.fromkeys(r["id"] for r in brows))[:8]
    if not qids:
        return ""
    out = ["<h3>Sample answers</h3><div class=wide><table><thead><tr><th>Question</th><th>Gold</th>"
           + "".join(f"<th>{e(c['strategy'])}</th>" for c in ok) + "</tr></thead><tbody>"]
    for qid in qids:
        q = next(r for r in brows if r["id"] == qid)
        tds = []
        for c in ok:
            r = by.get((c["strategy"], qid))
            cls = ' class="hit"' if r and r["f1"] > 0.5 else ""
            tds.append(f"<td{cls}>{e(r['extracted']) if r else ''}</td>")
        out.append(f"<tr><td>{e(q['question'])}</td><td>{e(' | '.join(map(str, q['answers'])))}</td>{''.join(tds)}</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


STYLE = (
    "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;color:#222}"
    "h2{border-bottom:2px solid #4c78a8;padding-bottom:.2em;margin-top:2em}h3{margin-top:1.6em}"
    "table{border-collapse:collapse;margin:.5em 0 1em;font-size:13px}"
    "th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}"
    "th{background:#f3f3f3}td.best{font-weight:bold;background:#fff4d6}td.hit{background:#e3f4e3}"
    "td small{color:#666;white-space:nowrap}.fail{color:#a00}.note{color:#555;font-size:12.5px}"
    ".wide{overflow-x:auto}img{max-width:100%;height:auto;display:block;margin:.5em 0 1em}"
    "ul.rec li{margin:.2em 0}"
)


def render_html(doc: Doc, title: str) -> str:
    e = html.escape
    body = []
    for blk in doc.blocks:
        kind = blk[0]
        if kind == "samples":
            body.append(_samples_html(blk[1], blk[2]))
        elif kind == "h":
            body.append(f"<h{blk[1]}>{_inline(blk[2])}</h{blk[1]}>")
        elif kind == "p":
            cls = f" class={blk[2]}" if blk[2] else ""
            body.append(f"<p{cls}>{_inline(blk[1])}</p>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{_inline(x)}</li>" for x in blk[1]) + "</ul>")
        elif kind == "table":
            _, head, rows, best = blk
            t = ["<div class=wide><table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr></thead><tbody>"]
            for i, r in enumerate(rows):
                tds = []
                for j, x in enumerate(r):
                    x = re.sub(r" (\[[^\]]*\])$", r" <small>\1</small>", e(x))
                    tds.append(f"<td class=best>{x}</td>" if (i, j) in best and x else f"<td>{x}</td>")
                t.append("<tr>" + "".join(tds) + "</tr>")
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
            "refresh", "refresh_usd"]


def render_csv(results: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_HEAD)
    a = results["analysis"]
    dc = DecisionConfig.from_dict(a["decision"])
    for c in results["cells"]:
        if c["status"] != "ok" or "metrics" not in c:
            w.writerow([c["benchmark"], c["strategy"], c.get("seed"), c["status"]] + [""] * 16
                       + [c.get("error") or ""] + [""] * 8)
            continue
        primary = a["primary_metric"][c["benchmark"]]
        d = a["benchmarks"][c["benchmark"]][str(c.get("seed"))]["strategies"].get(c["strategy"], {})
        co = Costs(**d["costs"]) if d.get("costs") else None
        lat = d.get("latency") or {}
        m, p, ans = c["metrics"], c.get("prepare") or {}, c.get("answer") or {}
        peak = max([x for x in (p.get("peak_rss_mb"), ans.get("peak_rss_mb")) if x is not None], default="")
        per1k = co.per_query_usd * 1000 if co and co.per_query_usd is not None else ""
        w.writerow([c["benchmark"], c["strategy"], c.get("seed"), "ok",
                    m["exact_match"]["mean"], m["exact_match"]["low"], m["exact_match"]["high"],
                    m["f1"]["mean"], m["f1"]["low"], m["f1"]["high"], m["contains"]["mean"],
                    p.get("wall_s", ""),
                    p["wall_s"] * a["prices"]["usd_per_hour"] / 3600 if p.get("wall_s") is not None else "",
                    p.get("artifact_bytes", 0) if p else "", ans.get("prompt_tokens_mean", ""),
                    ans.get("output_tokens_mean", ""), lat.get("p50", ""), lat.get("p95", ""), per1k, peak, "",
                    primary, *((m.get(primary) or {}).get(k, "") for k in ("mean", "low", "high")),
                    co.one_time_usd if co else "",
                    co.monthly(dc.monthly_queries, dc.refresh_days) if co and co.per_query_usd is not None else "",
                    co.refresh_kind if co else "", co.refresh_usd if co else ""])
    return buf.getvalue()
