"""Answers through an OpenAI-compatible endpoint (harness/model/endpoint.py) against the local runtime's
batched generation: the same closed-book prompts of the default benchmark, greedy, 24 new tokens.

    python -m bench.endpoint                      # starts `transformers serve` on the packaged model
    python -m bench.endpoint --serve-args=--continuous-batching
    python -m bench.endpoint --base-url http://127.0.0.1:8000/v1 --name MODEL   # a running server

Prints answers/s of the local runtime (one `generate` call, its default batching) and of the
endpoint at each concurrency, the endpoint's median TTFT and latency, and how many answers equal
the local ones (after stripping whitespace). Not part of `python -m bench`: it starts a server.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=32, help="test questions of the benchmark")
    ap.add_argument("--benchmark", default="squadshifts_nyt")
    ap.add_argument("--concurrency", default="1,4,8")
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--base-url", help="a running server (default: start transformers serve)")
    ap.add_argument("--name", help="model name on that server")
    ap.add_argument("--serve-args", default="", help="extra arguments for transformers serve")
    ap.add_argument("--out", help="write the figures as JSON here")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `timeout` or kill: stop the server on the way out

    from harness.data.benchmark import load_benchmark
    from harness.methods import prompts
    from harness.model.endpoint import EndpointConfig, EndpointModel
    from harness.model.runtime import Runtime

    bench = load_benchmark(args.benchmark)
    prompter = prompts.Prompter.for_benchmark(bench)
    msgs = [prompter.closed_book(e.input) for e in bench.split("test")[: args.n]]
    rt = Runtime("smollm2-135m", device="cpu", progress=False)
    ids = [rt.encode_chat(m) for m in msgs]
    rt.generate(ids[:2], max_new_tokens=4)  # warm-up

    def local_run():
        t0 = time.perf_counter()
        gens = rt.generate(ids, max_new_tokens=args.max_new_tokens)
        return time.perf_counter() - t0, [g.text.strip() for g in gens]

    server = None
    if args.base_url:
        url, name = args.base_url, args.name
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from endpoint_servers import TransformersServer

        log = Path(tempfile.mkdtemp(prefix="bench-endpoint-")) / "serve.log"
        server = TransformersServer(rt.path, log, extra=tuple(args.serve_args.split()))
        url, name = server.url, server.model_dir
        print(f"transformers serve {args.serve_args} up in {server.startup_s:.1f} s at {url}", flush=True)
    rows = []
    try:
        local_s, local = local_run()
        rows.append({"side": "local runtime (batched)", "seconds": local_s, "answers_per_s": len(ids) / local_s,
                     "agree": len(ids)})
        print(f"local: {local_s:.1f} s, {len(ids) / local_s:.2f} answers/s", flush=True)
        for c in (int(x) for x in args.concurrency.split(",")):
            with EndpointModel(EndpointConfig(url, name, max_concurrency=c, timeout_s=600)) as em:
                em.chat(msgs[:1], 2)  # connection and model warm
                t0 = time.perf_counter()
                gens = em.chat(msgs, args.max_new_tokens)
                dt = time.perf_counter() - t0
            agree = sum(g.text.strip() == loc for g, loc in zip(gens, local))
            row = {"side": f"endpoint, concurrency {c}", "seconds": dt, "answers_per_s": len(ids) / dt,
                   "agree": agree, "ttft_median_s": statistics.median(g.ttft_s for g in gens),
                   "latency_median_s": statistics.median(g.latency_s for g in gens),
                   "output_tokens": sum(g.output_tokens for g in gens),
                   "usage_source": sorted({g.usage_source for g in gens}),
                   "differ": [(i, loc, g.text) for i, (g, loc) in enumerate(zip(gens, local)) if g.text.strip() != loc]}
            rows.append(row)
            print(f"concurrency {c}: {dt:.1f} s, {row['answers_per_s']:.2f} answers/s, agree {agree}/{len(ids)}, "
                  f"TTFT median {row['ttft_median_s']:.2f} s, latency median {row['latency_median_s']:.2f} s",
                  flush=True)
        local_s2, local2 = local_run()
        rows.append({"side": "local runtime again (drift check)", "seconds": local_s2,
                     "answers_per_s": len(ids) / local_s2, "agree": sum(a == b for a, b in zip(local, local2))})
        print(f"local again: {local_s2:.1f} s", flush=True)
    finally:
        if server is not None:
            server.stop()
    result = {"n": len(ids), "max_new_tokens": args.max_new_tokens, "serve_args": args.serve_args,
              "load_average": os.getloadavg(), "rows": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
