"""The OpenAI-compatible endpoint backend (harness/endpoint.py).

Fast tests drive it against scripted loopback servers (tests/endpoint_servers.py): streaming,
ordering, usage, and every fault it must survive or report in one line. The `slow` + `real_model`
tests start `transformers serve` on the packaged SmolLM2 folder and check that greedy answers through
the endpoint equal the local runtime's.
"""
from __future__ import annotations

import math
import threading
import time

import pytest
import requests  # noqa: F401  imported once here: with chardet installed it takes ~1 s of CPU, not a test's time
from endpoint_servers import Loopback, chunks_for, forward, free_port

from harness.core.errors import ConfigError, StrategyFailed
from harness.model.endpoint import (
    EndpointChoice,
    EndpointConfig,
    EndpointError,
    EndpointModel,
    first_line,
    letter_choices,
    match_choice,
)

QUESTIONS = [[{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": f"question {i}"}]
             for i in range(6)]
rel = pytest.mark.reliability
SECRET = "sk-test-SECRET-0123456789abcdef"


def cfg(url: str, **kw) -> EndpointConfig:
    kw.setdefault("backoff_s", 0.01)
    kw.setdefault("timeout_s", 10)
    return EndpointConfig(url, kw.pop("name", "fake-model"), **kw)


def echo(req, **kw) -> None:
    """Answer a chat request with "answer to <last user message>"."""
    q = req.body["messages"][-1]["content"]
    req.sse(chunks_for(f"answer to {q}", **kw))


# -- config ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw, words", [
    ({"base_url": "ftp://host/v1"}, r"http\(s\) URL"),
    ({"base_url": "localhost:8000"}, r"http\(s\) URL"),
    ({"base_url": "http://h/v1?x=1"}, "query"),
    ({"name": " "}, "endpoint.name"),
    ({"max_concurrency": 0}, "max_concurrency"),
    ({"max_concurrency": True}, "max_concurrency"),
    ({"retries": -1}, "retries"),
    ({"timeout_s": 0}, "timeout_s"),
    ({"timeout_s": float("nan")}, "timeout_s"),
    ({"backoff_s": -1}, "backoff_s"),
    ({"api_key_env": "MY KEY"}, "api_key_env"),
])
def test_config_rejects_bad_values_in_one_line(kw, words):
    args = {"base_url": "http://127.0.0.1:8000/v1", "name": "m", **kw}
    with pytest.raises(ConfigError, match=words) as err:
        EndpointConfig(**args)
    assert "\n" not in str(err.value)


@rel("security", "endpoint config: a key put in base_url or api_key_env is refused without being echoed")
def test_config_never_echoes_a_secret():
    with pytest.raises(ConfigError) as err:
        EndpointConfig(f"http://user:{SECRET}@host/v1", "m")
    assert SECRET not in str(err.value)
    with pytest.raises(ConfigError, match="NAME of an environment variable") as err:
        EndpointConfig("http://host/v1", "m", api_key_env=SECRET)
    assert SECRET not in str(err.value)
    with pytest.raises(ConfigError) as err:  # a key without dashes still looks like a key
        EndpointConfig("http://host/v1", "m", api_key_env="abcdef0123456789abcdef0123")
    assert "abcdef0123456789" not in str(err.value)


def test_config_normalises_and_fingerprints():
    c = EndpointConfig("http://127.0.0.1:8000/v1/", "m", api_key_env="OPENAI_API_KEY")
    assert c.base_url == "http://127.0.0.1:8000/v1"
    fp = c.fingerprint("m-2024")
    assert fp == {"backend": "openai-chat", "base_url": "http://127.0.0.1:8000/v1", "model": "m",
                  "server_model_id": "m-2024"}
    assert c.max_concurrency == 8 and c.timeout_s == 60 and c.retries == 3


