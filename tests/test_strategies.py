"""Every registered strategy runs end to end through the runner on the tiny model and corpus."""
import json

from harness.core.records import read_jsonl
from harness.engine.config import RunConfig
from harness.engine.runner import run
from harness.methods.registry import all_strategies

FAST = {"lora": {"epochs": 1, "r": 4, "alpha": 8}, "lora-rag": {"epochs": 1, "r": 4, "alpha": 8}}


def _cfg(tiny_model, tiny_corpus, out, strategies, options=None):
    return RunConfig(benchmarks=(str(tiny_corpus),), strategies=tuple(strategies), options=options or {},
                     model=str(tiny_model), device="cpu", max_new_tokens=6, batch_size=4, out=str(out))


def test_every_strategy_end_to_end(tiny_model, tiny_corpus, tmp_path):
    names = list(all_strategies())
    assert {"zero-shot", "few-shot", "rag", "lora"} <= set(names)
    options = {k: v for k, v in FAST.items() if k in names}
    run_dir = run(_cfg(tiny_model, tiny_corpus, tmp_path / "run", names, options), progress=False,
                  log=lambda m: None)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["schema_version"] == 1
    assert results["run"]["finished"]
    cells = {c["strategy"]: c for c in results["cells"]}
    assert set(cells) == set(names)
    for name, c in cells.items():
        assert c["status"] == "ok", (name, c.get("error"), c.get("traceback"))
        for metric in ("exact_match", "f1", "contains"):
            m = c["metrics"][metric]
            assert m["n"] == 6 and m["low"] <= m["mean"] <= m["high"]
        a = c["answer"]
        assert a["queries"] == 6 and a["prompt_tokens_mean"] > 0
        assert 0 < a["latency_p50_s"] <= a["latency_p95_s"]
        assert a["usd_per_1k_queries"] > 0
        assert c["prepare"]["wall_s"] >= 0 and c["prepare"]["peak_rss_mb"] > 0
    # RAG puts retrieved text in the prompt and measures retrieval against the gold documents.
    assert cells["rag"]["answer"]["prompt_tokens_mean"] > cells["zero-shot"]["answer"]["prompt_tokens_mean"] + 20
    assert set(cells["rag"]["retrieval"]) == {"recall@1", "recall@2", "recall@3"}
    assert cells["rag"]["retrieval"]["recall@1"] <= cells["rag"]["retrieval"]["recall@3"]
    assert cells["rag"]["prepare"]["artifact_bytes"] > 0
    # FT + RAG: a trained adapter answering with the same retrieved context as rag
    assert cells["lora-rag"]["retrieval"] == cells["rag"]["retrieval"]
    assert cells["lora-rag"]["prepare"]["steps"] > 0
    # Few-shot demonstrations come from the train split, never the test split.
    assert all(d.startswith("t") for d in cells["few-shot"]["prepare"]["demo_ids"])
    lora = cells["lora"]["prepare"]
    assert 0 < lora["trainable_params"] < lora["total_params"]
    assert lora["train_examples"] + lora["eval_examples"] == 12  # the whole train split, one held-out slice
    assert lora["steps"] == -(-lora["train_examples"] // 8)  # one epoch at batch size 8
    assert lora["train_tokens"] > 0 and lora["artifact_bytes"] > 0
    assert (run_dir / "artifacts").is_dir()
    rows = read_jsonl(run_dir / "predictions.jsonl")
    assert len(rows) == 6 * len(names)
    assert {"output", "extracted", "exact_match", "f1", "contains", "usage"} <= set(rows[0])
    for f in ("report.md", "report.html", "summary.csv"):
        assert (run_dir / f).stat().st_size > 200
    md = (run_dir / "report.md").read_text()
    assert "| rag |" in md and "### Recommendation" in md


def test_failing_strategy_is_recorded_and_others_kept(tiny_model, tiny_corpus, tmp_path):
    options = {"lora": {"epochs": 1, "target_modules": "no_such_module"}}
    run_dir = run(_cfg(tiny_model, tiny_corpus, tmp_path / "run", ["zero-shot", "lora"], options),
                  progress=False, log=lambda m: None)
    results = json.loads((run_dir / "results.json").read_text())
    cells = {c["strategy"]: c for c in results["cells"]}
    assert cells["zero-shot"]["status"] == "ok"
    assert cells["lora"]["status"] == "failed" and "no_such_module" in cells["lora"]["error"]
    assert "lora" in (run_dir / "report.md").read_text()
    assert len(read_jsonl(run_dir / "predictions.jsonl")) == 6


def test_lora_rag_reuses_the_adapter_lora_trained(tiny_model, tiny_corpus, tmp_path):
    opts = {"lora": {"epochs": 1, "r": 4, "alpha": 8}, "lora-rag": {"epochs": 1, "r": 4, "alpha": 8, "k": 2}}
    run_dir = run(_cfg(tiny_model, tiny_corpus, tmp_path / "run", ["lora", "lora-rag"], opts),
                  progress=False, log=lambda m: None)
    cells = {c["strategy"]: c for c in json.loads((run_dir / "results.json").read_text())["cells"]}
    reused = cells["lora-rag"]["prepare"]
    assert reused["training_reused_from"] == "lora"
    assert reused["loss_curve"] == cells["lora"]["prepare"]["loss_curve"]
    assert "reused" in (run_dir / "report.md").read_text()
    # a different adapter config trains its own model
    opts["lora-rag"]["r"] = 2
    run_dir = run(_cfg(tiny_model, tiny_corpus, tmp_path / "run2", ["lora", "lora-rag"], opts),
                  progress=False, log=lambda m: None)
    cells = {c["strategy"]: c for c in json.loads((run_dir / "results.json").read_text())["cells"]}
    assert "training_reused_from" not in cells["lora-rag"]["prepare"]
