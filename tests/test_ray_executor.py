"""--executor ray: a local Ray cluster gives the local executor's results; two loopback nodes share
the cells and a rerun submits nothing; a GPU request on a GPU-less cluster fails at once."""
from __future__ import annotations

import json
import sys
import time

import pytest

from harness.cli import main
from harness.engine.config import RunConfig

RUN = ["--strategies", "zero-shot", "--limit", "2", "--quiet"]


def _args(tiny_corpus, tiny_model, tmp_path, *extra):
    return ["run", "--benchmark", str(tiny_corpus), "--model", str(tiny_model), "--out", str(tmp_path / "out"),
            *RUN, *extra]


def test_ray_missing_is_one_clear_error(tiny_corpus, tiny_model, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    assert main(_args(tiny_corpus, tiny_model, tmp_path, "--executor", "ray")) == 2
    assert "pip install -e '.[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra, message", [
    (["--store", "nosuch://bucket/prefix"], "unknown protocol nosuch://"),
    (["--address", "auto"], "--address: only with --executor ray"),
    (["--max-concurrency", "2"], "--max-concurrency: only with --executor ray"),
])
def test_bad_executor_flags(tiny_corpus, tiny_model, tmp_path, capsys, extra, message):
    assert main(_args(tiny_corpus, tiny_model, tmp_path, *extra)) == 2
    assert message in capsys.readouterr().err


def test_store_file_url_is_the_stage_cache(tiny_corpus, tiny_model, tmp_path):
    assert main(_args(tiny_corpus, tiny_model, tmp_path, "--store", f"file://{tmp_path}/store")) == 0
    assert len(list((tmp_path / "store" / "cells").glob("*.json"))) == 1
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["cache"]["root"] == str(tmp_path / "store")


def test_submit_wraps_ray_job_submit(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exp.yaml").write_text("strategies: [zero-shot]\n")
    assert main(["submit", "--address", "http://head:8265", "--dry-run", "exp.yaml", "--limit", "5"]) == 0
    assert capsys.readouterr().out.strip() == (
        "ray job submit --working-dir . --address http://head:8265 -- "
        "python -m harness run --config exp.yaml --executor ray --limit 5")
    assert main(["submit", "missing.yaml", "--dry-run"]) == 2


def _cfg(tiny_corpus, tiny_model, tmp_path, name, strategies, seeds=(0,), **kw):
    return RunConfig(benchmarks=(str(tiny_corpus),), strategies=strategies, seeds=seeds, model=str(tiny_model),
                     limit=2, train_limit=8, max_new_tokens=6, options=kw.pop("options", {}), out=str(tmp_path / name),
                     **kw)


def _outputs(run_dir):
    rows = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    return [(r["strategy"], r["seed"], r["id"], r["output"]) for r in rows]


@pytest.mark.slow
def test_local_ray_cluster_matches_local_executor(tiny_corpus, tiny_model, tmp_path):
    ray = pytest.importorskip("ray")
    from harness.engine.runner import run
    from harness.engine.scaleout.executors import RayExecutor

    lora = {"lora": {"epochs": 1, "batch_size": 4}}
    cfg = _cfg(tiny_corpus, tiny_model, tmp_path, "local", ("zero-shot", "lora"), options=lora)
    local = run(cfg, progress=False, log=lambda m: None, store=tmp_path / "store-local")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    try:
        with RayExecutor() as executor:
            remote = run(_cfg(tiny_corpus, tiny_model, tmp_path, "ray", ("zero-shot", "lora"), options=lora),
                         progress=False, log=lambda m: None, store=tmp_path / "store-ray", executor=executor)
        assert executor.submitted == 2
    finally:
        ray.shutdown()
    a, b = (json.loads((d / "results.json").read_text())["cells"] for d in (local, remote))
    assert [c["status"] for c in b] == ["ok", "ok"]
    assert all("worker" in c for c in b)
    for x, y in zip(a, b):
        assert (x["strategy"], x["metrics"]) == (y["strategy"], y["metrics"])
        assert x["prepare"].get("loss_curve") == y["prepare"].get("loss_curve")
    assert _outputs(local) == _outputs(remote)
    # the adapter travelled as a path in the ray run's store, not through the object store
    assert str(tmp_path / "store-ray" / "train") in b[1]["prepare"]["artifact_path"]


@pytest.fixture(scope="module")
def two_nodes():
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, logging_level="warning")
    try:
        cluster.wait_for_nodes()
        yield ray
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.mark.slow
def test_two_nodes_share_cells_and_rerun_skips_completed(two_nodes, tiny_corpus, tiny_model, tmp_path):
    from harness.engine.runner import run
    from harness.engine.scaleout.executors import RayExecutor

    logs = []
    store = tmp_path / "store"
    with RayExecutor(max_concurrency=2) as executor:
        first = run(_cfg(tiny_corpus, tiny_model, tmp_path, "first", ("zero-shot",), seeds=(0, 1)),
                    progress=False, log=logs.append, store=store, executor=executor)
        assert executor.submitted == 2
        cells = json.loads((first / "results.json").read_text())["cells"]
        assert [c["status"] for c in cells] == ["ok", "ok"]
        assert len({c["worker"]["node_id"] for c in cells}) == 2, "both 1-CPU nodes ran a cell"
        again = run(_cfg(tiny_corpus, tiny_model, tmp_path, "again", ("zero-shot",), seeds=(0, 1)),
                    progress=False, log=logs.append, store=store, executor=executor)
        assert executor.submitted == 2 and executor.skipped == 2  # nothing more went to the cluster
    assert any("2 complete in the store" in m and "0 to run" in m for m in logs)
    cells = json.loads((again / "results.json").read_text())["cells"]
    assert all(c["cached"] and "worker" not in c for c in cells)
    assert _outputs(first) == _outputs(again)


