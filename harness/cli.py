"""The `harness` command: one small parser function per command group, one cmd_* function per command.

Every user error is a HarnessError: printed as one line, exit status 2 (--debug shows the traceback)."""
from __future__ import annotations

import argparse
import os
import sys

from harness.core.errors import HarnessError
from harness.core.text import terminal


def say(*parts, file=None, flush: bool = False) -> None:
    """print, neutral for the terminal: names, errors and answers from files and models carry no raw
    escape sequence to the screen (harness/core/text.py)."""
    print(*(terminal(str(x)) for x in parts), file=file, flush=flush)


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


def _columns_arg(value: str) -> dict:
    from harness.data.corpus import parse_columns

    try:
        return parse_columns(value)
    except HarnessError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--columns: ")) from None


EPILOG = ("Bad input exits with status 2 and one line naming the file, line and problem; "
          "--debug shows the traceback.")


def build_parser() -> argparse.ArgumentParser:
    from harness import __version__

    p = argparse.ArgumentParser(prog="harness", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Compare prompting, RAG and fine-tuning on the same questions: "
                                            "accuracy, cost and latency, and a recommendation.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_run_parser, _report_parsers, _gate_parser, _listing_parsers, _synth_parser, _add_lmeval_parsers,
                _submit_parser, _export_parser):
        add(sub)
    return p


def _run_parser(sub) -> None:
    r = sub.add_parser("run", help="run strategies against benchmarks and write a report")
    r.add_argument("--config", help="experiment YAML (benchmarks x strategies x seeds); flags override it")
    r.add_argument("--benchmark", help="built-in benchmark name or a corpus folder")
    r.add_argument("--corpus", action="append", default=[], metavar="PATH",
                   help="a corpus folder of your own (see `harness corpus check`); may be repeated")
    r.add_argument("--columns", type=_columns_arg, metavar="FIELD=COLUMN,...",
                   help="columns of the corpus question tables: question=q,answers=a[,doc_ids=..,split=..,id=..] "
                        "(wins over benchmark.json's \"columns\")")
    r.add_argument("--test-ratio", type=float, help="share of unsplit corpus questions used for test (0.3)")
    r.add_argument("--split-seed", type=int, help="seed of that split (default 0; apart from --seed)")
    r.add_argument("--strategies", type=_strategies_arg, help="comma-separated names, or 'all'")
    r.add_argument("--limit", type=_positive, help="use only the first N test questions")
    r.add_argument("--train-limit", type=_positive, help="use only the first M train examples")
    r.add_argument("--model", help="the default model: packaged name (smollm2-135m), a model folder, a GGUF file, a "
                   "Hugging Face hub id already in the local HF cache, an entry of the config's models:, or "
                   "openai:NAME with --base-url (a model an OpenAI-compatible server serves)")
    r.add_argument("--base-url", help="with --model openai:NAME: the server's API root, e.g. http://127.0.0.1:8000/v1 "
                   "(vLLM, llama.cpp's server, TGI, Ollama, transformers serve, a hosted API)")
    r.add_argument("--api-key-env", metavar="VAR", help="with --model openai:NAME: the environment variable that "
                   "holds the API key (the key itself is never written anywhere)")
    r.add_argument("--device", help="auto (default), cpu or cuda")
    r.add_argument("--dtype", help="auto (default: bfloat16 on cuda, float32 on cpu), float32, bfloat16")
    r.add_argument("--batch-size", type=_positive, help="generation batch size (default: 64 on CPU, 128 on CUDA)")
    r.add_argument("--seed", type=int, help="seed (overrides the config's seeds)")
    r.add_argument("--latency-probe", type=int, metavar="N", help="after each strategy's batched answers, answer "
                   "N fixed test questions one at a time: latency, time to first token (default 16; 0: off)")
    r.add_argument("--out", help="run folder (default ./reports/<timestamp>/, or under $HARNESS_REPORTS; "
                   "reports/latest points at the newest)")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.add_argument("--trust-remote-code", action="store_true", default=None,
                   help="run Python code shipped in a model folder (config.json auto_map); off by default, "
                        "and never taken from a run folder by --resume")
    r.add_argument("--no-cache", action="store_true", help="recompute every stage instead of reusing cached ones")
    r.add_argument("--resume", nargs="?", const="latest", metavar="RUN_DIR",
                   help="continue a killed or interrupted run (default: reports/latest) with its own config")
    _decision_args(r)
    r.add_argument("--metric", help="headline metric of the report (default: the benchmark's): f1, exact_match, "
                   "contains, semantic, judge, ...")
    r.add_argument("--metrics", type=_strategies_arg, help="model-based metrics to compute after answering, "
                   "comma-separated: semantic, judge, faithfulness (the headline one always is)")
    r.add_argument("--judge-model", help="the judge's model: a packaged name or a local model folder "
                   "(default: the run's model)")
    r.add_argument("--forgetting", metavar="TASK", help="after each fine-tuning strategy, score this benchmark "
                   "(e.g. boolq) on the base and the tuned model")
    r.add_argument("--forgetting-limit", type=_positive, help="use only the first N questions of the forgetting task")
    g = r.add_argument_group("scale-out (docs/scale-out.md)")
    g.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="where cells run: this process (default) or a Ray cluster, one task per cell")
    g.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a local cluster; 'auto' "
                   "finds a running one)")
    g.add_argument("--max-concurrency", type=_positive, help="with --executor ray: at most N cells at once")
    g.add_argument("--cpus-per-cell", type=_positive, default=1, help="with --executor ray: CPUs each cell asks for")
    g.add_argument("--data-parallel", type=_positive, metavar="N",
                   help="with --executor ray: each cell's generation runs on N ray.data actors")
    g.add_argument("--train-workers", type=_positive, metavar="K",
                   help="with --executor ray: train each fine-tuning cell on K Ray Train workers (default 1)")
    g.add_argument("--train-sharding", choices=("ddp", "fsdp"),
                   help="how those K workers hold the model: ddp (replicated, default) or fsdp (sharded)")
    g.add_argument("--store", help="stage cache shared by all workers: a folder, file:///path, or an fsspec URL "
                   "such as s3://bucket/prefix (default ~/.cache/rag-or-finetune/stages)")


