"""The fine-tuning script for one process or many: the harness's own training path (FineTune._train)
on this process, or, under torchrun, on every rank with DistributedDataParallel.

    python -m harness.engine.scaleout.distributed --strategy lora --benchmark B --model M --out DIR
    torchrun --nproc_per_node 2 -m harness.engine.scaleout.distributed --strategy lora ... --out DIR      # gloo on CPU
    torchrun --nnodes 2 --node_rank R --master_addr HEAD --nproc_per_node 8 -m harness.engine.scaleout.distributed ...

`--sharding fsdp` shards weights, gradients and optimizer state across the ranks (FSDP2 `fully_shard`
per decoder layer) for models one device cannot hold; the default, ddp, replicates them.
Every rank draws the same batches and trains on its slice of each (harness/methods/train.py); the seed is
set before get_peft_model, so every rank starts from the same adapter. Rank 0 writes DIR/checkpoint
and DIR/meta.json, which records the world size, the training precision and each rank's sha256 of
its trainable weights (they must agree). Results are not bit-identical across world sizes.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

from harness.core.errors import ConfigError, HarnessError
from harness.methods.train import SHARDINGS


def params_sha256(model, whole: dict | None = None) -> str:
    """sha256 of the trainable weights; under FSDP from `whole`, the gathered state dict."""
    import torch

    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        if p.requires_grad:
            t = whole[name] if whole is not None else p
            h.update(name.encode() + b"\0" + t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def _options(values: list[str]) -> dict:
    from harness.core.yamlio import yaml_value

    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option {item!r}: expected key=value")
        out[key] = yaml_value(value, f"--option {key}")  # the hardened loader: no aliases, no tags
    return out


def train_strategy(spec, config, ctx, out: Path) -> dict:
    """FineTune._train on this process's share of every batch: every rank calls it (under torchrun
    or Ray Train, harness/engine/scaleout/raytrain.py), rank 0 writes OUT/checkpoint. Returns what to record."""
    import torch.distributed as dist

    from harness.methods.train import full_state_dict, shard

    rank, world = shard()
    strat = spec.cls(config)
    settings, phases = strat.settings(), strat.phases(ctx)
    details = strat._train(ctx, settings, phases, out / "checkpoint")
    model = details.pop("model")
    digests = [params_sha256(model, full_state_dict(model))]
    if world > 1:
        mine, digests = digests[0], [None] * world
        dist.all_gather_object(digests, mine)
    return {**details, "strategy": spec.name, "benchmark": ctx.benchmark.name, "world_size": world,
            "train_precision": details.get("train_precision", "float32"),
            "backend": dist.get_backend() if world > 1 else None,
            "sharding": ctx.train_sharding if world > 1 else None,
            "rank_params_sha256": digests, "ranks_identical": len(set(digests)) == 1,
            "prompt_learning": strat.prompt_learning}


def train_here(args, rank: int, world: int) -> dict:
    from harness.cache.hashing import fingerprint
    from harness.core.records import write_json
    from harness.data.benchmark import load_benchmark
    from harness.methods.registry import build_config, get_spec
    from harness.methods.strategy import PrepareContext
    from harness.model.runtime import Runtime

    spec = get_spec(args.strategy)
    if not spec.cls.fine_tunes:
        raise ConfigError(f"{args.strategy} does not fine-tune; this script trains fine-tuning strategies only")
    config = build_config(spec, _options(args.option))
    bench = load_benchmark(args.benchmark)
    runtime = Runtime(args.model, device=args.device, progress=False)
    out = Path(args.out)
    ctx = PrepareContext(benchmark=bench, runtime=runtime, workdir=out, seed=args.seed,
                         train_limit=args.train_limit, progress=False, train_sharding=args.sharding)
    meta = train_strategy(spec, config, ctx, out)
    meta["fingerprint"] = fingerprint({"strategy": spec.name, "config": repr(config), "seed": args.seed,
                                       "data_sha256": bench.meta.get("data_sha256"), "model": str(runtime.path),
                                       "train_limit": args.train_limit, "world_size": world,
                                       "train_precision": "float32",
                                       **({"sharding": args.sharding} if world > 1 and args.sharding != "ddp" else {})})
    if rank == 0:
        write_json(out / "meta.json", meta)
    return meta


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.engine.scaleout.distributed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--strategy", default="lora", help="a fine-tuning strategy (default lora)")
    p.add_argument("--benchmark", required=True, help="built-in benchmark name or a corpus folder")
    p.add_argument("--model", default="smollm2-135m", help="packaged model name or a local model directory")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-limit", type=int, help="use only the first M train examples")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="strategy option (repeatable)")
    p.add_argument("--out", required=True, help="folder for checkpoint/ and meta.json")
    p.add_argument("--sharding", choices=SHARDINGS, default="ddp",
                   help="with several processes: ddp (every rank holds all weights) or fsdp (FSDP2, weights, "
                        "gradients and optimizer state sharded across ranks)")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    import torch
    import torch.distributed as dist

    if world > 1:
        cuda = args.device.startswith("cuda") or (args.device == "auto" and torch.cuda.is_available())
        if cuda:
            local = int(os.environ.get("LOCAL_RANK", 0))
            torch.cuda.set_device(local)
            args.device = f"cuda:{local}"
        dist.init_process_group("nccl" if cuda else "gloo")
    try:
        meta = train_here(args, rank, world)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if rank == 0:
        print(f"trained {meta['strategy']} on {world} process(es): final loss {meta['final_train_loss']}, "
              f"ranks identical: {meta['ranks_identical']}; {Path(args.out) / 'checkpoint'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
