"""The bridge to EleutherAI's lm-evaluation-harness, both ways.

- export: a harness benchmark becomes an lm-eval task folder (YAML, JSONL splits, and a utils.py
  that holds a verbatim copy of harness/analysis/metrics.py, so lm-eval scores exactly as the harness does
  without importing it);
- import: `HarnessLM` (registered as lm-eval model "harness") answers any lm-eval task with a
  prepared harness strategy: its model (base, or the fine-tuned one) and, for RAG, its retriever;
- forgetting: a general-knowledge task, not trained on, scored on the base and the tuned model.
"""
from __future__ import annotations

import datetime as dt
import json
import random
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from harness.analysis import metrics
from harness.core.errors import ConfigError, DataError, HarnessError
from harness.core.records import write_atomic, write_json, write_jsonl
from harness.data.benchmark import load_benchmark
from harness.methods import prompts

GENERATION_TASKS = ("extractive_qa", "yes_no", "classification")
# The metric each task type is summarised by (forgetting check, console lines).
PRIMARY_METRIC = {"extractive_qa": "f1", "yes_no": "exact_match", "classification": "exact_match",
                  "multiple_choice": "acc"}
_TASK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")
MC_PROMPT = "Question: {{question}}\nAnswer:"  # lm-eval's usual zero-shot layout (ARC, SciQ)


# -- export ---------------------------------------------------------------------------------------
def task_name_for(bench_name: str) -> str:
    return "harness_" + re.sub(r"[^A-Za-z0-9_]+", "_", bench_name).strip("_").lower()


def _raw_rows(bench) -> dict[str, dict]:
    """questions.jsonl rows by id, for fields the Example type may not carry (choices)."""
    path = Path(bench.meta.get("path", "")) / "questions.jsonl"
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8").split("\n"):
        if line.strip():
            row = json.loads(line)
            out[row.get("id")] = row
    return out


def _mc_rows(examples, raw, path) -> list[dict]:
    rows = []
    for e in examples:
        choices = list(getattr(e, "choices", ()) or raw.get(e.id, {}).get("choices") or [])
        if len(choices) < 2 or not all(isinstance(c, str) for c in choices):
            raise DataError(f"multiple-choice question {e.id!r} needs 'choices': a list of >= 2 strings", path)
        if e.answers[0] not in choices:
            raise DataError(f"question {e.id!r}: answer {e.answers[0]!r} is not one of its choices", path)
        rows.append({"id": e.id, "question": e.input, "answers": list(e.answers), "choices": choices,
                     "label": choices.index(e.answers[0])})
    return rows