def _report_parsers(sub) -> None:
    rep = sub.add_parser("report", help="rebuild report.md/html/csv of a run folder from its records")
    rep.add_argument("run_dir")
    rep.add_argument("--prices", help="price table YAML (default configs/prices.yaml)")
    rep.add_argument("--metric", help="headline metric (default: the run's); a model-based one (semantic, judge) "
                     "must have been computed by `harness run`")
    rep.add_argument("--labels", help="people's labels of answers, JSONL {\"id\", \"output\", \"right\"} per line: "
                     "the report holds every metric against them (README, \"Choosing a metric\")")
    _decision_args(rep)
    cmp = sub.add_parser("compare", help="paired differences between two runs of the same benchmark")
    cmp.add_argument("run_a")
    cmp.add_argument("run_b")
    cmp.add_argument("--out", help="also write the comparison to this file (.md, or .html)")
    cmp.add_argument("--prices", help="price table YAML (default configs/prices.yaml)")


def _gate_parser(sub) -> None:
    from harness.analysis.metrics import METRIC_REGISTRY

    g = sub.add_parser("gate", help="fail (exit 1) when current results are worse than a baseline's")
    g.add_argument("--baseline", required=True, help="baseline run folder or its results.json")
    g.add_argument("--current", required=True, help="current run folder or its results.json")
    g.add_argument("--margin", type=float, default=0.02, help="allowed drop of the metric (default 0.02)")
    g.add_argument("--metric", default="f1", help=f"per-question metric: {', '.join(METRIC_REGISTRY)} (default f1)")
    g.add_argument("--max-latency-ratio", type=float, help="fail when latency p95 rises beyond this ratio")
    g.add_argument("--max-cost-ratio", type=float, help="fail when cost per query rises beyond this ratio")
    g.add_argument("--junit", help="write JUnit XML here for CI systems")


def _listing_parsers(sub) -> None:
    sub.add_parser("strategies", help="list registered strategies and their options")
    sub.add_parser("benchmarks", help="list built-in benchmarks")
    cor = sub.add_parser("corpus", help="work with a corpus folder of your own")
    cor_sub = cor.add_subparsers(dest="corpus_command", required=True)
    chk = cor_sub.add_parser("check", help="validate a corpus folder and list every problem with file:line")
    chk.add_argument("path")
    chk.add_argument("--columns", type=_columns_arg, metavar="FIELD=COLUMN,...",
                     help="columns of the question table: question=q,answers=a[,doc_ids=..,split=..,id=..]")
    chk.add_argument("--test-ratio", type=float, help="share of unsplit questions used for test (0.3)")
    chk.add_argument("--split-seed", type=int, help="seed of that split (default 0)")
    chk.add_argument("--chunk-words", type=_positive, help="chunk size in words for the count (rag's default)")
    chk.add_argument("--chunk-overlap", type=int, help="chunk overlap in words (rag's default)")


