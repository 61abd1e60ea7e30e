"""Training throughput of the harness's loop against a plain hand-written peft + torch loop.

    python -m bench.train_speed [--examples 64] [--repeats 2]

Same model (the packaged SmolLM2-135M), same question/answer pairs, same batch size and order,
padding to each batch's longest sequence in both. Prints train tokens/s of each and their ratio
(harness / plain), for LoRA and for full fine-tuning, plus the peak RSS of full fine-tuning.
Both are measured in this one process, alternating, so machine noise hits both alike.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


def plain_loop(model, pairs, pad_id, batch_size, lr):
    """What a user writes by hand: full-vocabulary logits and transformers' built-in loss."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    model.train()
    tokens, t0 = 0, time.perf_counter()
    for b in range(0, len(pairs), batch_size):
        batch = pairs[b : b + batch_size]
        width = max(len(p) + len(t) for p, t in batch)
        ids = torch.full((len(batch), width), pad_id)
        labels = torch.full((len(batch), width), -100)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for r, (p, t) in enumerate(batch):
            ids[r, : len(p) + len(t)] = torch.tensor(p + t)
            labels[r, len(p) : len(p) + len(t)] = torch.tensor(t)
            mask[r, : len(p) + len(t)] = 1
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += int(mask.sum())
    return tokens / (time.perf_counter() - t0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)

    import peft

    from harness.benchmark import load_benchmark
    from harness.finetune import qa_pairs
    from harness.resources import measure
    from harness.runtime import Runtime
    from harness.strategy import PrepareContext
    from harness.train import TrainSettings, train

    rt = Runtime("smollm2-135m", device="cpu", progress=False)
    bench = load_benchmark("squadshifts_nyt")
    pairs = qa_pairs(PrepareContext(benchmark=bench, runtime=rt, workdir=None), bench.split("train")[: args.examples])
    pairs.sort(key=lambda p: len(p[0]) + len(p[1]))  # the same length grouping for both loops

    def lora():
        torch.manual_seed(0)
        return peft.get_peft_model(rt.fresh_model(), peft.LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                                                      task_type="CAUSAL_LM"))

    for name, make, lr in (("lora", lora, 1e-3), ("full fine-tuning", rt.fresh_model, 5e-5)):
        ours, plain, peak = [], [], 0.0
        for _ in range(args.repeats):
            with measure() as m:
                rec = train(make(), pairs, TrainSettings(lr=lr, epochs=1, batch_size=8, eval_fraction=0),
                            pad_id=rt.pad_id, seed=0, device="cpu", progress=False)
            peak = max(peak, m.peak_rss_mb)
            ours.append(rec.train_tokens / rec.seconds)
            plain.append(plain_loop(make(), pairs, rt.pad_id, 8, lr))
        o, p = statistics.median(ours), statistics.median(plain)
        print(f"{name}: harness {o:.0f} tok/s, plain loop {p:.0f} tok/s, ratio {o / p:.2f} "
              f"(runs: {[round(x) for x in ours]} vs {[round(x) for x in plain]}); peak RSS {peak:.0f} MB", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
