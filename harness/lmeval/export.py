"""A harness benchmark as an lm-eval task folder: YAML, JSONL splits, and a utils.py that holds a
verbatim copy of harness/analysis/scoring.py, so lm-eval scores exactly as the harness does without
importing it. `harness export-lm-eval BENCHMARK OUT_DIR`.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from harness.analysis import metrics, scoring
from harness.core.errors import ConfigError, DataError, HarnessError
from harness.core.records import write_atomic, write_jsonl
from harness.data.benchmark import answer_budget, load_benchmark
from harness.data.tasks import task_type
from harness.methods import prompts

_TASK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")
MC_PROMPT = "Question: {{question}}\nAnswer:"  # lm-eval's usual zero-shot layout (ARC, SciQ)


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
    kind = task_type(task)
    test, train = bench.split("test"), bench.split("train")
    qpath = Path(bench.meta.get("path", benchmark)) / "questions.jsonl"
    if kind.needs_choices:
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
    if kind.lmeval_output_type == "multiple_choice":
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
            "generation_kwargs": {"until": [], "max_gen_toks": answer_budget(bench)[0],
                                  "do_sample": False, "temperature": 0.0},
            "metric_list": [{"metric": m, "aggregation": "mean",
                             "higher_is_better": metrics.get_metric(m).higher_is_better}
                            for m in scoring.scorer_metric_names(task)],
        })
        extra = "process_results: !function utils.process_results\n"
        write_atomic(out / "utils.py", _utils_source(task, kind.scorer))
    cfg["metadata"] = {"version": 1.0, "harness_benchmark": bench.name, "harness_task": task,
                       "data_sha256": bench.meta.get("data_sha256")}
    text = (f"# Exported by `harness export-lm-eval {benchmark}`; run with\n"
            f"#   lm-eval run --model hf --model_args pretrained=DIR --include_path {out} --tasks {name}"
            f"{' --apply_chat_template' if kind.answered_by == 'generation' else ''}\n")
    text += yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True, width=1000) + extra
    yaml_path = out / f"{name}.yaml"
    write_atomic(yaml_path, text)
    return yaml_path


def _utils_source(task: str, scorer: str) -> str:
    """harness/analysis/scoring.py verbatim, then the lm-eval hook: one scoring code, no harness import."""
    src = Path(scoring.__file__).read_text(encoding="utf-8")
    return (
        "# Written by `harness export-lm-eval`: harness/analysis/scoring.py verbatim, then process_results.\n"
        + src
        + f'''

# -- lm-eval hook ----------------------------------------------------------------------------------
HARNESS_TASK = {task!r}
HARNESS_SCORER = {scorer!r}


def harness_output(text):
    """What the harness's decoder keeps: everything up to the first newline after visible text."""
    stripped = text.lstrip()
    start = len(text) - len(stripped)
    cut = text.find("\\n", start) if stripped else -1
    return text if cut < 0 else text[:cut]


def process_results(doc, results):
    s = score_with(HARNESS_SCORER, harness_output(results[0]), doc["answers"], doc["question"], HARNESS_TASK)
    return {{m: s[m] for m in scorer_metric_names(HARNESS_TASK)}}
''')