def _synth_parser(sub) -> None:
    s = sub.add_parser("synth", help="write question/answer pairs about documents with a model: a new corpus folder")
    s.add_argument("corpus", help="a corpus folder (documents/ or documents.jsonl) or a folder of document files")
    s.add_argument("--out", required=True, help="the new corpus folder (it must not exist, or be empty)")
    s.add_argument("--n", type=_positive, default=200, help="question/answer pairs to keep (default 200)")
    s.add_argument("--model", default="smollm2-135m", help="packaged model name or a local model directory")
    s.add_argument("--paraphrases", type=int, default=0, metavar="K",
                   help="also write K (0-5) rewordings of each train question (knowledge injection needs them)")
    s.add_argument("--round-trip", action="store_true",
                   help="keep only pairs the model answers right from their own passage (one more call each)")
    s.add_argument("--seed", type=int, default=0, help="passage order and train/test split (default 0)")
    s.add_argument("--test-ratio", type=float, default=0.3, help="share of kept pairs that are test questions")
    s.add_argument("--passage-words", type=_positive, help="words per passage the model sees (default 120)")
    s.add_argument("--dedup-threshold", type=float, help="MiniLM cosine at which two questions are duplicates (0.9)")
    s.add_argument("--max-passages", type=_positive, help="passages tried at most (default: as many as it takes)")
    s.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    s.add_argument("--dtype", default="auto")
    s.add_argument("--batch-size", type=_positive, help="generation batch size (default: the device's)")
    s.add_argument("--trust-remote-code", action="store_true", help="run Python code shipped in the model folder")
    s.add_argument("--quiet", action="store_true", help="no progress lines")


def _submit_parser(sub) -> None:
    s = sub.add_parser("submit", help="submit `harness run --executor ray` to a Ray cluster as a job",
                       usage="harness submit [--address URL] [--dry-run] CONFIG [harness run flags...]")
    s.add_argument("--address", help="the cluster's dashboard address, e.g. http://head:8265 (default $RAY_ADDRESS)")
    s.add_argument("--dry-run", action="store_true", help="print the ray job submit command, do not run it")
    s.add_argument("config", help="experiment YAML")
    s.add_argument("run_args", nargs=argparse.REMAINDER, help="everything after CONFIG goes to `harness run`")


def _export_parser(sub) -> None:
    e = sub.add_parser("export", help="write what a fine-tuning strategy trained as a peft adapter or model folder")
    e.add_argument("run_dir", help="run folder (holds results.json)")
    e.add_argument("strategy", help="the fine-tuning strategy (or variant) whose trained weights to export")
    e.add_argument("out", help="a new (or empty) folder for the adapter or model, with its model card")
    e.add_argument("--benchmark", help="which benchmark's cell, when the run has several")
    e.add_argument("--seed", type=int, help="which seed's cell, when the run has several")
    e.add_argument("--base-model", help="name written as the base (default: the model's hub id, e.g. "
                   "HuggingFaceTB/SmolLM2-135M-Instruct for smollm2-135m, or a local model's folder)")


def cmd_export(args) -> int:
    from harness.methods.export import export

    out = export(args.run_dir, args.strategy, args.out, benchmark=args.benchmark, seed=args.seed,
                 base_model=args.base_model)
    kind = "peft adapter" if (out / "adapter_config.json").is_file() else "model (safetensors)"
    print(f"wrote {out}: {kind} and README.md (model card)")
    return 0


def _nonneg(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not x >= 0 or x == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value!r}")
    return x


def _fraction(value: str) -> float:
    x = _nonneg(value)
    if not 0 < x <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {value!r}")
    return x


NONE = "none"  # a decision flag given as `none`: unset the run's value (no bar, no target)


def _nonneg_or_none(value: str):
    return NONE if value.strip().lower() in ("none", "null") else _nonneg(value)


