"""Fair tuning, honestly selected: sweeps chosen on a validation split carved from train, and
learning curves over the number of train examples.

A strategy entry of the run YAML may hold, beside its options:

    lora:
      sweep: {lr: [5e-4, 1e-3], epochs: [1, 2]}   # every combination is one point
      train_sizes: [0, 64, all]                      # fine-tuning strategies only

Sweep. The validation split is carved from the train examples the run uses (after `train_limit`):
the `sweep_validation` examples with the smallest sha256("validation:" + id), fixed by the ids
alone, so every strategy, sweep and seed selects on the same questions, and never a test question.
Each point is prepared on the rest of the train split (training, demonstrations) and answers the
validation questions; the point with the best mean headline metric there (the first listed on a tie)
is selected, and that prepared strategy, as it is, answers the test questions. Its training saw
train minus validation: it is not retrained on the validation questions, so what answers test is
exactly what was selected.

Learning curve. The train examples are put in one order (a permutation seeded by the cell's seed)
and each size trains on the first n of them, so the sets are nested; "all" is the cell's own
result, and 0 is the strategy answering with the untuned base model (its own prompt and retrieval).
Each point answers the same test questions as the cell.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import random
import time
from typing import Any, Callable, Sequence

from harness.analysis import metrics
from harness.core.errors import ConfigError
from harness.core.types import Benchmark, Example
from harness.methods.registry import StrategySpec, build_config
from harness.methods.strategy import PrepareContext

# Every point prepares (trains or indexes) and answers the validation questions: a cap that stops a
# typo from queuing a day of training. 16 is a 4 x 4 grid, past which a sweep wants a sampler, not a grid.
MAX_SWEEP_POINTS = 16
ALL = "all"


@dataclasses.dataclass(frozen=True)
class Tuning:
    """What a strategy entry asks beyond its options: sweep points and learning-curve sizes."""

    sweep: tuple = ()        # ((swept options of the point, its built config), ...) in grid order
    train_sizes: tuple = ()  # ints in increasing order, then "all" when asked


def parse_entry(spec: StrategySpec, options: dict, values: dict | None) -> Tuning:
    """The `sweep` and `train_sizes` keys of a strategy entry, checked (ConfigError names the key)."""
    values = values or {}
    sweep, sizes = values.get("sweep"), values.get("train_sizes")
    return Tuning(parse_sweep(spec, options, sweep) if sweep is not None else (),
                  parse_sizes(spec, sizes) if sizes is not None else ())


def parse_sweep(spec: StrategySpec, options: dict, sweep) -> tuple:
    name = spec.name
    if not isinstance(sweep, dict) or not sweep:
        raise ConfigError(f"strategy {name!r}: 'sweep' must map option names to lists of values, got {sweep!r}")
    for key, vals in sweep.items():
        if key in options:
            raise ConfigError(f"strategy {name!r}: option {key!r} is both set and swept; give it in one place")
        if not isinstance(vals, list) or not vals:
            raise ConfigError(f"strategy {name!r}: sweep.{key} must be a non-empty list of values, got {vals!r}")
        if len(set(map(repr, vals))) != len(vals):
            raise ConfigError(f"strategy {name!r}: sweep.{key} lists a value twice: {vals!r}")
    keys = list(sweep)
    grid = [dict(zip(keys, combo)) for combo in itertools.product(*(sweep[k] for k in keys))]
    if len(grid) > MAX_SWEEP_POINTS:
        raise ConfigError(f"strategy {name!r}: the sweep has {len(grid)} points; at most {MAX_SWEEP_POINTS}")
    if len(grid) < 2:
        raise ConfigError(f"strategy {name!r}: a sweep needs at least two points; set a single value as an option")
    return tuple((point, build_config(spec, {**options, **point})) for point in grid)


def parse_sizes(spec: StrategySpec, sizes) -> tuple:
    name = spec.name
    if not spec.cls.fine_tunes:
        raise ConfigError(f"strategy {name!r}: train_sizes is for fine-tuning strategies; {spec.registered!r} "
                          "does not train")
    if not isinstance(sizes, list) or not sizes:
        raise ConfigError(f"strategy {name!r}: train_sizes must be a list like [0, 64, 256, all], got {sizes!r}")
    ints = []
    for s in sizes:
        if s == ALL:
            continue
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ConfigError(f"strategy {name!r}: train_sizes holds integers >= 0 and 'all', got {s!r}")
        ints.append(s)
    if len(set(ints)) != len(ints) or sizes.count(ALL) > 1:
        raise ConfigError(f"strategy {name!r}: train_sizes lists a size twice: {sizes!r}")
    return tuple(sorted(ints)) + ((ALL,) if ALL in sizes else ())


def check_against(name: str, tuning: Tuning, n_train: int, validation: int) -> None:
    """Sizes and the validation split against the train examples the run uses (before any model loads)."""
    if tuning.sweep and not 0 < validation < n_train:
        raise ConfigError(f"strategy {name!r}: the sweep carves sweep_validation={validation} validation questions "
                          f"from {n_train} train examples; it must leave at least one to train on")
    pool = n_train - validation if tuning.sweep else n_train
    big = [s for s in tuning.train_sizes if s != ALL and s > pool]
    if big:
        raise ConfigError(f"strategy {name!r}: train_sizes {big[0]} is more than the {pool} train examples "
                          "(use 'all' for all of them)")


# ---- the splits ---------------------------------------------------------------------------------

def _order(examples: Sequence[Example], salt: str) -> list[Example]:
    return sorted(examples, key=lambda e: hashlib.sha256(f"{salt}:{e.id}".encode()).hexdigest())


def validation_split(pool: Sequence[Example], n: int) -> list[Example]:
    """The n examples of `pool` with the smallest sha256("validation:" + id)."""
    return _order(pool, "validation")[:n]


def nested_subsets(pool: Sequence[Example], sizes: Sequence[int], seed: int) -> dict[int, list[Example]]:
    """size -> the first `size` examples of one permutation of `pool` seeded by `seed` (nested sets)."""
    order = list(pool)
    random.Random(f"train_sizes:{seed}").shuffle(order)
    return {n: order[:n] for n in sizes}


def with_train(bench: Benchmark, train: Sequence[Example], validation: Sequence[Example] = ()) -> Benchmark:
    """The benchmark with `train` as its train split; `validation` relabelled "validation" and every
    other train example "unused". Test questions and documents are untouched."""
    keep, val = {e.id for e in train}, {e.id for e in validation}

    def relabel(e: Example) -> Example:
        if e.split != "train" or e.id in keep:
            return e
        return dataclasses.replace(e, split="validation" if e.id in val else "unused")

    return dataclasses.replace(bench, examples=[relabel(e) for e in bench.examples])


def score_outputs(outputs: dict[str, str], examples: Sequence[Example]) -> dict:
    """The headline metric's mean and bootstrap CI over `examples`, from outputs by id."""
    if not examples:
        return metrics.bootstrap_ci([])
    primary = metrics.primary_metric(examples[0].task)
    return metrics.bootstrap_ci([metrics.score(outputs[e.id], e.answers, e.input, e.task)[primary] for e in examples])


