import random
from dataclasses import dataclass

from harness.api import ConfigError, Prompter, load_benchmark, qa_pairs, strategy
from strategies.lora import LoraAdapter, LoraConfig


@dataclass(frozen=True)
class MultiTaskConfig(LoraConfig):
    # Built-in benchmarks (or corpus folders) whose train splits are mixed into one training set.
    # The benchmark under evaluation is added when missing, so every cell trains on its own task too.
    tasks: tuple = ("squadshifts_nyt", "boolq", "intents")
    # Relative share of each task in the mixture (same order as tasks; empty: in proportion to each
    # train split's size). The mixture has as many examples as all train splits together, each task
    # sampled without replacement up to its size.
    mix: tuple = ()

    def __post_init__(self):
        super().__post_init__()
        if len(self.tasks) < 2:
            raise ConfigError("multitask.tasks must name at least two tasks")
        if self.mix and (len(self.mix) != len(self.tasks) or any(w < 0 for w in self.mix) or not sum(self.mix)):
            raise ConfigError("multitask.mix needs one non-negative weight per task, not all zero")


def mixture(sizes: list[int], weights: tuple, total: int) -> list[int]:
    """Examples to draw from each task: shares of `total` by weight, capped at each task's size."""
    if not weights:
        return list(sizes)
    return [min(size, round(total * w / sum(weights))) for size, w in zip(sizes, weights)]


@strategy("multitask", config=MultiTaskConfig)
class MultiTask(LoraAdapter):
    """Multi-task fine-tuning: one LoRA adapter trained on a mixture of tasks, evaluated on each."""

    @classmethod
    def check(cls, name: str, config: MultiTaskConfig, benchmark) -> None:
        """Before the model loads: every task loads, and mix weights cover the evaluated benchmark."""
        names = [load_benchmark(t).name for t in config.tasks]
        if config.mix and benchmark.name not in names:
            raise ConfigError(f"{name}.mix has {len(config.mix)} weights, but the evaluated benchmark "
                              f"{benchmark.name!r} is not among tasks; add it to tasks")

    def phases(self, ctx):
        benches = [load_benchmark(n) for n in self.config.tasks]
        if ctx.benchmark.name not in [b.name for b in benches]:
            benches.append(ctx.benchmark)
        if self.config.mix and len(benches) > len(self.config.mix):
            raise ConfigError(f"multitask.mix has {len(self.config.mix)} weights, but the evaluated benchmark "
                              f"{ctx.benchmark.name!r} is not among tasks; add it to tasks")
        splits = [b.split("train")[: ctx.train_limit] if ctx.train_limit else b.split("train") for b in benches]
        counts = mixture([len(s) for s in splits], self.config.mix, sum(len(s) for s in splits))
        rng = random.Random(ctx.seed)
        pairs = []
        for b, split, n in zip(benches, splits, counts):
            pairs += qa_pairs(ctx, rng.sample(split, n), Prompter.for_benchmark(b))
        rng.shuffle(pairs)
        self.mixture = {b.name: n for b, n in zip(benches, counts)}
        return [("+".join(b.name for b in benches), pairs)]

    def prepare(self, ctx):
        details = super().prepare(ctx)
        return {**details, "mixture": self.mixture}
