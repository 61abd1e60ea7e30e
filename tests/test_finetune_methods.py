"""Every fine-tuning method trains on the tiny model, its loss falls, and adapters reload."""
import json
from pathlib import Path

import pytest

from harness.core.errors import ConfigError
from harness.core.records import read_jsonl
from harness.engine.config import RunConfig
from harness.engine.runner import run
from strategies.peft_methods import METHODS

ALL = ["lora", "full-ft", *METHODS]


@pytest.fixture(scope="module")
def trained(tiny_model, tmp_path_factory):
    """One run of every method: 8 epochs on the tiny corpus at 3x each preset's learning rate."""
    from tests.conftest import write_corpus

    root = tmp_path_factory.mktemp("peft")
    corpus = write_corpus(root / "tiny")
    options = {m: {"epochs": 8, "batch_size": 4, "lr": 3 * METHODS[m][2]} for m in METHODS}
    options["lora"] = {"epochs": 8, "batch_size": 4, "r": 4, "alpha": 8, "lr": 3e-3}
    options["full-ft"] = {"epochs": 8, "batch_size": 4, "lr": 1e-3}
    cfg = RunConfig(benchmarks=(str(corpus),), strategies=tuple(ALL), options=options, model=str(tiny_model),
                    device="cpu", max_new_tokens=6, batch_size=4, out=str(root / "run"))
    run_dir = run(cfg, progress=False, log=lambda m: None)
    return run_dir, {c["strategy"]: c for c in json.loads((run_dir / "results.json").read_text())["cells"]}


@pytest.mark.parametrize("method", ALL)
def test_method_trains_and_its_loss_goes_down(trained, method):
    _, cells = trained
    c = cells[method]
    assert c["status"] == "ok", c.get("error")
    p = c["prepare"]
    curve = p["loss_curve"]
    assert p["steps"] == len(curve) == 8 * 3
    assert sum(curve[-3:]) / 3 < sum(curve[:3]) / 3, curve
    if method == "full-ft":
        assert p["trainable_params"] == p["total_params"]
    else:
        assert 0 < p["trainable_params"] < p["total_params"] / 2  # the tiny model is only 64 wide
    assert p["artifact_bytes"] > 0 and p["train_tokens"] > 0
    assert c["metrics"]["f1"]["n"] == 6


def test_methods_differ_in_size(trained):
    _, cells = trained
    sizes = {m: cells[m]["prepare"]["trainable_params"] for m in ALL}
    assert sizes["ia3"] < sizes["lora"] and sizes["prompt-tuning"] < sizes["dora"]


@pytest.mark.parametrize("method", ["lora", "prompt-tuning"])
def test_saved_adapter_reloads_to_identical_predictions(trained, tiny_model, method):
    from peft import PeftModel

    from harness.methods import prompts
    from harness.model.runtime import Runtime

    run_dir, cells = trained
    rt = Runtime(str(tiny_model), device="cpu", progress=False)
    adapter = cells[method]["prepare"]["artifact_path"]  # in the stage cache; results.json names it
    model = PeftModel.from_pretrained(rt.fresh_model(), str(adapter)).eval()
    rows = [r for r in read_jsonl(run_dir / "predictions.jsonl") if r["strategy"] == method]
    ids = [rt.encode_chat(prompts.closed_book(r["question"])) for r in rows]
    if method == "lora":
        gens = rt.generate(ids, max_new_tokens=6, batch_size=4, model=model.merge_and_unload())
    else:
        gens = rt.generate_hf(ids, max_new_tokens=6, batch_size=4, model=model)
    assert [g.text for g in gens] == [r["output"] for r in rows]


def test_any_peft_method_by_name_and_bad_names(tiny_model, tiny_corpus, tmp_path):
    options = {"peft": {"method": "LoHa", "options": {"r": 2, "alpha": 4}}}
    cfg = RunConfig(benchmarks=(str(tiny_corpus),), strategies=("peft",), options=options,
                    model=str(tiny_model), device="cpu", max_new_tokens=4, out=str(tmp_path / "a"))
    cell = json.loads((run(cfg, progress=False, log=lambda m: None) / "results.json").read_text())["cells"][0]
    assert cell["status"] == "ok" and cell["prepare"]["peft_type"] == "loha"
    # an unknown method is a config error, found before the model loads and before any run folder
    bad = RunConfig(benchmarks=(str(tiny_corpus),), strategies=("zero-shot", "peft"),
                    options={"peft": {"method": "NoSuchMethod"}}, model=str(tiny_model), out=str(tmp_path / "x"))
    with pytest.raises(ConfigError, match="peft.method 'NoSuchMethod'"):
        run(bad, progress=False, log=lambda m: None)
    assert not (tmp_path / "x").exists()
    # options peft rejects show only when the adapter is built: that strategy fails, the others run
    for opts, message in (
            ({"method": "lora", "options": {"target_modules": ["nope_proj"]}}, "nope_proj"),):
        cfg = RunConfig(benchmarks=(str(tiny_corpus),), strategies=("zero-shot", "peft"), options={"peft": opts},
                        model=str(tiny_model), device="cpu", max_new_tokens=4, out=str(tmp_path / opts["method"]))
        cells = json.loads((run(cfg, progress=False, log=lambda m: None) / "results.json").read_text())["cells"]
        assert cells[0]["status"] == "ok"
        assert cells[1]["status"] == "failed" and message in cells[1]["error"], cells[1]["error"]


