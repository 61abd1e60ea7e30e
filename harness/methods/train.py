"""The one supervised training loop every fine-tuning strategy uses.

Loss is computed on answer tokens only (the prompt is context, not a target). Batches are
grouped by length and padded to their own longest sequence, not to a fixed length.

Training at scale: an optimizer step takes `batch_size` examples (the effective batch), run as
micro-batches of `micro_batch_size` rows whose gradients accumulate, each weighted by its share of
the batch's target tokens, so the step equals one of the whole batch up to the order of float sums.
`precision: bf16` runs forward and loss under bf16 autocast while the trained weights, their
gradients and the optimizer state stay fp32 (fp32 master weights); gradient checkpointing is a model
setting (`enable_checkpointing`).
"""
from __future__ import annotations

import dataclasses
import math
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Sequence

import torch
from tqdm.auto import tqdm

from harness.core.errors import StrategyFailed


@dataclass(frozen=True)
class TrainSettings:
    lr: float
    epochs: int = 2
    batch_size: int = 8
    max_len: int = 256          # longest train sequence in tokens; longer ones are cut from the left
    warmup_steps: int = 10
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    eval_fraction: float = 0.1  # held-out slice of the train split for eval loss (0 disables)
    sparse_logits: bool = True  # project only target positions onto the vocabulary (see loss_on_targets)
    micro_batch_size: int | None = None  # rows per forward/backward; None: the whole batch at once
    gradient_checkpointing: bool = False  # keep only each layer's input, recompute the rest in backward
    precision: str = "fp32"     # fp32, bf16 (autocast, fp32 master weights) or auto (resolve_precision)
    quantize: str | None = None  # 4bit: the frozen base in 4-bit NF4 through bitsandbytes (QLoRA)

    @property
    def micro(self) -> int:
        return min(self.micro_batch_size or self.batch_size, self.batch_size)

    @property
    def accumulation_steps(self) -> int:
        return math.ceil(self.batch_size / self.micro)


PRECISIONS = ("auto", "fp32", "bf16")
QUANTIZE = (None, "4bit")


