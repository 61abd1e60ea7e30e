"""Every fine-tuning method trains on the tiny model, its loss falls, and adapters reload."""
import json

import pytest
import torch

from harness.config import RunConfig
from harness.records import read_jsonl
from harness.runner import run
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

    from harness import prompts
    from harness.runtime import Runtime

    run_dir, _ = trained
    rt = Runtime(str(tiny_model), device="cpu", progress=False)
    adapter = run_dir / "artifacts" / "tiny" / f"{method}-seed0" / "checkpoint"
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
    for opts, message in ((
            {"method": "NoSuchMethod"}, "peft has no method"),
            ({"method": "lora", "options": {"target_modules": ["nope_proj"]}}, "nope_proj")):
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
    saved = load_file(run_dir / "artifacts" / "tiny" / "full-ft-seed0" / "checkpoint" / "trained.safetensors")
    assert any(k.startswith("model.layers.1.") for k in saved)
    assert not any(k.startswith("model.layers.0.") for k in saved)  # the bottom layer stayed frozen
    assert cell["prepare"]["trainable_params"] < cell["prepare"]["total_params"]