def export_task(benchmark: str, out_dir: str | Path, name: str | None = None) -> Path:
    """Write an lm-eval task for `benchmark` into out_dir; returns the YAML's path."""
    bench = load_benchmark(benchmark)
    name = name or task_name_for(bench.name)
    if not _TASK_NAME.match(name):
        raise ConfigError(f"task name {name!r} must start with a letter and hold only letters, digits, _ and -")
    out = Path(out_dir).resolve()
    ours = {f"{name}.yaml", f"{name}_test.jsonl", f"{name}_train.jsonl", "utils.py"}
    if out.exists() and not out.is_dir():
        raise HarnessError(f"{out} exists and is not a folder")
    if out.is_dir():
        other = sorted(p.name for p in out.iterdir() if p.name not in ours and p.name != "__pycache__")
        if other:
            raise HarnessError(f"{out} holds other files ({', '.join(other[:5])}); export into an empty folder")
    task = bench.task
    if task not in GENERATION_TASKS + ("multiple_choice",):
        raise HarnessError(f"benchmark {bench.name!r} has task type {task!r}, which cannot be exported")
    test, train = bench.split("test"), bench.split("train")
    qpath = Path(bench.meta.get("path", benchmark)) / "questions.jsonl"
    if task == "multiple_choice":
        raw = _raw_rows(bench)
        test_rows, train_rows = _mc_rows(test, raw, qpath), _mc_rows(train, raw, qpath)
    else:
        def row(e):
            return {"id": e.id, "question": e.input, "answers": list(e.answers), "target": e.answers[0]}
        test_rows, train_rows = [row(e) for e in test], [row(e) for e in train]

    files = {"test": out / f"{name}_test.jsonl"}
    write_jsonl(files["test"], test_rows)
    if train_rows:
        files["train"] = out / f"{name}_train.jsonl"
        write_jsonl(files["train"], train_rows)
    elif (out / f"{name}_train.jsonl").exists():
        (out / f"{name}_train.jsonl").unlink()
    cfg: dict[str, Any] = {
        "task": name,
        # Absolute paths: lm-eval hands data_files to datasets.load_dataset as they are, relative
        # to the caller's working directory; absolute ones work from anywhere (re-export after a move).
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {k: str(v) for k, v in files.items()}},
        "test_split": "test",
    }
    if train_rows:
        cfg["fewshot_split"] = "train"
    extra = ""
    if task == "multiple_choice":
        cfg.update({"output_type": "multiple_choice", "doc_to_text": MC_PROMPT, "doc_to_choice": "{{choices}}",
                    "doc_to_target": "label", "target_delimiter": " ",
                    "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True}
                                    for m in ("acc", "acc_norm")]})
        if (out / "utils.py").exists():
            (out / "utils.py").unlink()
    else:
        prompter = prompts.Prompter.for_benchmark(bench)
        cfg.update({
            "output_type": "generate_until",
            # With --apply_chat_template lm-eval sends [system: description, user: question]: the
            # harness's closed-book prompt, token for token.
            "description": prompter.system,
            "doc_to_text": "question", "doc_to_target": "target", "target_delimiter": " ",
            # Only the end-of-turn token stops generation (lm-eval adds the model's EOS); the
            # harness's stop at the first newline after text is applied in process_results.
            "generation_kwargs": {"until": [], "max_gen_toks": max_new_tokens_default(),
                                  "do_sample": False, "temperature": 0.0},
            "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True}
                            for m in metrics.METRICS],
        })
        extra = "process_results: !function utils.process_results\n"
        write_atomic(out / "utils.py", _utils_source(task))
    cfg["metadata"] = {"version": 1.0, "harness_benchmark": bench.name, "harness_task": task,
                       "data_sha256": bench.meta.get("data_sha256")}
    import yaml

    text = (f"# Exported by `harness export-lm-eval {benchmark}`; run with\n"
            f"#   lm-eval run --model hf --model_args pretrained=DIR --include_path {out} --tasks {name}"
            f"{' --apply_chat_template' if task != 'multiple_choice' else ''}\n")
    text += yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True, width=1000) + extra
    yaml_path = out / f"{name}.yaml"
    write_atomic(yaml_path, text)
    return yaml_path


def max_new_tokens_default() -> int:
    from harness.engine.config import RunConfig

    return RunConfig.max_new_tokens


def _utils_source(task: str) -> str:
    """harness/analysis/metrics.py verbatim, then the lm-eval hook: one scoring code, no harness import."""
    src = Path(metrics.__file__).read_text(encoding="utf-8")
    return (
        "# Written by `harness export-lm-eval`: harness/analysis/metrics.py verbatim, then process_results.\n"
        + src
        + f'''

# -- lm-eval hook ----------------------------------------------------------------------------------
HARNESS_TASK = {task!r}


def harness_output(text):
    """What the harness's decoder keeps: everything up to the first newline after visible text."""
    stripped = text.lstrip()
    start = len(text) - len(stripped)
    cut = text.find("\\n", start) if stripped else -1
    return text if cut < 0 else text[:cut]


def process_results(doc, results):
    s = score(harness_output(results[0]), doc["answers"], doc["question"], HARNESS_TASK)
    return {{m: s[m] for m in METRICS}}
''')


# -- running lm-eval ------------------------------------------------------------------------------
def task_manager(tasks: Sequence[str], include_path: str | Path | Sequence | None = None):
    """An lm-eval TaskManager that knows every task asked for (checked before any model work).
    lm-eval's own task index is read only when no include_path is given: it costs 10-25 s."""
    from lm_eval.tasks import TaskManager

    _quiet_lm_eval()
    paths = [str(p) for p in ([include_path] if isinstance(include_path, (str, Path)) else include_path or [])]
    for p in paths:
        if not Path(p).is_dir():
            raise HarnessError(f"--include-path {p}: no such folder")
    tm = TaskManager(include_path=paths or None, include_defaults=not paths)
    unknown = [t for t in tasks if t not in tm.all_tasks]
    if unknown:
        where = f" under {', '.join(paths)}" if paths else ""
        raise HarnessError(f"unknown lm-eval task(s) {', '.join(unknown)}{where}")
    return tm


