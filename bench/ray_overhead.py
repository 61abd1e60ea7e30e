"""What the Ray executor costs over the local one: cluster start, and the time each cell adds.

    python -m bench.ray_overhead [--cells 4]

A local cluster (`ray.init(num_cpus=2, include_dashboard=False)`) is started and timed; then the same
matrix of zero-shot cells (the tiny test model built in tests/conftest.py, 1 question, 4 new tokens,
so the cell's own work is small and the overhead shows) runs with the local executor, with the Ray
executor one cell at a time, with the Ray executor two at a time, and once more with every cell
complete in the store. Each run has its own empty store. Prints seconds; the numbers in
docs/scale-out.md came from this script.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ray_overhead")
    p.add_argument("--cells", type=int, default=4, help="zero-shot cells (seeds) in the matrix")
    args = p.parse_args(argv)
    repo = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(repo / "tests"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import ray
    from conftest import build_tiny_model, write_corpus

    from harness.engine.config import RunConfig
    from harness.engine.runner import run
    from harness.engine.scaleout.executors import RayExecutor

    tmp = Path(tempfile.mkdtemp(prefix="ray-overhead-"))
    os.environ["HARNESS_CACHE"] = str(tmp / "cache")
    model, corpus = build_tiny_model(tmp / "model"), write_corpus(tmp / "tiny")

    def matrix(name, executor=None, store=None):
        cfg = RunConfig(benchmarks=(str(corpus),), strategies=("zero-shot",), seeds=tuple(range(args.cells)),
                        model=str(model), limit=1, max_new_tokens=4, out=str(tmp / "runs" / name))
        t0 = time.perf_counter()
        run(cfg, progress=False, log=lambda m: None, executor=executor, store=tmp / "stores" / (store or name))
        return time.perf_counter() - t0

    local = matrix("local")
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    start = time.perf_counter() - t0
    try:
        with RayExecutor(max_concurrency=1) as ex:
            serial = matrix("ray-serial", ex)  # the first cell also starts a worker process
            warm = matrix("ray-warm", ex)      # the same cells again on a fresh store: workers already up
        with RayExecutor(max_concurrency=2) as ex:
            parallel = matrix("ray-parallel", ex)
        with RayExecutor() as ex:
            skipped = matrix("ray-skip", ex, store="ray-parallel")
            assert ex.submitted == 0
    finally:
        t0 = time.perf_counter()
        ray.shutdown()
        stop = time.perf_counter() - t0
    n = args.cells
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; {n} zero-shot cells, tiny model")
    print(f"ray.init(num_cpus=2) local cluster start: {start:.1f} s   shutdown: {stop:.1f} s")
    print(f"local executor:                {local:6.1f} s  ({local / n:.1f} s/cell)")
    print(f"ray, 1 cell at a time:         {serial:6.1f} s  ({serial / n:.1f} s/cell; "
          f"+{(serial - local) / n:.1f} s/cell)")
    print(f"ray, again, workers warm:      {warm:6.1f} s  ({warm / n:.2f} s/cell)")
    print(f"ray, 2 at a time:              {parallel:6.1f} s  ({parallel / n:.1f} s/cell)")
    print(f"ray, every cell in the store:  {skipped:6.1f} s  (nothing submitted)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