def select(scores: Sequence[float | None], higher_is_better: bool = True) -> int:
    """The best point by validation mean; the first listed on a tie."""
    vals = [(-s if higher_is_better else s) if s is not None else float("inf") for s in scores]
    return min(range(len(vals)), key=vals.__getitem__)


# ---- running them -------------------------------------------------------------------------------

def _own_folder(ctx: PrepareContext, name: str) -> PrepareContext:
    """A point's artifacts apart from the cell's (they would overwrite each other with the cache off)."""
    folder = ctx.workdir / name
    folder.mkdir(parents=True, exist_ok=True)
    return dataclasses.replace(ctx, workdir=folder)


def _answer(strat, examples: Sequence[Example]) -> tuple[dict[str, str], float]:
    t0 = time.perf_counter()
    preds = strat.answer(list(examples))
    return {e.id: p.output for e, p in zip(examples, preds)}, time.perf_counter() - t0


def carve_validation(bench: Benchmark, train_limit: int | None, n: int) -> tuple[Benchmark, list[Example]]:
    """The benchmark a sweep prepares on (train minus validation; the train examples past
    `train_limit` unused) and the validation examples."""
    train = bench.split("train")
    pool = train[:train_limit] if train_limit is not None else train
    val = validation_split(pool, n)
    ids = {e.id for e in val}
    return with_train(bench, [e for e in pool if e.id not in ids], val), val