def check_training_options(name: str, config) -> None:
    """The scale settings a fine-tuning strategy's config may carry (micro_batch_size,
    gradient_checkpointing, precision, quantize): raise ConfigError naming the bad one."""
    from harness.core.errors import ConfigError

    micro = getattr(config, "micro_batch_size", None)
    batch = getattr(config, "batch_size", None)
    if micro is not None:
        if not isinstance(micro, int) or isinstance(micro, bool) or micro < 1:
            raise ConfigError(f"{name}.micro_batch_size must be a positive integer, got {micro!r}")
        if batch is not None and (micro > batch or batch % micro):
            raise ConfigError(f"{name}.micro_batch_size ({micro}) must divide batch_size ({batch}), the "
                              "effective batch of one optimizer step")
    precision = getattr(config, "precision", "auto")
    if precision not in PRECISIONS:
        raise ConfigError(f"{name}.precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    quantize = getattr(config, "quantize", None)
    if quantize not in QUANTIZE:
        raise ConfigError(f"{name}.quantize must be 4bit or absent, got {quantize!r}")
    if not isinstance(getattr(config, "gradient_checkpointing", False), bool):
        raise ConfigError(f"{name}.gradient_checkpointing must be true or false")


def resolve_precision(precision: str, device: str) -> str:
    """auto: bf16 autocast on a CUDA device that has bf16 (what the runtime already answers in there,
    and half the activation memory), fp32 elsewhere: on the 2-core CPU bf16 autocast is not the
    default because it changes losses and answers against the fp32 runs every CPU figure here rests on."""
    if precision != "auto":
        return precision
    import torch

    cuda = str(device).startswith("cuda") and torch.cuda.is_available()
    return "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"


def resolve_settings(s: "TrainSettings", device: str) -> "TrainSettings":
    return dataclasses.replace(s, precision=resolve_precision(s.precision, device))


def autocast(s: "TrainSettings", device):
    """bf16 autocast for forward and loss (the backward runs outside it), or nothing for fp32."""
    if s.precision == "bf16":
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
    return nullcontext()


def enable_checkpointing(model) -> None:
    """Activation checkpointing on every decoder layer (transformers' own), non-reentrant: it needs no
    input that requires grad (frozen embeddings under adapters) and keeps the RNG state, so dropout
    draws the same masks on recomputation."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x names it so
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.config.use_cache = False


def disable_checkpointing(model) -> None:
    if hasattr(model, "activation_checkpointing_disable"):
        model.activation_checkpointing_disable()
    else:
        model.gradient_checkpointing_disable()
    model.config.use_cache = True


@dataclass
class TrainRecord:
    steps: int = 0
    train_examples: int = 0
    eval_examples: int = 0
    train_tokens: int = 0
    seconds: float = 0.0
    loss_curve: list[float] = field(default_factory=list)
    eval_loss: list[float] = field(default_factory=list)

    def extend(self, other: "TrainRecord") -> "TrainRecord":
        """The record of two phases trained one after the other."""
        return TrainRecord(self.steps + other.steps, self.train_examples + other.train_examples,
                           self.eval_examples + other.eval_examples, self.train_tokens + other.train_tokens,
                           self.seconds + other.seconds, self.loss_curve + other.loss_curve,
                           self.eval_loss + other.eval_loss)

    def as_dict(self) -> dict:
        return {
            "steps": self.steps, "train_examples": self.train_examples,
            "eval_examples": self.eval_examples, "train_tokens": self.train_tokens,
            "train_seconds": round(self.seconds, 3),
            "train_tokens_per_s": round(self.train_tokens / self.seconds, 1) if self.seconds else None,
            "loss_curve": [round(x, 4) for x in self.loss_curve],
            "eval_loss": [round(x, 4) for x in self.eval_loss],
            "final_train_loss": round(self.loss_curve[-1], 4) if self.loss_curve else None,
        }


Pair = tuple[list[int], list[int]]  # (prompt ids, target ids)


def loss_on_targets(model, ids, mask, labels, sparse: bool = True):
    """Mean next-token loss over target positions.

    With sparse=True only the positions that predict a target token are projected onto the
    vocabulary (logits_to_keep with their indices): answers are ~10% of a QA sequence, and the
    49k-way projection is ~20% of the model's FLOPs. Prompt-learning methods, which prepend
    virtual tokens and so shift positions, use the plain path.
    """
    total, n = loss_sum(model, ids, mask, labels, sparse)
    return total / n


def loss_sum(model, ids, mask, labels, sparse: bool = True):
    """(summed next-token loss over target positions, their number): micro-batches of one step add
    their sums and divide once by the step's target tokens."""
    targets = labels[:, 1:]
    n = int((targets != -100).sum())
    if not sparse:
        return model(input_ids=ids, attention_mask=mask, labels=labels).loss * n, n
    keep = (targets != -100).any(dim=0).nonzero().squeeze(-1)
    logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep).logits
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(), targets[:, keep].reshape(-1), ignore_index=-100,
        reduction="sum"), n


def n_targets(pair: Pair, max_len: int) -> int:
    """The target tokens of one pair that the loss counts, after `_collate` cuts it to max_len."""
    prompt, target = pair
    kept = min(len(prompt) + len(target), max_len)
    in_target = min(len(target), kept)
    return in_target - (1 if in_target == kept else 0)  # the first position predicts nothing


