from dataclasses import dataclass
from typing import Sequence

from harness.api import (
    Example,
    Prediction,
    PrepareContext,
    Prompter,
    StrategyBase,
    answer_prompts,
    strategy,
)


@dataclass(frozen=True)
class ZeroShotConfig:
    pass


@strategy("zero-shot", config=ZeroShotConfig)
class ZeroShot(StrategyBase):
    """Closed-book: the question and an answer-format instruction, no context, no examples."""

    def prepare(self, ctx: PrepareContext) -> dict:
        self.ctx = ctx
        self.prompter = Prompter.for_benchmark(ctx.benchmark)
        return {}

    def answer(self, examples: Sequence[Example]) -> list[Prediction]:
        msgs = [self.prompter.closed_book(e.input) for e in examples]
        return answer_prompts(self.ctx, examples, msgs, desc="answering zero-shot")
