"""Compare prompting, RAG and fine-tuning on the same questions: accuracy, cost and latency.

The Python face of the `harness` command:

    from harness import RunConfig, read_results, run

    run_dir = run(RunConfig(strategies=("zero-shot", "rag"), limit=20), progress=False)
    results = read_results(run_dir)   # results.json, every figure recomputed from the records

Strategy files import from `harness.api` instead.
"""

__version__ = "0.1.0"
__all__ = ["RunConfig", "read_results", "run", "__version__"]


def __getattr__(name):  # imported on first use, so `import harness` (and `harness --help`) stays instant
    if name == "RunConfig":
        from harness.engine.config import RunConfig

        return RunConfig
    if name == "run":
        from harness.engine.runner import run

        return run
    if name == "read_results":
        return read_results
    raise AttributeError(f"module 'harness' has no attribute {name!r}")


def read_results(run_dir) -> dict:
    """A run folder's results.json, with its `analysis` section (metrics, statistics, costs and the
    recommendation) recomputed from predictions.jsonl; nothing is written."""
    from pathlib import Path

    from harness.analysis.recompute import analyze

    return analyze(Path(run_dir))[0]
