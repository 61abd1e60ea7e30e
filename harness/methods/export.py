"""`harness export RUN_DIR STRATEGY OUT`: what a fine-tuning strategy trained, as a folder other tools load.

An adapter (peft) becomes a standard peft adapter folder (adapter_config.json + adapter_model.safetensors)
whose `base_model_name_or_path` is the model's name (the hub id of a packaged model, e.g.
HuggingFaceTB/SmolLM2-135M-Instruct), not the harness's cache path, so that `PeftModel.from_pretrained`,
vLLM's `--lora-modules` and the hub read it as they read any adapter. Full fine-tuning becomes a
transformers model folder: the base with the trained weights merged in, as safetensors, with its config
and tokenizer. Both get a model card (README.md) with the run's metrics, the data hash and the training
settings, all read from the run's records.

It lives beside the fine-tuning path (harness/methods/) because it reads that path's artifacts (the
adapter folder, `trained.safetensors`) and loads them with the strategy's own `load`, found through the
registry; it runs no model except to merge full fine-tuning's weights into their base.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from harness.core.errors import HarnessError

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def read_results(run_dir: Path) -> dict:
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        raise HarnessError(f"{run_dir}: no results.json here; is it a run folder?")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HarnessError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(results, dict) or not isinstance(results.get("cells"), list):
        raise HarnessError(f"{path}: not a harness results file (no 'cells' list)")
    return results


def pick_cell(results: dict, run_dir: Path, strategy: str, benchmark: str | None = None,
              seed: int | None = None) -> dict:
    """The one cell of `strategy` (narrowed by benchmark and seed when the run has several)."""
    cells = [c for c in results["cells"] if isinstance(c, dict) and c.get("strategy") == strategy]
    if not cells:
        names = sorted({str(c.get("strategy")) for c in results["cells"] if isinstance(c, dict)})
        raise HarnessError(f"{run_dir}: no strategy {strategy!r} in this run; it ran {', '.join(names) or 'nothing'}")
    ran = ", ".join(f"--benchmark {c.get('benchmark')} --seed {c.get('seed')}" for c in cells)
    if benchmark is not None:
        cells = [c for c in cells if c.get("benchmark") == benchmark]
    if seed is not None:
        cells = [c for c in cells if c.get("seed") == seed]
    if len(cells) != 1:
        raise HarnessError(f"{run_dir}: {len(cells)} cells of {strategy!r} match; pick one of: {ran}")
    cell = cells[0]
    if cell.get("status") != "ok":
        raise HarnessError(f"{run_dir}: {strategy} on {cell.get('benchmark')} did not finish ({cell.get('status')}: "
                           f"{cell.get('error')}); nothing was trained to export")
    return cell


def trained_folder(cell: dict, run_dir: Path, results: dict) -> Path:
    """The folder the strategy's trained weights are in (the stage cache, as the cell records it)."""
    strategy = cell["strategy"]
    prepare = cell.get("prepare") or {}
    if not prepare.get("artifact_path") or "trainable_params" not in prepare:
        raise HarnessError(f"{run_dir}: {strategy} trains nothing (no trained weights in its record); export takes "
                           "a fine-tuning strategy (lora, full-ft, ia3, ...)")
    path = Path(prepare["artifact_path"])
    if not (path / "adapter_config.json").is_file() and not (path / "trained.safetensors").is_file():
        argv = " ".join((results.get("run") or {}).get("argv") or ["run", "..."])
        raise HarnessError(f"{run_dir}: the weights {strategy} trained are no longer at {path} (the stage cache was "
                           f"cleared or moved); train them again with `harness {argv} --no-cache --out NEW_DIR` "
                           "and export from NEW_DIR")
    return path


def base_name(results: dict, override: str | None) -> str:
    """What the export names as its base: --base-model, else the model's hub id, else the name it ran as
    (a local folder: its absolute path, which the user has)."""
    if override:
        return override
    model = results.get("model") or {}
    if model.get("hub_id"):
        return model["hub_id"]
    name = str(model.get("name") or "")
    if name and Path(name).expanduser().exists():
        return str(Path(name).expanduser().resolve())
    if name and model.get("path") and Path(model["path"]).name.startswith(name):  # packaged, no hub id known
        raise HarnessError(f"model {name!r} has no known hub id; name the base with --base-model")
    return name or str(model.get("path"))