def _collate(batch: Sequence[Pair], pad_id: int, max_len: int, device):
    seqs, labels = [], []
    for prompt, target in batch:
        ids = (prompt + target)[-max_len:]
        lab = ([-100] * len(prompt) + target)[-max_len:]
        seqs.append(ids)
        labels.append(lab)
    width = max(len(s) for s in seqs)
    input_ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    label_t = torch.full((len(seqs), width), -100, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, (s, lab) in enumerate(zip(seqs, labels)):
        input_ids[r, : len(s)] = torch.tensor(s)
        label_t[r, : len(lab)] = torch.tensor(lab)
        mask[r, : len(s)] = 1
    n_tokens = int(mask.sum())
    return input_ids.to(device), mask.to(device), label_t.to(device), n_tokens


def _batches(pairs: Sequence[Pair], batch_size: int, rng: random.Random) -> list[list[Pair]]:
    """Shuffle, then sort within windows of 16 batches by length, then shuffle the batches."""
    order = list(range(len(pairs)))
    rng.shuffle(order)
    window = batch_size * 16
    batches = []
    for w in range(0, len(order), window):
        chunk = sorted(order[w : w + window], key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
        batches += [[pairs[i] for i in chunk[b : b + batch_size]] for b in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def micro_batches(batch: Sequence[Pair], s: TrainSettings, shard: tuple[int, int] = (0, 1)) -> list[list[Pair]]:
    """This rank's micro-batches of one step: its slice of the batch (`batch[rank::world]`) cut into
    `s.micro` rows. Every rank gets the same number (an empty one where its slice is short), since
    under DDP every rank must run as many backward passes as the others."""
    rank, world = shard
    per_rank = math.ceil(len(batch) / world)
    m = min(s.micro, per_rank) or 1
    part = list(batch[rank::world])
    return [part[i * m : (i + 1) * m] for i in range(math.ceil(per_rank / m))]


def planned_micro_batches(pairs: list[Pair], s: TrainSettings, seed: int, shard: tuple[int, int] = (0, 1)):
    """Every micro-batch `train` will run on this rank, in order, without running anything: the
    memory estimate sizes activations on the widest of them."""
    rng = random.Random(seed)
    train_pairs, _ = split_eval(pairs, s.eval_fraction, seed)
    for _ in range(s.epochs):
        for batch in _batches(train_pairs, s.batch_size, rng):
            yield from (mb for mb in micro_batches(batch, s, shard) if mb)


def total_steps(n_pairs: int, s: TrainSettings) -> int:
    n_train = n_pairs - (max(1, int(n_pairs * s.eval_fraction)) if s.eval_fraction > 0 and n_pairs >= 10 else 0)
    return math.ceil(n_train / s.batch_size) * s.epochs


def split_eval(pairs: list[Pair], fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    if fraction <= 0 or len(pairs) < 10:
        return pairs, []
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, int(len(pairs) * fraction))
    held = set(order[:n_eval])
    return [p for i, p in enumerate(pairs) if i not in held], [pairs[i] for i in order[:n_eval]]


def shard() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) unless torch.distributed is initialised."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


SHARDINGS = ("ddp", "fsdp")


def data_parallel(model, sharding: str = "ddp"):
    """The model wrapped for data-parallel training when this process is one of several ranks.
    ddp: every rank holds all weights (DistributedDataParallel). fsdp: FSDP2's `fully_shard` on each
    decoder layer and then the whole model, so each rank holds 1/world of the weights, gradients and
    optimizer state (models that do not fit one device); gradients are averaged as under DDP, so
    the loss scaling below holds for both. `fully_shard` changes the model in place."""
    if shard()[1] == 1:
        return model
    if sharding == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for module in model.modules():  # decoder blocks: the ModuleList named `layers` (Llama, Qwen, Mistral ...)
            if isinstance(module, torch.nn.ModuleList) and len(module) and hasattr(module[0], "self_attn"):
                for layer in module:
                    fully_shard(layer)
        fully_shard(model)
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model)


def full_state_dict(model) -> dict | None:
    """Every weight whole on every rank, when FSDP sharded them (a collective: all ranks call it);
    None when the model is not sharded (its own tensors are whole)."""
    from torch.distributed.tensor import DTensor

    if not any(isinstance(p, DTensor) for p in model.parameters()):
        return None
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
    )

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))


def _sum_over_ranks(values: list[float], device) -> list[float]:
    """Each value summed over every rank (NCCL reduces CUDA tensors only, hence the device)."""
    import torch.distributed as dist

    stats = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(stats)
    return stats.tolist()


@torch.no_grad()
def eval_loss(model, pairs: Sequence[Pair], pad_id: int, s: TrainSettings, device) -> float:
    """Mean loss per target token of the held-out pairs, run `s.micro` rows at a time (the rows the
    memory estimate allows)."""
    model.eval()
    total, count = 0.0, 0
    for b in range(0, len(pairs), s.micro):
        ids, mask, labels, _ = _collate(pairs[b : b + s.micro], pad_id, s.max_len, device)
        with autocast(s, device):
            part, n = loss_sum(model, ids, mask, labels, s.sparse_logits)
        if n:
            total += float(part)
            count += n
    model.train()
    return total / max(count, 1)


