from dataclasses import dataclass
from pathlib import Path

from harness.api import ConfigError, FineTune, StrategyFailed, check_training_options, strategy


@dataclass(frozen=True)
class FullFineTuneConfig:
    lr: float = 5e-5           # all weights move: ~20x below LoRA's rate, or the model forgets how to chat
    epochs: int = 1
    batch_size: int = 8
    # 0: every weight trains (full transfer learning). N: freeze all but the top N decoder layers,
    # the final norm and the output head (partial transfer; SmolLM2 ties the head to the embeddings,
    # so the embeddings train with it).
    train_layers: int = 0
    micro_batch_size: int | None = None   # rows per pass, gradients accumulated to batch_size (lora's note)
    gradient_checkpointing: bool = False  # SmolLM2: peak 2,310 -> 2,269 MB (AdamW's step sets it), 1.5x slower
    precision: str = "auto"    # auto: bf16 autocast with fp32 master weights on CUDA, fp32 on CPU

    def __post_init__(self):
        check_training_options("full-ft", self)
        if not self.lr > 0:
            raise ConfigError(f"full-ft.lr must be > 0, got {self.lr}")
        if self.epochs < 1 or self.batch_size < 1 or self.train_layers < 0:
            raise ConfigError("full-ft.epochs and batch_size must be >= 1, train_layers >= 0")


@strategy("full-ft", config=FullFineTuneConfig)
class FullFineTune(FineTune):
    """Transfer learning: fine-tune all weights, or only the top N layers and head (train_layers=N)."""

    def wrap(self, base, steps: int):
        n = self.config.train_layers
        if n:
            layers = base.model.layers
            if n > len(layers):
                raise StrategyFailed(f"full-ft: train_layers={n} but the model has {len(layers)} layers")
            base.requires_grad_(False)
            for module in (*layers[-n:], base.model.norm, base.lm_head):
                module.requires_grad_(True)
        return base, {"artifact": "checkpoint (trained weights)", "train_layers": n or "all"}

    def save(self, model, path: Path, state_dict: dict | None = None) -> None:
        from safetensors.torch import save_file

        path.mkdir(parents=True, exist_ok=True)
        # Only what training changed; tied tensors are saved once. Under FSDP `state_dict` holds the
        # gathered weights (model's own parameters are shards).
        tensors, seen = {}, set()
        for name, p in model.named_parameters():
            if p.requires_grad and id(p) not in seen:  # a sharded (DTensor) parameter has no data_ptr of its own
                seen.add(id(p))
                tensors[name] = (state_dict[name] if state_dict is not None else p).detach().contiguous().cpu()
        save_file(tensors, str(path / "trained.safetensors"))

    def load(self, base, path: Path):
        from safetensors.torch import load_file

        tensors = load_file(str(path / "trained.safetensors"))
        missing = set(tensors) - set(base.state_dict())
        if missing:
            raise StrategyFailed(f"full-ft: saved weights {sorted(missing)[:3]} are not in the model")
        base.load_state_dict(tensors, strict=False)
        return base
