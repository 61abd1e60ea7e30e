from dataclasses import dataclass

from harness.api import (
    ConfigError,
    PrepareContext,
    Prompter,
    StrategyFailed,
    answer_prompts,
    load_benchmark,
    qa_pairs,
    score,
    strategy,
)
from strategies.lora import LoraAdapter, LoraConfig


@dataclass(frozen=True)
class SequentialConfig(LoraConfig):
    first: str = "boolq"         # task A, trained first; task B is the benchmark under evaluation
    forgetting_questions: int = 60  # A's test questions answered after A and again after B


@strategy("sequential", config=SequentialConfig)
class Sequential(LoraAdapter):
    """Sequential fine-tuning: LoRA on task A, then on task B; records how much of A was forgotten."""

    @classmethod
    def check(cls, name: str, config: SequentialConfig, benchmark) -> None:
        """Before the model loads: task A loads and is not the benchmark under evaluation."""
        if load_benchmark(config.first).name == benchmark.name:
            raise ConfigError(f"{name}: task A ({config.first}) is the benchmark under evaluation; pick another "
                              "`first`")

    def phases(self, ctx):
        self.task_a = load_benchmark(self.config.first)
        if self.task_a.name == ctx.benchmark.name:
            raise StrategyFailed(f"sequential: task A ({self.config.first}) is the benchmark under evaluation; "
                                 "pick another `first`")
        a_train = self.task_a.split("train")[: ctx.train_limit] if ctx.train_limit else self.task_a.split("train")
        return [(self.task_a.name, qa_pairs(ctx, a_train, Prompter.for_benchmark(self.task_a))),
                (ctx.benchmark.name, qa_pairs(ctx, ctx.train_examples()))]

    def after_phase(self, ctx: PrepareContext, model, phase: str) -> dict:
        a = self.task_a
        test = a.split("test")[: self.config.forgetting_questions]
        prompter = Prompter.for_benchmark(a)
        a_ctx = PrepareContext(**{**ctx.__dict__, "benchmark": a, "progress": False})
        model.eval()
        preds = answer_prompts(a_ctx, test, [prompter.closed_book(e.input) for e in test], model=model,
                               hf_generate=True)
        model.train()
        em = sum(score(p.output, e.answers, e.input, e.task)["exact_match"] for p, e in zip(preds, test))
        key = "after_a" if phase == a.name else "after_b"
        out = {f"task_a_accuracy_{key}": em / len(test)}
        if key == "after_b" and hasattr(self, "_before"):
            out["forgetting"] = self._before - out["task_a_accuracy_after_b"]
        else:
            self._before = out["task_a_accuracy_after_a"]
        return {**out, "task_a": a.name, "task_a_questions": len(test)}