def step_gradients(model, batch: Sequence[Pair], s: TrainSettings, *, pad_id: int, device,
                   shard: tuple[int, int] = (0, 1)) -> tuple[float, int] | None:
    """Forward and backward of one optimizer step's batch, as this rank's micro-batches: the gradients
    add up in `.grad` to those of the mean loss over the whole batch's target tokens (all ranks).
    Returns (that mean loss, the batch's tokens), or None when no pair of the batch has a target."""
    rank, world = shard
    counts = [n_targets(p, s.max_len) for p in batch]
    n_total = sum(counts)
    if not n_total:
        return None
    # a rank whose micro-batch is empty (or predicts nothing) still runs forward and backward (DDP
    # needs every rank) on the batch's richest pair, with weight 0
    stand_in = [batch[max(range(len(batch)), key=counts.__getitem__)]]
    value, tokens, ids = 0.0, 0, None
    for part in micro_batches(batch, s, shard):
        real = bool(part) and any(n_targets(p, s.max_len) for p in part)
        if not real and world == 1:
            continue
        ids, mask, labels, n_tok = _collate(part if real else stand_in, pad_id, s.max_len, device)
        with autocast(s, device):
            total_loss, _ = loss_sum(model, ids, mask, labels, s.sparse_logits)
        # DDP averages gradients over ranks: scaled by world, the sum of every rank's micro-batches
        # is the gradient of the mean over the step's target tokens
        (total_loss * ((world if real else 0.0) / n_total)).backward()
        if real:
            value += float(total_loss.detach())
            tokens += n_tok
    if world > 1:
        value, tokens = _sum_over_ranks([value, tokens], ids.device)
    return value / n_total, int(tokens)


def train(model, pairs: list[Pair], s: TrainSettings, *, pad_id: int, seed: int, device,
          name: str = "training", progress: bool = True, after_step=None, shard: tuple[int, int] = (0, 1)
          ) -> TrainRecord:
    """Train on `pairs`. Under data parallelism (`shard` = (rank, world size), the model wrapped in
    DistributedDataParallel) every rank draws the same batches and takes its slice of each; the loss
    is scaled by the batch's target tokens over all ranks, so the averaged gradient and the reported
    loss are those of the single-process run (up to the order of float additions). Each rank's slice
    runs as micro-batches of `s.micro` rows (gradient accumulation), under `autocast(s)`."""
    if not pairs:
        raise StrategyFailed(f"{name}: the train split is empty")
    if not s.lr > 0:
        raise StrategyFailed(f"{name}: learning rate must be > 0, got {s.lr}")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    train_pairs, held = split_eval(pairs, s.eval_fraction, seed)
    rec = TrainRecord(train_examples=len(train_pairs), eval_examples=len(held))
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise StrategyFailed(f"{name}: the model has no trainable parameters")
    opt = torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
    steps_per_epoch = math.ceil(len(train_pairs) / s.batch_size)
    total = steps_per_epoch * s.epochs
    warmup = min(s.warmup_steps, max(total // 10, 1))
    # Linear warm-up, then cosine decay to 10% of the peak rate.
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: (t + 1) / warmup if t < warmup
        else 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (t - warmup) / max(total - warmup, 1))))
    model.train()
    bar = tqdm(total=total, desc=name, unit="step", disable=not progress, leave=False)
    t0 = time.perf_counter()
    for epoch in range(s.epochs):
        for batch in _batches(train_pairs, s.batch_size, rng):
            stepped = step_gradients(model, batch, s, pad_id=pad_id, device=device, shard=shard)
            if stepped is None:  # nothing to predict in the whole batch (one-token document pieces)
                continue
            value, tokens = stepped
            if not math.isfinite(value):
                bar.close()
                raise StrategyFailed(f"{name}: loss became {value} at step {rec.steps + 1}")
            if s.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, s.grad_clip)
            opt.step()
            if after_step is not None:
                after_step(rec.steps)
            sched.step()
            opt.zero_grad(set_to_none=True)
            rec.steps += 1
            rec.train_tokens += tokens
            rec.loss_curve.append(value)
            bar.update(1)
            bar.set_postfix(loss=f"{value:.3f}")
        if held:
            rec.eval_loss.append(eval_loss(model, held, pad_id, s, device))
    bar.close()
    rec.seconds = time.perf_counter() - t0
    model.eval()
    return rec
