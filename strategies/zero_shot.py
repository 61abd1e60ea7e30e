from dataclasses import dataclass
from typing import Sequence

from harness.core.types import Example, Prediction
from harness.methods import prompts
from harness.methods.registry import strategy
from harness.methods.strategy import PrepareContext, answer_prompts


@dataclass(frozen=True)
class ZeroShotConfig:
    pass


@strategy("zero-shot", config=ZeroShotConfig)
class ZeroShot:
    """Closed-book: the question and an answer-format instruction, no context, no examples."""

    def __init__(self, config: ZeroShotConfig):
        self.config = config

    def prepare(self, ctx: PrepareContext) -> dict:
        self.ctx = ctx
        self.prompter = prompts.Prompter.for_benchmark(ctx.benchmark)
        return {}

    def answer(self, examples: Sequence[Example]) -> list[Prediction]:
        msgs = [self.prompter.closed_book(e.input) for e in examples]
        return answer_prompts(self.ctx, examples, msgs, desc="answering zero-shot")
