"""Prefill efficiency: FLOP/s the harness achieves while processing prompts, as a fraction of the
fp32 matmul peak measured in the same process (2048 x 2048 torch.matmul, best of several).

FLOPs per prompt token are counted as 2 x the parameters that multiply every token: the decoder
layers. The embedding lookup costs no matmul, and the harness projects only the last position
onto the vocabulary, so the tied embedding matrix is left out; attention's own (quadratic) FLOPs
are left out too, which understates the work slightly. The prompts are RAG-length (the harness's
RAG prompts with the top-3 chunks), decoded for one token with the shared-prefix cache off, so
every prompt token is computed.

bf16 is measured beside fp32 (matmul peak, prefill speed, and whether greedy answers stay the
same), which is the evidence for the runtime's CPU dtype default. With `--bf16 auto` (the default)
a small probe matmul decides first: where bf16 runs below BF16_WORTH_IT of fp32's speed (CPUs
without bf16 kernels, ~0.002 on this project's AMD EPYC), bf16 prefill would take several times
the fp32 measurement to show what the probe already shows, so it is skipped and the probe is
recorded instead.
"""
from __future__ import annotations

import copy

import torch

from .common import BF16_WORTH_IT, Options, interleaved, load, sync, timed


def matmul_gflops(dtype=torch.float32, n: int = 2048, trials: int = 5, device: str = "cpu") -> float:
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    torch.matmul(a, b)  # warm-up
    best = float("inf")
    for _ in range(trials):
        dt, _ = timed(lambda: torch.matmul(a, b), device)
        best = min(best, dt)
    return 2 * n**3 / best / 1e9


def bf16_probe(device: str) -> dict:
    """fp32 and bf16 matmul GFLOP/s at 512 x 512: a second or two even where bf16 is slow."""
    fp32 = matmul_gflops(torch.float32, 512, device=device)
    bf16 = matmul_gflops(torch.bfloat16, 512, trials=2, device=device)
    return {"size": 512, "float32_gflops": fp32, "bfloat16_gflops": bf16, "ratio": bf16 / fp32}


def layer_params(model) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if ".layers." in n)


def measure(opts: Options) -> dict:
    from .generation import prompts_for

    rt, bench = load(opts)
    texts = prompts_for(rt, bench, opts.n(48, 4), opts.n(32, 4))
    ids = [rt.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts["rag top-3"]]
    closed = [rt.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts["closed-book"]]
    tokens = sum(len(p) for p in ids)
    params = layer_params(rt.model)
    probe = bf16_probe(rt.device)
    with_bf16 = opts.bf16 == "on" or (opts.bf16 == "auto" and probe["ratio"] >= BF16_WORTH_IT)
    bf16 = copy.deepcopy(rt.model).to(torch.bfloat16) if with_bf16 else None

    def prefill(model):
        return lambda: rt.generate(ids, max_new_tokens=1, share_prefix=False, model=model)

    rt.generate(ids[:2], max_new_tokens=1, share_prefix=False)  # warm-up: allocator, vocabulary flags
    dtypes = {"float32": rt.model, **({"bfloat16": bf16} if with_bf16 else {})}
    peaks = {k: [] for k in dtypes}
    seconds = {k: [] for k in dtypes}
    size = 128 if opts.dry_run else 2048
    for _ in range(opts.reps):  # peak and prefill alternate, so both see the same load
        for k in dtypes:
            peaks[k].append(matmul_gflops(getattr(torch, k), size, device=rt.device))
        s, _ = interleaved({k: prefill(m) for k, m in dtypes.items()}, 1, rt.device)
        for k in s:
            seconds[k] += s[k]
    out = {"prompts": len(ids), "prompt_tokens": tokens, "flops_per_token": 2 * params,
           "matmul_peak_gflops": peaks, "prefill_seconds": seconds, "bf16_probe": probe}
    out["achieved_gflops"] = {k: [2 * params * tokens / s / 1e9 for s in v] for k, v in seconds.items()}
    out["fraction_of_fp32_peak"] = [a / p for a, p in zip(out["achieved_gflops"]["float32"], peaks["float32"])]
    if not with_bf16:
        out["bf16_skipped"] = (f"--bf16 {opts.bf16}: bf16 matmul ran at {probe['ratio']:.3g} of fp32's speed "
                               f"(512 x 512 probe), so bf16 prefill was not measured")
        sync(rt.device)
        return out
    # Same answers in bf16? Closed-book, full-length greedy answers.
    a32 = [g.text.strip() for g in rt.generate(closed, max_new_tokens=24)]
    a16 = [g.text.strip() for g in rt.generate(closed, max_new_tokens=24, model=bf16)]
    out["bf16_same_answers"] = sum(x == y for x, y in zip(a32, a16)) / len(closed)
    sync(rt.device)
    return out
