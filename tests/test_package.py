"""The harness as a package, not only a checkout: the wheel is built, installed into a fresh virtual
environment and run from an empty folder; an outside package adds a strategy through the
`rag_or_finetune.strategies` entry-point group.

The fresh venv sees the test venv's site-packages through a .pth line (torch and the rest are not
installed twice), but not its editable install of this checkout: the test checks that `harness` is
imported from the wheel.
"""
from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PLUGIN = '''
from dataclasses import dataclass

from harness.api import PrepareContext, Prompter, StrategyBase, answer_prompts, strategy


@dataclass(frozen=True)
class ShoutConfig:
    pass


@strategy("shout", config=ShoutConfig)
class Shout(StrategyBase):
    """Closed-book, asked in capitals: a strategy from an outside package."""

    def prepare(self, ctx: PrepareContext) -> dict:
        self.ctx, self.prompter = ctx, Prompter.for_benchmark(ctx.benchmark)
        return {}

    def answer(self, examples):
        msgs = [self.prompter.closed_book(e.input.upper()) for e in examples]
        return answer_prompts(self.ctx, examples, msgs)
'''


def _run(cmd, cwd, env, timeout=600):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv with the built wheel installed (no dependencies: those come from the test venv)."""
    tmp = tmp_path_factory.mktemp("pkg")
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "dist"), str(ROOT)], tmp, env)
    wheel = next((tmp / "dist").glob("rag_or_finetune-*.whl"))
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp, env)
    py = venv / "bin" / "python"
    purelib = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp,
                        env).stdout.strip())
    (purelib / "test-venv.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run([str(py), "-m", "pip", "install", "--no-deps", "-q", str(wheel)], tmp, env)
    return venv, tmp, env


@pytest.mark.slow
def test_wheel_runs_from_an_empty_folder(installed, tiny_model):
    venv, tmp, env = installed
    empty = tmp / "empty"
    empty.mkdir()
    env = {k: v for k, v in env.items() if k not in ("HARNESS_REPORTS", "PYTHONPATH")}
    env.update(HARNESS_CACHE=str(tmp / "cache"), HF_HUB_OFFLINE="1")
    where = _run([str(venv / "bin" / "python"), "-c", "import harness, harness.core.paths as p; "
                  "print(harness.__file__); print(p.DEFAULT_PRICES)"], empty, env).stdout.split()
    assert str(venv) in where[0], f"harness imported from {where[0]}, not from the wheel"
    assert Path(where[1]).is_file(), "the price table is not in the wheel"
    harness = venv / "bin" / "harness"
    assert _run([str(harness), "--version"], empty, env).stdout.startswith("harness ")
    _run([str(harness), "run", "--limit", "2", "--train-limit", "8", "--model", str(tiny_model), "--device", "cpu",
          "--strategies", "zero-shot,few-shot,rag,lora", "--quiet"], empty, env)
    runs = [p for p in (empty / "reports").iterdir() if p.is_dir() and not p.is_symlink()]
    assert len(runs) == 1 and (empty / "reports" / "latest").resolve() == runs[0].resolve()
    results = json.loads((runs[0] / "results.json").read_text())
    assert [c["status"] for c in results["cells"]] == ["ok"] * 4
    assert (runs[0] / "report.html").is_file() and (runs[0] / "summary.csv").is_file()


@pytest.mark.slow
def test_outside_package_adds_a_strategy_by_entry_point(installed, tiny_model):
    venv, tmp, env = installed
    plugin = tmp / "plugin"
    (plugin / "shout_strategy").mkdir(parents=True)
    (plugin / "shout_strategy" / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    (plugin / "pyproject.toml").write_text(textwrap.dedent('''
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "shout-strategy"
        version = "0.1"

        [project.entry-points."rag_or_finetune.strategies"]
        shout = "shout_strategy"
    '''))
    py = venv / "bin" / "python"
    _run([str(py), "-m", "pip", "install", "--no-deps", "-q", str(plugin)], tmp, env)
    env = {k: v for k, v in env.items() if k not in ("HARNESS_REPORTS", "PYTHONPATH")}
    env.update(HARNESS_CACHE=str(tmp / "cache"), HF_HUB_OFFLINE="1")
    harness = venv / "bin" / "harness"
    listing = _run([str(harness), "strategies"], tmp, env).stdout
    assert "shout" in listing and "an outside package" in listing
    assert "zero-shot" in listing  # the built-in discovery stays
    out = tmp / "shout-run"
    _run([str(harness), "run", "--limit", "2", "--model", str(tiny_model), "--device", "cpu",
          "--strategies", "zero-shot,shout", "--quiet", "--out", str(out)], tmp, env)
    results = json.loads((out / "results.json").read_text())
    assert {c["strategy"]: c["status"] for c in results["cells"]} == {"zero-shot": "ok", "shout": "ok"}
