"""Command line: `harness run`, `harness strategies`, `harness benchmarks`, `harness report`."""
from __future__ import annotations

import argparse
import os
import sys

from .errors import HarnessError


def _strategies_arg(value: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    if not names:
        raise argparse.ArgumentTypeError("give at least one strategy name")
    return names


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harness", description=__doc__)
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run strategies against a benchmark and write a report")
    r.add_argument("--config", help="experiment YAML (benchmarks x strategies x seeds); flags override it")
    r.add_argument("--benchmark", help="built-in benchmark name or a corpus folder")
    r.add_argument("--strategies", type=_strategies_arg, help="comma-separated names, or 'all'")
    r.add_argument("--limit", type=_positive, help="use only the first N test questions")
    r.add_argument("--train-limit", type=_positive, help="use only the first M train examples")
    r.add_argument("--model", help="packaged model name (smollm2-135m) or a local model directory")
    r.add_argument("--device", help="auto (default), cpu or cuda")
    r.add_argument("--dtype", help="auto (default: bfloat16 on cuda, float32 on cpu), float32, bfloat16")
    r.add_argument("--batch-size", type=_positive, help="generation batch size (default 16)")
    r.add_argument("--seed", type=int, help="seed (overrides the config's seeds)")
    r.add_argument("--out", help="run folder (default reports/<timestamp>/; reports/latest points at the newest)")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.add_argument("--forgetting", metavar="TASK",
                   help="after each fine-tuning strategy, score this benchmark (default boolq) on base and tuned model")
    r.add_argument("--forgetting-limit", type=_positive, help="use only the first N questions of the forgetting task")

    sub.add_parser("strategies", help="list registered strategies and their options")
    sub.add_parser("benchmarks", help="list built-in benchmarks")
    _add_lmeval_parsers(sub)
    rep = sub.add_parser("report", help="rebuild report.md/html/csv of a run folder from its records")
    rep.add_argument("run_dir")
    return p


def cmd_run(args) -> int:
    from .config import make_config
    from .registry import all_strategies
    from .report import console_table
    from .runner import run

    strategies = args.strategies
    if strategies == ("all",):
        strategies = tuple(all_strategies())
    overrides = {
        "benchmarks": (args.benchmark,) if args.benchmark else None, "strategies": strategies,
        "limit": args.limit, "train_limit": args.train_limit, "model": args.model, "device": args.device,
        "dtype": args.dtype, "batch_size": args.batch_size, "out": args.out,
        "seeds": (args.seed,) if args.seed is not None else None,
        "forgetting": args.forgetting, "forgetting_limit": args.forgetting_limit,
    }
    cfg = make_config(args.config, overrides)
    if args.strategies and cfg.options:  # options for strategies dropped by --strategies are not errors
        object.__setattr__(cfg, "options", {k: v for k, v in cfg.options.items() if k in cfg.strategies})
    run_dir = run(cfg, progress=not args.quiet and sys.stderr.isatty() or bool(os.environ.get("HARNESS_PROGRESS")),
                  log=lambda m: print(m, flush=True))
    print()
    print(console_table(run_dir))
    print(f"\nreport: {run_dir / 'report.md'}  (also report.html, summary.csv, results.json, predictions.jsonl)")
    return 0


def cmd_strategies(_args) -> int:
    from .registry import all_strategies, describe_config

    for name, spec in all_strategies().items():
        print(f"{name:14s} {spec.description}")
        opts = ", ".join(f"{k}={'(preset)' if v is None and k == 'lr' else v}"
                         for k, v in describe_config(spec.config_cls))
        print(f"{'':14s} options: {opts or '(none)'}")
    return 0


def cmd_benchmarks(_args) -> int:
    from .benchmark import builtin_benchmarks, load_benchmark

    for name in builtin_benchmarks():
        b = load_benchmark(name)
        print(f"{name:18s} {b.task}: {len(b.documents)} documents, {len(b.split('train'))} train, "
              f"{len(b.split('test'))} test questions. {b.meta.get('description', '')}")
    return 0


def cmd_report(args) -> int:
    from pathlib import Path

    from .report import write_reports

    run_dir = Path(args.run_dir)
    if not (run_dir / "results.json").is_file():
        raise HarnessError(f"{run_dir}: no results.json here; is it a run folder?")
    write_reports(run_dir)
    print(f"wrote {run_dir / 'report.md'}, report.html, summary.csv")
    return 0


def _add_lmeval_parsers(sub) -> None:
    e = sub.add_parser("export-lm-eval", help="write a benchmark as an lm-eval task (YAML + JSONL + utils.py)")
    e.add_argument("benchmark", help="built-in benchmark name or a corpus folder")
    e.add_argument("out_dir", help="an empty (or new) folder; pass it to lm-eval as --include_path")
    e.add_argument("--name", help="task name (default harness_<benchmark>)")
    m = sub.add_parser("lm-eval", help="evaluate a prepared harness strategy on lm-eval tasks")
    m.add_argument("--strategy", required=True, help="registered strategy name")
    m.add_argument("--benchmark", help="the benchmark the strategy prepares on (its documents, train split)")
    m.add_argument("--tasks", required=True, type=_strategies_arg, help="comma-separated lm-eval task names")
    m.add_argument("--include-path", action="append", help="folder of lm-eval task YAMLs (repeatable)")
    m.add_argument("--limit", type=_positive, help="use only the first N documents of each task")
    m.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="a strategy option (repeatable)")
    m.add_argument("--num-fewshot", type=int, help="lm-eval few-shot examples")
    m.add_argument("--no-chat-template", action="store_true", help="plain-text prompts instead of the chat template")
    m.add_argument("--model", help="packaged model name or a local model directory")
    m.add_argument("--device", default="auto")
    m.add_argument("--dtype", default="auto")
    m.add_argument("--batch-size", type=_positive)
    m.add_argument("--train-limit", type=_positive)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--out", help="JSON file for the results (default reports/lm-eval/<time>-<strategy>.json)")


def cmd_export_lm_eval(args) -> int:
    from .lmeval_bridge import export_task

    path = export_task(args.benchmark, args.out_dir, name=args.name)
    print(f"wrote {path} (task {path.stem}); run it with:\n"
          f"  lm-eval run --model hf --model_args pretrained=MODEL_DIR --include_path {path.parent} "
          f"--tasks {path.stem} --apply_chat_template")
    return 0


def cmd_lm_eval(args) -> int:
    import yaml

    from .lmeval_bridge import results_table, run_lm_eval

    options = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise HarnessError(f"--option {item!r}: expected KEY=VALUE")
        options[key.strip()] = yaml.safe_load(value)
    res, path = run_lm_eval(args.strategy, args.benchmark, args.tasks, args.include_path, limit=args.limit,
                            model=args.model, device=args.device, dtype=args.dtype, train_limit=args.train_limit,
                            seed=args.seed, options=options, apply_chat_template=not args.no_chat_template,
                            num_fewshot=args.num_fewshot, batch_size=args.batch_size, out=args.out,
                            progress=sys.stderr.isatty())
    print(results_table(res))
    print(f"results: {path}")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is ever fetched from a hub at run time
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    commands = {"run": cmd_run, "strategies": cmd_strategies, "benchmarks": cmd_benchmarks, "report": cmd_report,
                "export-lm-eval": cmd_export_lm_eval, "lm-eval": cmd_lm_eval}
    try:
        return commands[args.command](args)
    except HarnessError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: finished strategies are kept in the run folder's results.json", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
