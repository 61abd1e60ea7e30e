import random
from dataclasses import dataclass
from typing import Sequence

from harness.api import (
    ConfigError,
    Example,
    Prediction,
    PrepareContext,
    Prompter,
    StrategyBase,
    StrategyFailed,
    answer_prompts,
    strategy,
)


@dataclass(frozen=True)
class FewShotConfig:
    # The same demonstrations for every question: the prompt prefix they form is computed once
    # and its KV cache reused, so 5 shots cost almost nothing per query.
    shots: int = 5

    def __post_init__(self):
        if self.shots < 1:
            raise ConfigError(f"few-shot.shots must be >= 1, got {self.shots}")


@strategy("few-shot", config=FewShotConfig)
class FewShot(StrategyBase):
    """Closed-book with k worked question/answer pairs from the train split as earlier chat turns."""

    @classmethod
    def check(cls, name: str, config: FewShotConfig, benchmark) -> None:
        """Before the model loads: the train split must hold the demonstrations."""
        have = len(benchmark.split("train"))
        if config.shots > have:
            raise ConfigError(f"{name}.shots={config.shots} is larger than the train split of benchmark "
                              f"{benchmark.name!r} ({have} questions)")

    def prepare(self, ctx: PrepareContext) -> dict:
        self.ctx = ctx
        train = ctx.train_examples()
        if len(train) < self.config.shots:
            raise StrategyFailed(f"few-shot: needs {self.config.shots} train examples, has {len(train)}")
        picked = random.Random(ctx.seed).sample(train, self.config.shots)
        self.demos = [(e.input, e.answers[0]) for e in picked]
        self.prompter = Prompter.for_benchmark(ctx.benchmark)
        return {"demo_ids": [e.id for e in picked]}

    def answer(self, examples: Sequence[Example]) -> list[Prediction]:
        msgs = [self.prompter.closed_book(e.input, self.demos) for e in examples]
        return answer_prompts(self.ctx, examples, msgs, desc="answering few-shot")
