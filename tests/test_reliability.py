"""Reliability and security: bad input, injected faults and hostile names or files.

Every case carries `@pytest.mark.reliability(kind, case)`; tests/reliability_table.py runs the
marked tests (of every test file) and writes docs/reliability.md from their outcomes.
Bad input must give one `error:` line naming the file (and line) and the problem, exit status 2,
no traceback, and nothing under reports/.
"""
from __future__ import annotations

import csv
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import threading
import time
import types
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import write_corpus

from harness.api import StrategyBase
from harness.core.errors import ConfigError, HarnessError
from harness.engine import runner
from harness.engine.config import RunConfig, make_config
from harness.methods import registry

ROOT = Path(__file__).resolve().parents[1]
rel = pytest.mark.reliability


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """harness.cli.main in process, run folders under tmp; returns (rc, stderr lines, reports dir).
    Loading a model counts as work: the Runtime is replaced by one that records the call."""
    from harness import cli as cli_mod
    from harness.model import runtime

    reports = tmp_path / "reports"
    reports.mkdir()
    monkeypatch.setenv("HARNESS_REPORTS", str(reports))
    loads = []
    real = runtime.Runtime

    def spy(*args, **kwargs):
        loads.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(runtime, "Runtime", spy)

    def call(*argv):
        rc = cli_mod.main(list(argv))
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        return rc, err, reports, loads

    return call


def _one_error(rc, err, reports, *needles):
    assert rc == 2, err
    assert len(err) == 1, err
    assert err[0].startswith("error: ") and "Traceback" not in err[0], err
    for n in needles:
        assert n in err[0], (n, err[0])
    assert list(reports.iterdir()) == [], "nothing may be written under reports/"
    return err[0]


# -- bad configs ----------------------------------------------------------------------------------

BAD_CONFIGS = [
    pytest.param("limit: 5\nbatchsize: 8\n", 2, ["unknown key", "batchsize"], id="unknown key"),
    pytest.param("limit: 5\nstrategies:\n  rag:\n    kk: 3\n", 4, ["unknown option", "kk"],
                 id="unknown strategy option"),
    pytest.param('limit: 5\nbatch_size: "sixteen"\n', 2, ["batch_size", "sixteen"], id="wrong type"),
    pytest.param("limit: 5\nstrategies:\n  rag:\n    k: \"3\"\n", 4, ["rag.k", "int"],
                 id="wrong type of a strategy option"),
    pytest.param("limit: 5\nbatch_size: 0\n", 2, ["batch_size", "positive"], id="zero batch size"),
    pytest.param("limit: 5\nbatch_size: -4\n", 2, ["batch_size", "positive"], id="negative batch size"),
    pytest.param("strategies:\n  lora:\n    batch_size: 0\n", 3, ["batch_size"],
                 id="zero training batch size"),
    pytest.param("limit: 5\nmax_new_tokens: 1000000000\n", 2, ["max_new_tokens"], id="absurd max_new_tokens"),
    pytest.param("seed: 99999999999999999999\n", 1, ["seeds"], id="seed out of range"),
    pytest.param("strategies: [zero-shot, nope]\n", 1, ["unknown strategy", "'nope'", "zero-shot"],
                 id="unregistered strategy"),
    pytest.param("strategies:\n  zero-shot: {}\n  nope: {}\n", 3, ["unknown strategy", "'nope'"],
                 id="unregistered strategy (mapping)"),
    pytest.param("benchmarks:\n  - squadshifts_nyt\n  - no_such_bench\n", 3,
                 ["unknown benchmark", "no_such_bench", "squadshifts_nyt"], id="unregistered benchmark"),
    pytest.param("strategies:\n  peft: {method: nosuch}\n", 2, ["peft.method", "nosuch", "LoHa"],
                 id="peft method that does not exist"),
    pytest.param("- zero-shot\n- rag\n", 1, ["mapping"], id="non-mapping YAML (list)"),
    pytest.param("just a string\n", 1, ["mapping"], id="non-mapping YAML (scalar)"),
    pytest.param("limit: 5\nseed: 1\nlimit: 6\n", 3, ["duplicate key 'limit'"], id="duplicate key"),
    pytest.param("strategies:\n  rag: {k: 2}\n  rag: {k: 3}\n", 3, ["duplicate key 'rag'"],
                 id="duplicate strategy"),
    pytest.param("seeds: [0, 1\nlimit: 5\n", 2, ["invalid YAML"], id="broken YAML syntax"),
    pytest.param("limit: 5\nmodel: a\x08b\n", 2, ["control character #x0008"], id="control character"),
    pytest.param("limit: 5\nbase: &b {k: 2}\nstrategies: {rag: *b}\n", 2, ["anchors and aliases"],
                 id="YAML anchors and aliases (templating)"),
    pytest.param("limit: 5\nstrategies:\n  rag:\n    <<: {k: 2}\n", 4, ["merge keys"], id="YAML merge key"),
    pytest.param("limit: 5\nmodel:\n", 2, ["model", "needs a value"], id="null value"),
    pytest.param("seed: 1\nseeds: [2]\n", 2, ["either"], id="both seed and seeds"),
    pytest.param("strategies:\n  rag: 3\n", 2, ["mapping"], id="strategy options not a mapping"),
    pytest.param("device: tpu\n", 1, ["device"], id="unknown device"),
    pytest.param("judge: {1: 2}\n", 1, ["judge: unknown key(s) 1", "rubric"], id="judge key that is a number"),
]


