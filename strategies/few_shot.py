import random
from dataclasses import dataclass
from typing import Sequence

from harness.core.errors import ConfigError, StrategyFailed
from harness.core.types import Example, Prediction
from harness.methods import prompts
from harness.methods.registry import strategy
from harness.methods.strategy import PrepareContext, answer_prompts


@dataclass(frozen=True)
class FewShotConfig:
    # The same demonstrations for every question: the prompt prefix they form is computed once
    # and its KV cache reused, so 5 shots cost almost nothing per query.
    shots: int = 5

    def __post_init__(self):
        if self.shots < 1:
            raise ConfigError(f"few-shot.shots must be >= 1, got {self.shots}")


@strategy("few-shot", config=FewShotConfig)
class FewShot:
    """Closed-book with k worked question/answer pairs from the train split as earlier chat turns."""

    def __init__(self, config: FewShotConfig):
        self.config = config

    def prepare(self, ctx: PrepareContext) -> dict:
        self.ctx = ctx
        train = ctx.train_examples()
        if len(train) < self.config.shots:
            raise StrategyFailed(f"few-shot: needs {self.config.shots} train examples, has {len(train)}")
        picked = random.Random(ctx.seed).sample(train, self.config.shots)
        self.demos = [(e.input, e.answers[0]) for e in picked]
        self.prompter = prompts.Prompter.for_benchmark(ctx.benchmark)
        return {"demo_ids": [e.id for e in picked]}

    def answer(self, examples: Sequence[Example]) -> list[Prediction]:
        msgs = [self.prompter.closed_book(e.input, self.demos) for e in examples]
        return answer_prompts(self.ctx, examples, msgs, desc="answering few-shot")
