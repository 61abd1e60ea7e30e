"""Stage cache and resumable runs on the tiny model: hits and misses, a SIGKILLed run resumed,
Ctrl-C keeping what finished, and no temporary file left anywhere."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.core.records import read_jsonl, temp_files
from harness.engine.config import RunConfig
from harness.engine.runner import run

ROOT = Path(__file__).resolve().parents[1]
LORA = {"epochs": 1, "r": 4, "alpha": 8}


def _cfg(model, corpus, out, options):
    return RunConfig(benchmarks=(str(corpus),), strategies=tuple(options), options=options, model=str(model),
                     device="cpu", max_new_tokens=4, batch_size=4, out=str(out))


def _results(run_dir):
    results = json.loads((run_dir / "results.json").read_text())
    return results, {c["strategy"]: c for c in results["cells"]}


def test_unchanged_strategies_hit_and_a_changed_one_recomputes(tiny_model, tiny_corpus, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("HARNESS_CACHE", str(cache))
    if True:
        opts = {"zero-shot": {}, "few-shot": {"shots": 2}, "lora": dict(LORA)}
        quiet = {"progress": False, "log": lambda m: None}
        first, c1 = _results(run(_cfg(tiny_model, tiny_corpus, tmp_path / "r1", opts), **quiet))
        assert first["cache"]["predictions_computed"] == 18 and first["cache"]["predictions_hit"] == 0
        assert first["cache"]["artifacts_built"] == 1  # the adapter
        assert not any(c["cached"] for c in c1.values())

        second, c2 = _results(run(_cfg(tiny_model, tiny_corpus, tmp_path / "r2", opts), **quiet))
        assert second["cache"]["predictions_hit"] == 18 and second["cache"]["predictions_computed"] == 0
        assert second["cache"]["cells_fully_cached"] == 3
        assert second["model"]["load"] is None  # nothing to compute: the model was never loaded
        for name, c in c2.items():
            assert c["cached"] and c["prepare"]["cached"]
            # cached cells keep the times measured when they were computed, never zero
            assert c["prepare"]["wall_s"] == c1[name]["prepare"]["wall_s"]
            assert c["answer"]["wall_s"] == c1[name]["answer"]["wall_s"] > 0
            assert c["answer"]["latency_p95_s"] == c1[name]["answer"]["latency_p95_s"] > 0
            assert c["metrics"] == c1[name]["metrics"]
        rows = read_jsonl(tmp_path / "r2" / "predictions.jsonl")
        assert all(r["cached"] and r["usage"]["latency_seconds"] > 0 for r in rows)

        opts["lora"]["r"] = 2  # one strategy's config changes: that strategy alone is recomputed
        third, c3 = _results(run(_cfg(tiny_model, tiny_corpus, tmp_path / "r3", opts), **quiet))
        assert c3["zero-shot"]["cached"] and c3["few-shot"]["cached"] and not c3["lora"]["cached"]
        assert c3["lora"]["cache"] | {"key": None, "computed": None} == {
            "key": None, "computed": None, "predictions_hit": 0, "predictions_computed": 6}
        assert third["cache"]["predictions_hit"] == 12 and third["cache"]["predictions_computed"] == 6
        assert third["cache"]["artifacts_built"] == 1 and not c3["lora"]["prepare"]["artifact_cached"]

        # --no-cache recomputes everything and gets the same answers
        fourth, c4 = _results(run(_cfg(tiny_model, tiny_corpus, tmp_path / "r4", opts), cache=False, **quiet))
        assert fourth["cache"]["predictions_computed"] == 18 and not any(c["cached"] for c in c4.values())
        assert [r["output"] for r in read_jsonl(tmp_path / "r4" / "predictions.jsonl")] == \
               [r["output"] for r in read_jsonl(tmp_path / "r3" / "predictions.jsonl")]
        assert not temp_files(cache) and not temp_files(tmp_path)


def test_a_larger_limit_answers_only_the_new_questions(tiny_model, tiny_corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    quiet = {"progress": False, "log": lambda m: None}
    cfg = _cfg(tiny_model, tiny_corpus, tmp_path / "a", {"zero-shot": {}})
    run(RunConfig(**{**cfg.__dict__, "limit": 3}), **quiet)
    _, cells = _results(run(RunConfig(**{**cfg.__dict__, "out": str(tmp_path / "b")}), **quiet))
    c = cells["zero-shot"]["cache"]
    assert (c["predictions_hit"], c["predictions_computed"]) == (3, 3)
    assert cells["zero-shot"]["prepare"]["cached"]


# -- subprocesses: SIGKILL mid-run and resume, Ctrl-C ------------------------------------------
def _start(tmp_path, model, corpus, *extra):
    cfg = tmp_path / "exp.yaml"
    # lora trains long enough (batch 1, many epochs) to be killed in the middle of it
    cfg.write_text(f"benchmarks: [{corpus}]\nmodel: {model}\ndevice: cpu\nmax_new_tokens: 4\nbatch_size: 4\n"
                   "strategies:\n  zero-shot: {}\n  lora: {epochs: 3, batch_size: 1, r: 4, alpha: 8}\n"
                   "  few-shot: {shots: 2}\n")
    env = {**os.environ, "HARNESS_REPORTS": str(tmp_path / "reports"), "HARNESS_CACHE": str(tmp_path / "cache"),
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    env.pop("HARNESS_PROGRESS", None)
    log = open(tmp_path / f"log{len(list(tmp_path.glob('log*')))}.txt", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", "--config", str(cfg), *extra], cwd=ROOT,
                            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return proc, log, env


def _wait_for(log, proc, text, timeout=180):
    end = time.time() + timeout
    while time.time() < end:
        log.seek(0)
        if text in log.read():
            return
        assert proc.poll() is None, f"run ended before {text!r}"
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"no {text!r} within {timeout}s")


def _run_dir(tmp_path) -> Path:
    dirs = [p for p in (tmp_path / "reports").iterdir() if p.is_dir() and not p.is_symlink()]
    assert len(dirs) == 1
    return dirs[0]


@pytest.mark.reliability("fault", "SIGKILL mid-run, then --resume: nothing finished is recomputed, no temp files")
def test_sigkill_mid_run_then_resume_recomputes_nothing_that_finished(tiny_model, tiny_corpus, tmp_path):
    proc, log, env = _start(tmp_path, tiny_model, tiny_corpus)
    _wait_for(log, proc, "lora: running")
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    run_dir = _run_dir(tmp_path)
    before, cells = _results(run_dir)
    assert before["run"]["finished"] is None and list(cells) == ["zero-shot"]  # killed in the middle

    out = subprocess.run([sys.executable, "-m", "harness", "run", "--resume", str(run_dir), "--quiet"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "zero-shot: finished before, kept" in out.stdout and "lora: running" in out.stdout
    after, cells = _results(run_dir)
    assert after["run"]["finished"] and after["run"]["resumed"] and after["run"]["id"] == before["run"]["id"]
    assert list(cells) == ["zero-shot", "lora", "few-shot"]
    assert all(c["status"] == "ok" for c in cells.values())
    assert cells["zero-shot"] == before["cells"][0]  # kept as it was, not recomputed
    assert len(read_jsonl(run_dir / "predictions.jsonl")) == 18
    assert (run_dir / "report.md").is_file()
    assert not temp_files(tmp_path) and not (run_dir / ".lock").exists()
    assert [p.name for p in (tmp_path / "reports").iterdir() if not p.is_symlink()] == [run_dir.name]


@pytest.mark.reliability("fault", "Ctrl-C writes what finished, marks the rest unfinished, exits 130")
def test_ctrl_c_writes_what_finished_and_exits_130(tiny_model, tiny_corpus, tmp_path):
    proc, log, _ = _start(tmp_path, tiny_model, tiny_corpus)
    _wait_for(log, proc, "lora: running")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 130
    log.seek(0)
    text = log.read()
    assert "Traceback" not in text and "--resume" in text
    run_dir = _run_dir(tmp_path)
    results, cells = _results(run_dir)
    assert results["run"]["interrupted"] and results["run"]["finished"] is None
    assert cells["zero-shot"]["status"] == "ok"
    assert cells["lora"]["status"] == cells["few-shot"]["status"] == "unfinished"
    assert len(read_jsonl(run_dir / "predictions.jsonl")) == 6
    assert "lora" in (run_dir / "report.md").read_text()
    assert not temp_files(tmp_path)


def test_resume_needs_a_run_folder_and_takes_no_config_flags(tmp_path, capsys):
    from harness.cli import main

    assert main(["run", "--resume", str(tmp_path)]) == 2
    assert "cannot resume" in capsys.readouterr().err
    assert main(["run", "--resume", str(tmp_path), "--limit", "3"]) == 2
    assert "drop --limit" in capsys.readouterr().err
