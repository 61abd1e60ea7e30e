"""The parameter-efficient family: each peft method registered by name, one shared training path.

`harness run --strategies dora,ia3` runs presets; the `peft` strategy takes any peft method by
name with its options passed straight to peft's config class:

    strategies:
      peft: {method: loha, options: {r: 4, alpha: 8}, lr: 0.002}
"""
from __future__ import annotations

from dataclasses import dataclass, field

from harness.api import ConfigError, PeftFineTune, StrategyFailed, check_training_options, strategy

ATTN = ["q_proj", "k_proj", "v_proj", "o_proj"]

# method -> (peft config class, preset options, learning rate, description).
# Rates differ by an order of magnitude between methods: prompt and prefix tuning train a few
# thousand parameters and want ~1e-2; LoRA-style adapters 1e-3; the peft docs' examples agree.
METHODS: dict[str, tuple[str, dict, float, str]] = {
    "dora": ("LoraConfig", {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": "all-linear",
                            "use_dora": True}, 1e-3,
             "DoRA: LoRA with the weight's magnitude and direction trained apart (Liu et al. 2024)."),
    "ia3": ("IA3Config", {}, 3e-3,
            "IA3: learned rescaling of keys, values and feed-forward activations (Liu et al. 2022)."),
    "adalora": ("AdaLoraConfig", {"init_r": 12, "target_r": 8, "lora_alpha": 32, "target_modules": ATTN}, 2e-3,
                "AdaLoRA: LoRA whose rank budget is reallocated across layers while training."),
    "loha": ("LoHaConfig", {"r": 8, "alpha": 16, "target_modules": ATTN}, 2e-3,
             "LoHa: low-rank Hadamard-product adapters (LyCORIS)."),
    "lokr": ("LoKrConfig", {"r": 8, "alpha": 16, "target_modules": ATTN}, 2e-3,
             "LoKr: low-rank Kronecker-product adapters (LyCORIS)."),
    "vera": ("VeraConfig", {"r": 256, "target_modules": ["q_proj", "v_proj"]}, 1e-2,
             "VeRA: shared frozen random projections with trained scaling vectors (Kopiczko et al. 2024)."),
    "prompt-tuning": ("PromptTuningConfig", {"num_virtual_tokens": 16}, 3e-2,
                      "Prompt tuning: 16 trained soft-prompt embeddings before every input (Lester et al. 2021)."),
    "prefix-tuning": ("PrefixTuningConfig", {"num_virtual_tokens": 16}, 1e-2,
                      "Prefix tuning: trained key/value prefixes in every layer (Li and Liang 2021)."),
}


@dataclass(frozen=True)
class PeftMethodConfig:
    lr: float | None = None    # None: the method's preset rate (see METHODS)
    epochs: int = 1
    batch_size: int = 8
    options: dict = field(default_factory=dict)  # passed to peft's config class over the preset
    micro_batch_size: int | None = None   # rows per pass, gradients accumulated to batch_size (lora's note)
    gradient_checkpointing: bool = False
    precision: str = "auto"    # auto: bf16 autocast on CUDA (frozen base in bf16), fp32 on CPU

    def __post_init__(self):
        check_training_options("peft", self)
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("epochs and batch_size must be >= 1")


@dataclass(frozen=True)
class AnyPeftConfig(PeftMethodConfig):
    method: str = "lora"       # a peft config class name without 'Config' (LoHa, OFT, ...) or a preset

    def __post_init__(self):
        super().__post_init__()
        if self.method not in METHODS and _peft_class_name(self.method) is None:
            raise ConfigError(f"peft.method {self.method!r} is neither a preset ({', '.join(METHODS)}) nor a "
                              f"peft method; peft has: {', '.join(_peft_methods())}")


def _peft_methods() -> list[str]:
    import peft

    return sorted(n[: -len("Config")] for n in dir(peft) if n.endswith("Config") and n != "PeftConfig")


def _peft_class_name(method: str) -> str | None:
    """'loha', 'LoHa' or 'lo_ha' -> 'LoHaConfig'; None if peft has no such method."""
    import peft

    names = {n[: -len("Config")].lower(): n for n in dir(peft) if n.endswith("Config") and n != "PeftConfig"}
    return names.get(method.lower().replace("-", "").replace("_", ""))


def _peft_config(class_name: str, preset: dict, options: dict, steps: int, who: str):
    import peft

    cls = getattr(peft, class_name, None)
    if cls is None:
        raise StrategyFailed(f"{who}: peft has no method {class_name[:-6]!r}; known: {', '.join(_peft_methods())}")
    values = {**preset, **options, "task_type": "CAUSAL_LM"}
    if class_name == "AdaLoraConfig":
        # rank warm-up for the first 10% of steps, fixed ranks for the last 20%, budgeting between
        values.setdefault("tinit", steps // 10)
        values.setdefault("tfinal", steps // 5)
        values.setdefault("total_step", max(steps, values["tinit"] + values["tfinal"] + 1))
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise StrategyFailed(f"{who}: invalid {class_name} options: {exc}") from None


class _Preset(PeftFineTune):
    method: str

    def settings(self):
        s = super().settings()
        return s if self.config.lr is not None else type(s)(**{**s.__dict__, "lr": METHODS[self.method][2]})

    def peft_config(self, steps: int):
        class_name, preset, _, _ = METHODS[self.method]
        return _peft_config(class_name, preset, self.config.options, steps, self.name)


for _method, (_cls, _preset, _lr, _doc) in METHODS.items():
    strategy(_method, config=PeftMethodConfig, description=_doc)(
        type(f"Peft_{_method.replace('-', '_')}", (_Preset,), {"method": _method, "__doc__": _doc}))


@strategy("peft", config=AnyPeftConfig)
class AnyPeft(PeftFineTune):
    """Any peft method by name (config class without 'Config'), options passed through to peft."""

    def settings(self):
        s = super().settings()
        preset = METHODS.get(self.config.method)
        lr = self.config.lr or (preset[2] if preset else 1e-3)
        return type(s)(**{**s.__dict__, "lr": lr})

    def peft_config(self, steps: int):
        m = self.config.method
        if m in METHODS:
            class_name, preset = METHODS[m][0], METHODS[m][1]
        else:
            class_name, preset = _peft_class_name(m) or f"{m}Config", {}
        return _peft_config(class_name, preset, self.config.options, steps, self.name)
