"""The one supervised training loop every fine-tuning strategy uses.

Loss is computed on answer tokens only (the prompt is context, not a target). Batches are
grouped by length and padded to their own longest sequence, not to a fixed length.
"""
from __future__ import annotations

import math
import random
import time
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
    if not sparse:
        return model(input_ids=ids, attention_mask=mask, labels=labels).loss
    targets = labels[:, 1:]
    keep = (targets != -100).any(dim=0).nonzero().squeeze(-1)
    logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep).logits
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(), targets[:, keep].reshape(-1), ignore_index=-100)


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


def _global_mean(loss, labels, world: int, has_data: bool, n_tokens: int):
    """This rank's mean loss rescaled so that DDP's gradient average is the gradient of the mean over
    every rank's target tokens; also that mean and the batch's tokens, summed over ranks. A rank whose
    slice of a short batch is empty still runs forward/backward (DDP needs every rank) with weight 0."""
    import torch.distributed as dist

    n = int((labels[:, 1:] != -100).sum()) if has_data else 0
    stats = torch.tensor([float(loss.detach()) * n, n, n_tokens if has_data else 0], dtype=torch.float64,
                         device=loss.device)  # NCCL reduces CUDA tensors only
    dist.all_reduce(stats)
    total, count, tokens = stats.tolist()
    return loss * (n * world / count), total / count, int(tokens)


@torch.no_grad()
def eval_loss(model, pairs: Sequence[Pair], pad_id: int, s: TrainSettings, device) -> float:
    model.eval()
    total, count = 0.0, 0
    for b in range(0, len(pairs), s.batch_size):
        ids, mask, labels, _ = _collate(pairs[b : b + s.batch_size], pad_id, s.max_len, device)
        n = int((labels[:, 1:] != -100).sum())
        total += float(loss_on_targets(model, ids, mask, labels, s.sparse_logits)) * n
        count += n
    model.train()
    return total / max(count, 1)


def train(model, pairs: list[Pair], s: TrainSettings, *, pad_id: int, seed: int, device,
          name: str = "training", progress: bool = True, after_step=None, shard: tuple[int, int] = (0, 1)
          ) -> TrainRecord:
    """Train on `pairs`. Under data parallelism (`shard` = (rank, world size), the model wrapped in
    DistributedDataParallel) every rank draws the same batches and takes its slice of each; the loss
    is scaled by the batch's target tokens over all ranks, so the averaged gradient and the reported
    loss are those of the single-process run (up to the order of float additions)."""
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
            rank, world = shard
            part = batch[rank::world]
            ids, mask, labels, n_tokens = _collate(part or batch[:1], pad_id, s.max_len, device)
            loss = loss_on_targets(model, ids, mask, labels, s.sparse_logits)
            if world > 1:
                loss, value, n_tokens = _global_mean(loss, labels, world, bool(part), n_tokens)
            else:
                value = float(loss.detach())
            if not math.isfinite(value):
                bar.close()
                raise StrategyFailed(f"{name}: loss became {loss.item()} at step {rec.steps + 1}")
            loss.backward()
            if s.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, s.grad_clip)
            opt.step()
            if after_step is not None:
                after_step(rec.steps)
            sched.step()
            opt.zero_grad(set_to_none=True)
            rec.steps += 1
            rec.train_tokens += n_tokens
            rec.loss_curve.append(value)
            bar.update(1)
            bar.set_postfix(loss=f"{value:.3f}")
        if held:
            rec.eval_loss.append(eval_loss(model, held, pad_id, s, device))
    bar.close()
    rec.seconds = time.perf_counter() - t0
    model.eval()
    return rec
