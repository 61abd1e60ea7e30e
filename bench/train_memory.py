"""The training memory estimate (harness/methods/memory.py) against the measured peak.

    python -m bench.train_memory [--model smollm2-135m] [--benchmark squadshifts_nyt] [--train-limit 16]
                                 [--setting lora] [--setting 'full-ft:precision=bf16,gradient_checkpointing=true'] ...
    python -m bench.train_memory --fit      # refit the per-token coefficients on 12 small Llama shapes
    python -m bench.train_memory --speed 3 [--setting ...]   # train tokens/s of each setting, interleaved

For each setting it builds the strategy's training model exactly as a run does (FineTune.base_model,
checkpointing, wrap), takes the estimate the run would record, then trains one epoch on the first
`--train-limit` train pairs inside `TensorPeak`, which counts every tensor byte alive (weights,
gradients, optimizer state, activations, temporaries) as CUDA's max_memory_allocated does. Prints one
JSON line per setting: estimate, measured peak, and their ratio; plus the process's RSS rise around
training, which adds the allocator's own overhead on CPU. Device: --device (cpu default).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import yaml

DEFAULT_SETTINGS = ("lora", "lora:gradient_checkpointing=true", "lora:precision=bf16",
                    "lora:micro_batch_size=2", "full-ft", "full-ft:precision=bf16",
                    "full-ft:gradient_checkpointing=true")


def parse_setting(text: str) -> tuple[str, dict]:
    name, _, rest = text.partition(":")
    options = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        options[key.strip()] = yaml.safe_load(value)
    return name.strip(), options


def measure_setting(rt, bench, name: str, options: dict, train_limit: int, seed: int = 0) -> dict:
    from harness.methods.memory import TensorPeak
    from harness.methods.registry import build_config, get_spec
    from harness.methods.strategy import PrepareContext
    from harness.methods.train import enable_checkpointing, resolve_settings, total_steps, train
    from harness.model.resources import measure

    spec = get_spec(name)
    strat = spec.cls(build_config(spec, {"epochs": 1, **options}))
    strat.name = name
    with tempfile.TemporaryDirectory() as tmp:
        ctx = PrepareContext(benchmark=bench, runtime=rt, workdir=Path(tmp), seed=seed, train_limit=train_limit,
                             progress=False)
        strat.ctx = ctx
        settings = resolve_settings(strat.settings(), rt.device)
        phases = strat.phases(ctx)
        steps = sum(total_steps(len(p), settings) for _, p in phases)
        record = strat.memory_estimate(ctx, settings, phases, steps)
        with measure() as rss:
            base = strat.base_model(ctx, settings)
            if settings.gradient_checkpointing:
                enable_checkpointing(base)
            torch.manual_seed(seed)
            model, _ = strat.wrap(base, steps)
            if strat.prompt_learning:
                settings = type(settings)(**{**settings.__dict__, "sparse_logits": False})
            cuda = str(rt.device).startswith("cuda")
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                start = torch.cuda.memory_allocated() - sum(t.numel() * t.element_size() for t in
                                                             list(model.parameters()) + list(model.buffers()))
            t0 = time.perf_counter()
            with TensorPeak(model) as peak:
                for _, pairs in phases:
                    rec = train(model, pairs, settings, pad_id=rt.pad_id, seed=seed, device=rt.device, progress=False)
            seconds = time.perf_counter() - t0
            # CUDA's own count, above what was allocated before the training model (the runtime's copy)
            cuda_peak = (torch.cuda.max_memory_allocated() - start) / 2**20 if cuda else None
    est = record["estimate"]
    measured_mb = peak.peak_bytes / 2**20
    return {"setting": name + (":" + ",".join(f"{k}={v}" for k, v in options.items()) if options else ""),
            "estimate_mb": est["total_mb"], "measured_tensor_peak_mb": round(measured_mb, 1),
            "ratio": round(est["total_mb"] / measured_mb, 3), "weights_mb": est["weights_mb"],
            "activations_mb": est["activations_mb"], "micro_batch": est["micro_batch"],
            "rss_rise_mb": rss.as_dict().get("rise_rss_mb"), "steps": rec.steps, "train_seconds": round(seconds, 1),
            **({"measured_cuda_peak_mb": round(cuda_peak, 1)} if cuda_peak is not None else {})}


def speed(rt, bench, settings: list[tuple[str, dict]], train_limit: int, repeats: int) -> list[dict]:
    """Train tokens/s of each setting through the harness's own path (FineTune._train: estimate,
    model, training), `repeats` rounds with the settings interleaved so machine noise hits all alike;
    the median of each, and its ratio to the first setting's."""
    import statistics

    from harness.methods.registry import build_config, get_spec
    from harness.methods.strategy import PrepareContext

    rates: dict[int, list[float]] = {i: [] for i in range(len(settings))}
    losses = {}
    for _ in range(repeats):
        for i, (name, options) in enumerate(settings):
            spec = get_spec(name)
            strat = spec.cls(build_config(spec, {"epochs": 1, **options}))
            strat.name = name
            with tempfile.TemporaryDirectory() as tmp:
                ctx = PrepareContext(benchmark=bench, runtime=rt, workdir=Path(tmp), train_limit=train_limit,
                                     progress=False)
                strat.ctx = ctx
                out = strat._train(ctx, strat.settings(), strat.phases(ctx), Path(tmp) / "checkpoint")
            rates[i].append(out["train_tokens_per_s"])
            losses[i] = out["final_train_loss"]
    first = statistics.median(rates[0])
    return [{"setting": name + (":" + ",".join(f"{k}={v}" for k, v in o.items()) if o else ""),
             "train_tokens_per_s": round(statistics.median(rates[i]), 1), "runs": rates[i],
             "ratio_to_first": round(statistics.median(rates[i]) / first, 3), "final_train_loss": losses[i]}
            for i, (name, o) in enumerate(settings)]


