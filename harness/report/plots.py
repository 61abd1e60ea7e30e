"""The report's figures, drawn with matplotlib (Agg) and returned as PNG bytes for embedding."""
from __future__ import annotations

import io

COLORS = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#eeca3b", "#9d755d",
          "#bab0ac", "#ff9da6", "#79706e", "#d67195"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False,
                         "svg.hashsalt": "report", "figure.dpi": 100})
    return plt


def _t(text: str) -> str:
    """Text shown as is: matplotlib would read $...$ as mathtext (and fail on unbalanced ones)."""
    return str(text).replace("$", r"\$")


def _compact(v: float, unit: str = "") -> str:
    """1,000 -> 1k, 2,000,000 -> 2M; small values with two significant digits."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{unit}{v / div:g}{suffix}"
    return f"{unit}{v:g}" if abs(v) >= 1 else f"{unit}{v:.2g}"


def _plain_log(axis) -> None:
    """Log-axis tick labels as plain numbers: clearer than 10^n, and mathtext is slow to draw."""
    from matplotlib.ticker import FuncFormatter, NullLocator

    axis.set_major_formatter(FuncFormatter(lambda v, _: _compact(v)))
    axis.set_minor_locator(NullLocator())  # dozens of minor tick objects cost seconds to draw


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    _plt().close(fig)
    return buf.getvalue()


def _png_legend_right(fig, ax) -> bytes:
    """A light grid, the legend outside on the right (long strategy names never cover the data), as PNG."""
    ax.grid(alpha=.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, .5), frameon=False)
    return _png(fig)


def _frontier(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (lower x, higher y), sorted by x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    keep, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            keep.append(i)
            best = points[i][1]
    return keep


def pareto(entries: list[dict], xkey: str, xlabel: str, ylabel: str, logx: bool = False,
           vline: float | None = None, vlabel: str = "", hline: float | None = None, hlabel: str = "") -> bytes:
    """Accuracy (with 95% CI error bars) against a cost; the non-dominated strategies joined by a line.
    An entry with "chosen" true is drawn larger; hline: the quality bar."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    pts = [(e[xkey], e["acc"]) for e in entries]
    for i, e in enumerate(entries):
        ax.errorbar(e[xkey], e["acc"], yerr=[[e["acc"] - e["low"]], [e["high"] - e["acc"]]],
                    fmt="*" if e.get("chosen") else "o", ms=11 if e.get("chosen") else 6,
                    color=COLORS[i % len(COLORS)], capsize=3,
                    label=_t(e["strategy"] + (" (recommended)" if e.get("chosen") else "")))
    front = _frontier(pts)
    for i in front:  # name the frontier's points; the rest cluster below it and are told apart by colour
        ax.annotate(_t(entries[i]["strategy"]), pts[i], textcoords="offset points", xytext=(6, 4), fontsize=7,
                    color="#333")
    ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "--", color="#888", lw=1,
            label="Pareto frontier", zorder=0)
    if vline:
        ax.axvline(vline, color="#c00", lw=1, ls=":", label=vlabel)
    if hline is not None:
        ax.axhline(hline, color="#c00", lw=1, ls="--", label=hlabel)
    xs = [p[0] for p in pts]
    if logx and xs and min(xs) > 0 and max(xs) / min(xs) < 1.5:
        # nearly equal costs (every strategy at the same always-on floor): a log axis would spread cents apart
        # as if they mattered; a linear axis around them shows them where they are, together
        logx = False
        mid = (max(xs) + min(xs)) / 2
        ax.set_xlim(mid * 0.7, mid * 1.3)
    if logx and all(p[0] > 0 for p in pts):
        ax.set_xscale("log")
    if logx:
        from matplotlib.ticker import LogLocator, NullLocator

        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_minor_locator(NullLocator())
    if xlabel.startswith("$"):
        from matplotlib.ticker import FuncFormatter

        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"${v:,.2f}" if v >= 10 else f"${v:.3g}"))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return _png_legend_right(fig, ax)


