"""The forgetting check: a general-knowledge task, not trained on, scored on the base model and on the
fine-tuned one through lm-eval (the same model class as `harness lm-eval`)."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from harness.core.errors import ConfigError, HarnessError
from harness.data.benchmark import load_benchmark
from harness.data.tasks import task_type
from harness.lmeval.export import export_task, task_name_for
from harness.methods.strategy import StrategyBase

_BASE_SCORES: dict[tuple, dict] = {}


class ModelOnly(StrategyBase):
    """A stand-in prepared strategy that is just a model (the base model of a forgetting check)."""

    name = "base"

    def __init__(self, model, prompt_learning: bool = False):
        super().__init__(None)
        self.model, self.prompt_learning = model, prompt_learning


def forgetting_check(runtime, tuned, task: str = "boolq", *, limit: int | None = None,
                     workdir: str | Path | None = None, include_path=None, metric: str | None = None,
                     batch_size: int | None = None) -> dict:
    """Score a general-knowledge task on the base model and on the fine-tuned one.

    `tuned` is a prepared fine-tuning strategy (its `.model` is used) or a model object. `task` is
    a harness benchmark (built-in name or folder), exported to an lm-eval task on the fly, or, with
    include_path, an lm-eval task name (then `metric` names what to report). Both models answer
    through the same lm-eval model class as `harness lm-eval`, chat template applied. Returns task,
    metric, base, tuned, delta (tuned - base: negative means forgetting) and n (documents scored).
    """
    if include_path is None:
        bench = load_benchmark(task)
        work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="harness-forgetting-"))
        folder = work / "forgetting" / task_name_for(bench.name)
        yaml_path = export_task(task, folder)
        name, include_path = yaml_path.stem, folder
        metric = metric or task_type(bench.task).lmeval_metric
        key_data = bench.meta.get("data_sha256")
    else:
        name, key_data = task, str(include_path)
        if metric is None:
            raise ConfigError("forgetting check on an lm-eval task needs the metric to report")
    import datasets

    datasets.disable_progress_bars()  # inside `harness run`: its own log lines only
    if not isinstance(tuned, StrategyBase):
        tuned = ModelOnly(tuned)
    from harness.lmeval.model import HarnessLM, evaluate  # lm_eval is a heavy import

    t0 = time.perf_counter()
    key = (str(runtime.path), str(runtime.dtype), runtime.device, name, key_data, limit, metric)
    scores = {}
    for side, prepared in (("base", ModelOnly(runtime.model)), ("tuned", tuned)):
        if side == "base" and key in _BASE_SCORES:  # the same base model for every fine-tuned cell
            scores["base"] = _BASE_SCORES[key]
            continue
        lm = HarnessLM(prepared=prepared, runtime=runtime, batch_size=batch_size)
        res = evaluate(lm, [name], include_path, limit=limit, apply_chat_template=True)
        row = res["results"][name]
        value = row.get(f"{metric},none", row.get(metric))
        if value is None:
            raise HarnessError(f"lm-eval task {name} reported no metric {metric!r}: {sorted(row)}")
        scores[side] = {"value": float(value), "n": int(res["n-samples"][name]["effective"])}
        if side == "base":
            _BASE_SCORES[key] = scores["base"]
    base, tuned_value = scores["base"]["value"], scores["tuned"]["value"]
    return {"task": task, "metric": metric, "base": base, "tuned": tuned_value, "delta": tuned_value - base,
            "n": scores["tuned"]["n"], "wall_s": time.perf_counter() - t0}


def forgetting_record(runtime, tuned, task: str, **kwargs) -> dict:
    """forgetting_check for the runner: a failure is recorded beside the cell, never fails it."""
    try:
        return forgetting_check(runtime, tuned, task, **kwargs)
    except Exception as exc:  # the domain results of the cell are worth keeping either way
        return {"task": task, "error": f"{type(exc).__name__}: {exc}"}