def fit() -> list[dict]:
    """Least-squares fit of the per-token, per-layer activation bytes on small random Llamas: the
    difference between 3 and 2 layers, after one forward on right-padded batches, counted by
    TensorPeak. Prints the coefficients of hidden, intermediate, length x heads and a constant."""
    import numpy as np
    import peft
    from transformers import LlamaConfig, LlamaForCausalLM

    from harness.methods.memory import TensorPeak

    def kept_bytes(h, kvh, i, heads, layers, B, L, kind, prec):
        torch.manual_seed(0)
        cfg = LlamaConfig(vocab_size=512, hidden_size=h, intermediate_size=i, num_hidden_layers=layers,
                          num_attention_heads=heads, num_key_value_heads=kvh, head_dim=h // heads,
                          tie_word_embeddings=True)
        m = LlamaForCausalLM(cfg)
        if kind == "frozen":
            if prec == "bf16":
                m = m.to(torch.bfloat16)
            m = peft.get_peft_model(m, peft.LoraConfig(r=8, lora_dropout=0.0, target_modules="all-linear",
                                                       task_type="CAUSAL_LM"))
        m.train()
        ids = torch.randint(3, 512, (B, L))
        mask = torch.ones_like(ids)
        mask[0, -3:] = 0
        amp = torch.autocast("cpu", dtype=torch.bfloat16, enabled=prec == "bf16")
        with TensorPeak(m) as peak, amp:
            out = m(input_ids=ids, attention_mask=mask, logits_to_keep=torch.arange(L - 5, L - 4)).logits
            kept = peak.current - peak.start_bytes
        del out
        return kept

    grid = [(64, 2, 128, 4, 2, 32), (64, 2, 128, 4, 4, 32), (64, 2, 128, 4, 2, 64), (128, 2, 256, 4, 2, 32),
            (64, 4, 128, 4, 2, 32), (64, 2, 256, 4, 2, 32), (128, 4, 512, 8, 2, 48), (96, 3, 160, 6, 3, 40),
            (64, 1, 128, 2, 2, 32), (128, 8, 128, 16, 2, 32), (192, 3, 256, 3, 2, 24), (64, 2, 96, 8, 3, 16)]
    out = []
    for kind in ("full", "frozen"):
        for prec in ("fp32", "bf16"):
            X, y = [], []
            for h, kvh, i, heads, B, L in grid:
                per_layer = (kept_bytes(h, kvh, i, heads, 3, B, L, kind, prec)
                             - kept_bytes(h, kvh, i, heads, 2, B, L, kind, prec))
                kv = kvh * (h // heads)
                linear = 2 * h * h + 2 * h * kv + 3 * h * i
                T = B * L
                X.append([T * h, T * i, T * L * heads, T, linear])  # linear: autocast's weight copies
                y.append(per_layer)
            coef, *_ = np.linalg.lstsq(np.array(X, float), np.array(y, float), rcond=None)
            pred = np.array(X) @ coef
            worst = float(np.max(np.abs(pred - y) / np.array(y)))
            out.append({"kind": kind, "precision": prec, "hidden": round(coef[0], 1), "intermediate": round(coef[1], 1),
                        "length_x_heads": round(coef[2], 2), "constant": round(coef[3], 1),
                        "linear_weight_copies": round(coef[4], 2), "worst_relative_error": round(worst, 4)})
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--benchmark", default="squadshifts_nyt")
    p.add_argument("--train-limit", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--setting", action="append", help="STRATEGY[:key=value,...] (repeatable)")
    p.add_argument("--fit", action="store_true", help="refit the activation coefficients instead")
    p.add_argument("--speed", type=int, metavar="N", help="train tokens/s instead, N interleaved rounds")
    args = p.parse_args(argv)
    if args.fit:
        for row in fit():
            print(json.dumps(row), flush=True)
        return
    from harness.data.benchmark import load_benchmark
    from harness.model.runtime import Runtime

    rt = Runtime(args.model, device=args.device, progress=False)
    bench = load_benchmark(args.benchmark)
    if args.speed:
        chosen = [parse_setting(t) for t in args.setting or DEFAULT_SETTINGS]
        for row in speed(rt, bench, chosen, args.train_limit, args.speed):
            print(json.dumps(row), flush=True)
        return
    for text in args.setting or DEFAULT_SETTINGS:
        name, options = parse_setting(text)
        print(json.dumps(measure_setting(rt, bench, name, options, args.train_limit)), flush=True)


if __name__ == "__main__":
    main()
