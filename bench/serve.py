"""Serve the packaged SmolLM2 with `transformers serve` under a hub-style model name, on loopback:
the stand-in for a hosted model in reports/example-endpoint (configs/example-endpoint.yaml).

    python -m bench.serve                         # http://127.0.0.1:8000/v1, model HuggingFaceTB/SmolLM2-135M-Instruct
    python -m bench.serve --port 8001 --name my-org/my-model

`transformers serve` pinned to one model answers only requests naming that model, by the path it was
given; so the converted packaged folder is linked under NAME in a scratch folder and served from
there, and NAME is what clients send (as with `vllm serve ORG/MODEL`). Runs until interrupted;
the server dies with this process. Needs the serving extra: pip install -e '.[serving]'.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

DEFAULT_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the model's id on the Hugging Face hub


def start(name: str = DEFAULT_NAME, port: int = 8000, host: str = "127.0.0.1", log=None,
          extra: tuple[str, ...] = (), ready_s: float = 300.0) -> tuple[subprocess.Popen, str, Path]:
    """Start the server; returns the process, the base URL (…/v1) and the scratch folder."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from endpoint_servers import _die_with_parent, transformers_cli

    from harness.model.modelstore import resolve_model

    folder, _ = resolve_model("smollm2-135m", progress=True)
    scratch = Path(tempfile.mkdtemp(prefix="serve-"))
    link = scratch / name
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(folder, target_is_directory=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    cmd = [*transformers_cli(), "serve", name, "--host", host, "--port", str(port), "--device", "cpu", *extra]
    proc = subprocess.Popen(cmd, cwd=scratch, env=env, stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            preexec_fn=_die_with_parent())
    url = f"http://{host}:{port}/v1"
    t0 = time.time()
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"transformers serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/models", timeout=2) as r:
                if r.status == 200:
                    return proc, url, scratch
        except OSError:
            pass
        if time.time() - t0 > ready_s:
            proc.kill()
            raise RuntimeError(f"transformers serve did not answer in {ready_s:.0f} s")
        time.sleep(0.5)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--name", default=DEFAULT_NAME, help="the model name clients send")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--serve-args", default="", help="extra arguments for transformers serve")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t0 = time.time()
    proc, url, _ = start(args.name, args.port, args.host, extra=tuple(args.serve_args.split()))
    print(f"serving {args.name} at {url} (up in {time.time() - t0:.0f} s); Ctrl-C stops it", flush=True)
    try:
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(15)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
