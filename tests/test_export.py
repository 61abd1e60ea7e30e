"""`harness export`: a trained adapter or model folder that plain peft / transformers load and that
gives the harness's answers; clear errors when there is nothing (left) to export."""
import json
import shutil
from pathlib import Path

import pytest
import torch

from harness.cli import main
from harness.core.errors import HarnessError
from harness.core.records import read_jsonl
from harness.engine.config import RunConfig
from harness.engine.runner import run
from harness.methods.export import base_name, export


@pytest.fixture(scope="module")
def lively_model(tiny_model, tmp_path_factory):
    """The tiny model with weights drawn 10x wider: the fixture's own answers are all newlines or
    nothing, which any two models would agree on; these differ by question and by adapter."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("lively")
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.2)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def trained_run(lively_model, tmp_path_factory):
    """lora and full-ft trained 2 epochs on the tiny corpus, plus zero-shot (which trains nothing)."""
    from tests.conftest import write_corpus

    root = tmp_path_factory.mktemp("export")
    corpus = write_corpus(root / "tiny")
    options = {"lora": {"epochs": 2, "batch_size": 4, "r": 4, "alpha": 8, "lr": 3e-3},
               "full-ft": {"epochs": 2, "batch_size": 4, "lr": 1e-3}}
    cfg = RunConfig(benchmarks=(str(corpus),), strategies=("zero-shot", "lora", "full-ft"), options=options,
                    model=str(lively_model), device="cpu", max_new_tokens=6, batch_size=4, out=str(root / "run"))
    return run(cfg, progress=False, log=lambda m: None)


def _outputs(run_dir, strategy) -> list[dict]:
    return [r for r in read_jsonl(run_dir / "predictions.jsonl") if r["strategy"] == strategy]


def _plain_answers(model, tokenizer, rows, max_new_tokens=6) -> list[str]:
    """What a user gets with plain transformers: the harness's closed-book messages through the chat
    template, greedy, one question at a time, cut at the end of turn and at the first newline after text."""
    from harness.methods import prompts

    stops = [tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.eos_token_id]
    out = []
    for r in rows:
        ids = tokenizer.apply_chat_template(prompts.closed_book(r["question"]), add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)["input_ids"]
        with torch.no_grad():
            gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                 do_sample=False, eos_token_id=stops, pad_token_id=tokenizer.pad_token_id)
        new = []
        for t in gen[0, ids.shape[1]:].tolist():
            if t in stops:
                break
            new.append(t)
        out.append(_first_line(tokenizer.decode(new, skip_special_tokens=True)))
    return out


def _first_line(text: str) -> str:
    """The answer up to the first newline after text: the harness's decoder stops there (keeping the
    newline it stopped on), plain generate runs on; scoring reads the first line either way."""
    return text.lstrip().split("\n", 1)[0] if text.strip() and "\n" in text.lstrip() else text


def _harness_answers(rows) -> list[str]:
    return [_first_line(r["output"]) for r in rows]


def test_exported_adapter_loads_with_plain_peft_and_gives_the_harness_answers(trained_run, lively_model, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = export(trained_run, "lora", tmp_path / "adapter")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(lively_model.resolve())  # a local model: its folder
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(lively_model), out).eval()
    tokenizer = AutoTokenizer.from_pretrained(lively_model)
    rows = _outputs(trained_run, "lora")
    assert len(rows) == 6 and len({r["output"] for r in rows}) > 3
    assert [r["output"] for r in rows] != [r["output"] for r in _outputs(trained_run, "zero-shot")]  # it matters
    assert _plain_answers(model, tokenizer, rows) == _harness_answers(rows)


def test_exported_full_fine_tune_is_a_model_folder_with_the_harness_answers(trained_run, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = export(trained_run, "full-ft", tmp_path / "model")
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= {p.name for p in out.iterdir()}
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    rows = _outputs(trained_run, "full-ft")
    assert [r["output"] for r in rows] != [r["output"] for r in _outputs(trained_run, "zero-shot")]
    assert _plain_answers(model, AutoTokenizer.from_pretrained(out), rows) == _harness_answers(rows)


def test_model_card_holds_metrics_data_hash_and_settings(trained_run, tmp_path):
    results = json.loads((trained_run / "results.json").read_text())
    cell = next(c for c in results["cells"] if c["strategy"] == "lora")
    out = export(trained_run, "lora", tmp_path / "card", base_model="my-org/base")
    card = (out / "README.md").read_text()
    assert card.startswith("---\nbase_model: my-org/base\nlibrary_name: peft\n")
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == "my-org/base"
    assert results["benchmarks"][0]["data_sha256"] in card
    f1 = cell["metrics"]["f1"]
    assert f"| f1 | {f1['mean']:.4g} | [{f1['low']:.4g}, {f1['high']:.4g}] | 6 |" in card
    for row in ("| learning rate | 0.003 |", "| epochs | 2 |", "| batch size (effective) | 4 |",
                "| precision | float32 |", f"| optimizer steps | {cell['prepare']['steps']} |"):
        assert row in card, row
    assert "vllm serve my-org/base --enable-lora --lora-modules lora=card" in card


def test_packaged_model_exports_under_its_hub_id():
    results = {"model": {"name": "smollm2-135m", "path": "/cache/models/smollm2-135m-1-2",
                         "hub_id": "HuggingFaceTB/SmolLM2-135M-Instruct"}}
    assert base_name(results, None) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert base_name(results, "other/name") == "other/name"
    del results["model"]["hub_id"]
    with pytest.raises(HarnessError, match="no known hub id; name the base with --base-model"):
        base_name(results, None)


@pytest.mark.real_model
def test_packaged_model_provenance_names_its_hub_id():
    from harness.model.modelstore import resolve_model

    _, provenance = resolve_model("smollm2-135m", progress=False)
    assert provenance["hub_id"] == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_export_errors_are_one_line_and_leave_nothing(trained_run, tmp_path, capsys):
    def fails(*argv) -> str:
        assert main(["export", *map(str, argv)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ")
        return err[-1]

    assert "zero-shot trains nothing" in fails(trained_run, "zero-shot", tmp_path / "a")
    assert "no strategy 'rag' in this run; it ran full-ft, lora, zero-shot" in fails(trained_run, "rag", tmp_path / "a")
    assert "no results.json here" in fails(tmp_path, "lora", tmp_path / "a")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert "already exists and is not empty" in fails(trained_run, "lora", tmp_path / "full")
    assert "0 cells of 'lora' match; pick one of: --benchmark tiny --seed 0" in fails(
        trained_run, "lora", tmp_path / "a", "--seed", "3")
    assert not (tmp_path / "a").exists() and not list(tmp_path.glob(".a.*"))


def test_cleared_cache_is_a_clear_error(tiny_model, tiny_corpus, tmp_path, capsys):
    cfg = RunConfig(benchmarks=(str(tiny_corpus),), strategies=("lora",), options={"lora": {"epochs": 1}},
                    model=str(tiny_model), device="cpu", max_new_tokens=4, out=str(tmp_path / "run"))
    run_dir = run(cfg, progress=False, log=lambda m: None)
    artifact = json.loads((run_dir / "results.json").read_text())["cells"][0]["prepare"]["artifact_path"]
    shutil.rmtree(Path(artifact).parent)  # what clearing the stage cache does to its entry
    assert main(["export", str(run_dir), "lora", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # (library warnings may come before it)
    assert err.startswith("error: ")
    assert f"the weights lora trained are no longer at {artifact} (the stage cache was cleared or moved)" in err
    assert err.endswith("--no-cache --out NEW_DIR` and export from NEW_DIR")
    assert not (tmp_path / "out").exists()
