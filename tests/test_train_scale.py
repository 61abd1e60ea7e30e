"""Training at scale on CPU: gradient checkpointing, gradient accumulation, bf16 autocast with fp32
master weights, QLoRA's refusal on CPU, and the memory estimate against the measured peak."""
import json

import pytest
import torch

from harness.core.errors import ConfigError
from harness.engine.config import RunConfig
from harness.engine.runner import run
from harness.methods import memory
from harness.methods.train import TrainSettings, _collate, loss_on_targets, step_gradients, train
from harness.model.runtime import Runtime


@pytest.fixture(scope="module")
def rt(tiny_model):
    return Runtime(str(tiny_model), device="cpu", progress=False)


def _pairs(rt, n=8):
    """Question/answer pairs of different lengths, so that micro-batches pad differently from the batch."""
    out = []
    for i in range(n):
        prompt = rt.encode_chat([{"role": "user", "content": f"What is code {i}?" + " Tell me." * (i % 3)}])
        target = rt.tokenizer(f"code {i} is lake" + " and river" * (i % 2), add_special_tokens=False)["input_ids"]
        out.append((prompt, target + [rt.tokenizer.eos_token_id]))
    return out


def _lora(rt, dropout=0.0, dtype=torch.float32):
    import peft

    torch.manual_seed(0)
    return peft.get_peft_model(rt.fresh_model(dtype=dtype), peft.LoraConfig(
        r=4, lora_alpha=8, lora_dropout=dropout, target_modules="all-linear", task_type="CAUSAL_LM"))


def _grads(model) -> dict:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_gradient_checkpointing_gives_the_same_gradients(rt):
    """With dropout on: non-reentrant checkpointing restores the RNG state, so the recomputed forward
    draws the same masks. Tolerance 1e-6 absolute (float32; the recomputation is the same arithmetic)."""
    from harness.methods.train import enable_checkpointing

    ids, mask, labels, _ = _collate(_pairs(rt), rt.pad_id, 256, "cpu")
    grads = []
    for checkpointing in (False, True):
        model = _lora(rt, dropout=0.1)
        if checkpointing:
            enable_checkpointing(model)
            assert all(layer.gradient_checkpointing for layer in model.base_model.model.model.layers)
        model.train()
        torch.manual_seed(1)
        loss_on_targets(model, ids, mask, labels).backward()
        grads.append(_grads(model))
    plain, ckpt = grads
    assert plain.keys() == ckpt.keys() and len(plain) == 2 * 7 * 2  # lora A and B of 7 linears in 2 layers
    assert any(g.abs().sum() > 0 for g in plain.values())
    for name in plain:
        assert torch.allclose(plain[name], ckpt[name], atol=1e-6, rtol=1e-5), name


def test_accumulation_of_4_micro_batches_of_2_equals_a_batch_of_8(rt):
    """The gradients of 4 accumulated micro-batches of 2 equal those of one batch of 8 (tolerance 1e-6
    absolute / 1e-5 relative: the same sums in another order), and so do the loss and the adapter after
    one optimizer step. LoRA dropout is 0 here: a batch and its micro-batches draw different masks."""
    pairs = _pairs(rt)
    whole = TrainSettings(lr=1e-2, epochs=1, batch_size=8, eval_fraction=0, warmup_steps=1)
    micro = TrainSettings(lr=1e-2, epochs=1, batch_size=8, eval_fraction=0, warmup_steps=1, micro_batch_size=2)
    assert micro.accumulation_steps == 4 and whole.accumulation_steps == 1
    grads, values = [], []
    for s in (whole, micro):
        model = _lora(rt)
        model.train()
        values.append(step_gradients(model, pairs, s, pad_id=rt.pad_id, device="cpu"))
        grads.append(_grads(model))
    assert values[0][0] == pytest.approx(values[1][0], rel=1e-6) and values[0][1] == values[1][1]
    assert any(g.abs().sum() > 0 for g in grads[0].values())
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-6, rtol=1e-5), name
    # the naive accumulation (each micro-batch's mean loss / 4) weighs tokens unequally and differs
    model = _lora(rt)
    for i in range(0, 8, 2):
        ids, mask, labels, _ = _collate(pairs[i : i + 2], rt.pad_id, 256, "cpu")
        (loss_on_targets(model, ids, mask, labels) / 4).backward()
    naive = _grads(model)
    assert any(not torch.allclose(naive[n], grads[0][n], atol=1e-6, rtol=1e-5) for n in naive)
    # one whole optimizer step through `train`: same loss, same adapter weights
    trained = []
    for s in (whole, micro):
        model = _lora(rt)
        rec = train(model, pairs, s, pad_id=rt.pad_id, seed=0, device="cpu", progress=False)
        trained.append((rec, {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}))
    (a, wa), (b, wb) = trained
    assert a.steps == b.steps == 1 and a.loss_curve[0] == pytest.approx(b.loss_curve[0], rel=1e-6)
    for name in wa:
        assert torch.allclose(wa[name], wb[name], atol=1e-6), name


