"""Fuzzing the config parser and the command line with hypothesis.

Property: whatever the input, the result is a valid RunConfig (whose strategies and benchmarks are
registered, and whose options build) or a HarnessError with a message; never another exception.
Examples are bounded (HARNESS_FUZZ_EXAMPLES raises the count) and derandomized, so CI is stable.
"""
from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.core.errors import HarnessError
from harness.engine import runner
from harness.engine.config import _YAML_KEYS, RunConfig, make_config
from harness.methods import registry

ROOT = Path(__file__).resolve().parents[1]
N = int(os.environ.get("HARNESS_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=N, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
rel = pytest.mark.reliability

STRATEGIES = sorted(registry.all_strategies())
FIELDS = {name: [n for n, _ in registry.describe_config(spec.config_cls)]
          for name, spec in registry.all_strategies().items()}

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["squadshifts_nyt", "boolq", "auto", "cpu", "cuda", "float32", "1e-3", "../..", "\0"]),
    st.sampled_from(STRATEGIES),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.text(max_size=8), st.sampled_from(STRATEGIES)),
                                                 inner, max_size=4)), max_leaves=12)
options = st.sampled_from(STRATEGIES).flatmap(lambda name: st.tuples(st.just(name), st.dictionaries(
    st.sampled_from(FIELDS[name] or ["x"]) | st.text(max_size=6), values, max_size=3)))
documents = st.dictionaries(
    st.sampled_from(sorted(_YAML_KEYS)) | st.text(max_size=10) | st.integers(),
    values | st.lists(st.sampled_from(STRATEGIES), min_size=1, max_size=3)
    | st.dictionaries(st.sampled_from(STRATEGIES), st.none() | st.dictionaries(st.text(max_size=6), values,
                                                                               max_size=2), max_size=3),
    max_size=6)
YAML_CHARS = st.sampled_from(list(":-[]{}!&*#|>'\"%@?,\n\t ") + ["!!python/object:os.system", "<<", "~",
                                                                   "strategies", "rag", "k", "limit", "1e3"])


def _check(path: Path, overrides=None):
    """The property: a RunConfig that the planner accepts too, or a HarnessError."""
    try:
        cfg = make_config(str(path), overrides or {})
    except HarnessError as exc:
        assert str(exc).strip(), "an error needs a message"
        return None
    assert isinstance(cfg, RunConfig)
    for name in cfg.strategies:  # variants (`rag-k1: {strategy: rag}`) and `model:` keys, read as the planner does
        base, opts = registry.split_entry(name, cfg.options.get(name))
        registry.build_config(registry.get_spec(name, base), opts)
    return cfg


@rel("fuzz", f"config parser: random YAML documents built from the config's keys and value types ({N} examples)")
@FUZZ
@given(doc=documents)
def test_fuzz_structured_yaml(tmp_path_factory, doc):
    path = tmp_path_factory.mktemp("fz") / "exp.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    _check(path)


@rel("fuzz", f"config parser: strategy options with random names and values ({N} examples)")
@FUZZ
@given(entry=options, limit=st.none() | st.integers(-3, 5))
def test_fuzz_strategy_options(tmp_path_factory, entry, limit):
    name, opts = entry
    doc = {"strategies": {name: opts}}
    if limit is not None:
        doc["limit"] = limit
    path = tmp_path_factory.mktemp("fz") / "exp.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    _check(path)


@rel("fuzz", f"config parser: random text in YAML syntax ({N} examples)")
@FUZZ
@given(parts=st.lists(YAML_CHARS | st.text(max_size=4), max_size=40))
def test_fuzz_raw_text(tmp_path_factory, parts):
    path = tmp_path_factory.mktemp("fz") / "exp.yaml"
    path.write_text("".join(parts), encoding="utf-8", errors="surrogatepass")
    _check(path)


@rel("fuzz", f"config parser: random byte edits of the shipped configs ({N} examples)")
@FUZZ
@given(which=st.sampled_from(sorted((ROOT / "configs").glob("*.yaml"))),
       edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 3), st.binary(max_size=3)), max_size=4))
def test_fuzz_mutated_shipped_configs(tmp_path_factory, which, edits):
    data = bytearray(which.read_bytes())
    for where, cut, insert in edits:
        i = int(where * len(data))
        data[i:i + cut] = insert
    path = tmp_path_factory.mktemp("fz") / "exp.yaml"
    path.write_bytes(bytes(data))
    _check(path)


@rel("fuzz", "config parser: deeply nested YAML and an alias bomb")
@pytest.mark.parametrize("text", [
    "limit: " + "[" * 1500 + "]" * 1500 + "\n",
    "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n",
], ids=["nested 1500 deep", "billion laughs"])
def test_nested_and_alias_bomb(tmp_path, text):
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    assert _check(path) is None


FLAGS = ["--config", "--benchmark", "--strategies", "--limit", "--train-limit", "--model", "--device", "--dtype",
         "--batch-size", "--seed", "--out", "--quiet", "--trust-remote-code", "--debug", "--help", "-h"]
tokens = st.one_of(st.sampled_from(FLAGS), st.text(max_size=8), st.integers(-5, 10**20).map(str),
                   st.sampled_from(["all", "rag,zero-shot", ",", "cpu", "cuda:0", "tpu", "float64", "0", "-1"]))


@rel("fuzz", f"command line: random arguments to `harness run` / `harness report` ({N} examples)")
@FUZZ
@given(command=st.sampled_from(["run", "report"]), argv=st.lists(tokens, max_size=8))
def test_fuzz_cli(tmp_path_factory, monkeypatch, command, argv):
    """main() returns 0 or 2 or exits through argparse with 0 or 2; nothing else escapes, and no
    run starts (runner.run is replaced by a stub that stops with a HarnessError)."""
    from harness import cli

    reports = tmp_path_factory.mktemp("reports")
    monkeypatch.setenv("HARNESS_REPORTS", str(reports))
    monkeypatch.setattr(runner, "run", lambda cfg, **_: (_ for _ in ()).throw(HarnessError("stub: no run")))
    argv = [a for a in argv if "--debug" not in a]  # --debug re-raises by design
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli.main([command, *argv])
        except SystemExit as exc:
            rc = exc.code
    assert rc in (0, 2), (argv, rc, err.getvalue())
    if rc == 2 and not err.getvalue().startswith("usage:"):
        lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), err.getvalue()
    assert list(reports.iterdir()) == []
