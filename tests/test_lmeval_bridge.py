"""The lm-eval bridge: exported tasks run in lm-eval, harness strategies run as lm-eval models,
and the forgetting check lands in the run record. All on the tiny fixture model and corpus."""
import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest
from conftest import DOCS

from harness.analysis import metrics
from harness.cli import main
from harness.core.errors import ConfigError, HarnessError
from harness.engine.config import RunConfig
from harness.lmeval.export import export_task
from harness.lmeval.model import evaluate, harness_lm_class, prepare_strategy
from harness.methods.prompts import Prompter

MC_QUESTIONS = [
    ("m1", "Who opened the Harbor City bridge?", ["Alice Stone", "Raj Patel", "Marta Ruiz"], "Alice Stone", "test",
     "d1"),
    ("m2", "Where does Orion Labs build satellites?", ["Paris", "Denver", "Oslo"], "Denver", "test", "d3"),
    ("m3", "How deep is Lake Mira?", ["12 meters", "99 meters", "310 meters"], "310 meters", "test", "d4"),
    ("m4", "What does Marta Ruiz play?", ["piano", "saxophone"], "saxophone", "test", "d5"),
    ("m5", "Who founded Redwood School?", ["the Miller family", "the city"], "the Miller family", "train", "d6"),
    ("m6", "What does Pine Valley grow?", ["apples", "rice"], "apples", "train", "d2"),
]