@rel("bad input", "YAML config")
@pytest.mark.parametrize("text, line, needles", BAD_CONFIGS)
def test_bad_config(cli, tmp_path, text, line, needles):
    path = tmp_path / "exp.yaml"
    path.write_text(text, encoding="utf-8")
    rc, err, reports, loads = cli("run", "--config", str(path))
    _one_error(rc, err, reports, f"{path}:{line}: ", *needles)
    assert loads == [], "a bad config must fail before any model loads"


@rel("bad input", "YAML config: not UTF-8")
def test_config_not_utf8(cli, tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_bytes(b"limit: 5\nmodel: caf\xe9\n")
    _one_error(*cli("run", "--config", str(path))[:3], str(path), "UTF-8")


@rel("bad input", "YAML config: missing file")
def test_config_missing(cli, tmp_path):
    _one_error(*cli("run", "--config", str(tmp_path / "nope.yaml"))[:3], "nope.yaml", "not found")


@rel("bad input", "YAML config: a folder instead of a file")
def test_config_is_a_folder(cli, tmp_path):
    _one_error(*cli("run", "--config", str(tmp_path))[:3], str(tmp_path), "cannot read")


@rel("bad input", "--debug shows the traceback of a config error")
def test_debug_raises(cli, tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("limit: 0\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path}:1: limit must be a positive integer")):
        cli("--debug", "run", "--config", str(path))


@rel("bad input", "rag.k larger than the number of chunks: exit 2 before the model loads")
def test_k_larger_than_chunks(cli, tmp_path, tiny_corpus):
    path = tmp_path / "exp.yaml"
    path.write_text(f"benchmarks: [{tiny_corpus}]\nstrategies:\n  zero-shot: {{}}\n  rag: {{k: 50}}\n")
    rc, err, reports, loads = cli("run", "--config", str(path), "--model", "/nonexistent")
    _one_error(rc, err, reports, "rag.k=50", "number of chunks (6)", "'tiny'")
    assert loads == []


@rel("bad input", "lora-rag.k larger than the number of chunks")
def test_lora_rag_k_larger_than_chunks(cli, tiny_corpus):
    cfg = RunConfig(benchmarks=(str(tiny_corpus),), strategies=("lora-rag",), options={"lora-rag": {"k": 7}})
    with pytest.raises(ConfigError, match=r"lora-rag\.k=7 .*chunks \(6\)"):
        runner.plan(cfg)


# -- bad model paths -----------------------------------------------------------------------------

def _copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _no_weights(tmp, tiny):
    d = tmp / "m"
    d.mkdir()
    shutil.copy(tiny / "config.json", d / "config.json")
    return d


def _bin_only(tmp, tiny):
    d = _no_weights(tmp, tiny)
    (d / "pytorch_model.bin").write_bytes(b"\x80\x04K\x01.")  # a pickle
    return d


def _bad_safetensors(tmp, tiny):
    d = _copy_model(tiny, tmp / "m")
    (d / "model.safetensors").write_bytes(b"not really safetensors" * 10)
    return d


def _bad_config_json(tmp, tiny):
    d = _copy_model(tiny, tmp / "m")
    (d / "config.json").write_text("{not json")
    return d


def _unknown_arch(tmp, tiny):
    d = _copy_model(tiny, tmp / "m")
    cfg = json.loads((d / "config.json").read_text())
    cfg["model_type"], cfg["architectures"] = "nosuchmodel", ["NoSuchModelForCausalLM"]
    (d / "config.json").write_text(json.dumps(cfg))
    return d


def _random_file(tmp, tiny):
    f = tmp / "weights.dat"
    f.write_bytes(os.urandom(256))
    return f


def _empty_dir(tmp, tiny):
    (tmp / "m").mkdir()
    return tmp / "m"


BAD_MODELS = [
    pytest.param(lambda tmp, tiny: tmp / "does-not-exist", ["neither a packaged model"], id="missing path"),
    pytest.param(_empty_dir, ["no config.json"], id="empty folder"),
    pytest.param(_no_weights, ["no *.safetensors weights"], id="folder without weights"),
    pytest.param(_bin_only, ["only pickle weights", "pytorch_model.bin", "safetensors"], id=".bin-only folder"),
    pytest.param(_random_file, ["is a file, not a model directory"], id="random file"),
    pytest.param(_bad_safetensors, ["could not load model"], id="corrupt safetensors"),
    pytest.param(_bad_config_json, ["config.json", "not valid JSON"], id="config.json not JSON"),
    pytest.param(_unknown_arch, ["config.json", "'nosuchmodel'", "not an architecture"], id="unknown architecture"),
]


@rel("bad input", "model path")
@pytest.mark.parametrize("make, needles", BAD_MODELS)
def test_bad_model_path(cli, tmp_path, tiny_corpus, tiny_model, make, needles):
    model = make(tmp_path, tiny_model)
    rc, err, reports, _ = cli("run", "--benchmark", str(tiny_corpus), "--strategies", "zero-shot",
                              "--model", str(model), "--device", "cpu", "--quiet")
    _one_error(rc, err, reports, str(model), *needles)


# -- faults inside strategies --------------------------------------------------------------------

class _Base(StrategyBase):  # the Strategy contract's defaults; only the fault differs
    def prepare(self, ctx):
        return {}

    def answer(self, examples):
        raise AssertionError("not reached")


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory, tiny_model):
    """One run on the tiny model: zero-shot works, four test-only strategies fail in different ways,
    and the benchmark's own name tries to climb out of the run folder."""
    import torch

    from strategies.lora import Lora, LoraConfig

    @dataclass(frozen=True)
    class NoConfig:
        pass

    class Raises(_Base):
        def answer(self, examples):
            raise RuntimeError("strategy bug: index 7 out of range")

    class CudaOom(_Base):
        def prepare(self, ctx):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    class HostOom(_Base):
        def answer(self, examples):
            raise MemoryError("cannot allocate 64 GiB for the answer buffer")

    class NanLoss(Lora):
        def wrap(self, base, steps):
            model, details = super().wrap(base, steps)
            with torch.no_grad():
                next(p for n, p in model.named_parameters() if "lora_B" in n).fill_(float("nan"))
            return model, details

    tmp = tmp_path_factory.mktemp("faults")
    corpus = write_corpus(tmp / "corpus")
    (corpus / "benchmark.json").write_text(json.dumps({"name": "..escaped", "task": "extractive_qa"}))
    specs = {
        "t-raises": registry.StrategySpec("t-raises", Raises, NoConfig, "raises in answer"),
        "t-cuda-oom": registry.StrategySpec("t-cuda-oom", CudaOom, NoConfig, "CUDA OOM in prepare"),
        "t-host-oom": registry.StrategySpec("t-host-oom", HostOom, NoConfig, "MemoryError in answer"),
        "t-nan": registry.StrategySpec("t-nan", NanLoss, LoraConfig, "LoRA with NaN weights"),
    }
    saved = dict(registry._REGISTRY)
    registry._REGISTRY.update(specs)
    reports = tmp / "reports"
    old = os.environ.get("HARNESS_REPORTS")
    os.environ["HARNESS_REPORTS"] = str(reports)
    try:
        for name, spec in specs.items():
            spec.cls.name = name
        cfg = RunConfig(benchmarks=(str(corpus),), model=str(tiny_model), device="cpu", max_new_tokens=4,
                        strategies=("t-raises", "zero-shot", "t-cuda-oom", "t-nan", "t-host-oom"),
                        options={"t-nan": {"epochs": 1, "batch_size": 4}})
        run_dir = runner.run(cfg, progress=False, log=lambda m: None)
    finally:
        if old is None:
            os.environ.pop("HARNESS_REPORTS", None)
        else:
            os.environ["HARNESS_REPORTS"] = old
        registry._REGISTRY.clear()
        registry._REGISTRY.update(saved)
    results = json.loads((run_dir / "results.json").read_text())
    cells = {c["strategy"]: c for c in results["cells"]}
    return types.SimpleNamespace(dir=run_dir, tmp=tmp, results=results, cells=cells,
                                 md=(run_dir / "report.md").read_text(),
                                 html=(run_dir / "report.html").read_text(),
                                 csv=list(csv.DictReader(open(run_dir / "summary.csv"))))