def test_bf16_autocast_keeps_fp32_master_weights(rt):
    """precision bf16 (CPU autocast stands in for CUDA's): adapters train fp32 weights over a bf16
    base; the loss stays within 2% of fp32's on the same step."""
    pairs = _pairs(rt)
    s32 = TrainSettings(lr=1e-2, epochs=1, batch_size=8, eval_fraction=0)
    s16 = TrainSettings(lr=1e-2, epochs=1, batch_size=8, eval_fraction=0, precision="bf16")
    base32 = train(_lora(rt), pairs, s32, pad_id=rt.pad_id, seed=0, device="cpu", progress=False)
    model = _lora(rt, dtype=torch.bfloat16)
    bf16 = train(model, pairs, s16, pad_id=rt.pad_id, seed=0, device="cpu", progress=False)
    trained = {p.dtype for p in model.parameters() if p.requires_grad}
    frozen = {p.dtype for p in model.parameters() if not p.requires_grad}
    assert trained == {torch.float32} and frozen == {torch.bfloat16}
    assert bf16.loss_curve[0] == pytest.approx(base32.loss_curve[0], rel=0.02)
    assert bf16.loss_curve[0] != base32.loss_curve[0]  # it did run in bf16


def _run(tiny_model, corpus, out, strategies, options, cache=True):
    """cache=False where the test needs the training itself to run (the session's stage cache may hold a cell
    of the same key from another test file)."""
    cfg = RunConfig(benchmarks=(str(corpus),), strategies=tuple(strategies), options=options,
                    model=str(tiny_model), device="cpu", max_new_tokens=4, batch_size=4, out=str(out))
    results = json.loads((run(cfg, progress=False, log=lambda m: None, cache=cache) / "results.json").read_text())
    return results, {c["strategy"]: c for c in results["cells"]}


def test_settings_are_recorded_and_part_of_the_training_key(tiny_model, tiny_corpus, tmp_path):
    base = {"epochs": 1, "batch_size": 4, "r": 4}
    _, cells = _run(tiny_model, tiny_corpus, tmp_path / "a", ["lora"], {"lora": base})
    p = cells["lora"]["prepare"]
    assert (p["batch_size"], p["micro_batch_size"], p["accumulation_steps"]) == (4, 4, 1)
    assert p["train_precision"] == "float32" and p["base_weights"] == "float32" and not p["gradient_checkpointing"]
    mem = p["memory"]
    assert mem["estimate"]["total_mb"] > 0 and mem["available"] == "available host RAM"
    assert "peak_rss_mb" in mem["measured"]
    keys = {p["artifact_path"]}
    for change in ({"micro_batch_size": 2}, {"gradient_checkpointing": True}, {"precision": "bf16"}):
        results, cells = _run(tiny_model, tiny_corpus, tmp_path / str(len(keys)), ["lora"],
                              {"lora": {**base, **change}})
        c = cells["lora"]
        assert c["status"] == "ok", c["error"]
        assert not c["prepare"]["artifact_cached"] and results["cache"]["artifacts_built"] == 1, change
        keys.add(c["prepare"]["artifact_path"])
    assert len(keys) == 4
    assert c["prepare"]["base_weights"] == "bfloat16" and c["prepare"]["train_precision"] == "bfloat16"


