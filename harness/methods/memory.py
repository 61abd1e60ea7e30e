"""How much memory a training run needs, before it starts, and whether the device has it.

    weights      every parameter at its stored precision: fp32 (4 bytes), a bf16 base under adapters
                 (2), or 4-bit NF4 linear layers under QLoRA (4.127 bits with double quantization)
    gradients    4 bytes per trained parameter (fp32 master weights)
    optimizer    AdamW's two moments: 8 bytes per trained parameter
    activations  what autograd keeps for the backward pass, at the widest micro-batch the run will
                 take (rows x padded length x target positions, read from the batches themselves):
                 per token and decoder layer a*hidden + b*intermediate + c*length*heads + d bytes,
                 plus LoRA's dropout copies, the logits of the target positions and the loss
    temporary    bf16 copies of fp32 weights under autocast (during the passes), or the optimizer
                 step's scratch (CPU AdamW: two tensors the size of the largest trained one; CUDA's
                 foreach AdamW: one fp32 copy of every trained parameter)

The peak is not their sum: without gradient accumulation, backward frees activations as it makes
gradients, and the step's scratch comes after both (`estimate` says how they combine). Measured
against the exact tensor peak of short runs: within -5% / +7% for LoRA and full fine-tuning, fp32
and bf16, with and without checkpointing and accumulation, on SmolLM2-135M and the tiny test model
(README "Memory estimate").

The per-token coefficients were measured, not derived: tensor bytes kept after a forward pass,
counted by `TensorPeak` on Llama-architecture models of 12 shapes (hidden 64 to 192, 1 to 8 kv heads,
right-padded batches, transformers 5.24, torch 2.13 CPU, sdpa attention), fitted by least squares to
within 5% of every shape (`bench/train_memory.py` reruns the fit). Llama, Mistral, Qwen2 and SmolLM
share that block; other architectures get the same formula from their config's sizes, marked
`calibrated: false` in the record. CPU autocast stands in for CUDA's in the bf16 coefficients.
"""
from __future__ import annotations

import dataclasses
import math
import os
import weakref
from dataclasses import dataclass
from typing import Iterable, Sequence

from harness.core.errors import StrategyFailed

MB = 2**20
GB = 2**30

# Llama-family model types whose decoder block the coefficients below were measured on.
CALIBRATED = ("llama", "mistral", "qwen2", "qwen3")

# Bytes kept per token and decoder layer: a * hidden + b * intermediate + c * length * heads + d.
# "full": the layer's weights train; "frozen": they do not (adapters), so the norms keep less.
# bf16: forward under autocast; a frozen base is stored in bf16 itself.
COEFFICIENTS = {
    ("full", "fp32"): (40, 16, 1.0, 128),
    ("full", "bf16"): (34, 8, 0.5, 88),
    ("frozen", "fp32"): (32, 16, 1.0, 128),
    ("frozen", "bf16"): (27, 8, 0.5, 88),
}
EAGER_ATTENTION = {"fp32": 4.0, "bf16": 6.0}  # eager attention keeps the softmax: per length x heads
LORA_DROPOUT = {"fp32": 6, "bf16": 4}         # per input feature of an adapted linear (copy + mask)
LORA_RANK = {"fp32": 4, "bf16": 5}            # per rank of an adapted linear (lora_A's output)
NF4_BYTES = 4.127 / 8                         # NF4 weights + double-quantized absmax (QLoRA paper)


@dataclass(frozen=True)
class Shape:
    """The sizes of a decoder-only transformer that activations scale with."""

    model_type: str
    layers: int
    hidden: int
    intermediate: int
    heads: int
    vocab: int
    attention: str = "sdpa"

    @classmethod
    def of(cls, config) -> "Shape":
        def first(*names, default=None):
            for n in names:
                v = getattr(config, n, None)
                if v:
                    return v
            return default

        hidden = first("hidden_size", "n_embd", "d_model")
        if not hidden:
            raise StrategyFailed(f"memory estimate: model type {getattr(config, 'model_type', '?')!r} has no "
                                 "hidden size in its config")
        return cls(model_type=str(getattr(config, "model_type", "")), layers=first("num_hidden_layers", "n_layer"),
                   hidden=hidden, intermediate=first("intermediate_size", "n_inner", default=4 * hidden),
                   heads=first("num_attention_heads", "n_head"), vocab=first("vocab_size"),
                   attention=getattr(config, "_attn_implementation", None) or "sdpa")