@pytest.mark.slow
def test_gpu_request_on_gpu_less_cluster_fails_fast(two_nodes, tiny_corpus, tiny_model, tmp_path, capsys):
    t0 = time.perf_counter()
    code = main(_args(tiny_corpus, tiny_model, tmp_path, "--executor", "ray", "--device", "cuda"))
    assert code == 2
    assert "cells ask for 1 GPU each (--device cuda), but the Ray cluster has no GPU (CPU=2)" \
        in capsys.readouterr().err
    assert time.perf_counter() - t0 < 30
    assert not (tmp_path / "out").exists()
    assert two_nodes.is_initialized()  # the test's own session is left alone


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_submit_runs_the_matrix_on_a_ray_start_cluster(tiny_corpus, tiny_model, tmp_path):
    """`harness submit` against a real `ray start --head` cluster (loopback, dashboard on): Ray's job
    server gets this checkout (--working-dir .) and runs `harness run --executor ray` on the head."""
    import os
    import secrets
    import shutil
    import signal
    import subprocess
    import tempfile
    from pathlib import Path

    pytest.importorskip("ray.dashboard")
    ray_bin = Path(sys.executable).parent / "ray"
    if not ray_bin.exists() and shutil.which("ray") is None:
        pytest.skip("the `ray` command is not installed")
    repo = Path(__file__).resolve().parent.parent
    temp = tempfile.mkdtemp(prefix="/tmp/rs")  # Ray's socket paths must stay short
    # Every port chosen free here: Ray's fixed defaults (the dashboard agent's 52365 above all) may be
    # held by another cluster on the machine, and then the job server finds no agent to submit to.
    gcs, dash, *agent = (_free_port() for _ in range(7))
    # Token authentication as docs/scale-out.md tells clients to set it up: the same token and
    # RAY_AUTH_MODE=token on the head and on the client that submits.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "RAY_ADDRESS": "", "HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    # --block: the head's processes live and die with this one process, so only this cluster is stopped
    head = subprocess.Popen(["ray", "start", "--head", "--block", f"--port={gcs}", "--num-cpus=2",
                             "--node-ip-address=127.0.0.1", "--include-dashboard=true",
                             "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", f"--temp-dir={temp}",
                             *(f"--{name}={port}" for name, port in zip(
                                 ("dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
                                  "metrics-export-port", "ray-client-server-port"), agent))],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        exp = tmp_path / "exp.yaml"
        exp.write_text(f"benchmarks: [{tiny_corpus}]\nmodel: {tiny_model}\nstrategies:\n  zero-shot: {{}}\n"
                       f"limit: 2\nmax_new_tokens: 6\n")
        out = tmp_path / "out"
        cmd = [sys.executable, "-m", "harness", "submit", "--address", f"http://127.0.0.1:{dash}", str(exp),
               "--out", str(out), "--store", str(tmp_path / "store"), "--quiet"]
        deadline = time.monotonic() + 180
        not_ready = ("Failed to connect", "Connection", "try again later")  # e.g. "No available agent to submit job"
        while True:  # the job server and its agent answer some seconds after `ray start` returns
            done = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
            if done.returncode == 0 or time.monotonic() > deadline or head.poll() is not None:
                break
            if not any(s in done.stdout + done.stderr for s in not_ready):
                break
            time.sleep(3)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        cells = json.loads((out / "results.json").read_text())["cells"]
        assert [c["status"] for c in cells] == ["ok"] and "worker" in cells[0]
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)
