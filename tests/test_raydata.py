"""--data-parallel N: under --executor ray a cell's model calls run on a ray.data actor pool, with
the local executor's answers; under --executor local the flag is refused."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from harness.cli import main

MC = [  # a multiple-choice benchmark: its answers go through Runtime.loglikelihood
    ("m1", "Who opened the Harbor City bridge?", ["Alice Stone", "Raj Patel", "Marta Ruiz"], "Alice Stone", "test"),
    ("m2", "Where does Orion Labs build satellites?", ["Paris", "Denver", "Oslo"], "Denver", "test"),
    ("m3", "How deep is Lake Mira?", ["12 meters", "99 meters", "310 meters"], "310 meters", "test"),
    ("m4", "What does Marta Ruiz play?", ["piano", "saxophone"], "saxophone", "test"),
    ("m5", "Who founded Redwood School?", ["the Miller family", "the city"], "the Miller family", "train"),
    ("m6", "What does Pine Valley grow?", ["apples", "rice"], "apples", "train"),
]


def _mc_corpus(root: Path, tiny_corpus: Path) -> Path:
    root.mkdir()
    (root / "documents.jsonl").write_text((tiny_corpus / "documents.jsonl").read_text())
    (root / "questions.jsonl").write_text("".join(
        json.dumps({"id": i, "question": q, "choices": c, "answers": [a], "split": s}) + "\n" for i, q, c, a, s in MC))
    (root / "benchmark.json").write_text(json.dumps({"name": "tiny_mc", "task": "multiple_choice"}))
    return root


def test_data_parallel_needs_the_ray_executor(tiny_corpus, tiny_model, tmp_path, capsys):
    args = ["run", "--benchmark", str(tiny_corpus), "--model", str(tiny_model), "--out", str(tmp_path / "out"),
            "--strategies", "zero-shot", "--limit", "2", "--quiet", "--data-parallel", "2"]
    assert main(args) == 2
    assert "--data-parallel: only with --executor ray" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_pooled_calls_split_into_the_local_batches(tiny_model):
    """Without Ray: the batches PooledRuntime sends, each run alone as an actor runs it, give exactly
    what one local call gives (prompts of several lengths behind a long shared prefix)."""
    from dataclasses import asdict

    from harness.engine.scaleout.raydata import DataParallel, PooledRuntime
    from harness.model.runtime import Runtime

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a loaded 2-core machine made OpenMP spin (see test_lmeval_bridge.py)
    rt = Runtime(str(tiny_model), device="cpu", progress=False)
    system = [{"role": "system", "content": "Answer with a few words from the context. " * 3}]
    # pairs of one length that share more than all prompts share: a batch alone would cache a longer prefix
    users = ["red red red red red one", "red red red red red two", "blue sky three", "blue sky four", "x y z w v u t s"]
    prompts = [rt.encode_chat(system + [{"role": "user", "content": u}]) for u in users]
    sent = []

    class Local(PooledRuntime):
        def _run(self, jobs):  # what GeneratorActor does with each row, in this process
            sent.extend(len(job["args"][0]) for job in jobs)
            return [[asdict(r) for r in getattr(rt, job["call"])(*job["args"], **job["kwargs"])] for job in jobs]

    pooled = Local(rt, DataParallel(2))
    strip = lambda rs: [(r.text, r.prompt_tokens, r.output_tokens, r.batch_size) for r in rs]  # noqa: E731
    assert strip(pooled.generate(prompts, max_new_tokens=5, batch_size=2)) == strip(
        rt.generate(prompts, max_new_tokens=5, batch_size=2))
    assert sent == [2, 2, 1]
    requests = [(p, rt.tokenizer(c, add_special_tokens=False)["input_ids"]) for p in prompts[:4] for c in ("yes", "no")]
    strip = lambda rs: [(r.logprob, r.is_greedy, r.tokens, r.batch_size, r.batch) for r in rs]  # noqa: E731
    assert strip(pooled.loglikelihood(requests, batch_size=3)) == strip(rt.loglikelihood(requests, batch_size=3))
    other = object()  # a model the actors cannot load runs in the cell
    assert pooled._pooled(None) and not pooled._pooled(other)
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_two_actors_give_the_local_answers_once(tiny_corpus, tiny_model, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    from harness.engine.config import RunConfig
    from harness.engine.runner import run
    from harness.engine.scaleout.executors import RayExecutor

    log = tmp_path / "actors.log"
    monkeypatch.setenv("HARNESS_RAYDATA_LOG", str(log))  # before ray.init: the workers inherit it
    mc = _mc_corpus(tmp_path / "mc", tiny_corpus)
    # zero-shot on short-answer questions: Runtime.generate on the base model; lora on multiple
    # choice: Runtime.loglikelihood on the adapter, which the actors load from the store.
    # Batches of 2: three generation batches (6 questions), two loglikelihood ones (4 prompts).
    cells = [(tiny_corpus, "zero-shot"), (mc, "lora")]

    def cfg(name, bench, strategy):
        return RunConfig(benchmarks=(str(bench),), strategies=(strategy,), model=str(tiny_model), limit=6,
                         train_limit=8, max_new_tokens=6, batch_size=2, out=str(tmp_path / name / strategy),
                         options={"lora": {"epochs": 1, "batch_size": 4}} if strategy == "lora" else {})

    local = [run(cfg("local", *c), progress=False, log=lambda m: None, store=tmp_path / "store-local") for c in cells]
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    try:
        with RayExecutor(data_parallel=2) as executor:
            pooled = [run(cfg("ray", *c), progress=False, log=lambda m: None, store=tmp_path / "store-ray",
                          executor=executor) for c in cells]
    finally:
        ray.shutdown()

    def outputs(run_dir):
        rows = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
        return [(r["id"], r["output"], r["trace"].get("choice_logprobs"), r["usage"]["prompt_tokens"]) for r in rows]

    dp = []
    for x, y in zip(local, pooled):
        (a,), (b,) = (json.loads((d / "results.json").read_text())["cells"] for d in (x, y))
        assert b["status"] == "ok" and a["metrics"] == b["metrics"]
        assert outputs(x) == outputs(y)  # the same answers, in the questions' order
        assert "data_parallel" not in a
        dp.append(b["data_parallel"])
    assert [d["batches"] for d in dp] == [3, 2]
    assert all(d["pipelines"] == 1 and d["local_calls"] == 0 and 1 <= d["actors_used"] <= 2 for d in dp)
    # Each pipeline ran once: every batch was computed once, by at most 2 actors a cell.
    lines = log.read_text().splitlines()
    assert sum(line.startswith("batch ") for line in lines) == 5
    assert 2 <= sum(line.startswith("start ") for line in lines) <= 4


@pytest.mark.slow
def test_data_parallel_on_one_gpu_fails_fast(tiny_model):
    """On CUDA the cell keeps its GPU: one GPU leaves none for an actor (a logical GPU is enough here)."""
    ray = pytest.importorskip("ray")
    from harness.core.errors import HarnessError
    from harness.engine.config import RunConfig
    from harness.engine.scaleout.executors import RayExecutor

    ray.init(num_cpus=1, num_gpus=1, include_dashboard=False, logging_level="warning")
    try:
        with RayExecutor(data_parallel=2) as executor, pytest.raises(HarnessError, match="--data-parallel on CUDA"):
            executor.runtime(RunConfig(model=str(tiny_model), device="cuda"))
    finally:
        ray.shutdown()
