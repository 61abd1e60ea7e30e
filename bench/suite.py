"""`python -m bench` / `make bench`: every performance measurement, each in its own process, with
headline figures as ratios measured in the same run. Writes bench/results.json and
docs/performance.md.

    python -m bench                 # the suite (~15 min on 2 idle cores)
    python -m bench --quick         # smaller counts, one repetition: a smoke run
    python -m bench --only generation,training --reps 3
    python -m bench --e2e           # also the default `make demo` run, twice (~25 min more)
    python -m bench --dry-run --model DIR --benchmark DIR   # code paths on a fixture model, in-process
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from .common import Options

ROOT = Path(__file__).resolve().parent.parent
MEASUREMENTS = ("generation", "prefill", "training", "embedding", "scaling")
QUICK_SCALE = 0.34
DRY_SIZES = (100, 400)


def run_one(name: str, opts: Options) -> dict:
    from . import embedding, generation, prefill, scaling, train_speed

    module = {"generation": generation, "prefill": prefill, "training": train_speed,
              "embedding": embedding, "scaling": scaling}[name]
    if name == "embedding" and opts.dry_run:
        return module.measure(opts, sizes=DRY_SIZES)
    return module.measure(opts)


def in_subprocess(name: str, opts: Options, log) -> dict:
    """One process per comparison: no measurement inherits another's allocator state or threads."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        cmd = [sys.executable, "-m", "bench.suite", "--one", name, "--options", json.dumps(dataclasses.asdict(opts)),
               "--json", str(out)]
        env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        if proc.returncode != 0 or not out.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
            raise RuntimeError(f"bench.{name} exited with {proc.returncode}:\n" + "\n".join(tail))
        return json.loads(out.read_text())


def machine() -> dict:
    import platform

    import torch

    cpu = platform.processor()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "torch": torch.__version__,
            "python": platform.python_version()}


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def parse(argv):
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="about a third of the work, one repetition")
    ap.add_argument("--dry-run", action="store_true",
                    help="tiny counts in this one process; with --model/--benchmark of a fixture, seconds")
    ap.add_argument("--reps", type=int, help="interleaved repetitions per comparison (default 2; --quick 1)")
    ap.add_argument("--only", help=f"comma-separated subset of: {', '.join(MEASUREMENTS)}")
    ap.add_argument("--e2e", action="store_true", help="also time the default `make demo` run and a second run")
    ap.add_argument("--bf16", choices=("auto", "on", "off"), default="auto",
                    help="also measure prefill in bf16: auto (only where a bf16 matmul probe is at least a "
                         "quarter of fp32's speed), on, off")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--benchmark", default="squadshifts_nyt")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results.json"))
    ap.add_argument("--doc", default=str(ROOT / "docs" / "performance.md"))
    ap.add_argument("--from-json", nargs="+", metavar="RESULTS",
                    help="measure nothing: merge the measurements of earlier results.json files (later files win) "
                         "and rewrite --out and --doc from them")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--options", help=argparse.SUPPRESS)
    ap.add_argument("--json", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    if args.one:  # a child process: one measurement
        from harness.core.records import write_json

        write_json(Path(args.json), run_one(args.one, Options(**json.loads(args.options))))
        return 0
    if args.from_json:
        return merge([Path(p) for p in args.from_json], Path(args.out), Path(args.doc))
    names = [n.strip() for n in args.only.split(",")] if args.only else list(MEASUREMENTS)
    unknown = sorted(set(names) - set(MEASUREMENTS))
    if unknown:
        print(f"unknown measurement(s) {', '.join(unknown)}; known: {', '.join(MEASUREMENTS)}", file=sys.stderr)
        return 2
    scale = 0.02 if args.dry_run else QUICK_SCALE if args.quick else 1.0
    reps = args.reps or (1 if args.quick or args.dry_run else 2)
    opts = Options(model=args.model, benchmark=args.benchmark, device=args.device, reps=reps, scale=scale,
                   dry_run=args.dry_run, bf16=args.bf16)
    mode = "dry-run" if args.dry_run else "quick" if args.quick else "full"
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    results = {"schema_version": 1, "mode": mode, "started": started,
               "git_commit": git_commit(), "machine": machine(), "options": dataclasses.asdict(opts),
               "measurements": {}}
    t_all = time.perf_counter()
    for name in names:
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        print(f"bench: {name} ...", flush=True)
        entry = {}
        try:
            entry["raw"] = run_one(name, opts) if args.dry_run else in_subprocess(name, opts, print)
        except Exception as exc:  # one failed measurement must not lose the others
            entry["error"] = f"{type(exc).__name__}: {exc}"
            if args.dry_run:
                entry["traceback"] = traceback.format_exc(limit=6)
        entry["wall_s"] = round(time.perf_counter() - t0, 1)
        entry["load_average"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
        results["measurements"][name] = entry
        print(f"bench: {name} {'FAILED: ' + entry['error'] if 'error' in entry else 'done'} in {entry['wall_s']} s",
              flush=True)
    if args.e2e:
        from .budget import end_to_end

        print("bench: end to end (two default runs) ...", flush=True)
        results["measurements"]["end_to_end"] = {"raw": end_to_end()}
    results["wall_s"] = round(time.perf_counter() - t_all, 1)
    from .report import headline, write

    results["headline"] = headline(results)
    write(results, Path(args.out), Path(args.doc))
    print(f"bench: wrote {args.out} and {args.doc} ({results['wall_s']} s)")
    return 1 if any("error" in m for m in results["measurements"].values()) else 0


def merge(paths: list[Path], out: Path, doc: Path) -> int:
    """Several partial runs (say, `--only` runs done at different times) as one page. The page
    says which runs it came from; their own start times stay in `merged_from`."""
    from .report import headline, write

    runs = [json.loads(p.read_text()) for p in paths]
    results = dict(runs[-1], measurements={}, merged_from=[{"file": str(p), "started": r["started"],
                                                            "mode": r["mode"]} for p, r in zip(paths, runs)])
    for r in runs:
        results["measurements"].update(r["measurements"])
    results["wall_s"] = sum(r["wall_s"] for r in runs)
    results["headline"] = headline(results)
    write(results, out, doc)
    print(f"bench: merged {len(paths)} runs into {out} and {doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