def test_qlora_on_cpu_fails_with_what_to_do(tiny_model, tiny_corpus, tmp_path):
    _, cells = _run(tiny_model, tiny_corpus, tmp_path / "q", ["lora", "zero-shot"],
                    {"lora": {"quantize": "4bit", "epochs": 1}})
    c = cells["lora"]
    assert c["status"] == "failed" and "\n" not in c["error"]
    assert c["error"] == ("lora: quantize: 4bit (QLoRA) loads the base through bitsandbytes, which needs a CUDA "
                          "device, and this run is on cpu: run it with --device cuda, or drop `quantize` to train "
                          "plain LoRA")
    assert cells["zero-shot"]["status"] == "ok"


@pytest.mark.parametrize("options, message", [
    ({"quantize": "8bit"}, "lora.quantize must be 4bit or absent"),
    ({"micro_batch_size": 3}, "micro_batch_size (3) must divide batch_size (8)"),
    ({"micro_batch_size": 0}, "micro_batch_size must be a positive integer"),
    ({"precision": "fp16"}, "lora.precision must be one of auto, fp32, bf16"),
])
def test_bad_training_options_are_config_errors(options, message):
    from strategies.lora import LoraConfig

    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        LoraConfig(**options)


SETTINGS = [("lora", {}), ("lora", {"gradient_checkpointing": True}), ("lora", {"micro_batch_size": 2}),
            ("lora", {"precision": "bf16"}), ("full-ft", {}), ("full-ft", {"precision": "bf16"}),
            ("full-ft", {"gradient_checkpointing": True, "micro_batch_size": 4})]


@pytest.mark.parametrize("name, options", SETTINGS)
def test_memory_estimate_against_the_measured_tensor_peak(rt, tiny_corpus, name, options):
    """Estimate within 15% of the exact tensor peak (TensorPeak: weights, gradients, optimizer state,
    activations, temporaries) of one training epoch on the tiny model. Measured 0.98 to 1.07."""
    from bench.train_memory import measure_setting
    from harness.data.benchmark import load_benchmark

    row = measure_setting(rt, load_benchmark(str(tiny_corpus)), name, options, train_limit=12)
    assert row["steps"] >= 1
    assert 0.85 <= row["ratio"] <= 1.15, row


def test_estimate_scales_with_its_settings(rt, tiny_corpus):
    """Each lighter setting lowers the estimate, and the micro-batch is read from the planned batches."""
    from harness.data.benchmark import load_benchmark
    from harness.methods.registry import build_config, get_spec
    from harness.methods.strategy import PrepareContext

    bench = load_benchmark(str(tiny_corpus))
    totals = {}
    for label, opts in (("plain", {}), ("micro", {"micro_batch_size": 2}),
                        ("ckpt", {"gradient_checkpointing": True}), ("bf16", {"precision": "bf16"})):
        spec = get_spec("lora")
        strat = spec.cls(build_config(spec, opts))
        ctx = PrepareContext(benchmark=bench, runtime=rt, workdir=tiny_corpus, progress=False)
        s = strat.settings()
        s = type(s)(**{**s.__dict__, "precision": "fp32" if label != "bf16" else "bf16"})
        rec = strat.memory_estimate(ctx, s, strat.phases(ctx), 2)
        totals[label] = rec["estimate"]
    assert totals["micro"]["micro_batch"]["rows"] == 2 and totals["plain"]["micro_batch"]["rows"] == 8
    for lighter in ("micro", "ckpt", "bf16"):
        assert totals[lighter]["total_mb"] < totals["plain"]["total_mb"], lighter
    assert totals["bf16"]["weights_mb"] < totals["plain"]["weights_mb"]