def evaluate(lm, tasks: Sequence[str], include_path: str | Path | Sequence | None = None, *,
             limit: int | None = None, apply_chat_template: bool = True, num_fewshot: int | None = None,
             batch_size: int | None = None, log_samples: bool = False, tm=None) -> dict:
    """lm-eval's simple_evaluate, seeded, on tasks found under include_path."""
    from lm_eval import simple_evaluate

    tm = tm or task_manager(tasks, include_path)
    out = simple_evaluate(model=lm, tasks=list(tasks), task_manager=tm, limit=limit, batch_size=batch_size,
                          apply_chat_template=apply_chat_template, num_fewshot=num_fewshot,
                          log_samples=log_samples, bootstrap_iters=0, random_seed=0, numpy_random_seed=0,
                          torch_random_seed=0, fewshot_random_seed=0)
    if out is None:
        raise HarnessError("lm-eval returned no results")
    return out


def _quiet_lm_eval() -> None:
    """The bridge hands HFLM model objects on purpose; lm-eval's warnings about that are noise here."""
    import logging

    logging.getLogger("lm_eval").setLevel(logging.ERROR)


def hf_lm(model, tokenizer, batch_size: int = 16):
    """lm-eval's HFLM around a model object already in memory (base or fine-tuned)."""
    from lm_eval.models.huggingface import HFLM

    _quiet_lm_eval()

    return HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)


def _own_tokenizer(runtime):
    """HFLM sets padding options on the tokenizer it is given: it gets its own copy."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(runtime.path)


# -- import: a prepared harness strategy as an lm-eval model -------------------------------------
def _retriever(strategy):
    """The strategy's RAG side, if it has one: Rag itself, or a hybrid holding a Rag as `.rag`."""
    for obj in (strategy, getattr(strategy, "rag", None)):
        if obj is not None and getattr(obj, "index", None) is not None and hasattr(obj, "config"):
            return obj
    return None