@dataclass(frozen=True)
class Trainable:
    """What training holds, counted on a meta-device copy of the wrapped model (no weights loaded)."""

    total_params: int        # every parameter of the wrapped model, adapters included
    trainable_params: int
    linear_params: int       # weights of every nn.Linear (lm_head included; tied: counted once)
    quantizable_params: int  # linear weights inside the decoder layers (what 4-bit replaces)
    largest_trainable: int   # elements of the largest trained tensor
    lora_in_features: int = 0  # summed input width of the LoRA-adapted linears that have dropout
    lora_ranks: int = 0        # summed rank of every LoRA-adapted linear

    @classmethod
    def of(cls, model) -> "Trainable":
        import torch

        seen, total, trainable, largest = set(), 0, 0, 0
        for p in model.parameters():
            if id(p) in seen:
                continue
            seen.add(id(p))
            total += p.numel()
            if p.requires_grad:
                trainable += p.numel()
                largest = max(largest, p.numel())
        linear, quantizable, dropout_in, ranks, done = 0, 0, 0, 0, set()
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and id(module.weight) not in done:
                done.add(id(module.weight))
                if "lora_" in name:  # the adapter's own matrices: counted as trainable
                    continue
                linear += module.weight.numel()
                if "lm_head" not in name and "embed" not in name:
                    quantizable += module.weight.numel()
            lora_a = getattr(module, "lora_A", None)
            base = getattr(module, "base_layer", None)
            if isinstance(lora_a, torch.nn.ModuleDict) and isinstance(base, torch.nn.Linear):
                for key, a in lora_a.items():
                    ranks += a.out_features
                    drops = getattr(module, "lora_dropout", None)
                    drop = drops[key] if drops is not None and key in drops else None
                    if drop is not None and not isinstance(drop, torch.nn.Identity):
                        dropout_in += base.in_features
        return cls(total, trainable, linear, quantizable, largest, dropout_in, ranks)


@dataclass(frozen=True)
class MicroBatch:
    rows: int
    width: int   # padded length in tokens
    kept: int    # positions projected onto the vocabulary (target positions; all with dense logits)


def micro_batch_shapes(batches: Iterable[Sequence[tuple[list[int], list[int]]]], max_len: int,
                       dense: bool = False, extra_tokens: int = 0) -> list[MicroBatch]:
    """The shape of each planned micro-batch, as `train` collates it (cut to max_len from the left,
    right-padded). `extra_tokens`: virtual tokens a prompt-learning method puts before every row."""
    out = []
    for mb in batches:
        lengths = [min(len(p) + len(t), max_len) for p, t in mb]
        width = max(lengths)
        if dense:
            kept = width + extra_tokens
        else:
            positions = set()
            for (p, t), n in zip(mb, lengths):
                first = max(n - len(t), 1) - 1  # index (in labels[1:]) of the first target it predicts
                positions.update(range(first, n - 1))
            kept = len(positions)
        out.append(MicroBatch(len(mb), width + extra_tokens, kept))
    return out


@dataclass(frozen=True)
class Estimate:
    """Bytes of each part, and the peak they make together (`total`, see `estimate`)."""

    weights: int
    gradients: int
    optimizer: int
    activations: int   # at the end of the widest micro-batch's forward pass, logits and their gradient included
    temporary: int     # autocast's bf16 weight copies (during the passes) or the optimizer step's scratch
    total: int
    micro_batch: MicroBatch
    kind: str            # full or adapter
    precision: str
    quantize: str | None
    checkpointing: bool
    calibrated: bool

    def as_dict(self) -> dict:
        mb = lambda b: round(b / MB, 1)  # noqa: E731
        return {"total_mb": mb(self.total), "weights_mb": mb(self.weights), "gradients_mb": mb(self.gradients),
                "optimizer_mb": mb(self.optimizer), "activations_mb": mb(self.activations),
                "temporary_mb": mb(self.temporary), "kind": self.kind, "precision": self.precision,
                "quantize": self.quantize, "gradient_checkpointing": self.checkpointing,
                "micro_batch": dataclasses.asdict(self.micro_batch), "calibrated": self.calibrated}

    def summary(self) -> str:
        m = self.micro_batch
        return (f"{gb(self.total)} at its peak (weights {gb(self.weights)}, gradients {gb(self.gradients)}, "
                f"optimizer {gb(self.optimizer)}, activations {gb(self.activations)} at a micro-batch of {m.rows} x "
                f"{m.width} tokens, temporary {gb(self.temporary)})")