FAULTS = [
    pytest.param("t-raises", "RuntimeError: strategy bug: index 7 out of range", id="strategy raises"),
    pytest.param("t-cuda-oom", "OutOfMemoryError: CUDA out of memory", id="torch.OutOfMemoryError in prepare"),
    pytest.param("t-host-oom", "MemoryError: cannot allocate 64 GiB", id="MemoryError in answer"),
    pytest.param("t-nan", "loss became nan at step 1", id="NaN loss in training"),
]


@rel("fault", "recorded as failed in results.json, report.md, report.html and summary.csv")
@pytest.mark.parametrize("name, error", FAULTS)
def test_fault_is_recorded(faulty_run, name, error):
    cell = faulty_run.cells[name]
    assert cell["status"] == "failed"
    assert error in cell["error"]
    md_line = next(ln for ln in faulty_run.md.splitlines() if ln.startswith(f"- {name} ") and error in ln)
    assert md_line
    assert error in faulty_run.html and f"{name} failed" in faulty_run.html
    row = next(r for r in faulty_run.csv if r["strategy"] == name)
    assert row["status"] == "failed" and error in row["error"]


@rel("fault", "the other strategies' results are kept and the report is written")
def test_other_strategies_survive_faults(faulty_run):
    ok = faulty_run.cells["zero-shot"]
    assert ok["status"] == "ok" and ok["answer"]["queries"] == 6
    assert 0.0 <= ok["metrics"]["f1"]["mean"] <= 1.0
    rows = [json.loads(ln) for ln in (faulty_run.dir / "predictions.jsonl").read_text().splitlines()]
    assert {r["strategy"] for r in rows} == {"zero-shot"} and len(rows) == 6
    assert [c["strategy"] for c in faulty_run.results["cells"]] == [
        "t-raises", "zero-shot", "t-cuda-oom", "t-nan", "t-host-oom"]
    assert faulty_run.results["run"]["finished"]
    assert "zero-shot" in faulty_run.md and "| zero-shot" in faulty_run.md


