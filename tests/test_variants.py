"""Named variants: one registered strategy several times in one run, each keyed by its own name in
results, cache, report and gate (`rag-k1: {strategy: rag, k: 1}`)."""
from __future__ import annotations

import json

import pytest

from harness.core.errors import ConfigError
from harness.engine.config import make_config
from harness.engine.runner import run


def test_variants_run_side_by_side(tiny_model, tiny_corpus, tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text(f"""
benchmark: {tiny_corpus}
model: {tiny_model}
device: cpu
max_new_tokens: 4
batch_size: 4
strategies:
  zero-shot: {{}}
  rag-k1: {{strategy: rag, k: 1}}
  rag-k2: {{strategy: rag, k: 2}}
""")
    cfg = make_config(str(exp), {"out": str(tmp_path / "run")})
    run_dir = run(cfg, progress=False, log=lambda m: None)
    results = json.loads((run_dir / "results.json").read_text())
    cells = {c["strategy"]: c for c in results["cells"]}
    assert set(cells) == {"zero-shot", "rag-k1", "rag-k2"}
    assert all(c["status"] == "ok" for c in cells.values()), [c.get("error") for c in cells.values()]
    assert cells["rag-k1"]["runs"] == "rag" and cells["rag-k1"]["config"]["k"] == 1
    assert cells["rag-k2"]["config"]["k"] == 2 and "runs" not in cells["zero-shot"]
    assert set(cells["rag-k1"]["retrieval"]) == {"recall@1"}
    assert set(cells["rag-k2"]["retrieval"]) == {"recall@1", "recall@2"}
    assert cells["rag-k1"]["cache"]["key"] != cells["rag-k2"]["cache"]["key"]
    rows = [json.loads(x) for x in (run_dir / "predictions.jsonl").read_text().splitlines()]
    assert {r["strategy"] for r in rows} == {"zero-shot", "rag-k1", "rag-k2"}
    assert all(len(r["trace"]["retrieved_doc_ids"]) == 1 for r in rows if r["strategy"] == "rag-k1")
    md = (run_dir / "report.md").read_text()
    assert "| rag-k1 |" in md and "| rag-k2 |" in md
    # the rerun finds both variants in the cache, each under its own key
    again = run(make_config(str(exp), {"out": str(tmp_path / "again")}), progress=False, log=lambda m: None)
    assert all(c["cached"] for c in json.loads((again / "results.json").read_text())["cells"])


def test_a_variant_of_an_unknown_strategy_names_the_file_and_line(tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text("strategies:\n  zero-shot: {}\n  rag-big:\n    strategy: ragg\n    k: 8\n")
    with pytest.raises(ConfigError, match=r"exp.yaml:3: unknown strategy 'ragg' \(variant 'rag-big'\)"):
        make_config(str(exp), {})


def test_a_variant_option_is_checked_against_its_strategy(tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text("strategies:\n  rag-x: {strategy: rag, rank: 8}\n")
    with pytest.raises(ConfigError, match="unknown option"):
        make_config(str(exp), {})