def _make_harness_lm():
    from lm_eval.api.instance import Instance
    from lm_eval.api.model import LM
    from lm_eval.api.registry import register_model

    class HarnessLM(LM):
        """A prepared harness strategy answering lm-eval requests.

        model_args: strategy=NAME, benchmark=NAME_OR_FOLDER (the knowledge the strategy prepares on),
        model, device, dtype, seed, train_limit, workdir, and any option of the strategy (k=5, r=8).
        Generation runs through the harness's own batched decoder (greedy, prefix-shared), on the
        strategy's model; log-likelihoods through lm-eval's HFLM around the same model object.
        RAG strategies prepend their top-k retrieved chunks to each request's context: inside the
        last user turn when lm-eval applies the chat template, before the plain text otherwise.
        The few-shot strategy's demonstrations come first (as chat turns, or as plain text).
        """

        def __init__(self, strategy: str = "zero-shot", benchmark: str | None = None, model: str | None = None,
                     device: str | None = None, dtype: str = "auto", seed: int = 0, train_limit: int | None = None,
                     workdir: str | None = None, batch_size: int | str | None = None, max_batch_size=None,
                     max_new_tokens: int = 24, prepared=None, runtime=None, **options):
            super().__init__()
            if prepared is None:
                prepared, runtime = prepare_strategy(
                    strategy, benchmark, model=model, device=device or "auto", dtype=dtype, seed=seed,
                    train_limit=train_limit, workdir=workdir, max_new_tokens=max_new_tokens, options=options)
            self.strategy, self.runtime = prepared, runtime
            tuned = getattr(prepared, "model", None)
            self.model = tuned if tuned is not None else runtime.model
            self.prompt_learning = bool(getattr(prepared, "prompt_learning", False))
            self.rag = _retriever(prepared)
            self.demos = list(getattr(prepared, "demos", ()) or ())
            try:
                bs = int(batch_size) if batch_size not in (None, "auto") else runtime.default_batch_size
            except ValueError:
                raise ConfigError(f"batch_size must be an integer, got {batch_size!r}") from None
            self.batch_size = bs
            self.hf = hf_lm(self.model, _own_tokenizer(runtime), bs)
            self._rendered: set[str] = set()

        # chat template: lm-eval renders through the model; RAG context goes into the last user turn
        @property
        def tokenizer_name(self) -> str:
            return self.hf.tokenizer_name

        def chat_template(self, chat_template=False):
            return self.hf.chat_template(chat_template)

        def apply_chat_template(self, chat_history: list[dict], add_generation_prompt: bool = True) -> str:
            history = [dict(m) for m in chat_history]
            users = [m for m in history if m.get("role") == "user"]
            if self.rag is not None and users:
                users[-1]["content"] = self._with_passages(users[-1]["content"], users[-1]["content"])
            if self.demos:  # the few-shot strategy's demonstrations, as earlier turns (as it asks them)
                at = 1 if history and history[0].get("role") == "system" else 0
                history[at:at] = [{"role": r, "content": c} for q, a in self.demos
                                  for r, c in (("user", q), ("assistant", a))]
            text = self.hf.apply_chat_template(history, add_generation_prompt=add_generation_prompt)
            self._rendered.add(text)
            return text

        def _with_passages(self, query: str, text: str) -> str:
            hits, _ = self.rag.index.search([query], self.rag.config.k)
            return "\n\n".join([c.text for c in hits[0]] + [text])

        def _context(self, context: str) -> str:
            if context in self._rendered or not context:
                return context
            if self.rag is not None:
                context = self._with_passages(context, context)
            return "".join(f"{q}\n{a}\n\n" for q, a in self.demos) + context

        # requests
        def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
            contexts = [self._context(r.args[0]) for r in requests]
            out: list[str | None] = [None] * len(requests)
            groups: dict[tuple, list[int]] = {}
            for i, r in enumerate(requests):
                kw = dict(r.args[1] or {})
                until = kw.get("until") or []
                until = [until] if isinstance(until, str) else list(until)
                n = int(kw.get("max_gen_toks", 256))
                groups.setdefault((tuple(until), n), []).append(i)
            generate = self.runtime.generate_hf if self.prompt_learning else self.runtime.generate
            for (until, n), idx in groups.items():
                ids = [self.hf.tok_encode(contexts[i]) for i in idx]
                gens = generate(ids, max_new_tokens=n, batch_size=self.batch_size, model=self.model,
                                stop_at_newline=False)
                for i, g in zip(idx, gens):
                    text = g.text
                    for stop in until:
                        if stop and stop in text:
                            text = text[: text.index(stop)]
                    out[i] = text
            return out  # type: ignore[return-value]

        def loglikelihood(self, requests: list[Instance], disable_tqdm: bool = False):
            if self.prompt_learning:
                raise HarnessError(f"{self.strategy.name}: log-likelihoods of prompt-learning adapters "
                                   "(virtual tokens) are not supported; use a generation task")
            moved = [_with_args(r, (self._context(r.args[0]), *r.args[1:])) for r in requests]
            return self.hf.loglikelihood(moved, disable_tqdm=disable_tqdm)

        def loglikelihood_rolling(self, requests: list[Instance], disable_tqdm: bool = False):
            if self.prompt_learning:
                raise HarnessError(f"{self.strategy.name}: rolling log-likelihoods of prompt-learning "
                                   "adapters are not supported")
            return self.hf.loglikelihood_rolling(requests, disable_tqdm=disable_tqdm)

    def _with_args(req, args):
        import dataclasses

        return dataclasses.replace(req, arguments=args, resps=[], filtered_resps={})

    register_model("harness")(HarnessLM)
    return HarnessLM


_HARNESS_LM = None


def harness_lm_class():
    """The lm-eval LM class (registered as model "harness" on first use: lm_eval is a heavy import)."""
    global _HARNESS_LM
    if _HARNESS_LM is None:
        _HARNESS_LM = _make_harness_lm()
    return _HARNESS_LM