def export(run_dir, strategy: str, out, *, benchmark: str | None = None, seed: int | None = None,
           base_model: str | None = None) -> Path:
    """Write the export into `out` (new, or an empty folder) under a temporary name, then rename it into
    place: a failure leaves nothing behind. Returns `out`."""
    run_dir, out = Path(run_dir), Path(out)
    results = read_results(run_dir)
    cell = pick_cell(results, run_dir, strategy, benchmark, seed)
    source = trained_folder(cell, run_dir, results)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise HarnessError(f"{out} already exists and is not empty; give a new folder")
    name = base_name(results, base_model)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{os.getpid()}.export.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        if (source / "adapter_config.json").is_file():
            kind = _export_adapter(source, tmp, name)
        else:
            kind = _export_full(source, tmp, cell, results, run_dir)
        (tmp / "README.md").write_text(model_card(results, cell, name, kind, tmp, shown=out.name), encoding="utf-8")
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _export_adapter(source: Path, tmp: Path, name: str) -> str:
    missing = [f for f in ADAPTER_FILES if not (source / f).is_file()]
    if missing:
        raise HarnessError(f"{source}: the adapter folder lacks {', '.join(missing)}")
    for f in sorted(source.iterdir()):
        if f.is_file() and f.name != "README.md":  # peft writes a placeholder card; ours replaces it
            shutil.copy2(f, tmp / f.name)
    config = json.loads((tmp / "adapter_config.json").read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = name
    (tmp / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return "adapter"


def _export_full(source: Path, tmp: Path, cell: dict, results: dict, run_dir: Path) -> str:
    """The base model with the trained weights loaded by the strategy's own `load`, saved whole."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from harness.cache.stages import StageCache
    from harness.methods.registry import build_config, get_spec
    from harness.model.modelstore import resolve_model

    model = results.get("model") or {}
    path = Path(model.get("path") or "")
    if not (path / "config.json").is_file():
        path, _ = resolve_model(str(model.get("name")), progress=False)
    digest = model.get("content_sha256")
    if digest and StageCache().tree_hash(path) != digest:
        raise HarnessError(f"{run_dir}: the base model at {path} is not the one {cell['strategy']} was trained on "
                           f"(content hash differs from results.json's {digest[:12]}...)")
    spec = get_spec(cell["strategy"], cell.get("runs"))
    strat = spec.cls(build_config(spec, cell.get("config") or {}))
    trust = bool((results.get("config") or {}).get("trust_remote_code"))
    hf_logging.disable_progress_bar()
    base = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, use_safetensors=True,
                                                trust_remote_code=trust)
    merged = strat.load(base, source)
    merged.save_pretrained(tmp)
    AutoTokenizer.from_pretrained(path, trust_remote_code=trust).save_pretrained(tmp)
    return "full"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "–" if v is None else str(v)


def model_card(results: dict, cell: dict, name: str, kind: str, folder: Path, shown: str | None = None) -> str:
    """README.md of the export: what it is, how well it did, on what data, how it was trained.
    `folder`: where the export is being written; `shown`: the folder name the card tells users to load."""
    shown = shown or folder.name
    p = cell.get("prepare") or {}
    bench = next((b for b in results.get("benchmarks") or [] if b.get("name") == cell.get("benchmark")), {})
    run = results.get("run") or {}
    env = results.get("environment") or {}
    model = results.get("model") or {}
    strategy = cell["strategy"]
    tags = ["rag-or-finetune", strategy] + ([str(p["peft_type"])] if p.get("peft_type") else [])
    lines = ["---", f"base_model: {name}", f"library_name: {'peft' if kind == 'adapter' else 'transformers'}",
             "tags:"] + [f"- {t}" for t in dict.fromkeys(tags)] + ["---", ""]
    what = "a peft adapter" if kind == "adapter" else "a fine-tuned model (trained weights merged into the base)"
    lines += [f"# {strategy} on {cell.get('benchmark')}", "",
              f"{what.capitalize()} for `{name}`, trained and evaluated by rag-or-finetune run `{run.get('id')}` "
              f"(git {str(env.get('git_commit') or '?')[:12]}{', dirty' if env.get('git_dirty') else ''}, "
              f"finished {run.get('finished') or '?'}).", ""]
    metrics = cell.get("metrics") or {}
    lines += [f"## Results on {cell.get('benchmark')} ({bench.get('test_used', '?')} test questions, seed "
              f"{cell.get('seed')})", "", "| metric | mean | 95% CI | n |", "|---|---|---|---|"]
    for m, v in metrics.items():
        if isinstance(v, dict):
            lines.append(f"| {m} | {_fmt(v.get('mean'))} | [{_fmt(v.get('low'))}, {_fmt(v.get('high'))}] | "
                         f"{_fmt(v.get('n'))} |")
    ans = cell.get("answer") or {}
    lines += ["", f"Answer extraction: {results.get('answer_extraction', '–')}.",
              f"Answering in the harness: p50 latency {_fmt(ans.get('latency_p50_s'))} s, "
              f"{_fmt(ans.get('prompt_tokens_mean'))} prompt tokens per question "
              f"({env.get('device')}, {env.get('dtype')}).", ""]
    lines += ["## Training data", "", f"- benchmark: {cell.get('benchmark')} ({bench.get('task')}), data sha256 "
              f"`{bench.get('data_sha256')}`", f"- source: {bench.get('source') or '–'}; licence: "
              f"{bench.get('license') or '–'}",
              f"- {p.get('train_examples')} train examples ({p.get('eval_examples')} held out for the eval loss), "
              f"train limit {(results.get('config') or {}).get('train_limit') or 'none'}", ""]
    if p.get("phases"):
        lines.insert(-1, "- phases: " + ", ".join(f"{x['task']} ({x['examples']})" for x in p["phases"]))
    settings = _training_settings(cell)
    lines += ["## Training settings", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in settings if v is not None]
    lines += ["", "## Base model", "", f"- `{name}`; the harness ran `{model.get('name')}`, weights sha256 "
              f"`{model.get('content_sha256')}`" + (f", from {model['source']}" if model.get("source") else ""), ""]
    lines += ["## Use", ""] + _use(kind, name, shown, strategy, folder)
    lines += _prompt(cell, bench)
    return "\n".join(lines)


def _training_settings(cell: dict) -> list[tuple[str, object]]:
    """The card's training-settings rows (a None value is left out)."""
    p = cell.get("prepare") or {}
    settings = [("method", p.get("method")), ("peft type", p.get("peft_type")),
                ("options", json.dumps(cell.get("config"), sort_keys=True)),
                ("trainable / total parameters", f"{p.get('trainable_params'):,} / {p.get('total_params'):,}"
                 if p.get("trainable_params") and p.get("total_params") else None),
                ("learning rate", p.get("lr")), ("epochs", p.get("epochs")),
                ("batch size (effective)", p.get("batch_size")), ("micro-batch", p.get("micro_batch_size")),
                ("accumulation steps", p.get("accumulation_steps")), ("precision", p.get("train_precision")),
                ("base weights while training", p.get("base_weights")),
                ("gradient checkpointing", p.get("gradient_checkpointing")), ("optimizer steps", p.get("steps")),
                ("train tokens", p.get("train_tokens")), ("final train loss", p.get("final_train_loss")),
                ("held-out loss per epoch", p.get("eval_loss")), ("seed", p.get("seed")),
                ("training seconds", p.get("train_seconds"))]
    mem = p.get("memory") or {}
    if mem.get("estimate"):
        measured = mem.get("measured") or {}
        seen = measured.get("rise_gpu_mb", measured.get("rise_rss_mb"))
        settings.append(("memory: estimate / measured rise (MB)", f"{mem['estimate'].get('total_mb')} / {_fmt(seen)}"))
    return settings


def _use(kind: str, name: str, shown: str, strategy: str, folder: Path) -> list[str]:
    """How to load and serve the export: with peft on the base model (adapters), or alone."""
    if kind == "adapter":
        return ["```python", "from peft import PeftModel",
                "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                f'base = AutoModelForCausalLM.from_pretrained("{name}")',
                f'model = PeftModel.from_pretrained(base, "{shown}")  # this folder',
                f'tokenizer = AutoTokenizer.from_pretrained("{name}")', "```", "",
                "Served with vLLM's LoRA support (LoRA adapters only), then queried through any "
                "OpenAI-compatible client under the adapter's name:", "", "```",
                f"vllm serve {name} --enable-lora --lora-modules {strategy}={shown}"
                + (f" --max-lora-rank {_lora_rank(folder)}" if _lora_rank(folder) > 16 else ""), "```"]
    return ["```python", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
            f'model = AutoModelForCausalLM.from_pretrained("{shown}")  # this folder',
            f'tokenizer = AutoTokenizer.from_pretrained("{shown}")', "```", "",
            f"Served with vLLM: `vllm serve {shown}`."]


def _prompt(cell: dict, bench: dict) -> list[str]:
    """How the harness asked the questions behind the figures: with retrieved chunks, or closed-book."""
    if cell.get("retrieval"):  # lora-rag, raft: the figures above are with retrieved context
        k = (cell.get("config") or {}).get("k")
        return ["", "## Prompt", "", f"The harness answered with the top {k or 'k'} chunks of the benchmark's "
                "documents retrieved for each question (MiniLM + FAISS) before it, in the RAG prompt of its task "
                "type: this model alone, asked closed-book, does not reproduce the figures above.", ""]
    system = _system_prompt(str(cell.get("benchmark")), str(bench.get("task")))
    return ["", "## Prompt", "", "The harness asked each question closed-book through the model's chat template"
            + (f", with the system prompt `{system}` and the question as the user turn" if system else "")
            + "; the same messages give the answers measured above.", ""]


def _system_prompt(benchmark: str, task: str) -> str | None:
    from harness.methods.prompts import Prompter

    try:
        from harness.data.benchmark import load_benchmark

        return Prompter.for_benchmark(load_benchmark(benchmark)).system
    except (HarnessError, OSError, ValueError):  # a corpus folder known here only by its name
        try:
            return Prompter.for_task(task).system if task != "classification" else None
        except (HarnessError, KeyError, ValueError):
            return None


def _lora_rank(folder: Path) -> int:
    try:
        return int(json.loads((folder / "adapter_config.json").read_text(encoding="utf-8")).get("r") or 0)
    except (OSError, ValueError, TypeError):
        return 0
