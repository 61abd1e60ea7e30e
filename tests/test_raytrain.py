"""--train-workers K: a fine-tuning cell trains on K Ray Train workers under --executor ray, and the
cell evaluates the adapter they wrote; the local executor refuses K > 1."""
from __future__ import annotations

import json

import pytest

from harness.cli import main
from harness.core.errors import ConfigError
from harness.engine.config import RunConfig

LORA = {"lora": {"epochs": 2, "batch_size": 4, "dropout": 0.0}}  # dropout 0: ranks draw no different masks


def test_local_executor_refuses_several_train_workers(tiny_corpus, tiny_model, tmp_path, capsys):
    code = main(["run", "--benchmark", str(tiny_corpus), "--model", str(tiny_model), "--strategies", "lora",
                 "--limit", "1", "--quiet", "--out", str(tmp_path / "out"), "--train-workers", "2"])
    assert code == 2
    err = capsys.readouterr().err
    assert "train_workers 2 needs --executor ray" in err and "torchrun" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", [0, -1, True, 1.5])
def test_train_workers_must_be_a_positive_integer(value):
    with pytest.raises(ConfigError, match="train_workers must be a positive integer"):
        RunConfig(train_workers=value)


def _cfg(tiny_corpus, tiny_model, tmp_path, name, **kw):
    return RunConfig(benchmarks=(str(tiny_corpus),), strategies=("lora",), model=str(tiny_model), limit=2,
                     train_limit=8, max_new_tokens=6, options=LORA, out=str(tmp_path / name), **kw)


def _outputs(run_dir):
    rows = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    return {r["id"]: r["output"] for r in rows}


@pytest.mark.slow
@pytest.mark.parametrize("sharding", ["ddp", "fsdp"])
def test_two_worker_ray_train_adapter_is_what_the_cell_evaluates(tiny_corpus, tiny_model, tmp_path, sharding):
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.train.torch")
    from harness.cache.stages import StageCache
    from harness.data.benchmark import load_benchmark
    from harness.engine.runner import run
    from harness.engine.scaleout.executors import RayExecutor
    from harness.methods.registry import build_config, get_spec
    from harness.methods.strategy import PrepareContext
    from harness.model.runtime import Runtime

    store = tmp_path / "store"
    one = run(_cfg(tiny_corpus, tiny_model, tmp_path, "one"), progress=False, log=lambda m: None, store=store)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    try:
        with RayExecutor() as executor:
            two = run(_cfg(tiny_corpus, tiny_model, tmp_path, "two", train_workers=2, train_sharding=sharding),
                      progress=False,
                      log=lambda m: None, store=store, executor=executor)
    finally:
        ray.shutdown()
    [a] = json.loads((one / "results.json").read_text())["cells"]
    [b] = json.loads((two / "results.json").read_text())["cells"]
    assert b["status"] == "ok", b.get("error")
    prep = b["prepare"]
    assert prep["ray_train"]["workers"] == 2 and not prep["artifact_cached"]
    # the adapter is in the store, and its meta says two gloo ranks trained it to the same weights
    folder = store / "train"
    assert str(folder) in prep["artifact_path"]
    meta = json.loads((folder / prep["artifact_path"].split("/")[-2] / "meta.json").read_text())
    assert (meta["world_size"], meta["backend"], meta["ranks_identical"]) == (2, "gloo", True)
    assert meta["sharding"] == sharding
    assert len(meta["rank_params_sha256"]) == 2
    assert len(list(folder.iterdir())) == 2  # the 1-process adapter is another cache entry
    assert not list((store / "ray-train").iterdir())  # Ray Train's run state is removed after success
    # same batches split over two ranks: the 1-process loss up to the order of float additions
    assert b["prepare"]["train_tokens"] == a["prepare"]["train_tokens"]
    assert abs(b["prepare"]["final_train_loss"] - a["prepare"]["final_train_loss"]) < 1e-4
    # the cell's answers are that adapter's: evaluate it here, from the store, without Ray
    spec = get_spec("lora")
    strat = spec.cls(build_config(spec, LORA["lora"]))
    bench = load_benchmark(str(tiny_corpus))
    ctx = PrepareContext(benchmark=bench, runtime=Runtime(str(tiny_model), device="cpu", progress=False),
                         workdir=tmp_path / "here", seed=0, train_limit=8, max_new_tokens=6, progress=False,
                         cache=StageCache(root=store), train_workers=2, train_sharding=sharding)
    details = strat.prepare(ctx)
    assert details["artifact_cached"] and details["artifact_path"] == prep["artifact_path"]
    test = bench.split("test")[:2]
    assert {p.example_id: p.output for p in strat.answer(test)} == _outputs(two)


def test_train_workers_is_part_of_fine_tuning_cells_keys_only(tiny_corpus, tiny_model, tmp_path):
    from harness.cache.stages import StageCache
    from harness.data.benchmark import load_benchmark
    from harness.engine.plan import Cell, cell_key
    from harness.methods.registry import build_config, get_spec
    from harness.model.lazy import LazyRuntime

    bench = load_benchmark(str(tiny_corpus))
    cache = StageCache(root=tmp_path / "store")

    def key(name, workers, sharding="ddp"):
        cfg = RunConfig(benchmarks=(str(tiny_corpus),), strategies=(name,), model=str(tiny_model),
                        train_workers=workers, train_sharding=sharding)
        spec = get_spec(name)
        runtime = LazyRuntime(cfg.model, cfg.device, cfg.dtype, progress=False)
        return cell_key(Cell(spec, build_config(spec, {}), bench, 0), cfg, runtime, cache)

    assert key("lora", 2) != key("lora", 1)  # another adapter, so other answers
    assert key("zero-shot", 2) == key("zero-shot", 1)  # nothing trained: the same cell
    assert key("lora", 2, "fsdp") != key("lora", 2)  # sharded training sums in another order
    assert key("lora", 1, "fsdp") == key("lora", 1)  # one process: nothing to shard
    assert key("zero-shot", 2, "fsdp") == key("zero-shot", 1)


@pytest.mark.parametrize("device, assigned, cluster, message", [
    ("cuda", {"CPU": 1.0, "GPU": 1.0}, {"CPU": 8.0, "GPU": 2.0},
     "need GPU=3 (the cluster has 2); on CUDA the cell keeps its own GPU"),
    ("cpu", {"CPU": 2.0}, {"CPU": 2.0}, "need CPU=4 (the cluster has 2)"),
])
def test_workers_the_cluster_cannot_hold_fail_at_once(monkeypatch, tmp_path, device, assigned, cluster, message):
    """Ray would wait forever for them; the cell fails with what is missing instead."""
    from types import SimpleNamespace

    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.train.torch")
    from harness.core.errors import StrategyFailed
    from harness.engine.scaleout.raytrain import train_on_workers

    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "cluster_resources", lambda: cluster)
    monkeypatch.setattr(ray, "get_runtime_context",
                        lambda: SimpleNamespace(get_assigned_resources=lambda: assigned))
    strat = SimpleNamespace(name="lora")
    ctx = SimpleNamespace(train_workers=2, runtime=SimpleNamespace(device=device))
    with pytest.raises(StrategyFailed, match="lower --train-workers") as exc:
        train_on_workers(strat, ctx, tmp_path / "stage")
    assert message in str(exc.value)