def run_sweep(points: tuple, ctx: PrepareContext, validation: Sequence[Example], prepare: Callable,
              release: Callable) -> tuple[int, Any, dict, dict]:
    """Prepare every point in `ctx` (its benchmark carved by `carve_validation`), score it on
    `validation`, and keep the best.

    prepare(config, ctx) -> (strategy, prepare record); release(strategy) frees a point's model once
    it cannot be selected. Returns (selected index, its prepared strategy, its prepare record, the
    sweep record)."""
    primary = metrics.primary_metric(ctx.benchmark.task)
    higher = metrics.get_metric(primary).higher_is_better
    val_ids = {e.id for e in validation}
    seen_test = val_ids & {e.id for e in ctx.benchmark.split("test")}
    if seen_test:  # never: validation is carved from train; a benchmark whose ids repeat across splits stops here
        raise ConfigError(f"validation questions {sorted(seen_test)[:3]} are also test questions")
    record = {"metric": primary, "train_examples": len(ctx.train_examples()),
              "validation": {"n": len(validation), "ids": sorted(val_ids),
                             "rule": f"the {len(validation)} train examples with the smallest "
                                     "sha256('validation:' + id)"},
              "points": []}
    best, kept = None, None
    for i, (point, config) in enumerate(points):
        strat, prep = prepare(config, _own_folder(ctx, f"sweep-point-{i + 1}"))
        outputs, ans_s = _answer(strat, validation)
        score = score_outputs(outputs, validation)
        record["points"].append({"options": point, "validation": score, "prepare_s": prep.get("wall_s"),
                                 "answer_s": round(ans_s, 3), "outputs": outputs})
        if best is None or select([record["points"][best]["validation"]["mean"], score["mean"]], higher) == 1:
            if kept is not None:
                release(kept[0])
            best, kept = i, (strat, prep)
        else:
            release(strat)
    record["selected"] = best
    record["seconds"] = round(sum((p["prepare_s"] or 0.0) + p["answer_s"] for p in record["points"]), 3)
    return best, kept[0], kept[1], record


def learning_curve(strat, config, ctx: PrepareContext, sizes: tuple, test: Sequence[Example], stored: dict,
                   prepare: Callable, release: Callable) -> dict:
    """Each size's outputs on `test` (only the questions `stored` lacks are answered), keyed by size.
    `strat`: the cell's prepared strategy; it answers the 0 point with its model swapped for the base."""
    pool = ctx.train_examples()
    subsets = nested_subsets(pool, [s for s in sizes if s != ALL], ctx.seed)
    out = {}
    for size in sizes:
        key = str(size)
        if size == ALL:
            out[key] = {"train_examples": len(pool), "from_cell": True}
            continue
        point = dict(stored.get(key) or {})
        point["outputs"] = dict(point.get("outputs") or {})
        missing = [e for e in test if e.id not in point["outputs"]]
        if missing:
            if size == 0:
                tuned, prompt_learning = strat.model, getattr(strat, "prompt_learning", False)
                strat.model, strat.prompt_learning = ctx.runtime.model, False  # the untuned base, same prompt
                try:
                    outputs, ans_s = _answer(strat, missing)
                finally:
                    strat.model, strat.prompt_learning = tuned, prompt_learning
            else:
                sctx = dataclasses.replace(_own_folder(ctx, f"train-size-{size}"), train_limit=None,
                                           benchmark=with_train(ctx.benchmark, subsets[size]))
                point_strat, prep = prepare(config, sctx)
                outputs, ans_s = _answer(point_strat, missing)
                release(point_strat)
                for k, v in {"prepare_s": prep.get("wall_s"), "fit_examples": prep.get("train_examples"),
                             **{k: prep.get(k) for k in ("steps", "train_seconds", "loss_curve", "eval_loss")}}.items():
                    if v is not None:
                        point.setdefault(k, v)  # a rerun's reload keeps the times measured when it trained
            point["outputs"].update(outputs)
            point["answer_s"] = round(point.get("answer_s", 0.0) + ans_s, 3)
        point["train_examples"] = size
        out[key] = point
    return out
