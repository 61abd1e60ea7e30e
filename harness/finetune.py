"""Shared fine-tuning path: build (prompt, answer) pairs, wrap a fresh model with peft, train, answer.

A method file (strategies/lora.py ...) only says what differs: its config and its peft config.
"""
from __future__ import annotations

from pathlib import Path

import torch
from typing import Sequence

from . import prompts
from .errors import StrategyFailed
from .strategy import PrepareContext, answer_prompts
from .train import Pair, TrainSettings, train
from .types import Example, Prediction


def qa_pairs(ctx: PrepareContext, examples: Sequence[Example]) -> list[Pair]:
    """Closed-book chat prompt -> first gold answer and the end-of-turn token."""
    rt = ctx.runtime
    end = sorted(rt.stop_ids - {rt.tokenizer.eos_token_id}) or [rt.tokenizer.eos_token_id]
    end_id = rt.tokenizer.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in rt.tokenizer.get_vocab() else end[0]
    pairs = []
    for ex in examples:
        prompt = rt.encode_chat(prompts.closed_book(ex.input))
        target = rt.tokenizer(ex.answers[0], add_special_tokens=False)["input_ids"] + [end_id]
        pairs.append((prompt, target))
    return pairs


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class PeftFineTune:
    """Train a peft adapter on the train split's question/answer pairs, then answer closed-book."""

    config: object

    def __init__(self, config):
        self.config = config
        self.model = None
        self.ctx: PrepareContext | None = None

    def peft_config(self):  # pragma: no cover - each method file defines it
        raise NotImplementedError

    def settings(self) -> TrainSettings:
        c = self.config
        return TrainSettings(lr=c.lr, epochs=c.epochs, batch_size=c.batch_size)

    def prepare(self, ctx: PrepareContext) -> dict:
        from peft import get_peft_model

        self.ctx = ctx
        pairs = qa_pairs(ctx, ctx.train_examples())
        base = ctx.runtime.fresh_model()
        total_params = sum(p.numel() for p in base.parameters())
        torch.manual_seed(ctx.seed)  # adapter initialisation is random: seed it for reproducible runs
        try:
            model = get_peft_model(base, self.peft_config())
        except (ValueError, KeyError, TypeError) as exc:
            raise StrategyFailed(f"{self.name}: peft could not wrap the model: {exc}") from None
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        rec = train(model, pairs, self.settings(), pad_id=ctx.runtime.pad_id, seed=ctx.seed,
                    device=ctx.runtime.device, name=f"training {self.name}", progress=ctx.progress)
        adapter_dir = ctx.workdir / "adapter"
        model.save_pretrained(adapter_dir)
        # Merging makes answering exactly as fast as the base model; the saved adapter is the artifact.
        merged = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
        self.model = merged.to(ctx.runtime.dtype).eval()
        return {"trainable_params": trainable, "total_params": total_params,
                "artifact_bytes": dir_bytes(adapter_dir), "artifact": "adapter", **rec.as_dict(),
                "epochs": self.config.epochs, "lr": self.config.lr, "seed": ctx.seed}

    def answer(self, examples: Sequence[Example]) -> list[Prediction]:
        if self.model is None:
            raise StrategyFailed(f"{self.name}: answer() called before prepare()")
        msgs = [prompts.closed_book(e.input) for e in examples]
        return answer_prompts(self.ctx, examples, msgs, model=self.model, desc=f"answering {self.name}")
