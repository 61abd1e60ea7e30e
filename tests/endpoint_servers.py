"""Loopback HTTP servers for the endpoint tests: a scripted OpenAI-compatible server (each test
decides what every request gets: a stream, an error status, a hang, a dropped connection), a proxy
that injects faults in front of a real server, and `transformers serve` started on a free port."""
from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chunks_for(text: str, model: str = "fake-model", usage: bool = True, prompt_tokens: int = 11,
               logprobs: list[dict] | None = None, finish: str = "stop", done: bool = True) -> list:
    """The events an OpenAI server streams for `text`: a role chunk, one chunk per word, the
    finish chunk, a usage chunk with no choices (stream_options.include_usage) and [DONE].
    `logprobs`: the `content` list of the first content chunk's logprobs."""
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": model}
    out: list = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}]
    words = [w + " " for w in text.split(" ")]
    words[-1] = words[-1][:-1]
    for i, w in enumerate(words):
        c = {"index": 0, "delta": {"content": w}, "finish_reason": None}
        if i == 0 and logprobs is not None:
            c["logprobs"] = {"content": logprobs}
        out.append({**base, "choices": [c]})
    out.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    if usage:
        out.append({**base, "choices": [], "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(words),
                                                     "total_tokens": prompt_tokens + len(words)}})
    if done:
        out.append("[DONE]")
    return out


class Request:
    """What a handler function gets: the request, and ways to answer it."""

    def __init__(self, h: BaseHTTPRequestHandler, n: int, body):
        self.h, self.n, self.body = h, n, body
        self.path, self.headers = h.path, h.headers

    def json(self, status: int, obj, headers: dict | None = None) -> None:
        data = (obj if isinstance(obj, (bytes, str)) else json.dumps(obj))
        data = data.encode() if isinstance(data, str) else data
        self.h.send_response(status)
        self.h.send_header("Content-Type", "application/json")
        self.h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.h.send_header(k, v)
        self.h.end_headers()
        self.h.wfile.write(data)

    def start_stream(self, chunked: bool = True) -> None:
        self.chunked = chunked
        self.h.send_response(200)
        self.h.send_header("Content-Type", "text/event-stream")
        if chunked:
            self.h.send_header("Transfer-Encoding", "chunked")
        else:
            self.h.send_header("Connection", "close")
            self.h.close_connection = True
        self.h.end_headers()

    def write(self, data: bytes) -> None:
        if self.chunked:
            data = f"{len(data):x}\r\n".encode() + data + b"\r\n"
        self.h.wfile.write(data)
        self.h.wfile.flush()

    def end_stream(self) -> None:
        if self.chunked:
            self.h.wfile.write(b"0\r\n\r\n")
        self.h.wfile.flush()

    def sse(self, events: list, chunked: bool = True, delay: float = 0.0) -> None:
        self.start_stream(chunked)
        for ev in events:
            payload = ev if isinstance(ev, str) else json.dumps(ev)
            self.write(f"data: {payload}\n\n".encode())
            if delay:
                time.sleep(delay)
        self.end_stream()

    def drop(self) -> None:
        """Close the connection at once, mid-whatever (a killed server)."""
        self.h.close_connection = True
        try:
            self.h.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client closing a kept-alive connection, or a test dropping one on purpose


class Loopback:
    """A threaded HTTP server on a free loopback port. `handle(req)` answers each request; GET
    /v1/models lists `models` unless `handle` answers it (returns True)."""

    def __init__(self, handle: Callable[[Request], bool | None], models: tuple[str, ...] = ("fake-model",)):
        self.handle, self.models = handle, list(models)
        self.seen: list[tuple[str, str, dict | None, dict]] = []  # (method, path, body, headers)
        self.chat_count = 0
        self._lock = threading.Lock()
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _serve(self, method):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                with outer._lock:
                    outer.seen.append((method, self.path, body, dict(self.headers)))
                    n = outer.chat_count
                    if self.path.endswith("/chat/completions"):
                        outer.chat_count += 1
                req = Request(self, n, body)
                if outer.handle(req):
                    return
                if method == "GET" and self.path.endswith("/models"):
                    req.json(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in outer.models]})
                elif method == "GET":
                    req.json(404, {"detail": "Not Found"})

            def do_GET(self):
                self._serve("GET")

            def do_POST(self):
                self._serve("POST")

        self.server = _QuietServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def forward(req: Request, upstream: str) -> None:
    """Relay a request to `upstream` (http://host:port) and stream its answer back."""
    u = urllib.parse.urlsplit(upstream)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    try:
        headers = {k: v for k, v in req.headers.items() if k.lower() in ("content-type", "authorization", "accept")}
        conn.request(req.h.command, req.path, body=json.dumps(req.body) if req.body is not None else None,
                     headers=headers)
        resp = conn.getresponse()
        if "text/event-stream" not in resp.getheader("content-type", ""):
            req.json(resp.status, resp.read())
            return
        req.start_stream(chunked=True)
        while data := resp.read1(65536):
            req.write(data)
        req.end_stream()
    finally:
        conn.close()


# -- a real server --------------------------------------------------------------------------------
def transformers_cli() -> list[str]:
    exe = Path(sys.executable).with_name("transformers")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("transformers")
    if found:
        return [found]
    return [sys.executable, "-m", "transformers.cli.transformers"]


def _die_with_parent():
    """For the child, before exec: SIGTERM when the process that started it dies (a killed pytest
    or bench leaves no server holding a port and a gigabyte of memory). libc is loaded here, in the
    parent: the child of a threaded process must not import anything before exec."""
    if sys.platform != "linux":
        return None
    import ctypes
    import signal

    prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    return lambda: prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class TransformersServer:
    """`transformers serve MODEL_DIR` on a free loopback port (CPU), pinned to that model; the model
    name to send is the folder's path. Stopped (terminate, then kill) by stop()."""

    def __init__(self, model_dir: Path, log_path: Path, extra: tuple[str, ...] = (), ready_s: float = 180.0):
        self.model_dir = str(model_dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log_path = log_path
        env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        cmd = [*transformers_cli(), "serve", self.model_dir, "--host", "127.0.0.1", "--port", str(self.port),
               "--device", "cpu", *extra]
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     preexec_fn=_die_with_parent())
        t0 = time.time()
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"transformers serve exited with {self.proc.returncode}: {self.log_tail()}")
                try:
                    with urllib.request.urlopen(self.url + "/models", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if time.time() - t0 > ready_s:
                    raise RuntimeError(f"transformers serve did not answer in {ready_s:.0f} s: {self.log_tail()}")
                time.sleep(0.3)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.time() - t0

    def log_tail(self, n: int = 1500) -> str:
        self._log.flush()
        return Path(self.log_path).read_text(errors="replace")[-n:]

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