def _decision_args(parser) -> None:
    g = parser.add_argument_group("decision inputs (override the run YAML's decision: block; README: the cost model)")
    g.add_argument("--monthly-queries", metavar="Q", type=int, help="expected queries per month (default 100000)")
    g.add_argument("--refresh-days", metavar="DAYS", type=_nonneg,
                   help="days between knowledge refreshes, 0 = never (default 30)")
    g.add_argument("--latency-target", metavar="S", type=_nonneg_or_none, help="p95 latency target in seconds, or none "
                   "(default: none)")
    g.add_argument("--margin", metavar="D", type=_nonneg,
                   help="largest drop of the headline metric from the most accurate accepted, absolute (default 0.02)")
    g.add_argument("--min-quality", metavar="BAR", type=_nonneg_or_none,
                   help="quality bar on the headline metric, or none (default: none)")
    g.add_argument("--cost-tolerance", metavar="F", type=_nonneg,
                   help="monthly costs within this fraction of the cheapest count as equal (default 0.10)")
    g.add_argument("--min-replicas", metavar="R", type=_nonneg,
                   help="serving machines always on, 0 = scale to zero (default 1)")
    g.add_argument("--target-utilization", metavar="U", type=_fraction,
                   help="share of a replica's capacity used on average (default 0.5)")
    g.add_argument("--hours-per-month", metavar="H", type=_nonneg,
                   help="hours a month a replica is billed (default 730)")
    g.add_argument("--measured-on", metavar="MACHINE", help="machine of the price table the run's timings stand "
                   "for (default: by the run's environment)")


DECISION_FLAGS = {"monthly_queries": "monthly_queries", "refresh_days": "refresh_days",
                  "latency_target_s": "latency_target", "margin": "margin", "min_quality": "min_quality",
                  "cost_tolerance": "cost_tolerance", "min_replicas": "min_replicas",
                  "target_utilization": "target_utilization", "hours_per_month": "hours_per_month",
                  "measured_on": "measured_on"}  # decision key -> argparse dest


def _decision_flags(args) -> dict:
    flags = {key: getattr(args, dest) for key, dest in DECISION_FLAGS.items()}
    flags = {k: (None if v == NONE else v) for k, v in flags.items() if v is not None}
    if flags.get("refresh_days") == 0:
        flags["refresh_days"] = None  # 0 = never: the same as null in the YAML
    return flags


def cmd_run(args) -> int:
    from harness.engine.scaleout.executors import executor_for, store_root

    store = store_root(args.store)
    with executor_for(args) as executor:
        return _run(args, executor=executor, store=store)


def _run(args, **where) -> int:
    from harness.engine.config import make_config
    from harness.engine.runner import run
    from harness.methods.registry import all_strategies

    if args.resume is not None:
        given = [f"--{k.replace('_', '-')}" for k in ("config", "benchmark", "strategies", "limit", "train_limit",
                 "model", "base_url", "api_key_env", "device", "dtype", "batch_size", "seed", "out", "train_workers",
                 "train_sharding", "columns", "metric", "metrics", "judge_model", "latency_probe")
                 if getattr(args, k) is not None]
        if given:
            raise HarnessError(f"--resume continues a run with its own config; drop {', '.join(given)}")
        return _finish_run(run(resume=args.resume, cache=not args.no_cache, progress=_progress(args),
                               log=lambda m: say(m, flush=True), trust_remote_code=bool(args.trust_remote_code),
                               **where))
    from harness.model.catalog import endpoint_entry

    strategies = args.strategies
    if strategies == ("all",):
        strategies = tuple(all_strategies())
    model, models = args.model, None
    served = endpoint_entry(args.model, args.base_url, args.api_key_env)
    if served:
        model, models = served[0], {served[0]: served[1]}
    overrides = {
        "benchmarks": ((args.benchmark,) if args.benchmark else ()) + tuple(args.corpus) or None,
        "strategies": strategies, "test_ratio": args.test_ratio, "split_seed": args.split_seed,
        "columns": args.columns,
        "limit": args.limit, "train_limit": args.train_limit, "model": model, "models": models, "device": args.device,
        "dtype": args.dtype, "batch_size": args.batch_size, "out": args.out,
        "seeds": (args.seed,) if args.seed is not None else None,
        "trust_remote_code": args.trust_remote_code,
        "forgetting": args.forgetting, "forgetting_limit": args.forgetting_limit,
        "train_workers": args.train_workers, "train_sharding": args.train_sharding,
        "metric": args.metric, "metrics": args.metrics,
        "latency_probe": args.latency_probe,
    }
    cfg = make_config(args.config, overrides)
    if args.judge_model:
        object.__setattr__(cfg, "judge", {**cfg.judge, "model": args.judge_model})
        cfg.__post_init__()
    if _decision_flags(args):
        from harness.engine.config import check_decision

        decision = {**cfg.decision, **_decision_flags(args)}
        check_decision(decision)
        object.__setattr__(cfg, "decision", decision)
    if args.strategies and cfg.options:  # options for strategies dropped by --strategies are not errors
        object.__setattr__(cfg, "options", {k: v for k, v in cfg.options.items() if k in cfg.strategies})
    return _finish_run(run(cfg, progress=_progress(args), log=lambda m: say(m, flush=True),
                           cache=not args.no_cache, **where))