def estimate(shape: Shape, counts: Trainable, *, full: bool, precision: str, quantize: str | None,
             checkpointing: bool, shapes: Sequence[MicroBatch], device: str = "cpu", accumulating: bool = False,
             shards: int = 1) -> Estimate:
    """Peak bytes of one training process. `full`: every weight keeps fp32 master weights (full
    fine-tuning); else the frozen base is stored at `precision` (or 4-bit with quantize) and only the
    adapter is fp32. `accumulating`: a step runs several micro-batches, so gradients live through the
    passes. `shards`: FSDP ranks sharing weights, gradients and optimizer state.

    peak = weights + optimizer + the larger of
           during the passes: activations + autocast copies (+ gradients when accumulating; without
                              accumulation backward frees activations as it makes gradients)
           during the step:   gradients + the optimizer's scratch (CPU's AdamW: two temporaries the size
                              of the largest trained tensor; CUDA's foreach AdamW: one copy of all)"""
    fp = "bf16" if precision == "bf16" or quantize else "fp32"
    if full:
        weights = 4 * counts.total_params
    else:
        base = counts.total_params - counts.trainable_params
        if quantize == "4bit":
            weights = NF4_BYTES * counts.quantizable_params + 2 * (base - counts.quantizable_params)
        else:
            weights = (2 if fp == "bf16" else 4) * base
        weights += 4 * counts.trainable_params
    weights, gradients, optimizer = (x / shards for x in (weights, 4 * counts.trainable_params,
                                                          8 * counts.trainable_params))
    # activations: the widest micro-batch (rows, length and kept positions all matter)
    a, b, c, d = COEFFICIENTS[("full" if full else "frozen", fp)]
    if shape.attention == "eager":
        c = EAGER_ATTENTION[fp]
    per_layer_lora = (LORA_DROPOUT[fp] * counts.lora_in_features + LORA_RANK[fp] * counts.lora_ranks) / shape.layers
    res = 4 if full or fp == "fp32" else 2  # the residual stream: fp32 unless the base itself is bf16
    logit_bytes = 10 if fp == "bf16" else 8  # logits (+ their fp32 copy) and log-softmax, + 4 of gradient

    def activations(m: MicroBatch) -> float:
        tokens = m.rows * m.width
        layer = tokens * (a * shape.hidden + b * shape.intermediate + c * m.width * shape.heads + d
                          + per_layer_lora)
        # checkpointing keeps each layer's input and recomputes one layer at a time
        layers = tokens * res * shape.hidden * shape.layers + layer if checkpointing else layer * shape.layers
        head = tokens * 2 * 4 * shape.hidden + m.rows * m.kept * shape.vocab * (logit_bytes + 4)
        return layers + head

    widest = max(shapes, key=activations) if shapes else MicroBatch(1, 1, 1)
    act = activations(widest)
    copies = 0.0
    if fp == "bf16":  # autocast's bf16 copies of fp32 weights, kept for backward
        copies += 2 * (counts.linear_params if full else counts.trainable_params)
    if quantize == "4bit":  # one layer's weight dequantized beside its 4-bit copy, and its gradient
        copies += 2 * 2 * shape.hidden * max(shape.intermediate, shape.hidden)
    cuda = str(device).startswith("cuda")
    step = 4 * counts.trainable_params / shards + 4 * counts.largest_trainable if cuda else \
        8 * counts.largest_trainable
    passes = act + copies + (gradients if accumulating else 0)
    total = weights + optimizer + max(passes, gradients + step)
    return Estimate(weights=int(weights), gradients=int(gradients), optimizer=int(optimizer), activations=int(act),
                    temporary=int(copies if passes >= gradients + step else step), total=int(total),
                    micro_batch=widest, kind="full" if full else "adapter", precision=fp, quantize=quantize,
                    checkpointing=checkpointing,
                    calibrated=shape.model_type in CALIBRATED and shape.attention in ("sdpa", "eager"))


