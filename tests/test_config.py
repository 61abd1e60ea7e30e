"""Experiment YAML, RunConfig validation, and the strategy registry's option checking."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.core.errors import ConfigError, HarnessError
from harness.engine.config import DEFAULT_STRATEGIES, RunConfig, load_yaml, make_config
from harness.methods import registry

CONFIGS = sorted(p for p in (Path(__file__).resolve().parents[1] / "configs").glob("*.yaml")
                 if not p.name.startswith("prices"))  # price tables, not experiments (tests/test_cost.py)


def _yaml(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def _config_error(path: Path, overrides=None) -> str:
    with pytest.raises(ConfigError) as exc:
        make_config(str(path), overrides or {})
    return str(exc.value)


# -- shipped configs ----------------------------------------------------------------------------

def test_there_are_shipped_configs():
    assert any(p.name == "default.yaml" for p in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_is_valid(path):
    cfg = make_config(str(path), {})
    assert isinstance(cfg, RunConfig)
    assert cfg.strategies and cfg.benchmarks and cfg.seeds
    known = registry.all_strategies()
    for name in cfg.strategies:
        base, options = registry.split_entry(name, cfg.options.get(name))  # a named variant runs `base`
        assert base in known, name
        built = registry.build_config(known[base], options)
        assert isinstance(built, known[base].config_cls)


def test_default_yaml_values():
    cfg = make_config(str(Path(__file__).resolve().parents[1] / "configs" / "default.yaml"), {})
    assert cfg.benchmarks == ("squadshifts_nyt",)
    assert cfg.seeds == (0,)
    # the demo is a representative subset: prompting, RAG at two settings, a full or partial fine-tune,
    # two LoRA configurations (one with a learning curve), fine-tuning with retrieval, the latency probe
    s = set(cfg.strategies)
    assert {"zero-shot", "few-shot", "rag", "lora-rag", "full-ft"} <= s
    runs = {n: registry.split_entry(n, cfg.options.get(n))[0] for n in s}
    assert sum(r == "rag" for r in runs.values()) >= 2 and sum(r == "lora" for r in runs.values()) >= 2
    assert any("train_sizes" in (cfg.options.get(n) or {}) for n in s) and cfg.latency_probe > 0
    assert cfg.limit is None or cfg.limit >= 120  # confidence intervals need the questions
    for name, values in cfg.options.items():
        base, options = registry.split_entry(name, values)
        registry.build_config(registry.get_spec(name, base), options)


def test_registry_has_the_four_strategies():
    known = registry.all_strategies()
    assert set(DEFAULT_STRATEGIES) <= set(known)
    for name, spec in known.items():
        assert spec.name == name and spec.cls.name == name
        assert spec.description
        registry.build_config(spec, None)  # defaults are valid


# -- top-level keys and types -------------------------------------------------------------------

def test_unknown_top_level_key(tmp_path):
    p = _yaml(tmp_path, "benchmarks: [squadshifts_nyt]\nbatchsize: 8\n")
    msg = _config_error(p)
    assert "batchsize" in msg
    assert str(p) in msg


@pytest.mark.parametrize(
    "text",
    [
        'batch_size: "sixteen"\n',
        "batch_size: 0\n",
        "batch_size: -4\n",
        "batch_size: 2.5\n",
        "batch_size: true\n",
        "max_new_tokens: 0\n",
        "limit: -1\n",
        "limit: 0\n",
        "limit: true\n",
        "limit: 2.5\n",
        'limit: "5"\n',
        "train_limit: -3\n",
        "model: 5\n",
        "usd_per_hour: -0.1\n",
        'usd_per_hour: "cheap"\n',
        "dtype: float64\n",
        "strategies: []\n",
        "benchmarks: []\n",
        "strategies: rag\n",
        "strategies: {rag: 3}\n",
        "seeds: [0, x]\n",
        "seeds: [0, true]\n",
        "benchmarks: [1]\n",
    ],
)
def test_bad_values(tmp_path, text):
    msg = _config_error(_yaml(tmp_path, text))
    assert msg  # a message the CLI can print


def test_wrong_type_names_the_file_and_key(tmp_path):
    p = _yaml(tmp_path, 'batch_size: "sixteen"\n')
    msg = _config_error(p)
    assert str(p) in msg and "batch_size" in msg and "sixteen" in msg


def test_bool_for_a_number_names_the_key(tmp_path):
    msg = _config_error(_yaml(tmp_path, "limit: true\n"))
    assert "limit" in msg


def test_invalid_yaml_gives_file_and_line(tmp_path):
    p = _yaml(tmp_path, "benchmarks: [squadshifts_nyt]\nseeds: [0, 1\nlimit: 5\n")
    msg = _config_error(p)
    # the unclosed list on line 2 is detected at the ':' of line 3
    assert msg.startswith(f"{p}:3: invalid YAML")


def test_invalid_yaml_bad_indentation(tmp_path):
    p = _yaml(tmp_path, "limit: 5\nmodel: x\n  device: cpu\n")
    msg = _config_error(p)
    assert msg.startswith(f"{p}:3:")


def test_top_level_not_a_mapping(tmp_path):
    p = _yaml(tmp_path, "- zero-shot\n- rag\n")
    msg = _config_error(p)
    assert str(p) in msg and "mapping" in msg


def test_missing_config_file(tmp_path):
    p = tmp_path / "nope.yaml"
    msg = _config_error(p)
    assert str(p) in msg and "not found" in msg


def test_empty_file_gives_defaults(tmp_path):
    assert make_config(str(_yaml(tmp_path, "")), {}) == RunConfig()


def test_config_errors_are_harness_errors():
    assert issubclass(ConfigError, HarnessError)
    assert ConfigError.exit_code == 2


# -- scalars, lists, overrides ------------------------------------------------------------------

def test_scalar_seed_and_benchmark(tmp_path):
    cfg = make_config(str(_yaml(tmp_path, "seed: 3\nbenchmark: boolq\n")), {})
    assert cfg.seeds == (3,)
    assert cfg.benchmarks == ("boolq",)


def test_lists_become_tuples(tmp_path):
    text = "seeds: [1, 2]\nbenchmarks: [boolq, intents]\nstrategies: [rag, lora]\n"
    cfg = make_config(str(_yaml(tmp_path, text)), {})
    assert cfg.seeds == (1, 2) and cfg.benchmarks == ("boolq", "intents") and cfg.strategies == ("rag", "lora")
    assert cfg.options == {}


def test_strategy_mapping_keeps_order_and_options(tmp_path):
    cfg = make_config(str(_yaml(tmp_path, "strategies:\n  rag: {k: 2}\n  zero-shot:\n")), {})
    assert cfg.strategies == ("rag", "zero-shot")
    assert cfg.options == {"rag": {"k": 2}, "zero-shot": {}}


def test_int_accepted_for_float_field(tmp_path):
    cfg = make_config(str(_yaml(tmp_path, "usd_per_hour: 1\n")), {})
    assert cfg.usd_per_hour == 1


def test_cli_overrides_win(tmp_path):
    p = _yaml(tmp_path, "limit: 10\nbatch_size: 4\nseeds: [1, 2]\nmodel: a\n")
    cfg = make_config(str(p), {"limit": 5, "seeds": (7,), "batch_size": None})
    assert cfg.limit == 5
    assert cfg.seeds == (7,)
    assert cfg.batch_size == 4     # a None override leaves the YAML value
    assert cfg.model == "a"


def test_no_yaml_only_overrides():
    cfg = make_config(None, {"limit": 3, "strategies": ("rag",), "model": None})
    assert cfg.limit == 3 and cfg.strategies == ("rag",) and cfg.model == "smollm2-135m"


def test_override_is_validated():
    with pytest.raises(ConfigError):
        make_config(None, {"batch_size": 0})


def test_load_yaml_returns_kwargs(tmp_path):
    out = load_yaml(_yaml(tmp_path, "seed: 1\nlimit: 2\n"))
    assert out == {"seeds": (1,), "limit": 2}


def test_seed_true_is_rejected(tmp_path):
    _config_error(_yaml(tmp_path, "seed: true\n"))


def test_empty_seeds_is_rejected(tmp_path):
    _config_error(_yaml(tmp_path, "seeds: []\n"))


def test_out_must_be_a_string(tmp_path):
    _config_error(_yaml(tmp_path, "out: 5\n"))


def test_usd_per_hour_nan_is_rejected(tmp_path):
    _config_error(_yaml(tmp_path, "usd_per_hour: .nan\n"))


# -- registry -----------------------------------------------------------------------------------

def test_get_spec_unknown_lists_known_names():
    with pytest.raises(ConfigError) as exc:
        registry.get_spec("nope")
    msg = str(exc.value)
    assert "'nope'" in msg
    for name in ("zero-shot", "few-shot", "rag", "lora"):
        assert name in msg


def test_build_config_unknown_option():
    with pytest.raises(ConfigError) as exc:
        registry.build_config(registry.get_spec("rag"), {"kk": 3})
    msg = str(exc.value)
    assert "kk" in msg and "rag" in msg and "chunk_words" in msg  # lists the known options


def test_build_config_unknown_option_of_optionless_strategy():
    with pytest.raises(ConfigError) as exc:
        registry.build_config(registry.get_spec("zero-shot"), {"shots": 1})
    assert "(none)" in str(exc.value)


@pytest.mark.parametrize(
    "name, values",
    [
        ("rag", {"k": "3"}),
        ("rag", {"k": 3.0}),
        ("rag", {"k": True}),
        ("few-shot", {"shots": "5"}),
        ("lora", {"lr": "1e-3"}),   # YAML 1.1 reads `lr: 1e-3` as a string
        ("lora", {"lr": True}),
        ("lora", {"target_modules": ["q_proj"]}),
    ],
)
def test_build_config_wrong_type(name, values):
    with pytest.raises(ConfigError) as exc:
        registry.build_config(registry.get_spec(name), values)
    key = next(iter(values))
    assert f"{name}.{key}" in str(exc.value)


@pytest.mark.parametrize(
    "name, values, key",
    [
        ("rag", {"k": 0}, "k"),
        ("rag", {"chunk_words": 8}, "chunk_words"),
        ("rag", {"chunk_words": 40, "chunk_overlap": 40}, "chunk_overlap"),
        ("few-shot", {"shots": 0}, "shots"),
        ("lora", {"lr": 0}, "lr"),
        ("lora", {"lr": -0.1}, "lr"),
        ("lora", {"r": 0}, "r"),
        ("lora", {"epochs": 0}, "epochs"),
    ],
)
def test_build_config_out_of_range(name, values, key):
    with pytest.raises(ConfigError) as exc:
        registry.build_config(registry.get_spec(name), values)
    assert key in str(exc.value)


def test_build_config_null_value_is_a_config_error():
    with pytest.raises(ConfigError):
        registry.build_config(registry.get_spec("rag"), {"k": None})


def test_build_config_coerces_ints_to_floats():
    c = registry.build_config(registry.get_spec("lora"), {"lr": 1, "dropout": 0})
    assert c.lr == 1.0 and isinstance(c.lr, float)
    assert isinstance(c.dropout, float)


def test_build_config_values():
    c = registry.build_config(registry.get_spec("rag"), {"k": 5, "chunk_words": 120})
    default = registry.get_spec("rag").config_cls()
    assert (c.k, c.chunk_words, c.chunk_overlap) == (5, 120, default.chunk_overlap)
    assert registry.build_config(registry.get_spec("few-shot"), {"shots": 2}).shots == 2


def test_describe_config_lists_defaults():
    opts = dict(registry.describe_config(registry.get_spec("rag").config_cls))
    default = registry.get_spec("rag").config_cls()
    assert opts == {"k": default.k, "chunk_words": default.chunk_words,
                    "chunk_overlap": default.chunk_overlap, "embedder": default.embedder}


def test_yaml_exponent_floats_are_numbers(tmp_path):
    # PyYAML (YAML 1.1) reads `1e-3` as a string; the config loader reads it as the float it means.
    path = tmp_path / "lr.yaml"
    path.write_text("strategies:\n  lora:\n    lr: 1e-3\n")
    assert load_yaml(path)["options"]["lora"]["lr"] == 1e-3
