"""Shared fine-tuning path: build (prompt, answer) pairs, wrap a fresh model with peft, train, answer.

A method only says what differs: its peft config (strategies/peft_methods.py).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import torch

from harness.cache.hashing import code_version, library_versions
from harness.cache.stages import stage
from harness.core.errors import StrategyFailed
from harness.core.types import Example, Prediction
from harness.methods import prompts
from harness.methods.strategy import PrepareContext, StrategyBase, answer_prompts
from harness.methods.train import (
    Pair,
    TrainSettings,
    data_parallel,
    full_state_dict,
    shard,
    total_steps,
    train,
)


def qa_pairs(ctx: PrepareContext, examples: Sequence[Example], prompter=None) -> list[Pair]:
    """Closed-book chat prompt -> first gold answer and the end-of-turn token."""
    rt = ctx.runtime
    prompter = prompter or prompts.Prompter.for_benchmark(ctx.benchmark)
    vocab = rt.tokenizer.get_vocab()
    end_id = vocab["<|im_end|>"] if "<|im_end|>" in vocab else rt.tokenizer.eos_token_id
    pairs = []
    for ex in examples:
        prompt = rt.encode_chat(prompts.show_choices(prompter.closed_book(ex.input), ex))
        target = rt.tokenizer(ex.answers[0], add_special_tokens=False)["input_ids"] + [end_id]
        pairs.append((prompt, target))
    return pairs


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class FineTune(StrategyBase):
    """Fine-tune a fresh copy of the model on the train split's question/answer pairs, then answer
    closed-book. Subclasses say how the model is made trainable (`wrap`) and what is saved (`save`)."""

    fine_tunes = True

    def wrap(self, base, steps: int):  # pragma: no cover - each kind defines it
        raise NotImplementedError

    def save(self, model, path: Path, state_dict: dict | None = None) -> None:  # pragma: no cover
        raise NotImplementedError

    def finish(self, model):
        return model

    def phases(self, ctx: PrepareContext) -> list[tuple[str, list[Pair]]]:
        """Named training phases, run one after another on the same model. Task-specific
        fine-tuning has one: the benchmark's own train split."""
        return [(ctx.benchmark.name, qa_pairs(ctx, ctx.train_examples()))]

    def after_phase(self, ctx: PrepareContext, model, phase: str) -> dict:
        """Measurements between phases (sequential fine-tuning records forgetting here)."""
        return {}

    def settings(self) -> TrainSettings:
        c = self.config
        return TrainSettings(lr=c.lr, epochs=c.epochs, batch_size=c.batch_size)

    # Models trained in this process, by everything that determines them: `lora-rag` answers with
    # the adapter `lora` trained moments before instead of training the same one again.
    _trained: dict[str, tuple[object, dict]] = {}

    def _training_what(self, ctx: PrepareContext, settings: TrainSettings, phases) -> tuple:
        steps = sum(total_steps(len(pairs), settings) for _, pairs in phases)
        method = repr(self.peft_config(steps)) if hasattr(self, "peft_config") else repr(self.config)
        data = hashlib.sha256(repr(phases).encode()).hexdigest()  # the token ids trained on
        return (type(self).wrap.__qualname__, method, repr(settings), ctx.seed, str(ctx.runtime.path),
                ctx.runtime.device, data)

    def _training_key(self, ctx: PrepareContext, settings: TrainSettings, phases) -> str:
        # The benchmark's artifact folder is part of the key: reuse stays within one run and benchmark.
        what = (*self._training_what(ctx, settings, phases), str(ctx.workdir.parent))
        return hashlib.sha256(repr(what).encode()).hexdigest()

    def _trainer_class(self) -> type:
        """The class that says how the model is trained (lora-rag trains with lora's code, so they
        share one adapter); the training data are keyed apart, by their token ids."""
        return next(c for c in type(self).__mro__ if "peft_config" in vars(c) or "wrap" in vars(c))

    def load(self, base, path: Path):  # pragma: no cover - each kind defines it
        raise NotImplementedError

    @staticmethod
    def forget(model) -> None:
        """Drop `model` from the models kept for reuse in this process (a sweep or learning-curve point
        that is not kept), so that its memory can be freed."""
        for key in [k for k, (m, _) in FineTune._trained.items() if m is model]:
            del FineTune._trained[key]

    def prepare(self, ctx: PrepareContext) -> dict:
        self.ctx = ctx
        settings = self.settings()
        phases = self.phases(ctx)
        key = self._training_key(ctx, settings, phases)
        if key in FineTune._trained:
            model, details = FineTune._trained[key]
            self.prompt_learning = details.get("prompt_learning", False)
            self.model = model
            self.artifact_path = Path(details["artifact_path"]) if details.get("artifact_path") else None
            return {**details, "method": self.name, "training_reused_from": details["method"]}
        trained = {}
        world = max(shard()[1], ctx.train_workers)

        def build(folder: Path) -> dict:
            if world > shard()[1]:  # --train-workers K: the executor's workers train it (Ray Train)
                if ctx.train_on_workers is None:
                    raise StrategyFailed(f"{self.name}: train_workers {ctx.train_workers} needs an executor that "
                                         "trains on several workers (--executor ray)")
                details = ctx.train_on_workers(self, ctx, folder)
                self.prompt_learning = details.pop("prompt_learning")
                trained["model"] = self.load(ctx.runtime.fresh_model(), folder / "checkpoint")
                return {**details, "prompt_learning": self.prompt_learning}
            details = self._train(ctx, settings, phases, folder / "checkpoint")
            trained["model"] = details.pop("model")
            return {**details, "prompt_learning": self.prompt_learning}

        # Once per method + data + seed + settings (+ model content, libraries, training code).
        parts = {"what": self._training_what(ctx, settings, phases),
                 "model_sha256": ctx.cache.tree_hash(ctx.runtime.path) if ctx.cache else None,
                 "dtype": str(ctx.runtime.dtype), "libraries": library_versions(),
                 "code": code_version(self._trainer_class()),
                 # results are not bit-identical across world sizes (float sums in another order)
                 "world_size": world, "train_precision": "float32",
                 # sharded training sums in another order again; keys of DDP runs stay as they were
                 **({"sharding": ctx.train_sharding} if world > 1 and ctx.train_sharding != "ddp" else {})}
        folder, details, hit = stage(ctx, "train", parts, build)
        if hit:
            self.prompt_learning = details.get("prompt_learning", False)
            model = self.load(ctx.runtime.fresh_model(), folder / "checkpoint")
        else:
            model = trained["model"]
        self.model = self.finish(model).to(ctx.runtime.dtype).eval()
        if hit and details.get("method") != self.name:  # lora-rag finding the adapter lora trained
            details = {**details, "training_reused_from": details.get("method")}
        details = {**details, "method": self.name, "artifact_bytes": dir_bytes(folder / "checkpoint"),
                   "artifact_path": str(folder / "checkpoint"), "artifact_cached": hit}
        self.artifact_path = folder / "checkpoint"
        FineTune._trained[key] = (self.model, details)
        return {k: v for k, v in details.items() if k != "prompt_learning"}

    def _train(self, ctx: PrepareContext, settings: TrainSettings, phases, artifact: Path) -> dict:
        base = ctx.runtime.fresh_model()
        total_params = sum(p.numel() for p in base.parameters())
        torch.manual_seed(ctx.seed)  # adapter initialisation is random: seed it for reproducible runs
        steps = sum(total_steps(len(pairs), settings) for _, pairs in phases)
        model, details = self.wrap(base, steps)
        if self.prompt_learning:
            settings = TrainSettings(**{**settings.__dict__, "sparse_logits": False})
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        hook = getattr(getattr(model, "base_model", None), "update_and_allocate", None)  # AdaLoRA
        rec, measured = None, {}
        # DDP or FSDP under torchrun / Ray Train (harness/engine/scaleout/distributed.py), else the model itself
        trained = data_parallel(model, ctx.train_sharding)
        for phase, pairs in phases:
            r = train(trained, pairs, settings, pad_id=ctx.runtime.pad_id, seed=ctx.seed,
                      device=ctx.runtime.device, name=f"training {self.name} on {phase}", progress=ctx.progress,
                      after_step=hook, shard=shard())
            rec = r if rec is None else rec.extend(r)
            measured.update(self.after_phase(ctx, model, phase))
        if len(phases) > 1:
            details["phases"] = [{"task": name, "examples": len(pairs)} for name, pairs in phases]
        details.update(measured)
        whole = full_state_dict(model)  # FSDP: gathered on every rank (a collective); else None
        if shard()[0] == 0:  # every rank holds the same weights; one writes them
            self.save(model, artifact, whole)
        return {"method": self.name, **details, "trainable_params": trainable, "total_params": total_params,
                **rec.as_dict(), "epochs": settings.epochs, "lr": settings.lr, "seed": ctx.seed, "model": model}

    def answer(self, examples: Sequence[Example]) -> list[Prediction]:
        if self.model is None:
            raise StrategyFailed(f"{self.name}: answer() called before prepare()")
        prompter = prompts.Prompter.for_benchmark(self.ctx.benchmark)
        msgs = [prompter.closed_book(e.input) for e in examples]
        return answer_prompts(self.ctx, examples, msgs, model=self.model, desc=f"answering {self.name}",
                              hf_generate=self.prompt_learning)


class PeftFineTune(FineTune):
    """A peft adapter; methods define `peft_config(steps)`."""

    def peft_config(self, steps: int):  # pragma: no cover - each method defines it
        raise NotImplementedError

    def wrap(self, base, steps: int):
        from peft import get_peft_model

        config = self.peft_config(steps)
        try:
            model = get_peft_model(base, config)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StrategyFailed(f"{self.name}: peft could not build the adapter: {exc}") from None
        # Prompt-learning methods prepend virtual tokens, which shifts positions: they need the
        # plain loss and transformers' own generate instead of the harness's decoder loop.
        self.prompt_learning = bool(getattr(config, "is_prompt_learning", False))
        return model, {"peft_type": str(config.peft_type.value).lower(), "artifact": "adapter"}

    def save(self, model, path: Path, state_dict: dict | None = None) -> None:
        model.save_pretrained(path, **({"state_dict": state_dict} if state_dict is not None else {}))

    def load(self, base, path: Path):
        from peft import PeftModel

        return PeftModel.from_pretrained(base, path)

    def finish(self, model):
        # Merging makes answering exactly as fast as the base model; the saved adapter is the artifact.
        return model if self.prompt_learning else model.merge_and_unload()
