from dataclasses import dataclass

from harness.api import ConfigError, PeftFineTune, check_training_options, strategy


@dataclass(frozen=True)
class LoraConfig:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str = "all-linear"
    lr: float = 1e-3           # LoRA wants ~10x the full fine-tuning rate; few steps here, so the high end
    epochs: int = 1            # 2 epochs on the default benchmark: 485 s for F1 0.083; 1 keeps the demo budget
    batch_size: int = 8        # the effective batch: examples per optimizer step
    # Training at scale (README "Training at scale"; SmolLM2, 8 rows, CPU, measured tensor peaks).
    # Rows per forward/backward pass, gradients accumulated to batch_size; None: the whole batch at
    # once, which the default model fits (2 rows: peak 1,591 -> 829 MB, same speed).
    micro_batch_size: int | None = None
    gradient_checkpointing: bool = False  # peak 1,591 -> 642 MB, but steps 1.7x slower: off while it fits
    precision: str = "auto"    # auto: bf16 on CUDA; fp32 on CPU, where bf16 ran 2.2x faster but changes answers
    quantize: str | None = None  # 4bit: QLoRA, the frozen base in 4-bit NF4 (CUDA + bitsandbytes only)

    def __post_init__(self):
        check_training_options("lora", self)
        if self.r < 1:
            raise ConfigError(f"lora.r must be >= 1, got {self.r}")
        if not self.lr > 0:
            raise ConfigError(f"lora.lr must be > 0, got {self.lr}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("lora.epochs and lora.batch_size must be >= 1")


class LoraAdapter(PeftFineTune):
    """A LoRA adapter built from a LoraConfig's fields; the strategies built on LoRA (lora-rag,
    multitask, sequential, knowledge) differ only in their data or in how they answer."""

    def peft_config(self, steps: int):
        import peft

        c = self.config
        return peft.LoraConfig(r=c.r, lora_alpha=c.alpha, lora_dropout=c.dropout,
                               target_modules=c.target_modules, task_type="CAUSAL_LM")


@strategy("lora", config=LoraConfig)
class Lora(LoraAdapter):
    """LoRA adapter (peft) trained on the train split's question/answer pairs; answers closed-book."""
