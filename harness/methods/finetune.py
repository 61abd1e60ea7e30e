"""Shared fine-tuning path: build (prompt, answer) pairs, wrap a fresh model with peft, train, answer.

A method only says what differs: its peft config (strategies/peft_methods.py).

Before any weight is loaded, the run's memory is estimated (harness/methods/memory.py) on a
meta-device copy of the wrapped model and the batches training will take; a run that cannot fit the
device is refused with the settings that would. The estimate and the measured peak go in the record.
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
from harness.methods import memory, prompts
from harness.methods.strategy import PrepareContext, StrategyBase, answer_prompts
from harness.methods.train import (
    Pair,
    TrainSettings,
    data_parallel,
    disable_checkpointing,
    enable_checkpointing,
    full_state_dict,
    planned_micro_batches,
    resolve_settings,
    shard,
    total_steps,
    train,
)
from harness.model.resources import measure

BASE_WEIGHTS = {"fp32": "float32", "bf16": "bfloat16", "4bit": "nf4 (bitsandbytes 4-bit)"}


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


def _numel(p) -> int:
    """Elements of a parameter as the model defines it (a 4-bit one is stored packed, two to a byte)."""
    state = getattr(p, "quant_state", None)
    return int(torch.Size(state.shape).numel()) if state is not None else p.numel()


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class FineTune(StrategyBase):
    """Fine-tune a fresh copy of the model on the train split's question/answer pairs, then answer
    closed-book. Subclasses say how the model is made trainable (`wrap`) and what is saved (`save`)."""

    fine_tunes = True
    adapter = False  # True: the base stays frozen and only added weights train (peft)

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
        return TrainSettings(lr=c.lr, epochs=c.epochs, batch_size=c.batch_size,
                             micro_batch_size=getattr(c, "micro_batch_size", None),
                             gradient_checkpointing=getattr(c, "gradient_checkpointing", False),
                             precision=getattr(c, "precision", "auto"), quantize=getattr(c, "quantize", None))

    def check_device(self, settings: TrainSettings, device: str) -> None:
        """What the device must offer for these settings, checked before any model is loaded."""
        if settings.quantize is None:
            return
        if not self.adapter:
            raise StrategyFailed(f"{self.name}: quantize: {settings.quantize} applies to adapters (the frozen base is "
                                 "quantized); full fine-tuning trains every weight")
        if not str(device).startswith("cuda"):
            raise StrategyFailed(f"{self.name}: quantize: {settings.quantize} (QLoRA) loads the base through "
                                 f"bitsandbytes, which needs a CUDA device, and this run is on {device}: run it with "
                                 "--device cuda, or drop `quantize` to train plain LoRA")
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise StrategyFailed(f"{self.name}: quantize: {settings.quantize} (QLoRA) needs bitsandbytes: "
                                 "pip install -e '.[qlora]'") from None

    def base_model(self, ctx: PrepareContext, settings: TrainSettings):
        """The model training starts from: fp32 master weights for full fine-tuning; under adapters the
        frozen base at the training precision (bf16 halves it), or 4-bit NF4 through bitsandbytes
        (QLoRA, computing in bf16). peft keeps the adapter's own weights in fp32 either way."""
        rt = ctx.runtime
        if settings.quantize == "4bit":
            from transformers import AutoModelForCausalLM, BitsAndBytesConfig

            q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                   bnb_4bit_compute_dtype=torch.bfloat16)
            index = torch.device(rt.device).index
            return AutoModelForCausalLM.from_pretrained(rt.path, quantization_config=q, dtype=torch.bfloat16,
                                                        device_map={"": index if index is not None else 0},
                                                        use_safetensors=True, trust_remote_code=rt.trust_remote_code)
        if self.adapter and settings.precision == "bf16":
            return rt.fresh_model(dtype=torch.bfloat16)
        return rt.fresh_model()

    def base_weights(self, settings: TrainSettings) -> str:
        if settings.quantize:
            return BASE_WEIGHTS[settings.quantize]
        return BASE_WEIGHTS[settings.precision if self.adapter else "fp32"]

    def memory_estimate(self, ctx: PrepareContext, settings: TrainSettings, phases, steps: int) -> dict:
        """Estimate this run's peak memory on a meta-device copy (no weights loaded) and refuse it,
        with the settings that would fit, when the device has less (HARNESS_MEMORY_CHECK=off: never)."""
        from transformers import AutoConfig, AutoModelForCausalLM

        rt = ctx.runtime
        try:
            config = AutoConfig.from_pretrained(rt.path, trust_remote_code=rt.trust_remote_code)
            with torch.device("meta"):
                meta = AutoModelForCausalLM.from_config(config, trust_remote_code=rt.trust_remote_code)
            shape = memory.Shape.of(meta.config)
            counts = memory.Trainable.of(self.wrap(meta, steps)[0])
        except StrategyFailed:
            raise  # the method itself cannot be built: training would fail the same way
        except Exception as exc:  # an architecture without a meta-device path: train unchecked, and say so
            return {"estimate": None, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
        extra = getattr(self.peft_config(steps), "num_virtual_tokens", 0) if self.prompt_learning else 0
        rank, world = shard()
        shards = world if world > 1 and ctx.train_sharding == "fsdp" else 1

        def estimate_for(s: TrainSettings) -> memory.Estimate:
            batches = [mb for _, pairs in phases for mb in planned_micro_batches(pairs, s, ctx.seed, (rank, world))]
            shapes = memory.micro_batch_shapes(batches, s.max_len, dense=self.prompt_learning, extra_tokens=extra)
            per_rank = -(-s.batch_size // world)
            return memory.estimate(shape, counts, full=not self.adapter, precision=s.precision, quantize=s.quantize,
                                   checkpointing=s.gradient_checkpointing, shapes=shapes, device=rt.device,
                                   accumulating=min(s.micro, per_rank) < per_rank, shards=shards)

        est = estimate_for(settings)
        free, what = memory.available(rt.device)
        record = {"estimate": est.as_dict(), "available_mb": round(free / memory.MB, 1), "available": what}
        if est.total > free and not memory.check_disabled():
            fits = memory.fitting(estimate_for, settings, free, device=rt.device,
                                  can_quantize=self.adapter and hasattr(self.config, "quantize"))
            raise StrategyFailed(memory.refusal(self.name, est, free, what, fits))
        return record

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
        settings = resolve_settings(self.settings(), ctx.runtime.device)
        self.check_device(settings, ctx.runtime.device)
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
                 "world_size": world, "train_precision": BASE_WEIGHTS[settings.precision],
                 # quantize, micro_batch_size and gradient_checkpointing are in `what` (the settings) too
                 "base_weights": self.base_weights(settings),
                 # sharded training sums in another order again; keys of DDP runs stay as they were
                 **({"sharding": ctx.train_sharding} if world > 1 and ctx.train_sharding != "ddp" else {})}
        folder, details, hit = stage(ctx, "train", parts, build)
        if hit or details.get("base_weights", "float32") != "float32":
            # a reduced-precision or 4-bit base answers as a cache hit would: the saved adapter on the
            # fp32 base, merged, then cast to the runtime's dtype
            trained.pop("model", None)
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
        settings = resolve_settings(settings, ctx.runtime.device)
        self.check_device(settings, ctx.runtime.device)
        steps = sum(total_steps(len(pairs), settings) for _, pairs in phases)
        memory_record = self.memory_estimate(ctx, settings, phases, steps)
        cuda = str(ctx.runtime.device).startswith("cuda")
        start_gpu = torch.cuda.memory_allocated() if cuda else None
        with measure() as measured_memory:
            base = self.base_model(ctx, settings)
            total_params = sum(_numel(p) for p in base.parameters())
            if settings.gradient_checkpointing:
                enable_checkpointing(base)
            torch.manual_seed(ctx.seed)  # adapter initialisation is random: seed it for reproducible runs
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
        if settings.gradient_checkpointing:
            disable_checkpointing(base)
        peak = measured_memory.as_dict()
        memory_record["measured"] = {k: peak[k] for k in ("peak_rss_mb", "rise_rss_mb") if k in peak}
        if cuda and measured_memory.peak_gpu_mb is not None:
            memory_record["measured"].update(peak_gpu_mb=round(measured_memory.peak_gpu_mb, 1),
                                             rise_gpu_mb=round(measured_memory.peak_gpu_mb - start_gpu / 2**20, 1))
        if len(phases) > 1:
            details["phases"] = [{"task": name, "examples": len(pairs)} for name, pairs in phases]
        details.update(measured)
        whole = full_state_dict(model)  # FSDP: gathered on every rank (a collective); else None
        if shard()[0] == 0:  # every rank holds the same weights; one writes them
            self.save(model, artifact, whole)
        return {"method": self.name, **details, "trainable_params": trainable, "total_params": total_params,
                **rec.as_dict(), "epochs": settings.epochs, "lr": settings.lr, "seed": ctx.seed,
                "batch_size": settings.batch_size, "micro_batch_size": settings.micro,
                "accumulation_steps": settings.accumulation_steps,
                "gradient_checkpointing": settings.gradient_checkpointing,
                "train_precision": BASE_WEIGHTS[settings.precision], "base_weights": self.base_weights(settings),
                "memory": memory_record, "model": model}

    def answer(self, examples: Sequence[Example]) -> list[Prediction]:
        if self.model is None:
            raise StrategyFailed(f"{self.name}: answer() called before prepare()")
        prompter = prompts.Prompter.for_benchmark(self.ctx.benchmark)
        msgs = [prompter.closed_book(e.input) for e in examples]
        return answer_prompts(self.ctx, examples, msgs, model=self.model, desc=f"answering {self.name}",
                              hf_generate=self.prompt_learning)


class PeftFineTune(FineTune):
    """A peft adapter; methods define `peft_config(steps)`."""

    adapter = True

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
