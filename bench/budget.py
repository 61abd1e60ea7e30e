"""Time budget of the default runs, measured end to end as a user runs them.

    python -m bench.budget [--cold]

Runs `harness run --config configs/default.yaml` (budget 15 min on a 2-core CPU, first model
conversion included with --cold) and `harness run --limit 20 --train-limit 64` (budget 3 min),
each in a fresh process, and prints wall time, peak memory and the ratio to its budget.
Absolute seconds vary ~25% between runs on shared machines; the ratio is the figure to read.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = [
    ("default comparison", ["--config", "configs/default.yaml"], 15 * 60),
    ("quick look", ["--limit", "20", "--train-limit", "64"], 3 * 60),
]


def run_one(args: list[str], env: dict, out: Path) -> tuple[float, float, dict]:
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run([sys.executable, "-m", "harness.cli", "run", *args, "--out", str(out), "--quiet"],
                   cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    peak = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before) / 1024
    return wall, peak, json.loads((out / "results.json").read_text())


def _timed_run(cmd: list[str], env: dict) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process, from its own rusage."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    return time.perf_counter() - t0, usage.ru_maxrss / 1024


def end_to_end() -> list[dict]:
    """The default `make demo` run, then the same run again in a fresh process with the caches
    the first one left (model conversion, and whatever the harness caches between runs)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(("default run", "second run (cached)")):
            cmd = [sys.executable, "-m", "harness", "run", "--config", "configs/default.yaml",
                   "--out", str(Path(tmp) / f"run{i}"), "--quiet"]
            wall, peak = _timed_run(cmd, env)
            rows.append({"run": name, "wall_s": round(wall, 1), "peak_rss_mb": round(peak, 1),
                         "budget_s": 15 * 60})
            print(f"{name}: {wall:.0f} s, peak RSS {peak:.0f} MB", flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cold", action="store_true", help="use an empty model cache, so the GGUF conversion counts")
    ap.add_argument("--only", choices=[r[0].split()[0] for r in RUNS], help="run just one of the two")
    args = ap.parse_args(argv)
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.cold:
            env["HARNESS_CACHE"] = str(Path(tmp) / "cache")
        for i, (name, flags, budget) in enumerate(RUNS):
            if args.only and not name.startswith(args.only):
                continue
            wall, peak, res = run_one(flags, env, Path(tmp) / f"run{i}")
            stages = {c["strategy"]: round(c.get("prepare", {}).get("wall_s", 0)
                                           + c.get("answer", {}).get("wall_s", 0), 1)
                      for c in res["cells"]}
            rows.append((name, wall, budget, peak, stages))
            print(f"{name}: {wall:.0f} s of a {budget} s budget (ratio {wall / budget:.2f}), "
                  f"peak RSS {peak:.0f} MB; per strategy s: {stages}", flush=True)
    return 0 if all(w <= b for _, w, b, _, _ in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