# -- the happy path -------------------------------------------------------------------------------
def test_streamed_answers_come_back_in_input_order_with_usage():
    inflight, peak, lock = [0], [0], threading.Lock()

    def handle(req):
        if req.h.command != "POST":
            return
        with lock:
            inflight[0] += 1
            peak[0] = max(peak[0], inflight[0])
        time.sleep(0.02 * (6 - int(req.body["messages"][-1]["content"].split()[-1])))  # later ones finish first
        echo(req, prompt_tokens=7)
        with lock:
            inflight[0] -= 1
        return True

    with Loopback(handle) as srv, EndpointModel(cfg(srv.url, max_concurrency=3)) as em:
        gens = em.chat(QUESTIONS, 24)
        fp = em.fingerprint()
    assert [g.text for g in gens] == [f"answer to question {i}" for i in range(6)]
    for g in gens:
        assert (g.prompt_tokens, g.output_tokens, g.usage_source) == (7, 4, "server")
        assert 0 < g.ttft_s <= g.latency_s and g.attempts == 1 and g.model_id == "fake-model"
        assert g.finish_reason == "stop" and g.streamed
    assert 1 < peak[0] <= 3
    assert fp["server_model_id"] == "fake-model"
    body = next(b for m, p, b, _ in srv.seen if m == "POST")
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["temperature"] == 0 and body["max_tokens"] == 24 and body["model"] == "fake-model"
    assert body["messages"] == QUESTIONS[0] or body["messages"] in QUESTIONS
    assert "stop" not in body and "logprobs" not in body


def test_answer_is_cut_at_the_first_line_like_the_runtime():
    def handle(req):
        if req.h.command == "POST":
            req.sse(chunks_for("\nParis.\nAnd more"))
            return True

    with Loopback(handle) as srv, EndpointModel(cfg(srv.url)) as em:
        g, = em.chat(QUESTIONS[:1], 24)
        raw, = em.chat(QUESTIONS[:1], 24, stop=["\n\n"], stop_at_newline=False)
    assert g.text == "Paris." and g.raw_text == "\nParis.\nAnd more"
    assert raw.text == "\nParis.\nAnd more"
    assert srv.seen[-1][2]["stop"] == ["\n\n"]
    assert first_line("  \n Rome\nx") == "Rome" and first_line("\n\n") == "\n\n"


def test_close_delimited_stream_without_done_like_transformers_serve():
    """transformers serve sends usage in the finish chunk and no [DONE]; some servers close the
    connection instead of chunked encoding."""
    def handle(req):
        if req.h.command == "POST":
            evs = chunks_for("Paris", usage=False, done=False)
            evs[-1]["usage"] = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
            req.sse(evs, chunked=False)
            return True

    with Loopback(handle) as srv, EndpointModel(cfg(srv.url)) as em:
        g, = em.chat(QUESTIONS[:1], 8)
    assert (g.text, g.prompt_tokens, g.output_tokens, g.usage_source) == ("Paris", 5, 2, "server")


def test_missing_usage_is_counted_with_the_local_tokenizer(tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)

    def handle(req):
        if req.h.command == "POST":
            req.sse(chunks_for("Alice Stone", usage=False))
            return True

    with Loopback(handle) as srv:
        with EndpointModel(cfg(srv.url), tokenizer=tok) as em:
            g, = em.chat(QUESTIONS[:1], 8)
        with EndpointModel(cfg(srv.url)) as em:
            bare, = em.chat(QUESTIONS[:1], 8)
    assert g.usage_source == "local_tokenizer"
    ids = tok.apply_chat_template(QUESTIONS[0], add_generation_prompt=True, tokenize=True)
    assert g.prompt_tokens == len(ids["input_ids"] if hasattr(ids, "keys") else ids)
    assert g.output_tokens == len(tok("Alice Stone", add_special_tokens=False)["input_ids"]) > 0
    assert (bare.usage_source, bare.prompt_tokens, bare.output_tokens) == ("none", 0, 0)


