"""The command line in a subprocess: listings, and one-line errors (exit 2) that stop before any work.

No test here gets as far as loading a model. The commands run once per module,
two at a time, so their interpreter start-ups overlap; each test waits for its own command.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import write_corpus

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 120


@dataclass
class Result:
    rc: int
    out: str
    err: str
    reports: Path
    tmp: Path

    @property
    def err_lines(self) -> list[str]:
        return [ln for ln in self.err.splitlines() if ln.strip()]


class Commands:
    """Run the commands a few at a time, in the order given; each test waits for its own."""

    def __init__(self, base: Path, parallel: int = 2):
        self.base = base
        self.parallel = parallel
        self.pending: dict[str, tuple[tuple[str, ...], object]] = {}
        self.procs: dict[str, tuple[subprocess.Popen, Path, Path]] = {}
        self.results: dict[str, Result] = {}

    def add(self, key: str, *args: str, setup=None) -> None:
        self.pending[key] = (args, setup)

    def _start(self, key: str) -> None:
        args, setup = self.pending.pop(key)
        tmp = self.base / key
        reports = tmp / "reports"
        reports.mkdir(parents=True)
        argv = [a.format(tmp=tmp) for a in args]
        if setup:
            setup(tmp)
        env = dict(os.environ)
        env.pop("HARNESS_PROGRESS", None)
        env.update(HARNESS_REPORTS=str(reports), HARNESS_CACHE=str(tmp / "cache"),
                   HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        proc = subprocess.Popen([sys.executable, "-m", "harness.cli", *argv], cwd=ROOT, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        self.procs[key] = (proc, reports, tmp)

    def _fill(self) -> None:
        running = sum(1 for k, (p, _, _) in self.procs.items() if k not in self.results and p.poll() is None)
        for key in list(self.pending)[: max(self.parallel - running, 0)]:
            self._start(key)

    def __call__(self, key: str) -> Result:
        if key not in self.results:
            if key in self.pending:
                self._start(key)
            self._fill()
            proc, reports, tmp = self.procs[key]
            try:
                out, err = proc.communicate(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
                pytest.fail(f"`harness {key}` did not finish in {TIMEOUT}s:\n{err}")
            self.results[key] = Result(proc.returncode, out, err, reports, tmp)
            self._fill()
        return self.results[key]

    def close(self) -> None:
        for proc, _, _ in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def _bad_key_yaml(tmp: Path) -> None:
    (tmp / "exp.yaml").write_text("benchmarks: [squadshifts_nyt]\nlimt: 5\n")


def _broken_questions(tmp: Path) -> None:
    root = write_corpus(tmp / "corpus")
    p = root / "questions.jsonl"
    lines = p.read_text(encoding="utf-8").splitlines()
    lines[4] = lines[4][:-20]  # line 5 cut short
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _empty_dir(tmp: Path) -> None:
    (tmp / "empty").mkdir()


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    c = Commands(tmp_path_factory.mktemp("cli"))
    # in the order the tests below ask for them
    c.add("help", "--help")
    c.add("strategies", "strategies")
    c.add("benchmarks", "benchmarks")
    c.add("nope", "run", "--strategies", "nope")
    c.add("bad_key", "run", "--config", "{tmp}/exp.yaml", setup=_bad_key_yaml)
    c.add("bad_benchmark", "run", "--benchmark", "{tmp}/corpus", "--strategies", "zero-shot",
          setup=_broken_questions)
    c.add("limit0", "run", "--limit", "0")
    c.add("model", "run", "--model", "/nonexistent/dir", "--strategies", "zero-shot", "--limit", "1",
          "--out", "{tmp}/out")
    c.add("report_empty", "report", "{tmp}/empty", setup=_empty_dir)
    yield c
    c.close()


def _assert_one_line_error(r: Result, *needles: str) -> str:
    assert r.rc == 2, (r.rc, r.err)
    assert "Traceback" not in r.err
    assert len(r.err_lines) == 1, r.err
    line = r.err_lines[0]
    assert line.startswith("error:"), line
    for n in needles:
        assert n in line, (n, line)
    return line


def _assert_no_run_folder(r: Result) -> None:
    assert r.reports.is_dir()
    assert list(r.reports.iterdir()) == []


# -- listings -----------------------------------------------------------------------------------

def test_help(cli):
    r = cli("help")
    assert r.rc == 0
    assert r.out.startswith("usage: harness")
    for cmd in ("run", "strategies", "benchmarks", "report"):
        assert cmd in r.out


def test_strategies_lists_all(cli):
    r = cli("strategies")
    assert r.rc == 0, r.err
    names = {ln.split()[0] for ln in r.out.splitlines() if ln.strip() and not ln.startswith(" ")}
    assert {"zero-shot", "few-shot", "rag", "lora"} <= names
    assert "k=3" in r.out and "shots=5" in r.out


def test_benchmarks_lists_nyt(cli):
    r = cli("benchmarks")
    assert r.rc == 0, r.err
    assert "squadshifts_nyt" in r.out
    assert "300 documents" in r.out and "200 test" in r.out


# -- errors before any work ---------------------------------------------------------------------

def test_unknown_strategy(cli):
    r = cli("nope")
    line = _assert_one_line_error(r, "'nope'")
    for name in ("zero-shot", "few-shot", "rag", "lora"):
        assert name in line
    assert r.out == ""
    _assert_no_run_folder(r)


def test_config_with_unknown_key(cli):
    r = cli("bad_key")
    _assert_one_line_error(r, "limt", str(r.tmp / "exp.yaml"))
    _assert_no_run_folder(r)


def test_broken_benchmark(cli):
    r = cli("bad_benchmark")
    _assert_one_line_error(r, f"{r.tmp / 'corpus' / 'questions.jsonl'}:5:", "invalid JSON")
    _assert_no_run_folder(r)


def test_limit_zero_is_an_argparse_error(cli):
    r = cli("limit0")
    assert r.rc == 2
    assert "--limit" in r.err and "positive integer" in r.err
    assert "Traceback" not in r.err
    _assert_no_run_folder(r)


def test_missing_model_dir(cli):
    r = cli("model")
    _assert_one_line_error(r, "/nonexistent/dir")
    _assert_no_run_folder(r)
    assert not (r.tmp / "out").exists()


def test_report_on_an_empty_folder(cli):
    r = cli("report_empty")
    _assert_one_line_error(r, str(r.tmp / "empty"), "results.json")
    assert list((r.tmp / "empty").iterdir()) == []


def test_bad_batch_size_is_an_argparse_error(capsys):
    # argparse errors happen before any import of the runner: cheap to check in process
    from harness.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["run", "--batch-size", "x"])
    assert exc.value.code == 2
    assert "--batch-size" in capsys.readouterr().err


# -- in process: cheap once the strategies are imported ------------------------------------------

@pytest.fixture
def in_process(tmp_path, monkeypatch):
    """Call harness.cli.main() here, with run folders going to a tmp folder."""
    from harness import cli as cli_mod

    reports = tmp_path / "reports"
    reports.mkdir()
    monkeypatch.setenv("HARNESS_REPORTS", str(reports))
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM"):
        monkeypatch.setenv(var, os.environ.get(var, "1" if var != "TOKENIZERS_PARALLELISM" else "false"))
    return cli_mod.main, reports


def test_config_with_unknown_strategy_option(in_process, tmp_path, capsys):
    main, reports = in_process
    (tmp_path / "exp.yaml").write_text("strategies:\n  rag:\n    kk: 3\n")
    assert main(["run", "--config", str(tmp_path / "exp.yaml")]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("error:")
    assert "kk" in err[0] and "rag" in err[0]
    assert list(reports.iterdir()) == []


def test_strategies_flag_drops_options_of_other_strategies(in_process, tmp_path, monkeypatch, capsys):
    # --strategies zero-shot drops lora, and with it lora's options: validation must pass.
    from harness.core.errors import HarnessError
    from harness.engine import runner

    main, reports = in_process
    (tmp_path / "exp.yaml").write_text("strategies:\n  zero-shot: {}\n  lora: {lr: 0.01}\nlimit: 1\n")
    seen = {}

    def fake_run(cfg, progress=True, log=print, **_):
        seen["cfg"] = cfg
        seen["plan"] = runner.plan(cfg)  # the real validation; raises on a problem
        raise HarnessError("stopped before loading a model")

    monkeypatch.setattr(runner, "run", fake_run)
    assert main(["run", "--config", str(tmp_path / "exp.yaml"), "--strategies", "zero-shot"]) == 2
    assert "stopped before loading a model" in capsys.readouterr().err
    cfg = seen["cfg"]
    assert cfg.strategies == ("zero-shot",)
    assert cfg.options == {"zero-shot": {}}
    assert cfg.limit == 1
    specs, configs, benches = seen["plan"]
    assert [s.name for s in specs] == ["zero-shot"] and benches[0].name == "squadshifts_nyt"
    assert list(reports.iterdir()) == []