def test_partial_transfer_trains_only_the_top_layers(tiny_model, tiny_corpus, tmp_path):
    from safetensors.torch import load_file

    cfg = RunConfig(benchmarks=(str(tiny_corpus),), strategies=("full-ft",),
                    options={"full-ft": {"train_layers": 1, "lr": 1e-3}}, model=str(tiny_model), device="cpu",
                    max_new_tokens=4, out=str(tmp_path / "run"))
    run_dir = run(cfg, progress=False, log=lambda m: None)
    cell = json.loads((run_dir / "results.json").read_text())["cells"][0]
    assert cell["status"] == "ok" and cell["prepare"]["train_layers"] == 1
    saved = load_file(Path(cell["prepare"]["artifact_path"]) / "trained.safetensors")
    assert any(k.startswith("model.layers.1.") for k in saved)
    assert not any(k.startswith("model.layers.0.") for k in saved)  # the bottom layer stayed frozen
    assert cell["prepare"]["trainable_params"] < cell["prepare"]["total_params"]


def _yes_no_corpus(root):
    from tests.conftest import DOCS, write_corpus

    qs = [(f"y{i}", f"Is {title} mentioned in the records?", ["yes" if i % 2 else "no"],
           "test" if i < 4 else "train", [doc_id]) for i, (doc_id, title, _) in enumerate(DOCS * 2)]
    path = write_corpus(root, questions=qs)
    (path / "benchmark.json").write_text(json.dumps({"name": "tiny-yn", "task": "yes_no"}))
    return path


def test_multitask_mixes_tasks_by_ratio(tiny_model, tiny_corpus, tmp_path):
    yn = _yes_no_corpus(tmp_path / "yn")
    opts = {"multitask": {"tasks": [str(tiny_corpus), str(yn)], "mix": [1, 1], "r": 4, "alpha": 8,
                          "epochs": 4, "batch_size": 4, "lr": 3e-3}}
    cfg = RunConfig(benchmarks=(str(tiny_corpus), str(yn)), strategies=("multitask",), options=opts,
                    model=str(tiny_model), device="cpu", max_new_tokens=4, out=str(tmp_path / "run"))
    cells = json.loads((run(cfg, progress=False, log=lambda m: None) / "results.json").read_text())["cells"]
    assert [c["benchmark"] for c in cells] == ["tiny", "tiny-yn"]  # evaluated on every task
    for c in cells:
        assert c["status"] == "ok", c.get("error")
        # 12 + 8 train examples, equal shares of 20: 10 from each, capped at 8 for the yes/no task
        assert c["prepare"]["mixture"] == {"tiny": 10, "tiny-yn": 8}
        assert c["metrics"]["exact_match"]["n"] in (6, 4)
        curve = c["prepare"]["loss_curve"]
        assert sum(curve[-3:]) / 3 < sum(curve[:3]) / 3, curve


def test_multitask_mixture_counts():
    from strategies.multitask import mixture

    assert mixture([100, 50], (), 150) == [100, 50]
    assert mixture([100, 50], (3, 1), 150) == [100, 38]
    assert mixture([100, 50], (1, 3), 150) == [38, 50]


def test_sequential_reports_forgetting(tiny_model, tiny_corpus, tmp_path):
    yn = _yes_no_corpus(tmp_path / "yn")
    opts = {"sequential": {"first": str(yn), "r": 4, "alpha": 8, "epochs": 2}}
    cfg = RunConfig(benchmarks=(str(tiny_corpus),), strategies=("sequential",), options=opts,
                    model=str(tiny_model), device="cpu", max_new_tokens=4, out=str(tmp_path / "run"))
    cell = json.loads((run(cfg, progress=False, log=lambda m: None) / "results.json").read_text())["cells"][0]
    assert cell["status"] == "ok", cell.get("error")
    p = cell["prepare"]
    assert [ph["task"] for ph in p["phases"]] == ["tiny-yn", "tiny"]
    assert p["task_a_questions"] == 4
    before, after = p["task_a_accuracy_after_a"], p["task_a_accuracy_after_b"]
    assert 0 <= before <= 1 and 0 <= after <= 1
    assert p["forgetting"] == pytest.approx(before - after)
    assert p["steps"] == len(p["loss_curve"]) > 0


def test_knowledge_injection_and_raft(tiny_model, tiny_corpus, tmp_path):
    opts = {"knowledge": {"r": 4, "alpha": 8, "piece_tokens": 32, "epochs": 4, "batch_size": 4, "lr": 3e-3},
            "raft": {"r": 4, "alpha": 8, "distractors": 2, "p_gold": 1.0, "k": 2, "epochs": 4, "batch_size": 4,
                     "lr": 3e-3}}
    cfg = RunConfig(benchmarks=(str(tiny_corpus),), strategies=("knowledge", "raft"), options=opts,
                    model=str(tiny_model), device="cpu", max_new_tokens=4, out=str(tmp_path / "run"))
    cells = {c["strategy"]: c for c in
             json.loads((run(cfg, progress=False, log=lambda m: None) / "results.json").read_text())["cells"]}
    k = cells["knowledge"]
    assert k["status"] == "ok", k.get("error")
    assert [p["task"] for p in k["prepare"]["phases"]] == ["documents", "tiny"]
    assert k["prepare"]["phases"][0]["examples"] >= 6  # at least one piece per document
    r = cells["raft"]
    assert r["status"] == "ok", r.get("error")
    assert r["prepare"]["contexts_with_gold"] == 12  # p_gold=1: every training context holds its gold chunk
    assert set(r["retrieval"]) == {"recall@1", "recall@2"}
    for c in (k, r):
        curve = c["prepare"]["loss_curve"]
        assert sum(curve[-3:]) / 3 < sum(curve[:3]) / 3, (c["strategy"], curve)
    assert r["answer"]["prompt_tokens_mean"] > cells["knowledge"]["answer"]["prompt_tokens_mean"]