# A name with a path separator ('../../escaped') is refused by the corpus loader (tests/test_corpus.py);
# one the loader lets through still becomes a plain, visible folder name.
@rel("security", "a benchmark named '..escaped' in benchmark.json keeps its artifacts in a plain folder inside the "
                 "run folder")
def test_benchmark_name_cannot_leave_the_run_folder(faulty_run):
    assert faulty_run.cells["zero-shot"]["benchmark"] == "..escaped"
    inside = [p for p in (faulty_run.dir / "artifacts").iterdir()]
    from harness.core.paths import safe_name

    assert [p.name for p in inside] == [safe_name("..escaped")]
    assert inside[0].parent == faulty_run.dir / "artifacts" and not inside[0].name.startswith(".")
    assert (inside[0] / "t-nan-seed0").is_dir()
    for p in (faulty_run.dir.parent.parent, faulty_run.dir.parent, faulty_run.tmp):
        assert not (p / "escaped").exists()


# -- concurrent runs -----------------------------------------------------------------------------

class _FrozenClock:
    class datetime:
        @staticmethod
        def now(tz=None):
            import datetime as real

            return real.datetime(2026, 1, 2, 3, 4, 5, tzinfo=tz)

    timezone = __import__("datetime").timezone


@rel("fault", "runs started in the same second (8 threads) get 8 different run folders")
def test_same_second_runs_get_different_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_REPORTS", str(tmp_path))
    monkeypatch.setattr(runner, "dt", _FrozenClock)
    barrier = threading.Barrier(8)
    got, errors = [], []

    def start():
        barrier.wait()
        try:
            got.append(runner.new_run_dir(None))
        except Exception as exc:  # noqa: BLE001 - the test reports any
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(got)) == 8 and all(p.is_dir() and p.name.startswith("20260102-030405") for p in got)


