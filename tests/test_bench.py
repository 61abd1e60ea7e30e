"""The bench suite: its statistics against hand-computed values, and a dry run on the fixture model
that must write a complete results.json and performance page."""
import json
import math

import pytest

from bench.stats import loglog_slope, percentile, ratio, summary


def test_summary_median_and_spread():
    s = summary([3.0, 1.0, 10.0, 2.0])
    assert s["median"] == 2.5 and s["min"] == 1.0 and s["max"] == 10.0 and s["n"] == 4
    assert s["spread"] == pytest.approx(9 / 2.5)
    assert summary([4.0])["spread"] == 0.0
    with pytest.raises(ValueError):
        summary([])


def test_ratio_is_per_pair():
    # Pairs (2/1, 9/3, 8/2) = (2, 3, 4): the median of the pairs, not the ratio of medians (8/2 = 4).
    r = ratio([2.0, 9.0, 8.0], [1.0, 3.0, 2.0])
    assert r["median"] == 3.0 and r["min"] == 2.0 and r["max"] == 4.0
    with pytest.raises(ValueError):
        ratio([1.0, 2.0], [1.0])


def test_percentile_interpolates():
    xs = [10.0, 20.0, 30.0, 40.0, 50.0]
    assert percentile(xs, 50) == 30.0
    assert percentile(xs, 95) == pytest.approx(48.0)
    assert percentile([7.0], 95) == 7.0


def test_loglog_slope():
    sizes = [100, 200, 400]
    assert loglog_slope(sizes, [3 * n + 0.0 for n in sizes]) == pytest.approx(1.0)
    assert loglog_slope(sizes, [n * n / 7 for n in sizes]) == pytest.approx(2.0)
    assert loglog_slope(sizes, [5.0, 5.0, 5.0]) == pytest.approx(0.0)
    assert not math.isclose(loglog_slope(sizes, [1.0, 2.5, 6.0]), 1.0)
    with pytest.raises(ValueError):
        loglog_slope([1, 1], [1.0, 2.0])


def test_dry_run_writes_results_and_page(tiny_model, tiny_corpus, tmp_path):
    from bench.suite import MEASUREMENTS, main

    out, doc = tmp_path / "results.json", tmp_path / "performance.md"
    doc.write_text("old\n<!-- hand-written notes below: kept when `make bench` rewrites this page -->\nmy note\n")
    rc = main(["--dry-run", "--model", str(tiny_model), "--benchmark", str(tiny_corpus),
               "--out", str(out), "--doc", str(doc)])
    res = json.loads(out.read_text())
    errors = {k: v.get("traceback", v.get("error")) for k, v in res["measurements"].items() if "error" in v}
    assert rc == 0 and not errors, errors
    assert set(res["measurements"]) == set(MEASUREMENTS) and res["mode"] == "dry-run"
    figures = [r["figure"] for r in res["headline"]]
    for needle in ("harness / lm-eval HFLM", "fp32 matmul peak", "LoRA r=16", "full fine-tuning",
                   "Index.build / bare encode", "scaling, indexing", "scaling, evaluation", "yardstick"):
        assert any(needle in f for f in figures), needle
    for r in res["headline"]:
        assert r["median"] > 0 or r["figure"].startswith("scaling"), r
    faiss = res["measurements"]["embedding"]["raw"]["faiss"]
    assert set(faiss) == {"100", "400"} and all(0 <= f["recall@3_vs_exact"] <= 1 for f in faiss.values())
    page = doc.read_text()
    assert page.startswith("# Performance") and "| figure |" in page and page.rstrip().endswith("my note")
    assert "old" not in page.split("<!--")[0]

    merged, page2 = tmp_path / "merged.json", tmp_path / "merged.md"
    assert main(["--from-json", str(out), str(out), "--out", str(merged), "--doc", str(page2)]) == 0
    again = json.loads(merged.read_text())
    assert again["headline"] == res["headline"] and len(again["merged_from"]) == 2
    assert "Merged from separate runs" in page2.read_text()


@pytest.mark.parametrize("mode", ["off", "on"])
def test_prefill_bf16_is_optional(tiny_model, tiny_corpus, mode):
    """`--bf16 off` (or auto on a CPU without bf16 kernels) records the probe and a reason instead of
    a bf16 prefill that would take several times the fp32 one; `on` measures it."""
    from bench.common import Options
    from bench.report import headline
    from bench.suite import run_one

    opts = Options(model=str(tiny_model), benchmark=str(tiny_corpus), reps=1, scale=0.02, dry_run=True, bf16=mode)
    raw = run_one("prefill", opts)
    assert raw["bf16_probe"]["float32_gflops"] > 0 and raw["bf16_probe"]["bfloat16_gflops"] > 0
    assert ("bfloat16" in raw["prefill_seconds"]) == (mode == "on")
    assert ("bf16_skipped" in raw) == (mode == "off")
    rows = {r["figure"]: r for r in headline({"measurements": {"prefill": {"raw": raw}}})}
    assert ("bf16 / fp32 prefill speed" in rows) == (mode == "on")
    assert ("bf16 / fp32 matmul speed (512 x 512 probe)" in rows) == (mode == "off")