def prepare_strategy(strategy: str, benchmark: str | None, *, model: str | None = None, device: str = "auto",
                     dtype: str = "auto", seed: int = 0, train_limit: int | None = None,
                     workdir: str | Path | None = None, max_new_tokens: int = 24, options: dict | None = None,
                     runtime=None, progress: bool = False):
    """Build and prepare one strategy the way the runner does; returns (strategy, runtime)."""
    import torch

    from harness.data.benchmark import DEFAULT_BENCHMARK
    from harness.methods.registry import build_config, get_spec
    from harness.methods.strategy import PrepareContext
    from harness.model.modelstore import DEFAULT_MODEL
    from harness.model.runtime import Runtime

    spec = get_spec(strategy)
    config = build_config(spec, options)
    bench = load_benchmark(benchmark or DEFAULT_BENCHMARK)
    if train_limit is not None and (not isinstance(train_limit, int) or train_limit < 1):
        raise ConfigError(f"train_limit must be a positive integer, got {train_limit!r}")
    runtime = runtime or Runtime(model or DEFAULT_MODEL, device=device, dtype=dtype, progress=progress)
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix=f"harness-{spec.name}-"))
    work.mkdir(parents=True, exist_ok=True)
    ctx = PrepareContext(benchmark=bench, runtime=runtime, workdir=work, seed=seed, train_limit=train_limit,
                         max_new_tokens=max_new_tokens, progress=progress)
    random.seed(seed)
    torch.manual_seed(seed)
    strat = spec.cls(config)
    strat.prepare(ctx)
    return strat, runtime


def results_table(results: dict) -> str:
    from lm_eval.utils import make_table

    return make_table(results)


def run_lm_eval(strategy: str, benchmark: str | None, tasks: Sequence[str], include_path, *, limit=None,
                model=None, device="auto", dtype="auto", train_limit=None, seed=0, options=None,
                apply_chat_template=True, num_fewshot=None, batch_size=None, out: str | Path | None = None,
                progress=False) -> tuple[dict, Path]:
    """`harness lm-eval`: prepare the strategy, evaluate it with lm-eval, write a JSON record."""
    cls = harness_lm_class()
    tm = task_manager(tasks, include_path)
    strat, runtime = prepare_strategy(strategy, benchmark, model=model, device=device, dtype=dtype, seed=seed,
                                      train_limit=train_limit, options=options, progress=progress)
    lm = cls(prepared=strat, runtime=runtime, batch_size=batch_size)
    res = evaluate(lm, tasks, limit=limit, apply_chat_template=apply_chat_template, num_fewshot=num_fewshot,
                   tm=tm)
    from harness.core.paths import reports_root

    path = Path(out) if out else reports_root() / "lm-eval" / f"{dt.datetime.now():%Y%m%d-%H%M%S}-{strategy}.json"
    record = {"strategy": strategy, "benchmark": benchmark, "model": str(runtime.path), "tasks": list(tasks),
              "limit": limit, "apply_chat_template": apply_chat_template, "num_fewshot": num_fewshot,
              "options": options or {}, "results": res["results"], "n_samples": res.get("n-samples"),
              "configs": res.get("configs")}
    write_json(path, json.loads(json.dumps(record, default=str)))
    return res, path


# -- forgetting check ----------------------------------------------------------------------------
_BASE_SCORES: dict[tuple, dict] = {}


class _ModelOnly:
    """A stand-in prepared strategy that is just a model (the base model of a forgetting check)."""

    name = "base"

    def __init__(self, model, prompt_learning: bool = False):
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
        metric = metric or PRIMARY_METRIC[bench.task]
        key_data = bench.meta.get("data_sha256")
    else:
        name, key_data = task, str(include_path)
        if metric is None:
            raise ConfigError("forgetting check on an lm-eval task needs the metric to report")
    import datasets

    datasets.disable_progress_bars()  # inside `harness run`: its own log lines only
    if not hasattr(tuned, "model"):
        tuned = _ModelOnly(tuned)
    cls = harness_lm_class()
    t0 = time.perf_counter()
    key = (str(runtime.path), str(runtime.dtype), runtime.device, name, key_data, limit, metric)
    scores = {}
    for side, prepared in (("base", _ModelOnly(runtime.model)), ("tuned", tuned)):
        if side == "base" and key in _BASE_SCORES:  # the same base model for every fine-tuned cell
            scores["base"] = _BASE_SCORES[key]
            continue
        lm = cls(prepared=prepared, runtime=runtime, batch_size=batch_size)
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