def test_a_server_that_ignores_stream_answers_with_json():
    def handle(req):
        if req.h.command == "POST":
            req.json(200, {"model": "m-1", "choices": [{"index": 0, "message": {"role": "assistant", "content": "42"},
                                                         "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": 3, "completion_tokens": 1}})
            return True

    with Loopback(handle) as srv, EndpointModel(cfg(srv.url)) as em:
        g, = em.chat(QUESTIONS[:1], 8)
    assert (g.text, g.streamed, g.model_id, g.output_tokens) == ("42", False, "m-1", 1)
    assert g.ttft_s == g.latency_s


def test_an_optional_field_the_server_rejects_is_dropped_once():
    def handle(req):
        if req.h.command == "POST":
            if "stream_options" in req.body:
                req.json(422, {"detail": "Unexpected fields in the request: {'stream_options'}"})
            else:
                echo(req)
            return True

    with Loopback(handle) as srv, EndpointModel(cfg(srv.url)) as em:
        a = em.chat(QUESTIONS[:2], 8)
        before = srv.chat_count
        b = em.chat(QUESTIONS[:1], 8)
        assert srv.chat_count == before + 1  # remembered
    assert [g.text for g in a + b] == ["answer to question 0", "answer to question 1", "answer to question 0"]
    assert all(g.attempts == 1 for g in a + b)
    posts = [b for m, _, b, _ in srv.seen if m == "POST"]
    assert "stream_options" not in posts[-1]


# -- faults ---------------------------------------------------------------------------------------
@rel("fault", "endpoint: connection refused fails the cell at once, naming the base URL")
def test_refused_connection_fails_at_once_naming_the_url():
    url = f"http://127.0.0.1:{free_port()}/v1"
    t0 = time.time()
    with pytest.raises(EndpointError, match="connection refused") as err, EndpointModel(cfg(url)) as em:
        em.chat(QUESTIONS, 8)
    assert isinstance(err.value, StrategyFailed)
    assert url in str(err.value) and "\n" not in str(err.value)
    assert time.time() - t0 < 5


@rel("fault", "endpoint: server killed mid-run: retried with backoff, then one line")
def test_server_killed_mid_run_is_retried_then_reported():
    box = {}

    def handle(req):
        if req.h.command != "POST":
            return
        if req.n < 2:
            echo(req)
        else:  # the third request: half an answer, then the process dies
            req.start_stream()
            req.write(b'data: {"choices": [{"index": 0, "delta": {"content": "ans"}}]}\n\n')
            req.drop()
            threading.Thread(target=box["srv"].stop).start()
        return True

    srv = box["srv"] = Loopback(handle)
    done = []
    t0 = time.time()
    with pytest.raises(EndpointError) as err, EndpointModel(cfg(srv.url, max_concurrency=1, retries=2)) as em:
        em.chat(QUESTIONS, 8, on_result=done.append)
    msg = str(err.value)
    assert srv.url in msg and "gave up after 3 attempts" in msg and "endpoint.retries=2" in msg
    assert "connection" in msg and "\n" not in msg
    assert len(done) == 2 and time.time() - t0 < 10


@rel("fault", "endpoint: a connection dropped mid-answer is retried")
def test_a_connection_dropped_once_is_retried():
    def handle(req):
        if req.h.command != "POST":
            return
        if req.n == 0:
            req.start_stream()
            req.write(b'data: {"choices": [{"index": 0, "delta": {"content": "par"}}]}\n\n')
            req.drop()
        else:
            echo(req)
        return True

    with Loopback(handle) as srv, EndpointModel(cfg(srv.url, max_concurrency=1)) as em:
        gens = em.chat(QUESTIONS[:3], 8)
    assert [g.text for g in gens] == [f"answer to question {i}" for i in range(3)]
    assert [g.attempts for g in gens] == [2, 1, 1]
    assert gens[0].retry_wait_s > 0


@rel("fault", "endpoint: a server that hangs past timeout_s")
def test_a_server_that_hangs_times_out():
    stop = threading.Event()

    def handle(req):
        if req.h.command == "POST":
            stop.wait(5)
            return True

    t0 = time.time()
    with Loopback(handle) as srv:
        with pytest.raises(EndpointError, match=r"no answer within 0.3 s .*gave up after 2 attempts") as err, \
                EndpointModel(cfg(srv.url, timeout_s=0.3, retries=1)) as em:
            em.chat(QUESTIONS[:1], 8)
        stop.set()
    assert srv.url in str(err.value)
    assert time.time() - t0 < 4


@rel("fault", "endpoint: a stream that stalls mid-answer past timeout_s")
def test_a_stream_that_stalls_mid_answer_times_out():
    stop = threading.Event()

    def handle(req):
        if req.h.command == "POST":
            req.start_stream()
            req.write(b'data: {"choices": [{"index": 0, "delta": {"content": "slow"}}]}\n\n')
            stop.wait(5)
            return True

    t0 = time.time()
    with Loopback(handle) as srv:
        with pytest.raises(EndpointError, match=r"stalled: no data for 0.3 s .*gave up after 1 attempt "), \
                EndpointModel(cfg(srv.url, timeout_s=0.3, retries=0)) as em:
            em.chat(QUESTIONS[:1], 8)
        stop.set()
    assert time.time() - t0 < 3


def test_timeout_is_the_longest_silence_not_a_cap_on_the_answer():
    """A queued or slow answer that keeps sending is not cut: timeout_s bounds each wait."""
    def handle(req):
        if req.h.command == "POST":
            req.sse(chunks_for("one two three four five six"), delay=0.12)
            return True

    with Loopback(handle) as srv, EndpointModel(cfg(srv.url, timeout_s=0.5, retries=0)) as em:
        g, = em.chat(QUESTIONS[:1], 8)
    assert g.text == "one two three four five six" and g.latency_s > 0.5


@rel("fault", "endpoint: 429 then success, Retry-After honoured")
def test_429_then_success_honours_retry_after():
    def handle(req):
        if req.h.command == "POST":
            if req.n < 2:
                req.json(429, {"error": {"message": "Rate limit reached", "type": "rate_limit"}},
                         headers={"Retry-After": "1"})
            else:
                echo(req)
            return True

    t0 = time.time()
    with Loopback(handle) as srv, EndpointModel(cfg(srv.url, backoff_s=0.01)) as em:
        g, = em.chat(QUESTIONS[:1], 8)
    assert g.text == "answer to question 0" and g.attempts == 3
    assert g.retry_wait_s >= 1.9 and time.time() - t0 >= 1.9  # two waits of Retry-After: 1, not 0.01 s backoff


@rel("fault", "endpoint: 503 on every attempt")
def test_5xx_backs_off_then_gives_up_in_one_line():
    def handle(req):
        if req.h.command == "POST":
            req.json(503, {"error": "overloaded"})
            return True

    with Loopback(handle) as srv:
        with pytest.raises(EndpointError, match=r"HTTP 503: overloaded; gave up after 3 attempts") as err, \
                EndpointModel(cfg(srv.url, retries=2, max_concurrency=1)) as em:
            em.chat(QUESTIONS[:1], 8)
        assert srv.chat_count == 3
    assert srv.url in str(err.value)


@rel("fault", "endpoint: 429 asking for an hour fails at once")
def test_a_retry_after_longer_than_a_minute_fails_at_once():
    def handle(req):
        if req.h.command == "POST":
            req.json(429, {"error": {"message": "daily quota"}}, headers={"Retry-After": "3600"})
            return True

    with Loopback(handle) as srv:
        with pytest.raises(EndpointError, match="retry after 3600 s"), EndpointModel(cfg(srv.url)) as em:
            em.chat(QUESTIONS[:1], 8)
        assert srv.chat_count == 1


@rel("security", "endpoint: 401 names the env var; the key is in no error, repr or record")
def test_401_names_the_env_var_and_never_the_key(monkeypatch):
    monkeypatch.setenv("HARNESS_TEST_KEY", SECRET)

    def handle(req):
        auth = req.headers.get("Authorization", "")
        if auth != "Bearer right-key-123":
            # a careless server echoing the credentials it got
            req.json(401, {"error": {"message": f"Incorrect API key provided: {auth}"}})
            return True
        if req.h.command == "POST":
            echo(req)
            return True

    with Loopback(handle) as srv:
        c = cfg(srv.url, api_key_env="HARNESS_TEST_KEY")
        em = EndpointModel(c)
        with pytest.raises(EndpointError, match="set the environment variable HARNESS_TEST_KEY") as err:
            em.chat(QUESTIONS[:1], 8)
        texts = [str(err.value), repr(err.value), repr(c), repr(em), str(c.fingerprint()), str(em.__dict__)]
        assert all(SECRET not in t for t in texts)
        assert srv.url in str(err.value) and "HTTP 401" in str(err.value)
        assert srv.seen[0][3]["Authorization"] == f"Bearer {SECRET}"  # sent, only in the header
        em.close()
        monkeypatch.setenv("HARNESS_TEST_KEY", "right-key-123")
        with EndpointModel(c) as em:
            g, = em.chat(QUESTIONS[:1], 8)
        assert g.text == "answer to question 0"


@rel("bad input", "endpoint: api_key_env names an unset variable")
def test_a_key_env_var_that_is_not_set_is_named(monkeypatch):
    monkeypatch.delenv("HARNESS_TEST_KEY", raising=False)
    with Loopback(lambda req: None) as srv:
        with pytest.raises(EndpointError, match="HARNESS_TEST_KEY .* is not set"), \
                EndpointModel(cfg(srv.url, api_key_env="HARNESS_TEST_KEY")) as em:
            em.chat(QUESTIONS[:1], 8)
        assert srv.seen == []


@rel("bad input", "endpoint: unknown model (404) lists the served models")
def test_404_unknown_model_lists_the_served_models():
    def handle(req):
        if req.h.command == "POST":  # vLLM's answer
            req.json(404, {"object": "error", "message": f"The model `{req.body['model']}` does not exist.",
                           "type": "NotFoundError", "code": 404})
            return True

    with Loopback(handle, models=("llama-3-8b", "qwen-7b")) as srv:
        with pytest.raises(EndpointError, match=r"model 'gpt-x' is not served here \(HTTP 404: The model `gpt-x` "
                                                r"does not exist.\); the server lists: llama-3-8b, qwen-7b") as err, \
                EndpointModel(cfg(srv.url, name="gpt-x")) as em:
            em.chat(QUESTIONS[:1], 8)
        assert srv.chat_count == 1  # not retried
    assert srv.url in str(err.value)


@rel("bad input", "endpoint: base_url without /v1")
def test_404_on_the_path_hints_at_v1():
    with Loopback(lambda req: req.json(404, {"detail": "Not Found"}) or True) as srv:
        url = srv.url[: -len("/v1")]
        with pytest.raises(EndpointError, match=r"no chat-completions API at .*/chat/completions .*ends in /v1"), \
                EndpointModel(cfg(url)) as em:
            em.chat(QUESTIONS[:1], 8)


@pytest.mark.parametrize("events, words", [
    (["{\"choices\": [{\"index\": 0, \"delta\": {\"content\": \"x\"", "[DONE]"], "malformed JSON"),
    ([{"error": {"message": "CUDA out of memory"}}], "error mid-stream: CUDA out of memory"),
])
@rel("fault", "endpoint: malformed JSON or an error event in the stream")
def test_malformed_or_error_streams_fail_without_retry(events, words):
    def handle(req):
        if req.h.command == "POST":
            req.sse(events)
            return True

    with Loopback(handle) as srv:
        with pytest.raises(EndpointError, match=words) as err, EndpointModel(cfg(srv.url)) as em:
            em.chat(QUESTIONS[:1], 8)
        assert srv.chat_count == 1
    assert srv.url in str(err.value) and "\n" not in str(err.value)


@rel("fault", "endpoint: an HTML body instead of JSON")
def test_malformed_json_body():
    def handle(req):
        if req.h.command == "POST":
            req.json(200, b"<html>gateway</html>")
            return True

    with Loopback(handle) as srv, pytest.raises(EndpointError, match="malformed JSON.*gateway"), \
            EndpointModel(cfg(srv.url)) as em:
        em.chat(QUESTIONS[:1], 8)


def test_the_first_failure_stops_the_other_requests():
    def handle(req):
        if req.h.command == "POST":
            time.sleep(0.05)
            req.json(400, {"error": {"message": "context too long"}})
            return True

    many = QUESTIONS * 10
    with Loopback(handle) as srv:
        with pytest.raises(EndpointError, match="HTTP 400 from /chat/completions: context too long"), \
                EndpointModel(cfg(srv.url, max_concurrency=2)) as em:
            em.chat(many, 8)
        time.sleep(0.2)
        assert srv.chat_count <= 4


# -- multiple choice ------------------------------------------------------------------------------
def lp(token, logprob, top):
    return {"token": token, "logprob": logprob, "top_logprobs": [{"token": t, "logprob": v} for t, v in top]}


def test_choose_by_first_token_logprobs():
    def handle(req):
        if req.h.command == "POST":
            assert req.body["logprobs"] is True and req.body["top_logprobs"] >= 5
            content = [lp(" ", -0.01, [(" ", -0.01)]),  # a blank first token is skipped
                       lp("B", -0.5, [("B", -0.5), ("A", -1.5), (" A", -2.0), ("The", -3.0)])]
            req.sse(chunks_for("B. Paris", logprobs=content))
            return True

    q = [{"role": "user", "content": "Capital of France?"}]
    with Loopback(handle) as srv, EndpointModel(cfg(srv.url)) as em:
        c, = em.choose([q], [["Berlin", "Paris", "Rome"]])
    assert isinstance(c, EndpointChoice)
    assert (c.index, c.text, c.method) == (1, "Paris", "logprobs")
    assert c.letter_logprobs["B"] == -0.5 and c.letter_logprobs["C"] is None
    assert c.letter_logprobs["A"] == pytest.approx(-1.5 + math.log(1 + math.exp(-0.5)))  # "A" and " A" add up
    sent = srv.seen[-1][2]["messages"][-1]["content"]
    assert sent.startswith("Capital of France?\n\nOptions:\nA. Berlin\nB. Paris\nC. Rome\n")


def test_choose_falls_back_to_the_generated_letter_or_text():
    replies = iter(["(C) Rome", "Paris", "I think the answer is Berlin.", "no idea", "B"])

    def handle(req):
        if req.h.command == "POST":
            req.sse(chunks_for(next(replies)))  # no logprobs: transformers serve ignores the request
            return True

    q = [{"role": "user", "content": "Capital?"}]
    with Loopback(handle) as srv, EndpointModel(cfg(srv.url, max_concurrency=1)) as em:
        out = em.choose([q] * 5, [["Berlin", "Paris", "Rome"]] * 5)
    assert [(c.index, c.method) for c in out] == [(2, "generated"), (1, "generated"), (0, "generated"),
                                                  (None, "generated"), (1, "generated")]
    assert out[3].text == "no idea"


@pytest.mark.parametrize("text, index", [
    ("B", 1), ("b", None), ("B.", 1), ("(A)", 0), ("Answer: C", 2), ("The answer is B", 1),
    ("A cat", 0),  # the option "A cat", not the letter A
    ("Paris", 1), ("paris.", 1), ("It is Rome\nmore", 2), ("Berlin or Paris", 1), ("Rome or Paris", None),
    ("D", None), ("", None),
])
def test_match_choice(text, index):
    assert match_choice(text, ["A cat", "Paris", "Rome"]) == index


def test_letter_choices_refuses_too_many_options():
    with pytest.raises(ValueError, match="at most 26"):
        letter_choices([{"role": "user", "content": "q"}], [str(i) for i in range(27)])


# -- a real server: transformers serve on the packaged SmolLM2 -------------------------------------
N_REAL = 8


@pytest.fixture(scope="module")
def model_dir():
    pytest.importorskip("fastapi", reason="needs the serving extra: pip install 'transformers[serving]'")
    pytest.importorskip("uvicorn", reason="needs the serving extra: pip install 'transformers[serving]'")
    from harness.model.modelstore import resolve_model

    return resolve_model("smollm2-135m", progress=False)[0]


@pytest.fixture(scope="module")
def served(model_dir, tmp_path_factory):
    from endpoint_servers import TransformersServer

    srv = TransformersServer(model_dir, tmp_path_factory.mktemp("serve") / "serve.log")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def closed_book():
    from harness.data.benchmark import load_benchmark
    from harness.methods import prompts

    bench = load_benchmark("squadshifts_nyt")
    prompter = prompts.Prompter.for_benchmark(bench)
    return [prompter.closed_book(e.input) for e in bench.split("test")[:N_REAL]]


@pytest.mark.slow
@pytest.mark.real_model
def test_real_server_answers_equal_the_local_runtime(served, closed_book):
    from harness.model.runtime import Runtime

    rt = Runtime("smollm2-135m", device="cpu", progress=False)
    local = rt.generate([rt.encode_chat(m) for m in closed_book], max_new_tokens=24)
    # timeout_s: transformers serve answers one request at a time, so the last of 8 waits for 7 answers
    with EndpointModel(EndpointConfig(served.url, served.model_dir, max_concurrency=8, timeout_s=600)) as em:
        remote = em.chat(closed_book, 24)
        fp = em.fingerprint()
    assert [g.text.strip() for g in remote] == [g.text.strip() for g in local]
    for r, loc in zip(remote, local):
        assert r.usage_source == "server" and r.model_id == served.model_dir
        assert r.prompt_tokens == loc.prompt_tokens  # the server applies the same chat template
        # the server counts the end-of-turn token it generated; the runtime stops before it, and
        # at the first newline (the endpoint cuts the text there but the server goes on)
        assert r.output_tokens >= loc.output_tokens
        assert r.output_tokens <= 24 and (r.finish_reason == "length") == (r.output_tokens == 24)
        assert 0 < r.ttft_s <= r.latency_s
    assert fp["server_model_id"] == served.model_dir


@pytest.mark.slow
@pytest.mark.real_model
def test_real_server_faults_unknown_model_429_proxy_and_choice(served, closed_book):
    pinned = r"model 'smollm2' is not served here \(HTTP 400: Server is pinned"  # transformers serve's answer
    with pytest.raises(EndpointError, match=pinned) as err, EndpointModel(EndpointConfig(served.url, "smollm2")) as em:
        em.chat(closed_book[:1], 4)
    assert served.model_dir in str(err.value)

    upstream = served.url[: -len("/v1")]

    def proxy(req):
        if req.h.command == "POST" and req.n < 2:
            req.json(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "1"})
        else:
            forward(req, upstream)
        return True

    with Loopback(proxy) as px, EndpointModel(EndpointConfig(px.url, served.model_dir, backoff_s=0.01)) as em:
        through, = em.chat(closed_book[:1], 8)
        assert px.chat_count == 3
    with EndpointModel(EndpointConfig(served.url, served.model_dir)) as em:
        direct, = em.chat(closed_book[:1], 8)
        # transformers serve ignores logprobs (it logs "Ignoring unsupported fields"): the reply is parsed
        choice, = em.choose([[{"role": "user", "content": "What is the capital of France?"}]],
                            [["Berlin", "Paris", "Rome"]])
    assert through.text == direct.text and through.attempts == 3 and through.retry_wait_s >= 1.9
    assert (choice.method, choice.index) == ("generated", 1)


@pytest.mark.slow
@pytest.mark.real_model
def test_real_server_killed_mid_run(model_dir, closed_book, tmp_path):
    from endpoint_servers import TransformersServer

    srv = TransformersServer(model_dir, tmp_path / "serve.log")
    try:
        got = []

        def kill_after_first(_):
            got.append(1)
            if len(got) == 1:
                srv.kill()

        t0 = time.time()
        with pytest.raises(EndpointError, match=r"(connection refused|connection lost).*gave up after 3 attempts") \
                as err, EndpointModel(EndpointConfig(srv.url, srv.model_dir, max_concurrency=2, retries=2,
                                                     backoff_s=0.1)) as em:
            em.chat(closed_book, 24, on_result=kill_after_first)
        assert srv.url in str(err.value) and len(got) == 1
        assert time.time() - t0 < 120
    finally:
        srv.stop()
