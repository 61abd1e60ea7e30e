"""What training a fine-tuning cell on 2 Ray Train workers costs over training it in the cell's own
Ray worker, on the tiny test model (the training itself is well under a second, so the overhead shows).

    python -m bench.raytrain_overhead

A local cluster (`ray.init(num_cpus=2, include_dashboard=False)`) runs one LoRA cell (2 epochs on 8
train questions, 2 test questions) with --train-workers 1, then the same cell with --train-workers 2,
each on its own empty store. Prints the run's wall time, the cell's prepare time (model load + training
+ adapter save) and, for 2 workers, the TorchTrainer.fit() time; docs/scale-out.md quotes its output.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    repo = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(repo / "tests"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import ray
    from conftest import build_tiny_model, write_corpus

    from harness.engine.config import RunConfig
    from harness.engine.runner import run
    from harness.engine.scaleout.executors import RayExecutor

    tmp = Path(tempfile.mkdtemp(prefix="raytrain-overhead-"))
    os.environ["HARNESS_CACHE"] = str(tmp / "cache")
    model, corpus = build_tiny_model(tmp / "model"), write_corpus(tmp / "tiny")

    def cell(workers, executor):
        cfg = RunConfig(benchmarks=(str(corpus),), strategies=("lora",), model=str(model), limit=2, train_limit=8,
                        max_new_tokens=6, options={"lora": {"epochs": 2, "batch_size": 4, "dropout": 0.0}},
                        train_workers=workers, out=str(tmp / "runs" / f"k{workers}"))
        t0 = time.perf_counter()
        run_dir = run(cfg, progress=False, log=lambda m: None, executor=executor, store=tmp / "stores" / f"k{workers}")
        wall = time.perf_counter() - t0
        [c] = json.loads((run_dir / "results.json").read_text())["cells"]
        assert c["status"] == "ok", c.get("error")
        return wall, c["prepare"]

    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    try:
        with RayExecutor() as ex:
            one, p1 = cell(1, ex)
            two, p2 = cell(2, ex)
    finally:
        ray.shutdown()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; 1 lora cell, tiny model")
    print(f"1 worker (trains in the cell):  run {one:5.1f} s, cell prepare {p1['wall_s']:5.1f} s, "
          f"training {p1['train_seconds']:.2f} s, final loss {p1['final_train_loss']}")
    print(f"2 Ray Train workers:            run {two:5.1f} s, cell prepare {p2['wall_s']:5.1f} s, "
          f"fit() {p2['ray_train']['fit_s']:5.1f} s, training {p2['train_seconds']:.2f} s, "
          f"final loss {p2['final_train_loss']}")
    print(f"added by Ray Train: {two - one:+.1f} s per training cell")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