def _progress(args) -> bool:
    return not args.quiet and sys.stderr.isatty() or bool(os.environ.get("HARNESS_PROGRESS"))


def _finish_run(run_dir) -> int:
    from harness.report.document import console_table

    say()
    say(console_table(run_dir))
    say(f"\nreport: {run_dir / 'report.md'}  (also report.html, summary.csv, results.json, predictions.jsonl)")
    return 0


def cmd_submit(args) -> int:
    from harness.engine.scaleout.executors import submit

    return submit(args.config, args.address, args.run_args, dry_run=args.dry_run)


def cmd_gate(args) -> int:
    from harness.report.gate import gate

    return gate(args.baseline, args.current, margin=args.margin, metric=args.metric,
                max_latency_ratio=args.max_latency_ratio, max_cost_ratio=args.max_cost_ratio, junit=args.junit,
                out=say)


def cmd_strategies(_args) -> int:
    from harness.methods.registry import all_strategies, describe_config

    for name, spec in all_strategies().items():
        say(f"{name:14s} {spec.description}")
        opts = ", ".join(f"{k}={'(preset)' if v is None and k == 'lr' else v}"
                         for k, v in describe_config(spec.config_cls))
        say(f"{'':14s} options: {opts or '(none)'}")
    return 0


def cmd_benchmarks(_args) -> int:
    from harness.data.benchmark import builtin_benchmarks, load_benchmark

    for name in builtin_benchmarks():
        b = load_benchmark(name)
        say(f"{name:18s} {b.task}: {len(b.documents)} documents, {len(b.split('train'))} train, "
              f"{len(b.split('test'))} test questions. {b.meta.get('description', '')}")
    return 0


def cmd_corpus(args) -> int:
    """`harness corpus check PATH`: exit 0 with a summary, or exit 2 listing every problem."""
    from harness.data.chunks import DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_WORDS
    from harness.data.corpus import (
        DEFAULT_SPLIT_SEED,
        DEFAULT_TEST_RATIO,
        CorpusError,
        check_corpus,
        summary,
    )

    words = args.chunk_words or DEFAULT_CHUNK_WORDS
    overlap = DEFAULT_CHUNK_OVERLAP if args.chunk_overlap is None else args.chunk_overlap
    if not 0 <= overlap < words:
        raise HarnessError(f"--chunk-overlap must be >= 0 and smaller than the chunk size ({words}), got {overlap}")
    result = check_corpus(args.path, DEFAULT_SPLIT_SEED if args.split_seed is None else args.split_seed,
                          DEFAULT_TEST_RATIO if args.test_ratio is None else args.test_ratio, columns=args.columns)
    if result.problems:
        for w in result.skipped:
            print(f"skipped: {w}", file=sys.stderr)
        for w in result.warnings:
            say(f"warning: {w}", file=sys.stderr)
        raise CorpusError(result.root, result.problems)
    say(summary(result, words, overlap))
    return 0


def cmd_synth(args) -> int:
    """`harness synth CORPUS --out NEW`: generated questions, filtered, as a corpus folder + synth.json."""
    from harness.data import synth
    from harness.data.corpus import load_documents_only

    given = {k: getattr(args, k) for k in ("passage_words", "dedup_threshold", "max_passages")
             if getattr(args, k) is not None}
    config = synth.SynthConfig(n=args.n, seed=args.seed, paraphrases=args.paraphrases, round_trip=args.round_trip,
                               test_ratio=args.test_ratio, **given)
    synth.check_out(args.out)
    _, skipped, _ = load_documents_only(args.corpus)  # bad input stops here, before the model loads
    log = (lambda m: None) if args.quiet else (lambda m: print(m, flush=True))
    for p in skipped:
        log(f"skipped: {p}")
    from harness.model.chat import LocalChatModel
    from harness.model.runtime import Runtime

    runtime = Runtime(args.model, device=args.device, dtype=args.dtype, progress=not args.quiet,
                      trust_remote_code=args.trust_remote_code)
    record = synth.synthesize(args.corpus, args.out, LocalChatModel(runtime, args.batch_size),
                              synth.MiniLMEncoder(runtime.device), config, log=log)
    c = record["counts"]
    print(f"wrote {args.out}: {c['kept']} question/answer pairs kept of {c['generated']} generated "
          f"(keep rate {c['keep_rate']:.1%}); generation record {args.out}/synth.json\n"
          f"next: harness corpus check {args.out}")
    return 0


