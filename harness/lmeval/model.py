"""A prepared harness strategy as an lm-eval model, and running lm-eval on it.

`HarnessLM` (registered as lm-eval model "harness") answers any lm-eval task with a prepared harness
strategy: its model (base, or the fine-tuned one), its retriever (RAG), its demonstrations
(few-shot). It reads only the Strategy contract's members (harness/methods/strategy.py), so every
strategy behaves here as it does in a run. lm_eval is a heavy import: import this module only when
lm-eval is used.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import tempfile
from pathlib import Path
from typing import Sequence

from lm_eval.api.instance import Instance
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from harness.core.errors import ConfigError, HarnessError
from harness.core.paths import reports_root
from harness.core.records import write_json
from harness.data.benchmark import DEFAULT_BENCHMARK, load_benchmark
from harness.methods.registry import build_config, get_spec
from harness.methods.strategy import PrepareContext
from harness.methods.strategy import prepare_strategy as build_and_prepare
from harness.model.batching import DEFAULT_MAX_NEW_TOKENS
from harness.model.modelstore import DEFAULT_MODEL


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
                 max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, prepared=None, runtime=None, **options):
        super().__init__()
        if prepared is None:
            prepared, runtime = prepare_strategy(
                strategy, benchmark, model=model, device=device or "auto", dtype=dtype, seed=seed,
                train_limit=train_limit, workdir=workdir, max_new_tokens=max_new_tokens, options=options)
        self.strategy, self.runtime = prepared, runtime
        self.model = prepared.model if prepared.model is not None else runtime.model
        self.prompt_learning = prepared.prompt_learning
        self.retriever = prepared.retriever
        self.demos = list(prepared.demos)
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
        if self.retriever is not None and users:
            users[-1]["content"] = self._with_passages(users[-1]["content"], users[-1]["content"])
        if self.demos:  # the few-shot strategy's demonstrations, as earlier turns (as it asks them)
            at = 1 if history and history[0].get("role") == "system" else 0
            history[at:at] = [{"role": r, "content": c} for q, a in self.demos
                              for r, c in (("user", q), ("assistant", a))]
        text = self.hf.apply_chat_template(history, add_generation_prompt=add_generation_prompt)
        self._rendered.add(text)
        return text

    def _with_passages(self, query: str, text: str) -> str:
        hits, _ = self.retriever.search([query])
        return "\n\n".join([c.text for c in hits[0]] + [text])

    def _context(self, context: str) -> str:
        if context in self._rendered or not context:
            return context
        if self.retriever is not None:
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
    return dataclasses.replace(req, arguments=args, resps=[], filtered_resps={})


def harness_lm_class():
    """The lm-eval LM class, registered as lm-eval model "harness" on first call. (Registering at
    import would fill lm-eval's lazy model registry before its own models, hiding "hf" and the rest.)"""
    from lm_eval.api.registry import get_model

    try:
        get_model("harness")
    except (KeyError, ValueError):
        register_model("harness")(HarnessLM)
    return HarnessLM


def prepare_strategy(strategy: str, benchmark: str | None, *, model: str | None = None, device: str = "auto",
                     dtype: str = "auto", seed: int = 0, train_limit: int | None = None,
                     workdir: str | Path | None = None, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                     options: dict | None = None, runtime=None, progress: bool = False):
    """Build and prepare one strategy by name, as the runner does; returns (strategy, runtime)."""
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
    strat, _ = build_and_prepare(spec, config, ctx)
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
    path = Path(out) if out else reports_root() / "lm-eval" / f"{dt.datetime.now():%Y%m%d-%H%M%S}-{strategy}.json"
    record = {"strategy": strategy, "benchmark": benchmark, "model": str(runtime.path), "tasks": list(tasks),
              "limit": limit, "apply_chat_template": apply_chat_template, "num_fewshot": num_fewshot,
              "options": options or {}, "results": res["results"], "n_samples": res.get("n-samples"),
              "configs": res.get("configs")}
    write_json(path, json.loads(json.dumps(record, default=str)))
    return res, path