@pytest.fixture(autouse=True)
def one_thread():
    """A 64-wide model gains nothing from a second thread, and on a loaded 2-core machine OpenMP
    spin-waiting made its forward passes 30-50x slower."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _mc_corpus(root: Path, tiny_corpus: Path) -> Path:
    root.mkdir()
    (root / "documents.jsonl").write_text((tiny_corpus / "documents.jsonl").read_text())
    with open(root / "questions.jsonl", "w") as f:
        for i, q, choices, a, split, d in MC_QUESTIONS:
            f.write(json.dumps({"id": i, "question": q, "choices": choices, "answers": [a], "split": split,
                                "doc_ids": [d]}) + "\n")
    (root / "benchmark.json").write_text(json.dumps({"name": "tiny_mc", "task": "multiple_choice"}))
    return root


def _samples(res, name):
    return sorted(res["samples"][name], key=lambda s: s["doc_id"])


def test_exported_task_runs_in_lm_eval_from_any_folder(tiny_model, tiny_corpus, tmp_path, monkeypatch):
    yaml_path = export_task(str(tiny_corpus), tmp_path / "tasks")
    name = yaml_path.stem
    assert name == "harness_tiny"
    utils = (yaml_path.parent / "utils.py").read_text()
    assert "import harness" not in utils and "from harness" not in utils and "from ." not in utils
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # data paths must not depend on the working directory
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    res = simple_evaluate(model="hf", model_args=f"pretrained={tiny_model},device=cpu", tasks=[name],
                          task_manager=TaskManager(include_path=str(yaml_path.parent), include_defaults=False),
                          batch_size=4, apply_chat_template=True, bootstrap_iters=0)
    assert res["n-samples"][name]["effective"] == 6
    samples = _samples(res, name)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    prompter = Prompter.for_task("extractive_qa")
    for s in samples:
        # the harness's closed-book chat prompt, exactly
        expected = tok.apply_chat_template(prompter.closed_book(s["doc"]["question"]), tokenize=False,
                                           add_generation_prompt=True)
        assert s["arguments"][0][0] == expected
        want = metrics.score(s["resps"][0][0], s["doc"]["answers"], s["doc"]["question"])
        assert {m: s[m] for m in metrics.METRICS} == {m: want[m] for m in metrics.METRICS}
    for m in metrics.METRICS:
        assert res["results"][name][f"{m},none"] == pytest.approx(sum(s[m] for s in samples) / 6)


def test_exported_scoring_is_the_harness_scoring(tiny_corpus, tmp_path):
    yaml_path = export_task(str(tiny_corpus), tmp_path / "t")
    spec = importlib.util.spec_from_file_location("exported_utils", yaml_path.parent / "utils.py")
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    doc = {"question": "Who opened the Harbor City bridge?", "answers": ["Alice Stone"]}
    cases = {
        "The answer is: Alice Stone.": (1.0, 1.0, 1.0),
        "\n\nAlice Stone\nAnd Raj Patel": (1.0, 1.0, 1.0),  # harness stops at the newline after text
        "Mayor Alice": (0.0, 0.5, 0.0),
        "Raj Patel\nAlice Stone": (0.0, 0.0, 0.0),  # text after the first answer line is not seen
    }
    for out, (em, f1, contains) in cases.items():
        got = utils.process_results(doc, [out])
        assert (got["exact_match"], got["f1"], got["contains"]) == (em, f1, contains), out


def test_export_refuses_bad_input(tiny_corpus, tmp_path, capsys):
    out = tmp_path / "x"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(HarnessError, match="other files"):
        export_task(str(tiny_corpus), out)
    assert main(["export-lm-eval", str(tiny_corpus), str(out)]) == 2
    assert main(["export-lm-eval", str(tiny_corpus), str(tmp_path / "y"), "--name", "bad name!"]) == 2
    assert main(["export-lm-eval", "no_such_benchmark", str(tmp_path / "z")]) == 2
    assert not (tmp_path / "y").exists() and not (tmp_path / "z").exists()
    err = capsys.readouterr().err
    assert "other files" in err and "task name" in err and "unknown benchmark" in err
    # exporting again into its own folder replaces its files
    assert main(["export-lm-eval", str(tiny_corpus), str(tmp_path / "w")]) == 0
    assert main(["export-lm-eval", str(tiny_corpus), str(tmp_path / "w")]) == 0
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == [
        "harness_tiny.yaml", "harness_tiny_test.jsonl", "harness_tiny_train.jsonl", "utils.py"]


def test_multiple_choice_export_and_harness_models(tiny_model, tiny_corpus, tmp_path):
    corpus = _mc_corpus(tmp_path / "mc", tiny_corpus)
    yaml_path = export_task(str(corpus), tmp_path / "mc_task")
    name = yaml_path.stem
    rows = [json.loads(x) for x in (yaml_path.parent / f"{name}_test.jsonl").read_text().splitlines()]
    assert [r["label"] for r in rows] == [0, 1, 2, 1]
    cls = harness_lm_class()
    lls = {}
    for strategy, opts in (("zero-shot", {}), ("rag", {"k": 1}), ("lora", {"epochs": 1, "r": 4, "alpha": 8})):
        strat, rt = prepare_strategy(strategy, str(corpus), model=str(tiny_model), device="cpu", options=opts,
                                     workdir=tmp_path / f"work-{strategy}")
        res = evaluate(cls(prepared=strat, runtime=rt, batch_size=4), [name], yaml_path.parent,
                       apply_chat_template=False, log_samples=True)
        assert res["n-samples"][name]["effective"] == 4
        samples = _samples(res, name)
        assert [len(s["resps"]) for s in samples] == [3, 3, 3, 2]  # one log-likelihood per choice
        assert all("acc" in s and "acc_norm" in s for s in samples)
        acc = res["results"][name]["acc,none"]
        assert acc == pytest.approx(sum(s["acc"] for s in samples) / 4)
        lls[strategy] = [r[0][0] for s in samples for r in s["resps"]]
    # RAG conditions on retrieved text; LoRA scores with its trained model: both change the numbers
    assert lls["rag"] != lls["zero-shot"]
    assert lls["lora"] != lls["zero-shot"]


def test_bad_mc_row_is_a_data_error(tiny_corpus, tmp_path):
    corpus = _mc_corpus(tmp_path / "mc", tiny_corpus)
    lines = (corpus / "questions.jsonl").read_text().splitlines()
    row = json.loads(lines[0])
    row["answers"] = ["Nobody"]
    (corpus / "questions.jsonl").write_text("\n".join([json.dumps(row)] + lines[1:]) + "\n")
    assert main(["export-lm-eval", str(corpus), str(tmp_path / "out")]) == 2


def test_strategies_answer_exported_task_through_lm_eval(tiny_model, tiny_corpus, tmp_path, capsys):
    yaml_path = export_task(str(tiny_corpus), tmp_path / "tasks")
    name, folder = yaml_path.stem, str(yaml_path.parent)
    # through the CLI: the registered lm-eval model "harness" around zero-shot
    out = tmp_path / "zs.json"
    rc = main(["lm-eval", "--strategy", "zero-shot", "--benchmark", str(tiny_corpus), "--tasks", name,
               "--include-path", folder, "--limit", "3", "--model", str(tiny_model), "--device", "cpu",
               "--batch-size", "4", "--out", str(out)])
    assert rc == 0
    assert name in capsys.readouterr().out
    record = json.loads(out.read_text())
    assert record["n_samples"][name]["effective"] == 3 and "f1,none" in record["results"][name]
    # an unknown task is reported before any model work
    assert main(["lm-eval", "--strategy", "lora", "--tasks", "nope", "--include-path", folder]) == 2
    assert "unknown lm-eval task(s) nope" in capsys.readouterr().err
    # by model name, as lm-eval's own entry points create models
    from lm_eval.api.registry import get_model

    assert get_model("harness") is harness_lm_class()
    cls = harness_lm_class()
    rag = cls(strategy="rag", benchmark=str(tiny_corpus), model=str(tiny_model), device="cpu", batch_size=4, k=2)
    res = evaluate(rag, [name], folder, limit=3, log_samples=True)
    assert res["n-samples"][name]["effective"] == 3
    for s in res["samples"][name]:
        context = s["arguments"][0][0]
        assert context.count("<|im_start|>user") == 1 and s["doc"]["question"] in context
        shown = [text for _, _, text in DOCS if text in context]
        assert len(shown) == 2  # k=2 retrieved chunks (whole documents here), before the question
        assert all(context.index(t) < context.index(s["doc"]["question"]) for t in shown)
        assert "f1" in s
    few = cls(strategy="few-shot", benchmark=str(tiny_corpus), model=str(tiny_model), device="cpu", batch_size=4,
              shots=2)
    res = evaluate(few, [name], folder, limit=2, log_samples=True)
    for s in res["samples"][name]:
        context = s["arguments"][0][0]
        assert context.count("<|im_start|>assistant") == 3  # two demonstration answers, then the model's turn
        assert all(q in context and a in context for q, a in few.demos)
    lora = cls(strategy="lora", benchmark=str(tiny_corpus), model=str(tiny_model), device="cpu", batch_size=4,
               train_limit=8, epochs=1, r=4, alpha=8)
    assert lora.model is lora.strategy.model and lora.model is not lora.runtime.model
    res = evaluate(lora, [name], folder, limit=3, log_samples=True)
    assert res["n-samples"][name]["effective"] == 3 and all("f1" in s for s in res["samples"][name])
    with pytest.raises(ConfigError, match="unknown option"):
        cls(strategy="rag", benchmark=str(tiny_corpus), model=str(tiny_model), device="cpu", nope=1)


def test_forgetting_check_in_run_records(tiny_model, tiny_corpus, tmp_path):
    from harness.engine.runner import run

    with pytest.raises(ConfigError, match="forgetting"):
        RunConfig(forgetting="no_such_task")
    cfg = RunConfig(benchmarks=(str(tiny_corpus),), strategies=("zero-shot", "lora"),
                    options={"lora": {"epochs": 1, "r": 4, "alpha": 8}}, model=str(tiny_model), device="cpu",
                    max_new_tokens=6, batch_size=4, out=str(tmp_path / "run"), forgetting=str(tiny_corpus),
                    forgetting_limit=3)
    run_dir = run(cfg, progress=False, log=lambda m: None)
    cells = {c["strategy"]: c for c in json.loads((run_dir / "results.json").read_text())["cells"]}
    assert "forgetting" not in cells["zero-shot"]
    f = cells["lora"]["forgetting"]
    assert "error" not in f, f
    assert f["task"] == str(tiny_corpus) and f["metric"] == "f1" and f["n"] == 3
    assert f["wall_s"] > 0 and 0 <= f["base"] <= 1 and 0 <= f["tuned"] <= 1
    assert f["delta"] == pytest.approx(f["tuned"] - f["base"])
    md = (run_dir / "report.md").read_text()
    assert "### Forgetting" in md
    assert next(ln for ln in md.splitlines() if ln.startswith("| lora |") and "%+.3f" % f["delta"] in ln)
    # a rerun finds the cell, the check included, in the stage cache: same record, nothing recomputed
    again = run(dataclasses.replace(cfg, out=str(tmp_path / "again")), progress=False, log=lambda m: None)
    cells2 = {c["strategy"]: c for c in json.loads((again / "results.json").read_text())["cells"]}
    assert cells2["lora"]["cached"] and cells2["lora"]["forgetting"] == f


def test_forgetting_keys_in_experiment_yaml(tmp_path):
    from harness.engine.config import make_config

    path = tmp_path / "exp.yaml"
    path.write_text("strategies: [lora]\nforgetting: boolq\nforgetting_limit: 50\n")
    cfg = make_config(str(path), {})
    assert (cfg.forgetting, cfg.forgetting_limit) == ("boolq", 50)
    path.write_text("strategies: [lora]\nforgetting: boolq\nforgetting_limit: 0\n")
    with pytest.raises(ConfigError, match="forgetting_limit"):
        make_config(str(path), {})
    assert main(["run", "--strategies", "lora", "--forgetting", "nope"]) == 2
