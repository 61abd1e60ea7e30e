"""A model behind an OpenAI-compatible chat-completions API: the protocol vLLM, llama.cpp's server,
TGI, Ollama, `transformers serve` and hosted APIs speak.

The same chat messages the local runtime templates itself go to the server as they are; the server
applies the model's chat template. Decoding is greedy (temperature 0). Requests are streamed, so
the time to the first token is measured, and at most `max_concurrency` are in flight at once.

Faults: a 429, a 5xx, a timeout or a connection lost mid-run is retried with exponential backoff
(capped, with jitter; a Retry-After header is honoured). Anything else, or the last retry, raises
`EndpointError`, a `StrategyFailed`: one line that names the base URL (never the key), so the run
records the failed cell and goes on.

The API key is read from the environment variable that `EndpointConfig.api_key_env` names, at each
request; it is never stored in the config, an object, a record or an error message.

The HTTP client is `requests` (already installed with gguf): its streaming body read with `read1`
gives each server-sent event as it arrives, (connect, read) timeouts are explicit, and the retry
loop is ours, so attempts are counted per answer and a test can drive it with a loopback server.
"""
from __future__ import annotations

import email.utils
import json
import math
import os
import random
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

from harness.core.errors import ConfigError, StrategyFailed

BACKOFF_CAP_S = 8.0  # the longest wait between two attempts without a Retry-After
RETRY_AFTER_CAP_S = 60.0  # a server asking for a longer wait (a spent daily quota) fails the cell at once
CONNECT_TIMEOUT_CAP_S = 10.0  # a loopback or LAN server accepts in milliseconds; a dead host fails fast
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class EndpointError(StrategyFailed):
    """The endpoint could not answer: one line naming the base URL, never the API key."""