def cmd_report(args) -> int:
    from pathlib import Path

    from harness.core.records import run_lock
    from harness.report.document import write_reports

    run_dir = Path(args.run_dir)
    if not (run_dir / "results.json").exists():  # one that is not a regular file is refused by the reader
        raise HarnessError(f"{run_dir}: no results.json here; is it a run folder?")
    with run_lock(run_dir):  # a live run (or another report) of the folder is writing it: stop at once
        results = write_reports(run_dir, args.prices, _decision_flags(args), args.metric, args.labels)
    for b in results["benchmarks"]:
        gold = b.get("gold") or {}
        say(f"{b['name']}: scored against " + (f"{gold['path']} (data sha256 {gold['data_sha256'][:12]})"
                                               if gold.get("path") else "the gold answers in predictions.jsonl"))
    say(f"wrote {run_dir / 'report.html'}, report.md, summary.csv, results.json")
    return 0


def cmd_compare(args) -> int:
    from harness.report.compare import compare, write_compare
    from harness.report.render import render_markdown

    doc = compare(args.run_a, args.run_b, args.prices)
    say(render_markdown(doc))
    if args.out:
        write_compare(doc, args.out)
        say(f"wrote {args.out}")
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
    from harness.lmeval.export import export_task

    path = export_task(args.benchmark, args.out_dir, name=args.name)
    say(f"wrote {path} (task {path.stem}); run it with:\n"
          f"  lm-eval run --model hf --model_args pretrained=MODEL_DIR --include_path {path.parent} "
          f"--tasks {path.stem} --apply_chat_template")
    return 0


def cmd_lm_eval(args) -> int:
    from harness.core.yamlio import yaml_value

    options = {}
    for item in args.option:  # checked before lm-eval is imported (10-25 s)
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise HarnessError(f"--option {item!r}: expected KEY=VALUE")
        options[key.strip()] = yaml_value(value, f"--option {key.strip()}")
    from harness.lmeval.model import results_table, run_lm_eval

    res, path = run_lm_eval(args.strategy, args.benchmark, args.tasks, args.include_path, limit=args.limit,
                            model=args.model, device=args.device, dtype=args.dtype, train_limit=args.train_limit,
                            seed=args.seed, options=options, apply_chat_template=not args.no_chat_template,
                            num_fewshot=args.num_fewshot, batch_size=args.batch_size, out=args.out,
                            progress=sys.stderr.isatty())
    say(results_table(res))
    say(f"results: {path}")
    return 0


# the commands that read run records, and the arguments that name them
RECORD_COMMANDS = {"report": ("run_dir",), "compare": ("run_a", "run_b"), "gate": ("baseline", "current")}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is ever fetched from a hub at run time
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    commands = {"run": cmd_run, "strategies": cmd_strategies, "benchmarks": cmd_benchmarks, "report": cmd_report,
                "corpus": cmd_corpus, "synth": cmd_synth, "gate": cmd_gate, "compare": cmd_compare,
                "export-lm-eval": cmd_export_lm_eval, "lm-eval": cmd_lm_eval, "submit": cmd_submit,
                "export": cmd_export}
    try:
        return commands[args.command](args)
    except HarnessError as exc:
        if args.debug:
            raise
        # one line, whatever the input held: line breaks and control characters are shown escaped
        print(f"error: {terminal(str(exc), newlines=False)}", file=sys.stderr)
        return exc.exit_code
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, ArithmeticError, RecursionError) as exc:
        # report, compare and gate read records a person or another program may have written: a field
        # the strict reader does not know to check still gives one line and exit 2, never a traceback and
        # never exit 1, which a CI job reads as "the gate failed"
        if args.debug or args.command not in RECORD_COMMANDS:
            raise
        runs = ", ".join(str(getattr(args, k)) for k in RECORD_COMMANDS[args.command])
        print(f"error: {terminal(runs, newlines=False)}: the run records could not be used "
              f"({type(exc).__name__}: {terminal(str(exc), newlines=False)}); a field is missing or has an "
              "unexpected type (--debug shows where)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished cells are kept in the run folder's results.json; "
              "`harness run --resume` continues it", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