def fitting(estimate_for, settings, available_bytes: int, *, device: str, can_quantize: bool,
            limit: int = 3) -> list[tuple[dict, Estimate]]:
    """Settings that would fit, smallest change first: `estimate_for(settings)` -> Estimate is tried on
    a smaller micro-batch (the largest divisor of the batch that fits), gradient checkpointing, bf16
    (CUDA) and 4-bit QLoRA (CUDA, LoRA only), alone and then together. Returns up to `limit`
    (changes, estimate), one per kind of change."""
    cuda = str(device).startswith("cuda")
    micros = [m for m in range(settings.micro - 1, 0, -1) if settings.batch_size % m == 0]
    lighter = {"gradient_checkpointing": True}
    if cuda:
        lighter["precision"] = "bf16"
        if can_quantize:
            lighter["quantize"] = "4bit"
    lighter = {k: v for k, v in lighter.items() if getattr(settings, k) != v}
    # each group is one kind of change; its first candidate that fits is the one suggested
    groups = [[{"micro_batch_size": m} for m in micros]] + [[{k: v}] for k, v in lighter.items()]
    keys = list(lighter)
    for n in range(1, len(keys) + 1):
        together = {k: lighter[k] for k in keys[:n]}
        groups.append(([together] if n > 1 else []) + [{**together, "micro_batch_size": m} for m in micros])
    out = []
    for group in groups:
        for change in group:
            est = estimate_for(dataclasses.replace(settings, **change))
            if est.total <= available_bytes:
                out.append((change, est))
                break
        if len(out) == limit:
            break
    return out


def refusal(name: str, est: Estimate, available_bytes: int, what: str, fits: list[tuple[dict, Estimate]]) -> str:
    """The one line that refuses a run: what it needs, what there is, and what would fit."""
    line = f"{name}: training needs about {est.summary()}, but {gb(available_bytes)} is {what}"
    if fits:
        opts = "; ".join(", ".join(f"{k}: {str(v).lower() if isinstance(v, bool) else v}" for k, v in c.items())
                         + f" ({gb(e.total)})" for c, e in fits)
        return f"{line}; settings that fit: {opts}"
    return (f"{line}; no setting of micro_batch_size, gradient_checkpointing, precision or quantize fits: use a "
            "device with more memory, a smaller model, or shard it (--train-workers K --train-sharding fsdp)")


def available(device: str) -> tuple[int, str]:
    """Bytes training may still take on `device`, and what that figure is: CUDA's free memory, or the
    host's available RAM on CPU (what the runtime's own model already holds is not in it)."""
    if str(device).startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free), f"free on {device}"
    import psutil

    return int(psutil.virtual_memory().available), "available host RAM"


class TensorPeak:
    """Exact tensor memory of a stretch of code on any device, CPU included (where torch keeps no
    allocator statistics): every tensor storage created inside is counted until it is freed, on top of
    the storages of `existing` (the model's weights), through a TorchDispatchMode. The peak is what
    CUDA's max_memory_allocated reports there, without the caching allocator's rounding. Slow
    (Python on every op): for tests and measurements, not for runs.

        with TensorPeak(model) as peak:
            train(...)
        peak.peak_bytes, peak.start_bytes
    """

    def __init__(self, *existing):
        self.live: dict[int, tuple[int, weakref.ref]] = {}
        self.current = self.peak_bytes = 0
        for obj in existing:
            tensors = list(obj.parameters()) + list(obj.buffers()) if hasattr(obj, "parameters") else [obj]
            for t in tensors:
                self._add(t)
        self.start_bytes = self.current
        self.peak_bytes = self.current
        self._mode = None

    def _add(self, t) -> None:
        storage = t.untyped_storage()
        key = id(storage)
        if key in self.live or t.device.type == "meta":
            return
        n = storage.nbytes()
        self.live[key] = (n, weakref.ref(storage, lambda _, key=key: self._free(key)))
        self.current += n
        self.peak_bytes = max(self.peak_bytes, self.current)

    def _free(self, key: int) -> None:
        n, _ = self.live.pop(key, (0, None))
        self.current -= n

    def __enter__(self) -> "TensorPeak":
        import torch
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_flatten

        tracker = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                for t in tree_flatten(out)[0]:
                    if isinstance(t, torch.Tensor):
                        tracker._add(t)
                return out

        self._mode = Mode()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._mode.__exit__(*exc)


def check_disabled() -> bool:
    """HARNESS_MEMORY_CHECK=off records the estimate but never refuses (an architecture the estimate
    overrates); anything else checks."""
    return os.environ.get("HARNESS_MEMORY_CHECK", "").lower() in ("off", "0", "false", "no")


def gb(b: float) -> str:
    return f"{b / GB:.1f} GB" if b >= GB / 10 else f"{math.ceil(b / MB)} MB"