# -- config ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EndpointConfig:
    base_url: str  # up to and including the API version, as the OpenAI SDK takes it: http://host:8000/v1
    name: str  # the model name sent in every request (vLLM's --served-model-name, an Ollama tag, ...)
    api_key_env: str | None = None  # NAME of the environment variable holding the key; None: no key sent
    max_concurrency: int = 8  # requests in flight: vLLM/TGI batch them; hosted APIs rate-limit above ~10
    timeout_s: float = 60.0  # the longest silence: to connect, for the answer to start, between two chunks
    retries: int = 3  # further attempts after a 429, 5xx, timeout or lost connection
    backoff_s: float = 0.5  # wait before the first retry; doubles each retry, capped at BACKOFF_CAP_S

    def __post_init__(self):
        url = self.base_url.strip().rstrip("/") if isinstance(self.base_url, str) else ""
        parts = urllib.parse.urlsplit(url)
        if parts.username or parts.password:
            # the URL itself is not repeated: it holds a secret
            raise ConfigError("endpoint.base_url must not carry credentials; put the key in the environment "
                              "variable that endpoint.api_key_env names")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"endpoint.base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, "
                              f"got {self.base_url!r}")
        if parts.query or parts.fragment:
            raise ConfigError(f"endpoint.base_url must not have a query or fragment, got {url!r}")
        object.__setattr__(self, "base_url", url)
        if not isinstance(self.name, str) or not self.name.strip() or "\n" in self.name:
            raise ConfigError(f"endpoint.name must be the model name the server serves, got {self.name!r}")
        if self.api_key_env is not None:
            env = self.api_key_env
            looks_like_key = (not isinstance(env, str) or not _ENV_NAME.match(env)
                              or (len(env) >= 20 and any(c.islower() for c in env) and any(c.isdigit() for c in env)))
            if looks_like_key:  # never echo it: it may be the key itself
                raise ConfigError("endpoint.api_key_env must be the NAME of an environment variable holding the "
                                  "key (like OPENAI_API_KEY), not the key itself")
        for field_name, least in (("max_concurrency", 1), ("retries", 0)):
            v = getattr(self, field_name)
            if isinstance(v, bool) or not isinstance(v, int) or v < least:
                raise ConfigError(f"endpoint.{field_name} must be an integer >= {least}, got {v!r}")
        if self.max_concurrency > 256:
            raise ConfigError(f"endpoint.max_concurrency must be <= 256, got {self.max_concurrency}")
        if self.retries > 10:
            raise ConfigError(f"endpoint.retries must be <= 10, got {self.retries}")
        for field_name, zero_ok in (("timeout_s", False), ("backoff_s", True)):
            v = getattr(self, field_name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 \
                    or (v == 0 and not zero_ok):
                sign = "non-negative" if zero_ok else "positive"
                raise ConfigError(f"endpoint.{field_name} must be a {sign} number of seconds, got {v!r}")

    def fingerprint(self, server_model_id: str | None = None) -> dict:
        """What identifies the model answering, for cache keys: where, which name, and what the
        server says it is (GET /models; see EndpointModel.fingerprint). No key, no tuning knobs."""
        return {"backend": "openai-chat", "base_url": self.base_url, "model": self.name,
                "server_model_id": server_model_id}


# -- results --------------------------------------------------------------------------------------
@dataclass
class EndpointGeneration:
    text: str  # the answer: the first line after some text when stop_at_newline (as Runtime.generate)
    prompt_tokens: int
    output_tokens: int  # what the server generated (and bills), even past the first line
    usage_source: str  # "server"; "local_tokenizer" when the server sent no usage; "none" when neither
    latency_s: float  # the successful attempt, request sent to last byte
    ttft_s: float  # the successful attempt, request sent to the first generated text
    attempts: int  # 1 + retries spent on this request
    model_id: str | None  # the `model` field the server answered with
    finish_reason: str | None = None
    raw_text: str = ""  # everything the server generated
    retry_wait_s: float = 0.0  # time in failed attempts and backoff before the successful one
    streamed: bool = True  # False when the server ignored `stream` and answered with one JSON body


@dataclass
class EndpointChoice:
    index: int | None  # the chosen option, None when the generated text named none
    text: str  # the chosen option's text; the generated text when none was named
    method: str  # "logprobs": first-token log-probabilities of the letters; "generated": parsed reply
    letter_logprobs: dict[str, float | None] | None  # per option letter; None for a letter outside top-k
    generation: EndpointGeneration


# -- helpers shared with the harness --------------------------------------------------------------
def first_line(text: str) -> str:
    """The answer as Runtime.generate stops it: text up to the first newline that follows some text."""
    if text.strip() and "\n" in text.lstrip():
        return text.lstrip().split("\n", 1)[0]
    return text


def letter_choices(messages: list[dict], choices: Sequence[str]) -> list[dict]:
    """The messages with the options as a lettered list after the last user turn, and a request to
    answer with the letter: a letter is one token, so its log-probability scores the option."""
    if not choices:
        raise ValueError("a multiple-choice question needs options")
    if len(choices) > len(LETTERS):
        raise ValueError(f"at most {len(LETTERS)} options can be lettered, got {len(choices)}")
    options = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))
    last = messages[-1]
    tail = f"\n\nOptions:\n{options}\n\nAnswer with the letter of the correct option."
    return [*messages[:-1], {**last, "content": last["content"] + tail}]


