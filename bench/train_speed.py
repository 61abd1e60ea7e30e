"""Training throughput of the harness's loop against a plain hand-written peft + torch loop.

    python -m bench.train_speed [--examples 48] [--repeats 2]

Same model, same question/answer pairs, same batch size (8) and order, padding to each batch's
longest sequence in both. Train tokens/s of each and their ratio (harness / plain), for LoRA
(r=16, all linear layers, as REFERENCE.md) and for full fine-tuning, plus peak RSS of each.
Both run in this one process, alternating, so machine noise hits both alike.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from .common import Options, load

BATCH = 8


def plain_loop(model, pairs, pad_id, batch_size, lr, device="cpu"):
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
        loss = model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device)).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += int(mask.sum())
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
    return tokens / (time.perf_counter() - t0)


def measure(opts: Options, examples: int | None = None) -> dict:
    import peft

    from harness.methods.finetune import qa_pairs
    from harness.methods.strategy import PrepareContext
    from harness.methods.train import TrainSettings, train
    from harness.model.resources import measure as measured

    rt, bench = load(opts)
    n = examples or opts.n(48, 8)
    pairs = qa_pairs(PrepareContext(benchmark=bench, runtime=rt, workdir=None), bench.split("train")[:n])
    pairs.sort(key=lambda p: len(p[0]) + len(p[1]))  # the same length grouping for both loops
    dev = rt.device

    def lora():
        torch.manual_seed(0)
        return peft.get_peft_model(rt.fresh_model(), peft.LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                                                      task_type="CAUSAL_LM"))

    out = {"examples": len(pairs), "batch_size": BATCH}
    for name, make, lr in (("lora", lora, 1e-3), ("full", rt.fresh_model, 5e-5)):
        ours, plain, peak_ours, peak_plain = [], [], 0.0, 0.0
        for _ in range(opts.reps):
            model = make()
            with measured() as m:
                rec = train(model, pairs, TrainSettings(lr=lr, epochs=1, batch_size=BATCH, eval_fraction=0),
                            pad_id=rt.pad_id, seed=0, device=dev, progress=False)
            del model
            peak_ours = max(peak_ours, m.peak_rss_mb)
            ours.append(rec.train_tokens / rec.seconds)
            model = make()
            with measured() as m:
                plain.append(plain_loop(model, pairs, rt.pad_id, BATCH, lr, dev))
            del model
            peak_plain = max(peak_plain, m.peak_rss_mb)
        out[name] = {"harness_tokens_per_s": ours, "plain_tokens_per_s": plain,
                     "harness_peak_rss_mb": peak_ours, "plain_peak_rss_mb": peak_plain,
                     "train_tokens": rec.train_tokens}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
    print(json.dumps(measure(Options(reps=args.repeats), args.examples), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