@rel("fault", "two processes started at once with the same timestamp get different run folders")
def test_same_second_processes(tmp_path):
    start = time.time() + 3
    code = (
        "import datetime, sys, time, types; from pathlib import Path\n"
        "import os; from harness.engine import runner\n"
        "now = lambda tz=None: datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=tz)\n"
        "os.environ['HARNESS_REPORTS'] = sys.argv[2]\n"
        "runner.dt = types.SimpleNamespace(datetime=types.SimpleNamespace(now=now), timezone=datetime.timezone)\n"
        "time.sleep(max(0, float(sys.argv[3]) - time.time()))\n"
        "print(runner.new_run_dir(None))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(ROOT), str(tmp_path), str(start)], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    dirs = {o.strip() for o, _ in outs}
    assert len(dirs) == 2, dirs


@rel("fault", "two runs given the same --out at once: exactly one gets the folder")
def test_same_out_folder(tmp_path):
    from harness.core.paths import claim_folder

    out = tmp_path / "run"
    barrier = threading.Barrier(6)
    won, lost = [], []

    def start():
        barrier.wait()
        try:
            won.append(claim_folder(out))
        except HarnessError as exc:
            lost.append(str(exc))

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(lost) == 5
    assert all("another run" in m or "not empty" in m for m in lost)
    with pytest.raises(HarnessError, match="not empty"):
        (out / "results.json").write_text("{}")
        claim_folder(out)


# -- full disk ------------------------------------------------------------------------------------

def _enospc(*_a, **_k):
    raise OSError(28, "No space left on device")


@rel("fault", "disk full (ENOSPC) while rewriting a report: the previous report stays intact")
def test_full_disk_keeps_previous_report(faulty_run, tmp_path, monkeypatch, capsys):
    from harness import cli as cli_mod
    from harness.core import records

    run_dir = tmp_path / "run"
    shutil.copytree(faulty_run.dir, run_dir)
    before = {n: (run_dir / n).read_bytes() for n in ("report.md", "report.html", "summary.csv")}
    results = json.loads((run_dir / "results.json").read_text())
    results["cells"] = results["cells"][1:2]  # a new report would differ
    (run_dir / "results.json").write_text(json.dumps(results))
    monkeypatch.setattr(records.os, "fsync", _enospc)
    assert cli_mod.main(["report", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no space left" in err[0] and "report.md" in err[0]
    for name, data in before.items():
        assert (run_dir / name).read_bytes() == data, name
    assert [p.name for p in run_dir.iterdir() if p.name.startswith(".")] == [], "temp files left behind"


@rel("fault", "disk full during the write itself: old file intact, temp file removed")
def test_full_disk_in_write(tmp_path, monkeypatch):
    from harness.core import records

    target = tmp_path / "results.json"
    records.write_json(target, {"v": 1})
    real_fdopen = os.fdopen

    def half_then_full(fd, *a, **k):
        f = real_fdopen(fd, *a, **k)
        real_write = f.write

        def write(text):
            real_write(text[: len(text) // 2])
            raise OSError(28, "No space left on device")

        f.write = write
        return f

    monkeypatch.setattr(records.os, "fdopen", half_then_full)
    with pytest.raises(HarnessError, match="no space left"):
        records.write_json(target, {"v": 2, "pad": "x" * 10000})
    assert json.loads(target.read_text()) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


# -- security: model code and pickles ------------------------------------------------------------

def _remote_code_model(tmp: Path, tiny: Path, where: str = "config.json") -> tuple[Path, Path]:
    d = _copy_model(tiny, tmp / "remote")
    marker = tmp / "remote-code-ran"
    (d / "evil_model.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    cfg = json.loads((d / where).read_text())
    cfg["auto_map"] = {"AutoConfig": "evil_model.EvilConfig", "AutoModelForCausalLM": "evil_model.EvilModel",
                       "AutoTokenizer": ["evil_model.EvilTokenizer", None]}
    (d / where).write_text(json.dumps(cfg))
    return d, marker


@rel("security", "a model folder whose config needs remote code is refused without --trust-remote-code")
@pytest.mark.parametrize("where", ["config.json", "tokenizer_config.json"])
def test_remote_code_is_refused(cli, tmp_path, tiny_corpus, tiny_model, where):
    model, marker = _remote_code_model(tmp_path, tiny_model, where)
    rc, err, reports, _ = cli("run", "--benchmark", str(tiny_corpus), "--strategies", "zero-shot",
                              "--model", str(model), "--device", "cpu", "--quiet")
    _one_error(rc, err, reports, str(model / where), "auto_map", "--trust-remote-code")
    assert not marker.exists()


@rel("security", "trust_remote_code is off by default and --trust-remote-code reaches the model loader")
def test_trust_remote_code_flag(cli, tmp_path, tiny_corpus, tiny_model, monkeypatch):
    from harness.model import modelstore

    assert RunConfig().trust_remote_code is False
    assert make_config(None, {"trust_remote_code": None}).trust_remote_code is False
    seen = []
    real = modelstore.check_model_dir

    def spy(path, trust_remote_code=False):
        seen.append(trust_remote_code)
        raise HarnessError("stop before loading")

    monkeypatch.setattr(modelstore, "check_model_dir", spy)
    args = ("run", "--benchmark", str(tiny_corpus), "--strategies", "zero-shot", "--model", str(tiny_model))
    cli(*args)
    cli(*args, "--trust-remote-code")
    assert seen == [False, True]
    model, _ = _remote_code_model(tmp_path, tiny_model)
    assert real(model, trust_remote_code=True)  # accepted only when asked for


@rel("security", "a malicious pickle (pytorch_model.bin) beside safetensors weights is never unpickled")
def test_pickle_weights_are_never_loaded(tmp_path, tiny_model):
    from harness.model.runtime import Runtime

    model = _copy_model(tiny_model, tmp_path / "m")
    marker = tmp_path / "unpickled"

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    for name in ("pytorch_model.bin", "training_args.bin", "optimizer.pt"):
        (model / name).write_bytes(pickle.dumps(Evil()))
    rt = Runtime(str(model), device="cpu", progress=False)
    rt.fresh_model()
    assert not marker.exists()


UNSAFE_CALLS = [
    (r"torch\.load\((?![^)]*weights_only\s*=\s*True)", "torch.load without weights_only=True"),
    (r"\bpickle\.loads?\(|\bcloudpickle\b|\bdill\.load", "unpickling"),
    (r"allow_pickle\s*=\s*True", "np.load(allow_pickle=True)"),
    (r"yaml\.(unsafe_load|full_load)\(|yaml\.load\((?![^)]*Loader\s*=\s*_?Loader)|Loader\s*=\s*yaml\.(Unsafe|Full)?Loader\b",
     "an unsafe YAML loader"),
    (r"trust_remote_code\s*=\s*True", "trust_remote_code=True"),
    (r"(?<![\w.])(eval|exec)\(", "eval/exec"),
    (r"importlib\.import_module\((?!f\"strategies\.)", "importing a module by a computed name"),
    (r"faiss\.read_index\(", "reading a FAISS index file (pickled metadata elsewhere)"),
]
# Reviewed exceptions: FAISS reads back only indexes the harness wrote into its own stage cache
# (FAISS's binary format; no pickle), under a key of the corpus, embedder and chunking.
ALLOWED = {"reading a FAISS index file (pickled metadata elsewhere)": {"harness/methods/retrieval.py"}}


@rel("security", "no code path unpickles, evals, imports by name or trusts remote code (source scan)")
@pytest.mark.parametrize("pattern, what", UNSAFE_CALLS, ids=[w for _, w in UNSAFE_CALLS])
def test_no_unsafe_calls_in_source(pattern, what):
    files = [p for d in ("harness", "strategies", "corpora", "bench") for p in (ROOT / d).rglob("*.py")]
    assert len(files) > 20
    hits = []
    for f in files:
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(pattern, line.split("#", 1)[0]) and str(f.relative_to(ROOT)) not in ALLOWED.get(what, ()):
                hits.append(f"{f.relative_to(ROOT)}:{n}: {line.strip()}")
    assert hits == [], f"{what}:\n" + "\n".join(hits)


@rel("security", "the source scan itself catches each unsafe call")
def test_unsafe_patterns_match():
    samples = ["torch.load(p)", "pickle.load(f)", "np.load(p, allow_pickle=True)", "yaml.load(t)",
               "from_pretrained(p, trust_remote_code=True)", "eval(s)", "importlib.import_module(name)",
               "faiss.read_index(p)"]
    for (pattern, what), sample in zip(UNSAFE_CALLS, samples):
        assert re.search(pattern, sample), what
    assert not re.search(UNSAFE_CALLS[0][0], "torch.load(p, weights_only=True)")


# -- security: names that become paths, and YAML that names code ---------------------------------

@rel("security", "safe_name maps ../, absolute paths, separators and NUL to one plain, distinct file name")
@pytest.mark.parametrize("name", ["../../x", "/etc/passwd", "a/b", "a\\b", "..", ".", "", "x\0y", ".hidden",
                                  "C:\\win", "ü/名前", "a" * 300])
def test_safe_name(tmp_path, name):
    from harness.core.paths import inside, safe_name

    s = safe_name(name)
    assert s and "/" not in s and "\\" not in s and "\0" not in s and not s.startswith(".")
    assert len(s) <= 90
    assert inside(tmp_path, name, name).parent.parent == tmp_path
    assert safe_name("zero-shot-seed0") == "zero-shot-seed0"  # plain names are kept
    assert safe_name("a/b") != safe_name("a_b")


@rel("security", "a symlink planted in the run folder cannot lead artifacts outside it")
def test_inside_refuses_symlink_escape(tmp_path):
    from harness.core.paths import inside

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "bench").symlink_to(tmp_path)
    with pytest.raises(HarnessError, match="outside"):
        inside(tmp_path / "run", "bench", "x")


@rel("security", "the YAML can name only registered strategies and benchmarks, never import paths")
@pytest.mark.parametrize("text", [
    "strategies: [evil_mod]\n",
    "strategies: [evil_mod.Thing]\n",
    "strategies: ['evil_mod:Thing']\n",
    "strategies:\n  'evil_mod:Thing': {}\n",
    "benchmarks: [evil_mod]\n",
    "benchmarks: ['evil_mod:load']\n",
    "model: !!python/name:evil_mod.x\n",
    "model: !!python/module:evil_mod\n",
    "model: !!python/object/apply:evil_mod.run []\n",
    "strategies: !!python/object/new:evil_mod.Thing []\n",
    "limit: !evil_mod 5\n",
], ids=lambda t: t.strip().replace("\n", " "))
def test_yaml_never_imports(cli, tmp_path, monkeypatch, text):
    marker = tmp_path / "imported"
    (tmp_path / "evil_mod.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\nclass Thing: pass\ndef run(): pass\nx = 1\n"
        "def load(): pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(ROOT)
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    rc, err, reports, loads = cli("run", "--config", str(path))
    line = _one_error(rc, err, reports)
    assert re.match(rf"error: {re.escape(str(path))}:[12]: ", line), line
    assert not marker.exists() and "evil_mod" not in sys.modules and loads == []


@rel("bad input", "a path with line breaks and control characters still gives one error line")
def test_control_characters_in_a_path(cli, tmp_path):
    line = _one_error(*cli("report", str(tmp_path / "a\rb\nc\x85d\u2028e\x1b[31m"))[:3], "no results.json")
    assert "\\r" in line and "\\n" in line and "\\x1b" in line