def _norm(s: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", s.lower()).split())


def match_choice(text: str, choices: Sequence[str]) -> int | None:
    """Which option a generated reply names: the option's text, its letter ("B", "(B)", "B. ...",
    "Answer: B"), or the one option it contains; None when it names none or several."""
    line = first_line(text).strip()
    norm = _norm(line)
    opts = [_norm(c) for c in choices]
    if norm in opts:
        return opts.index(norm)
    lead = r"(?:(?:the\s+)?(?:correct\s+)?(?:answer|option)(?:\s+is)?\s*[:\-]?\s*)?"  # "The answer is", "Option:"
    m = re.match(rf"^{lead}\(?([A-Z])(?:[).:\]]|\s|$)(.*)", line, flags=re.IGNORECASE)
    if m and m.group(1).isupper() and LETTERS.index(m.group(1)) < len(choices):
        i = LETTERS.index(m.group(1))
        rest = _norm(m.group(2))
        if not rest or rest == opts[i] or not any(o and o in norm for o in opts):
            return i
    inside = [i for i, o in enumerate(opts) if o and re.search(rf"\b{re.escape(o)}\b", norm)]
    # an option inside another one found ("New York" in "New York City") does not count apart
    named = [i for i in inside if not any(j != i and opts[i] != opts[j] and opts[i] in opts[j] for j in inside)]
    if len(named) == 1:
        return named[0]
    if named:
        return None
    holders = [i for i, o in enumerate(opts) if norm and re.search(rf"\b{re.escape(norm)}\b", o)]
    return holders[0] if len(holders) == 1 else None


def _letter_scores(top: list[dict], n: int) -> dict[str, float | None] | None:
    """Per option letter, the log-probability mass of the top tokens that spell it (" B", "B.",
    "(B"); None when no letter is among them."""
    scores: dict[str, list[float]] = {}
    for t in top:
        tok, lp = t.get("token"), t.get("logprob")
        if not isinstance(tok, str) or not isinstance(lp, (int, float)):
            continue
        core = tok.strip().lstrip("(").rstrip(".):]").strip()
        if len(core) == 1 and core in LETTERS[:n]:
            scores.setdefault(core, []).append(float(lp))
    if not scores:
        return None
    out: dict[str, float | None] = {}
    for letter in LETTERS[:n]:
        lps = scores.get(letter)
        out[letter] = None if not lps else max(lps) + math.log(sum(math.exp(x - max(lps)) for x in lps))
    return out


def _one_line(text: str, limit: int = 200) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _error_detail(body: bytes | str) -> str:
    """The server's error message out of an OpenAI ({"error": {"message"}}), FastAPI ({"detail"}) or
    plain-text error body."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        obj = json.loads(text)
    except ValueError:
        return _one_line(text) or "(empty body)"
    if isinstance(obj, dict):
        err = obj.get("error", obj.get("detail", obj.get("message")))
        if isinstance(err, dict):
            err = err.get("message") or err.get("msg") or err
        if err is not None:
            return _one_line(err if isinstance(err, str) else json.dumps(err))
    return _one_line(text)


def _retry_after(headers) -> float | None:
    """Seconds a 429/503 asks to wait: retry-after-ms (OpenAI), Retry-After in seconds or as a date."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _refused(exc: BaseException) -> bool:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ConnectionRefusedError):
            return True
        nxt = exc.__cause__ or exc.__context__
        if nxt is None and exc.args and isinstance(exc.args[0], BaseException):
            nxt = exc.args[0]
        if nxt is None and getattr(exc, "reason", None) is not None and isinstance(exc.reason, BaseException):
            nxt = exc.reason
        exc = nxt
    return False


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason, self.retry_after = reason, retry_after


class _Unsupported(Exception):
    """The server rejected an optional field (stream_options, logprobs): resend without it."""

    def __init__(self, field_name: str):
        super().__init__(field_name)
        self.field = field_name


class _Cancelled(Exception):
    pass


@dataclass
class _Raw:
    text: str
    usage: dict | None
    model_id: str | None
    finish_reason: str | None
    latency_s: float
    ttft_s: float | None
    top_logprobs: list[dict] | None  # the first non-blank generated token's alternatives
    streamed: bool
    attempts: int = 1
    retry_wait_s: float = 0.0


# -- the model ------------------------------------------------------------------------------------
class EndpointModel:
    """A model served over the OpenAI chat-completions API. `tokenizer`: a transformers tokenizer of
    the same model, used only to count tokens when the server sends no usage."""

    def __init__(self, config: EndpointConfig, tokenizer: Any = None):
        import requests
        from requests.adapters import HTTPAdapter

        self.config = config
        self.tokenizer = tokenizer
        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=config.max_concurrency, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._lock = threading.Lock()
        self._checked = False
        self._connected = False  # a server answered once: a refusal after that is a restart, retried
        self.listed_models: list[str] | None = None  # what GET /models answered (None: not available)
        self._drop: set[str] = set()  # optional request fields this server rejected

    def __repr__(self) -> str:
        return f"EndpointModel({self.config!r})"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self._session.close()

    # -- identity ---------------------------------------------------------------------------------
    @property
    def server_model_id(self) -> str | None:
        """The id GET /models lists for our name (only when it lists it: an id the server did not
        report would make cache keys depend on the first answer's timing)."""
        self.check()
        if self.listed_models and self.config.name in self.listed_models:
            return self.config.name
        return None

    def fingerprint(self) -> dict:
        return self.config.fingerprint(self.server_model_id)

    # -- requests ---------------------------------------------------------------------------------
    def _key(self) -> str | None:
        env = self.config.api_key_env
        return os.environ.get(env) or None if env else None

    def _scrub(self, text: str) -> str:
        key = self._key()
        return text.replace(key, "***") if key and len(key) >= 4 else text

    def _error(self, what: str) -> EndpointError:
        return EndpointError(self._scrub(f"endpoint {self.config.base_url}: {what}"))

    def _headers(self, stream: bool) -> dict:
        h = {"Content-Type": "application/json", "User-Agent": "rag-or-finetune-harness",
             "Accept": "text/event-stream" if stream else "application/json"}
        env = self.config.api_key_env
        if env:
            key = self._key()
            if key is None:
                raise self._error(f"the environment variable {env} (endpoint.api_key_env) is not set; "
                                  "export the API key in it")
            h["Authorization"] = f"Bearer {key}"
        return h

    def _timeouts(self) -> tuple[float, float]:
        # (connect, read): read is the longest wait for the next bytes, not a cap on the whole answer,
        # which on a busy server includes its queue (a serial CPU server answers 8 requests in turn)
        t = self.config.timeout_s
        return (min(CONNECT_TIMEOUT_CAP_S, t), t)

    def _auth_error(self, status: int, detail: str) -> EndpointError:
        env = self.config.api_key_env
        if env:
            return self._error(f"the server refused the API key (HTTP {status}: {detail}); set the environment "
                               f"variable {env} to a valid key")
        return self._error(f"the server wants an API key (HTTP {status}: {detail}); set endpoint.api_key_env "
                           "to the name of an environment variable holding it")

    def _models_note(self) -> str:
        if self.listed_models:
            shown = ", ".join(self.listed_models[:20]) + (" ..." if len(self.listed_models) > 20 else "")
            return f"; the server lists: {shown}"
        return ""

    def _status_error(self, status: int, body: bytes, path: str) -> EndpointError:
        detail = _error_detail(body)
        if status in (401, 403):
            return self._auth_error(status, detail)
        name = self.config.name
        unknown = bool(self.listed_models) and name not in self.listed_models
        mentions_model = "model" in detail.lower() or "pinned" in detail.lower()
        if status in (400, 404, 422) and (unknown or (status == 404 and mentions_model)):
            return self._error(f"model {name!r} is not served here (HTTP {status}: {detail}){self._models_note()}")
        if status == 404:
            hint = "" if self.config.base_url.endswith("/v1") else "; base_url usually ends in /v1"
            return self._error(f"no chat-completions API at {self.config.base_url}{path} (HTTP 404: {detail}){hint}")
        return self._error(f"HTTP {status} from {path}: {detail}")

    def check(self) -> None:
        """Once: GET /models. Fails fast when nothing listens (refused), when the key is refused,
        and notes the served models (for fingerprints and for an unknown-model error)."""
        with self._lock:
            if self._checked:
                return
            import requests

            url = self.config.base_url + "/models"
            try:
                resp = self._session.get(url, headers=self._headers(stream=False), timeout=self._timeouts())
            except requests.exceptions.ConnectionError as exc:
                if _refused(exc):
                    raise self._error("connection refused: is the server running, and is base_url right?") from None
                raise self._error(f"cannot connect: {_one_line(exc, 160)}") from None
            except requests.exceptions.Timeout:
                raise self._error(f"GET /models timed out after {self.config.timeout_s:g} s "
                                  "(endpoint.timeout_s)") from None
            self._connected = True
            body = resp.content
            if resp.status_code in (401, 403):
                raise self._auth_error(resp.status_code, _error_detail(body))
            if resp.status_code == 200:
                try:
                    data = json.loads(body).get("data")
                    self.listed_models = [str(m["id"]) for m in data if isinstance(m, dict) and "id" in m]
                except (ValueError, AttributeError, TypeError):
                    self.listed_models = None  # not an OpenAI model list: checked at the first answer
            # other statuses: some servers have no /models; the chat request will tell
            self._checked = True

    def _attempt(self, body: dict, cancel: threading.Event) -> _Raw:
        """One request. Raises _Retryable, _Unsupported, _Cancelled or EndpointError."""
        import requests
        import urllib3

        stream = bool(body.get("stream"))
        t0 = time.perf_counter()
        try:
            resp = self._session.post(self.config.base_url + "/chat/completions", json=body,
                                      headers=self._headers(stream), stream=True, timeout=self._timeouts())
        except requests.exceptions.ConnectionError as exc:
            if isinstance(exc, requests.exceptions.ConnectTimeout):
                raise _Retryable(f"connect timed out after {self.config.timeout_s:g} s") from None
            if _refused(exc) and not self._connected:
                raise self._error("connection refused: is the server running, and is base_url right?") from None
            raise _Retryable("connection refused" if _refused(exc) else f"connection lost ({_one_line(exc, 120)})") \
                from None
        except requests.exceptions.Timeout:
            raise _Retryable(f"no answer within {self.config.timeout_s:g} s (endpoint.timeout_s)") from None
        self._connected = True
        try:
            status = resp.status_code
            if status != 200:
                err_body = resp.content
                if status == 429 or status == 408 or status >= 500:
                    wait = _retry_after(resp.headers)
                    if wait is not None and wait > RETRY_AFTER_CAP_S:
                        raise self._error(f"HTTP {status} asks to retry after {wait:.0f} s, more than the "
                                          f"{RETRY_AFTER_CAP_S:.0f} s the harness waits: {_error_detail(err_body)}")
                    raise _Retryable(f"HTTP {status}: {_error_detail(err_body)}", wait)
                if status in (400, 422):
                    low = _error_detail(err_body).lower()
                    for optional in ("stream_options", "top_logprobs", "logprobs"):
                        if optional in low and optional in body:
                            raise _Unsupported(optional)
                raise self._status_error(status, err_body, "/chat/completions")
            ctype = resp.headers.get("content-type", "")
            if stream and "text/event-stream" in ctype:
                return self._read_stream(resp, t0, cancel)
            return self._read_json(resp, t0)
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            if isinstance(exc, (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)):
                raise _Retryable(f"the answer stalled: no data for {self.config.timeout_s:g} s "
                                 "(endpoint.timeout_s)") from None
            raise _Retryable(f"connection lost mid-response ({_one_line(exc, 120)})") from None
        finally:
            resp.close()

    def _read_body(self, resp, cancel: threading.Event | None = None):
        """The response body as it arrives (read1: one network read, not a full buffer)."""
        raw = resp.raw
        while True:
            if cancel is not None and cancel.is_set():
                raise _Cancelled()
            data = raw.read1(65536, decode_content=True)
            if not data:
                return
            yield data

    def _malformed(self, payload: bytes | str) -> EndpointError:
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
        return self._error(f"malformed JSON in the response: {_one_line(text, 80)!r}")

    def _read_json(self, resp, t0: float) -> _Raw:
        body = b"".join(self._read_body(resp))
        latency = time.perf_counter() - t0
        try:
            obj = json.loads(body)
        except ValueError:
            raise self._malformed(body) from None
        if not isinstance(obj, dict):
            raise self._malformed(body)
        if "error" in obj and not obj.get("choices"):
            raise self._error(f"the server answered with an error: {_error_detail(body)}")
        choices = obj.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise self._error(f"the response has no choices: {_one_line(body.decode('utf-8', 'replace'), 80)!r}")
        c0 = choices[0]
        msg = c0.get("message") or {}
        content = msg.get("content") if isinstance(msg, dict) else None
        top = _first_top_logprobs(c0.get("logprobs"))
        return _Raw(text=content or "", usage=obj.get("usage") if isinstance(obj.get("usage"), dict) else None,
                    model_id=obj.get("model"), finish_reason=c0.get("finish_reason"), latency_s=latency,
                    ttft_s=None, top_logprobs=top, streamed=False)

    def _read_stream(self, resp, t0: float, cancel: threading.Event) -> _Raw:
        parts: list[str] = []
        usage = model_id = finish = ttft = top = None
        done = False
        buf = b""
        data_lines: list[bytes] = []

        def dispatch(payload: bytes) -> bool:
            nonlocal usage, model_id, finish, ttft, top
            if payload.strip() == b"[DONE]":
                return True
            try:
                chunk = json.loads(payload)
            except ValueError:
                raise self._malformed(payload) from None
            if not isinstance(chunk, dict):
                raise self._malformed(payload)
            if chunk.get("error") is not None and not chunk.get("choices"):
                raise self._error(f"the server sent an error mid-stream: {_error_detail(payload)}")
            model_id = chunk.get("model") or model_id
            if isinstance(chunk.get("usage"), dict):
                usage = chunk["usage"]
            for c in chunk.get("choices") or []:
                if not isinstance(c, dict) or c.get("index", 0) != 0:
                    continue
                delta = c.get("delta") or {}
                piece = delta.get("content") if isinstance(delta, dict) else None
                if piece:
                    if ttft is None:
                        ttft = time.perf_counter() - t0
                    parts.append(piece)
                if top is None:
                    top = _first_top_logprobs(c.get("logprobs"))
                if c.get("finish_reason"):
                    finish = c["finish_reason"]
            return False

        for data in self._read_body(resp, cancel):
            buf += data
            *lines, buf = buf.split(b"\n")
            for line in lines:
                line = line.rstrip(b"\r")
                if not line:  # end of one event
                    if data_lines:
                        done = dispatch(b"\n".join(data_lines)) or done
                        data_lines = []
                elif line.startswith(b"data:"):
                    data_lines.append(line[5:].lstrip(b" "))
                # "event:", "id:", "retry:" and ": comment" (keep-alive) lines carry nothing we use
            if done:
                break
        if data_lines and not done:
            done = dispatch(b"\n".join(data_lines))
        if not done and finish is None:
            # the stream ended without its last event: the server died or the connection dropped
            raise _Retryable("connection lost mid-response (the stream ended before its last event)")
        return _Raw(text="".join(parts), usage=usage, model_id=model_id, finish_reason=finish,
                    latency_s=time.perf_counter() - t0, ttft_s=ttft, top_logprobs=top, streamed=True)

    def _request(self, body: dict, cancel: threading.Event) -> _Raw:
        """One answer, with retries."""
        cfg = self.config
        attempts, t_start = 0, time.perf_counter()
        while True:
            if cancel.is_set():
                raise _Cancelled()
            attempts += 1
            sent = {k: v for k, v in body.items() if k not in self._drop}
            t_attempt = time.perf_counter()
            try:
                raw = self._attempt(sent, cancel)
                raw.attempts, raw.retry_wait_s = attempts, t_attempt - t_start
                return raw
            except _Unsupported as exc:
                with self._lock:
                    self._drop.add(exc.field)
                    if exc.field == "logprobs":
                        self._drop.add("top_logprobs")
                attempts -= 1  # the server named a field it does not take: not a fault, not a retry
            except _Retryable as exc:
                if attempts > cfg.retries:
                    tries = f"{attempts} attempt{'s' if attempts > 1 else ''}"
                    raise self._error(f"{exc.reason}; gave up after {tries} (endpoint.retries={cfg.retries})") \
                        from None
                if exc.retry_after is not None:  # at least what the server asked, spread so that
                    delay = exc.retry_after * (1 + 0.1 * random.random())  # a burst does not return at once
                else:
                    delay = min(BACKOFF_CAP_S, cfg.backoff_s * 2 ** (attempts - 1)) * (1 - 0.25 * random.random())
                if cancel.wait(delay):
                    raise _Cancelled() from None

    def _run_all(self, bodies: Sequence[dict], on_result: Callable[[int], None] | None) -> list[_Raw]:
        if not bodies:
            return []
        self.check()
        results: list[_Raw | None] = [None] * len(bodies)
        cancel = threading.Event()
        pool = ThreadPoolExecutor(max_workers=min(self.config.max_concurrency, len(bodies)),
                                  thread_name_prefix="endpoint")
        try:
            futures = {pool.submit(self._request, b, cancel): i for i, b in enumerate(bodies)}
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()  # the first EndpointError ends the call
                if on_result:
                    on_result(1)
        except BaseException:
            cancel.set()  # workers stop at their next read or backoff; queued requests never start
            raise
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        return results  # type: ignore[return-value]

    def _body(self, messages: list[dict], max_new_tokens: int, stop, logprobs_k: int = 0) -> dict:
        body = {"model": self.config.name, "messages": messages, "max_tokens": int(max_new_tokens),
                "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
        if stop:
            body["stop"] = list(stop) if not isinstance(stop, str) else [stop]
        if logprobs_k:
            body["logprobs"] = True
            body["top_logprobs"] = logprobs_k
        return body

    def _generation(self, messages: list[dict], raw: _Raw, stop_at_newline: bool) -> EndpointGeneration:
        usage = raw.usage or {}
        prompt = usage.get("prompt_tokens")
        output = usage.get("completion_tokens", usage.get("output_tokens"))
        source = "server"
        if not isinstance(prompt, int) or not isinstance(output, int):
            if self.tokenizer is not None:
                source = "local_tokenizer"
                if not isinstance(prompt, int):
                    prompt = _count_prompt(self.tokenizer, messages)
                if not isinstance(output, int):
                    output = len(self.tokenizer(raw.text, add_special_tokens=False)["input_ids"])
            else:
                source = "none"
                prompt = prompt if isinstance(prompt, int) else 0
                output = output if isinstance(output, int) else 0
        return EndpointGeneration(
            text=first_line(raw.text) if stop_at_newline else raw.text, prompt_tokens=prompt, output_tokens=output,
            usage_source=source, latency_s=raw.latency_s,
            ttft_s=raw.ttft_s if raw.ttft_s is not None else raw.latency_s, attempts=raw.attempts,
            model_id=raw.model_id, finish_reason=raw.finish_reason, raw_text=raw.text,
            retry_wait_s=raw.retry_wait_s, streamed=raw.streamed)

    # -- the API the harness calls ----------------------------------------------------------------
    def chat(self, messages_list: Sequence[list[dict]], max_new_tokens: int, stop: Sequence[str] | None = None,
             *, stop_at_newline: bool = True, on_result: Callable[[int], None] | None = None
             ) -> list[EndpointGeneration]:
        """Greedy answers to each conversation, in input order. `stop` goes to the server;
        `stop_at_newline` cuts each answer where Runtime.generate stops (the server still reports,
        and bills, every token it generated)."""
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        raws = self._run_all([self._body(m, max_new_tokens, stop) for m in messages_list], on_result)
        return [self._generation(m, r, stop_at_newline) for m, r in zip(messages_list, raws)]

    def choose(self, messages_list: Sequence[list[dict]], choices_list: Sequence[Sequence[str]], *,
               max_new_tokens: int = 16, on_result: Callable[[int], None] | None = None) -> list[EndpointChoice]:
        """Multiple choice. The options are lettered after the last user turn (`letter_choices`) and
        one greedy reply is asked for with the first tokens' top log-probabilities. When the server
        returns them and a letter is among the first non-blank token's alternatives, the letter
        with the most probability is the choice ("logprobs"); otherwise the reply is matched to an
        option's letter or text ("generated")."""
        if len(messages_list) != len(choices_list):
            raise ValueError("choose needs one list of options per conversation")
        lettered = [letter_choices(m, c) for m, c in zip(messages_list, choices_list)]
        bodies = [self._body(m, max_new_tokens, None, logprobs_k=min(20, max(5, 2 * len(c))))
                  for m, c in zip(lettered, choices_list)]
        raws = self._run_all(bodies, on_result)
        out = []
        for m, choices, raw in zip(lettered, choices_list, raws):
            gen = self._generation(m, raw, stop_at_newline=True)
            scores = _letter_scores(raw.top_logprobs, len(choices)) if raw.top_logprobs else None
            if scores:
                best = max((lp, -i) for i, lp in enumerate(scores.values()) if lp is not None)
                index, method = -best[1], "logprobs"
            else:
                index, method = match_choice(gen.text, choices), "generated"
            out.append(EndpointChoice(index=index, text=choices[index] if index is not None else gen.text,
                                      method=method, letter_logprobs=scores, generation=gen))
        return out


def _first_top_logprobs(logprobs) -> list[dict] | None:
    """The alternatives of the first non-blank token in an OpenAI chat `logprobs` object."""
    if not isinstance(logprobs, dict):
        return None
    content = logprobs.get("content")
    if not isinstance(content, list):
        return None
    for entry in content:
        if not isinstance(entry, dict):
            continue
        tok = entry.get("token")
        if isinstance(tok, str) and not tok.strip():
            continue
        top = entry.get("top_logprobs")
        if isinstance(top, list) and top:
            return top
        if isinstance(tok, str) and isinstance(entry.get("logprob"), (int, float)):
            return [{"token": tok, "logprob": entry["logprob"]}]
        return None
    return None


def _count_prompt(tokenizer, messages: list[dict]) -> int:
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return len(ids)
    text = "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"
    return len(tokenizer(text)["input_ids"])
