"""A model behind an OpenAI-compatible endpoint, in the place of a cell's model runtime.

Prompting and RAG strategies answer through it unchanged: `answer_prompts` and `choose_prompts`
(harness/methods/strategy.py) send their chat messages to `runtime.endpoint` instead of decoding
locally. Local work stays local: `device` is where the embedder and index run. Anything that needs
the weights themselves (fine-tuning, log-likelihoods, the forgetting check) raises `NeedsLocalWeights`,
which fails that cell with one line saying what to pass, and the run goes on.

The server is asked once, GET /models, before any cell answers (`get()`). A refusal, a bad key or a
hang is remembered and fails every cell on this model with that line; a run whose answers are all
cached never contacts the server.
"""
from __future__ import annotations

import time

from harness.core.errors import StrategyFailed
from harness.model.catalog import ModelSpec
from harness.model.endpoint import EndpointError, EndpointModel


class NeedsLocalWeights(StrategyFailed, AttributeError):
    """What a strategy asked of the model needs its weights, and this model is an endpoint."""


def needs_weights(strategy: str, spec: ModelSpec) -> str:
    """The one line a fine-tuning (or other weights-bound) cell fails with on an endpoint model."""
    e = spec.endpoint
    return (f"{strategy} needs local weights, and model {spec.label!r} is an endpoint ({e.name} at {e.base_url}): "
            f"give {strategy} a local model with `model: NAME` in its strategies entry, NAME an entry of models: "
            f"with path: (a packaged name such as smollm2-135m, a model folder, a GGUF file or a cached hub id), "
            f"or run it apart with --model PATH")


class ServedRuntime:
    """The runtime face of an endpoint model: what cell keys need (device, fingerprint) without any
    request, the endpoint to answer with, and a clear failure for anything that needs weights."""

    served = True
    path = None
    dtype_name = None
    default_batch_size = None  # requests go out max_concurrency at a time; answers do not depend on it

    def __init__(self, spec: ModelSpec, device: str, progress: bool = False, trust_remote_code: bool = False):
        if not spec.served:
            raise ValueError(f"{spec.label} is a local model")
        self.spec = spec
        self.device = device  # where the embedder and the index run
        self.progress = progress
        self.trust_remote_code = trust_remote_code
        self.provenance = {"source": f"{spec.endpoint.name} at {spec.endpoint.base_url}"}
        self.load_measured = None  # the GET /models check: wall seconds and what the server listed
        self.failure: str | None = None
        self._endpoint: EndpointModel | None = None
        self._tokenizer = None

    def __repr__(self) -> str:
        return f"ServedRuntime({self.spec.label!r}, {self.spec.endpoint!r})"

    def fingerprint(self) -> dict:
        """What identifies the answers' model in cache keys: backend, base URL and model name. No
        request is made for it, so a run whose answers are all cached calls the server zero times;
        name a dated snapshot (gpt-4o-mini-2024-07-18) or rerun with --no-cache when the weights behind
        a name change. Never the key, the concurrency, the timeout or the retries."""
        return self.spec.endpoint.fingerprint(None)

    @property
    def tokenizer(self):
        """The `tokenizer:` model's tokenizer (counts tokens when the server sends no usage); None without one."""
        if self._tokenizer is None and self.spec.tokenizer:
            from transformers import AutoTokenizer

            from harness.model.modelstore import resolve_model

            path, _ = resolve_model(self.spec.tokenizer, progress=self.progress,
                                    trust_remote_code=self.trust_remote_code)
            self._tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=self.trust_remote_code)
        return self._tokenizer

    @property
    def endpoint(self) -> EndpointModel:
        if self._endpoint is None:
            self._endpoint = EndpointModel(self.spec.endpoint, tokenizer=self.tokenizer)
        return self._endpoint

    def get(self) -> "ServedRuntime":
        """Check the server once (GET /models) before any cell answers; a failure is kept for the cells."""
        if self.load_measured is None and self.failure is None:
            t0 = time.perf_counter()
            try:
                self.endpoint.check()
            except EndpointError as exc:
                self.failure = str(exc)
            self.load_measured = {"wall_s": time.perf_counter() - t0, "checked": "GET /models",
                                  "listed": self.endpoint.listed_models, "failure": self.failure}
        return self

    def ready(self) -> EndpointModel:
        """The endpoint, or the check's failure as the cell's error."""
        self.get()
        if self.failure:
            raise EndpointError(self.failure)
        return self.endpoint

    def fresh_model(self):
        raise NeedsLocalWeights(needs_weights("this strategy", self.spec))

    def __getattr__(self, name):  # only reached for what a local Runtime has and this does not
        if name.startswith("__"):
            raise AttributeError(name)
        raise NeedsLocalWeights(f"runtime.{name}: " + needs_weights("this strategy", self.spec))

    def close(self) -> None:
        if self._endpoint is not None:
            self._endpoint.close()