def test_run_that_cannot_fit_is_refused_with_settings_that_would(tiny_model, tiny_corpus, tmp_path, monkeypatch):
    _, cells = _run(tiny_model, tiny_corpus, tmp_path / "fit", ["lora"], {"lora": {"epochs": 1}})
    need = cells["lora"]["prepare"]["memory"]["estimate"]
    # room for the weights and a micro-batch of 1, not for the whole batch of 8
    room = int((need["total_mb"] - need["activations_mb"] * 0.4) * memory.MB)
    monkeypatch.setattr(memory, "available", lambda device: (room, "available host RAM"))
    _, cells = _run(tiny_model, tiny_corpus, tmp_path / "refused", ["lora", "zero-shot"],
                    {"lora": {"epochs": 1, "lr": 2e-3}}, cache=False)
    c = cells["lora"]
    assert c["status"] == "failed" and "\n" not in c["error"], c
    assert c["error"].startswith("lora: training needs about ") and " at its peak (weights " in c["error"]
    assert f"{memory.gb(room)} is available host RAM; settings that fit: micro_batch_size: " in c["error"]
    assert "gradient_checkpointing: true" in c["error"]
    assert cells["zero-shot"]["status"] == "ok"
    # nothing fits: say what else to do
    monkeypatch.setattr(memory, "available", lambda device: (1024, "available host RAM"))
    _, cells = _run(tiny_model, tiny_corpus, tmp_path / "none", ["full-ft"], {"full-ft": {"epochs": 1}}, cache=False)
    assert "no setting of micro_batch_size, gradient_checkpointing, precision or quantize fits" in \
        cells["full-ft"]["error"]
    # HARNESS_MEMORY_CHECK=off records the estimate and trains anyway
    monkeypatch.setenv("HARNESS_MEMORY_CHECK", "off")
    _, cells = _run(tiny_model, tiny_corpus, tmp_path / "off", ["full-ft"], {"full-ft": {"epochs": 1}}, cache=False)
    assert cells["full-ft"]["status"] == "ok" and cells["full-ft"]["prepare"]["memory"]["available_mb"] < 0.01


def test_fitting_suggests_cuda_only_settings_on_cuda():
    """On a CUDA device the suggestions include bf16 and QLoRA (no GPU needed to compute them)."""
    s = TrainSettings(lr=1e-3, batch_size=8, precision="fp32")
    shape = memory.Shape("llama", layers=32, hidden=4096, intermediate=14336, heads=32, vocab=128256)
    counts = memory.Trainable(total_params=8_030_000_000 + 42_000_000, trainable_params=42_000_000,
                              linear_params=7_500_000_000, quantizable_params=6_980_000_000,
                              largest_trainable=4096 * 16, lora_in_features=32 * (6 * 4096 + 14336),
                              lora_ranks=32 * 7 * 16)
    shapes = [memory.MicroBatch(8, 512, 40)]

    def estimate_for(x):
        rows = min(x.micro, 8)
        return memory.estimate(shape, counts, full=False, precision=x.precision, quantize=x.quantize,
                               checkpointing=x.gradient_checkpointing, shapes=[memory.MicroBatch(rows, 512, 40)],
                               device="cuda:0")

    est = memory.estimate(shape, counts, full=False, precision="fp32", quantize=None, checkpointing=False,
                          shapes=shapes, device="cuda:0")
    assert 29 < est.weights / memory.GB < 31  # 8B in fp32
    fits = memory.fitting(estimate_for, s, 24 * memory.GB, device="cuda:0", can_quantize=True, limit=10)
    changes = [c for c, _ in fits]
    assert {"quantize": "4bit"} in changes or any(c.get("quantize") == "4bit" for c in changes)
    assert all(e.total <= 24 * memory.GB for _, e in fits)
    q = memory.estimate(shape, counts, full=False, precision="bf16", quantize="4bit", checkpointing=True,
                        shapes=shapes, device="cuda:0")
    assert 4 < q.weights / memory.GB < 6  # NF4 linears + bf16 embeddings and head
