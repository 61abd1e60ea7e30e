"""What an object store costs over a shared folder, per artifact: publishing (upload + sha256 manifest)
and another node's first hit (download + sha256 check), on stand-ins with no network.

    python -m bench.store_overhead [--mb 256]

One artifact folder of --mb random bytes (a checkpoint) goes through StageCache.artifact three ways:
a local folder (rename into place), the no-rename stand-in of tests/norename_fs.py on local disk
(marker path, no network: the harness's own overhead) and fsspec's memory://. "Another node" is a
second, empty HARNESS_CACHE. On S3 or GCS add the transfer time of the bytes. Prints seconds; the
numbers in docs/scale-out.md came from this script.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mb", type=int, default=256)
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tests"))
    import fsspec
    from norename_fs import NoRenameFileSystem

    from harness.cache.stages import StageCache

    fsspec.register_implementation("norename", NoRenameFileSystem, clobber=True)
    blob = os.urandom(args.mb << 20)

    def build(folder: Path) -> dict:
        (folder / "checkpoint").mkdir()
        (folder / "checkpoint" / "model.safetensors").write_bytes(blob)
        return {}

    tmp = Path(tempfile.mkdtemp(prefix="store-overhead-"))
    try:
        for name, root in [("folder", tmp / "plain"), ("norename", f"norename://{tmp}/bucket"),
                           ("memory", f"memory://store-overhead-{os.getpid()}/p")]:
            times = []
            for node in ("node1", "node2", "node2"):  # build + publish, download, scratch copy
                os.environ["HARNESS_CACHE"] = str(tmp / f"{name}-{node}")
                t0 = time.perf_counter()
                StageCache(root=root).artifact("train", {"bench": 1}, build, tmp / "fallback")
                times.append(time.perf_counter() - t0)
            print(f"{name:9s} {args.mb} MB: build+publish {times[0]:.2f}s, another node's first hit "
                  f"{times[1]:.2f}s, its scratch copy {times[2]:.3f}s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