def curve_at(curve: dict, q: float) -> float:
    """Monthly $ of a serving.CostCurve (as a dict) at q queries a month: fixed + per query x q + sum of
    max(floor, $ per query x q) over its capacity pools."""
    return curve["fixed_usd"] + curve["per_query_usd"] * q + sum(max(fl, s * q) for fl, s in curve["terms"])


def break_even(curves: dict[str, dict], monthly_queries: float, volumes, chosen: str | None = None) -> bytes:
    """Monthly cost against monthly volume on the serving-cost model, one line per strategy (log-log);
    the recommended strategy drawn thicker."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    styles = ["-", "--", "-.", ":"]
    for i, (name, c) in enumerate(curves.items()):
        ax.plot(volumes, [max(curve_at(c, v), 1e-9) for v in volumes], color=COLORS[i % len(COLORS)],
                ls=styles[(i // len(COLORS)) % len(styles)] if name != chosen else "-",
                lw=3.0 if name == chosen else 1.4, label=_t(name + (" (recommended)" if name == chosen else "")),
                zorder=3 if name == chosen else 2)
    floors = sorted({round(sum(fl for fl, _ in c["terms"]), 2) for c in curves.values()} - {0.0})
    for fl in floors:  # name the always-on floor: on a log axis its height is hard to read
        ax.annotate(_t(f"always on: ${fl:,.2f}"), (volumes[0], fl), textcoords="offset points", xytext=(2, 4),
                    fontsize=7, color="#333")
    ax.axvline(monthly_queries, color="#c00", lw=1, ls=":", label=f"decision volume: {monthly_queries:,}/month")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log(ax.xaxis)
    _plain_log(ax.yaxis)
    from matplotlib.ticker import FuncFormatter, LogLocator

    lo, hi = ax.get_ylim()
    wide = hi / max(lo, 1e-12) > 1e4  # over four decades: one tick a decade is enough
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0,) if wide else (1.0, 2.0, 5.0), numticks=40))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _compact(v, "$")))
    ax.set_xlabel("queries per month")
    ax.set_ylabel("$ per month (serving + refreshes)")
    return _png_legend_right(fig, ax)


def latency(split: dict[str, tuple[list[float], list[float]]]) -> bytes:
    """Per-query latency of each strategy as boxes, generation and retrieval apart (log seconds)."""
    plt = _plt()
    names = list(split)
    fig, ax = plt.subplots(figsize=(6.4, 0.5 + 0.45 * len(names) + 0.6))
    pos = range(len(names))
    gen = ax.boxplot([split[n][0] for n in names], positions=[p + .18 for p in pos], widths=.3,
                     orientation="horizontal", patch_artist=True, showfliers=True,
                     medianprops={"color": "black"})
    ret_names = [i for i, n in enumerate(names) if any(x > 0 for x in split[n][1])]
    for patch in gen["boxes"]:
        patch.set_facecolor("#4c78a8")
    handles = [gen["boxes"][0]]
    labels = ["generation"]
    if ret_names:
        ret = ax.boxplot([[max(x, 1e-6) for x in split[names[i]][1]] for i in ret_names],
                         positions=[i - .18 for i in ret_names], widths=.3, orientation="horizontal",
                         patch_artist=True, medianprops={"color": "#f58518", "linewidth": 2.5})
        for patch in ret["boxes"]:
            patch.set_facecolor("#f58518")
        handles.append(ret["boxes"][0])
        labels.append("retrieval")
    ax.set_yticks(list(pos), [_t(n) for n in names])
    ax.set_xscale("log")
    _plain_log(ax.xaxis)
    ax.set_xlabel("seconds per query (log scale)")
    ax.grid(alpha=.3, axis="x")
    ax.legend(handles, labels, fontsize=7, loc="center left", bbox_to_anchor=(1.01, .5), frameon=False)
    ax.invert_yaxis()
    return _png(fig)


def losses(curves: dict[str, dict]) -> bytes:
    """Training loss per optimizer step, held-out loss per epoch as markers."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for i, (name, c) in enumerate(curves.items()):
        color = COLORS[i % len(COLORS)]
        curve = c["loss_curve"]
        steps = range(1, len(curve) + 1)
        w = max(1, len(curve) // 6)  # per-batch losses are noisy: a running mean shows the trend
        smooth = [sum(curve[max(0, j - w + 1): j + 1]) / len(curve[max(0, j - w + 1): j + 1])
                  for j in range(len(curve))]
        ax.plot(steps, curve, color=color, lw=.7, alpha=.35)
        ax.plot(steps, smooth, color=color, lw=1.8, label=_t(f"{name} (train, running mean of {w})"))
        ev = c.get("eval_loss") or []
        if ev:
            n = len(c["loss_curve"])
            xs = [round(n * (j + 1) / len(ev)) for j in range(len(ev))]
            ax.plot(xs, ev, "s", color=color, ms=6, mec="black", label=_t(f"{name} (held-out)"))
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (answer tokens)")
    return _png_legend_right(fig, ax)


def retrieval(diag: dict[str, dict], metric_label: str) -> bytes:
    """Recall@k of each RAG strategy, and its accuracy when the gold document was retrieved or not."""
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(7.6, 3.2))
    names = list(diag)
    for i, n in enumerate(names):
        rec = diag[n]["recall"]
        ks = [int(k.split("@")[1]) for k in rec]
        a1.plot(ks, list(rec.values()), "o-", color=COLORS[i % len(COLORS)], label=_t(n))
    a1.set_xlabel("k (chunks retrieved)")
    a1.set_xticks(sorted({int(k.split("@")[1]) for n in names for k in diag[n]["recall"]}))
    a1.set_ylabel("recall@k")
    a1.set_ylim(0, 1.05)
    a1.grid(alpha=.3)
    a1.legend(fontsize=7, frameon=False)
    w = 0.38
    for j, (key, label, color) in enumerate((("acc_gold_retrieved", "gold retrieved", "#54a24b"),
                                             ("acc_gold_missed", "gold missed", "#e45756"))):
        xs = [i + (j - .5) * w for i in range(len(names))]
        a2.bar(xs, [diag[n][key] or 0 for n in names], w, color=color, label=label)
    a2.set_xticks(range(len(names)), [_t(n) for n in names])
    a2.set_ylabel(metric_label)
    a2.grid(alpha=.3, axis="y")
    a2.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return _png(fig)


def learning_curves(curves: dict[str, list[tuple[int, float, float, float]]], metric_label: str) -> bytes:
    """Headline metric on test against train examples, one line per strategy, 95% CIs as error bars.
    curves: name -> [(train examples, mean, low, high)]. Symmetric-log x axis, so 0 has a place."""
    from matplotlib.ticker import NullLocator

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for i, (name, pts) in enumerate(curves.items()):
        pts = sorted(pts)
        xs = [p[0] for p in pts]
        ys = [p[1] for p in pts]
        err = [[p[1] - p[2] for p in pts], [p[3] - p[1] for p in pts]]
        ax.errorbar(xs, ys, yerr=err, fmt="o-", color=COLORS[i % len(COLORS)], capsize=3, label=_t(name))
    ax.set_xscale("symlog", linthresh=8)
    ticks = sorted({p[0] for pts in curves.values() for p in pts})
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    lows = [p[2] for pts in curves.values() for p in pts]
    if lows and min(lows) >= 0:
        ax.set_ylim(bottom=0)
    ax.set_xlabel("train examples (0: the untuned base model)")
    ax.set_ylabel(_t(metric_label) + " on test")
    ax.grid(alpha=.3)
    ax.legend(fontsize=7, frameon=False)
    return _png(fig)
