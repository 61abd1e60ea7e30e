"""A run's models, as configured: each one local weights or an OpenAI-compatible endpoint.

The run YAML names them in a `models:` block and each strategy picks one with its `model:` key
(default: the run's `model`):

    model: small                      # the default model of every strategy without a `model:` key
    models:
      big: {backend: openai, base_url: http://127.0.0.1:8000/v1, name: MODEL, api_key_env: VAR,
            max_concurrency: 8, timeout_s: 60, retries: 3}
      small: {path: smollm2-135m}      # or `small: smollm2-135m`
    strategies:
      rag: {model: big}
      lora: {}                        # the default model, small

A local model's `path` is a packaged name (smollm2-135m), a model folder, a GGUF file, or a Hugging
Face hub id already in the local HF cache (harness/model/modelstore.py resolves each, never
downloading). A model named anywhere without a `models:` entry is local: `model: smollm2-135m`.
On the command line, `--model openai:NAME --base-url URL [--api-key-env VAR]` adds the endpoint
entry `NAME` and makes it the default.

Parsing only: nothing here loads weights or contacts a server. Every problem is a ConfigError
that names the key (`models.big.timeout_s`), so the YAML reader can add the file and line.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields

from harness.core.errors import ConfigError
from harness.model.endpoint import EndpointConfig

OPENAI = "openai"  # chat completions, as vLLM, llama.cpp, TGI, Ollama, transformers serve and hosted APIs speak it
LOCAL = "local"
BACKENDS = (LOCAL, OPENAI)
ENDPOINT_PREFIX = "openai:"  # --model openai:NAME
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}\Z")
_ENDPOINT_KEYS = tuple(f.name for f in fields(EndpointConfig))
LOCAL_KEYS = ("backend", "path")
OPENAI_KEYS = ("backend", *_ENDPOINT_KEYS, "tokenizer")


@dataclass(frozen=True)
class ModelSpec:
    """One model of a run. label: what the run calls it (its `models:` key, or the reference itself).
    Local: `path` is what modelstore.resolve_model takes. Endpoint: `endpoint` holds where and how to
    call it; `tokenizer` (a local model reference) counts tokens when the server sends no usage."""

    label: str
    backend: str = LOCAL
    path: str | None = None
    endpoint: EndpointConfig | None = None
    tokenizer: str | None = None

    @property
    def served(self) -> bool:
        return self.backend == OPENAI

    @property
    def name(self) -> str:
        """The model's own name: the name sent to the server, or the local reference. Hosted prices
        are looked up by it (then by the label)."""
        return self.endpoint.name if self.endpoint is not None else str(self.path)

    def record(self) -> dict:
        """What results.json says of it: where it is and how it was called; never a key (only the
        name of the environment variable that holds one)."""
        if self.endpoint is None:
            return {"label": self.label, "backend": LOCAL, "name": self.name}
        e = self.endpoint
        return {"label": self.label, "backend": OPENAI, "name": e.name, "base_url": e.base_url,
                "api_key_env": e.api_key_env, "max_concurrency": e.max_concurrency, "timeout_s": e.timeout_s,
                "retries": e.retries, **({"tokenizer": self.tokenizer} if self.tokenizer else {})}


def check_label(label) -> str:
    if not isinstance(label, str) or not _LABEL.match(label):
        raise ConfigError(f"models: {label!r} is not a model name: use letters, digits and . _ - : / @ + "
                          "(at most 128 characters, starting with a letter or digit)")
    return label


def parse_model(label: str, value) -> ModelSpec:
    """One `models:` entry: a string (a local model reference) or a mapping (see the module docstring)."""
    check_label(label)
    at = f"models.{label}"
    if isinstance(value, str):
        value = {"path": value}
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(f"{at}: give a local model (path: NAME, FOLDER, FILE.gguf or HUB_ID) or an endpoint "
                          f"(backend: openai, base_url, name), got {value!r}")
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"{at}: keys must be strings, got {bad[0]!r}")
    if "backend" not in value and "path" in value and "base_url" in value:
        raise ConfigError(f"{at}: give path (a local model) or base_url with backend: openai (an endpoint), not both")
    backend = value.get("backend", OPENAI if "base_url" in value else LOCAL)
    if backend not in BACKENDS:
        raise ConfigError(f"{at}.backend: unknown backend {backend!r}; known: {', '.join(BACKENDS)} (openai: any "
                          "OpenAI-compatible server: vLLM, llama.cpp's server, TGI, Ollama, a hosted API)")
    known = OPENAI_KEYS if backend == OPENAI else LOCAL_KEYS
    unknown = sorted(k for k in value if k not in known)
    if unknown:
        hint = " (an endpoint needs backend: openai)" if backend == LOCAL and set(unknown) & set(OPENAI_KEYS) else ""
        article = "an" if backend == OPENAI else "a"
        raise ConfigError(f"{at}.{unknown[0]}: unknown key(s) {', '.join(unknown)} for {article} {backend} "
                          f"model{hint}; known: {', '.join(known)}")
    if backend == LOCAL:
        path = value.get("path")
        if not isinstance(path, str) or not path.strip() or "\0" in path:
            raise ConfigError(f"{at}.path: a local model needs path: a packaged name (smollm2-135m), a model "
                              f"folder, a GGUF file or a Hugging Face hub id, got {path!r}")
        if path.startswith(ENDPOINT_PREFIX):
            raise ConfigError(f"{at}.path: {path!r} names an endpoint; write backend: openai, base_url: URL, "
                              f"name: {path[len(ENDPOINT_PREFIX):] or 'MODEL'}")
        return ModelSpec(label, LOCAL, path=path)
    for req in ("base_url", "name"):
        if req not in value:
            what = " (like http://127.0.0.1:8000/v1)" if req == "base_url" else " (the served model's name)"
            raise ConfigError(f"{at}: an endpoint needs {req}{what}")
    tokenizer = value.get("tokenizer")
    if tokenizer is not None and (not isinstance(tokenizer, str) or not tokenizer.strip()):
        raise ConfigError(f"{at}.tokenizer: a local model whose tokenizer counts tokens when the server sends no "
                          f"usage, got {tokenizer!r}")
    try:
        endpoint = EndpointConfig(**{k: value[k] for k in _ENDPOINT_KEYS if k in value})
    except ConfigError as exc:
        m = re.match(r"endpoint\.(\w+) (.*)", str(exc), flags=re.S)
        if m:  # name the key of this entry, so the YAML reader finds its line
            raise ConfigError(f"{at}.{m.group(1)}: {m.group(1)} {m.group(2)}") from None
        raise ConfigError(f"{at}: {exc}") from None
    return ModelSpec(label, OPENAI, endpoint=endpoint, tokenizer=tokenizer)


def parse_models(block) -> dict[str, ModelSpec]:
    """The whole `models:` block: label -> ModelSpec."""
    if block is None:
        return {}
    if not isinstance(block, Mapping):
        raise ConfigError(f"models: a mapping of names to models, got {block!r}")
    return {check_label(k): parse_model(k, v) for k, v in block.items()}


def model_for(ref: str, models: Mapping[str, ModelSpec]) -> ModelSpec:
    """What a `model:` value names: an entry of `models:`, else a local model reference."""
    if not isinstance(ref, str) or not ref.strip() or "\0" in ref:
        raise ConfigError(f"model must name an entry of models: or a local model, got {ref!r}")
    if ref in models:
        return models[ref]
    if ref.startswith(ENDPOINT_PREFIX):
        raise ConfigError(f"model {ref!r}: an endpoint needs its URL: --model {ref} --base-url URL on the command "
                          f"line, or a models: entry with backend: openai, base_url and name")
    return ModelSpec(ref, LOCAL, path=ref)


def endpoint_entry(model: str, base_url: str | None, api_key_env: str | None) -> tuple[str, dict] | None:
    """The command line's `--model openai:NAME --base-url URL [--api-key-env VAR]` as a models: entry
    (label NAME); None when --model names no endpoint. --base-url or --api-key-env without it: an error."""
    if not model or not model.startswith(ENDPOINT_PREFIX):
        if base_url or api_key_env:
            given = "--base-url" if base_url else "--api-key-env"
            raise ConfigError(f"{given} goes with --model openai:NAME (the model an OpenAI-compatible server serves)")
        return None
    name = model[len(ENDPOINT_PREFIX):]
    if not name.strip():
        raise ConfigError("--model openai:NAME needs the served model's name after 'openai:'")
    if not base_url:
        raise ConfigError(f"--model {model} needs --base-url URL (like http://127.0.0.1:8000/v1)")
    entry = {"backend": OPENAI, "base_url": base_url, "name": name,
             **({"api_key_env": api_key_env} if api_key_env else {})}
    label = name if _LABEL.match(name) else \
        re.sub(r"[^A-Za-z0-9._:/@+-]", "-", name).lstrip("-._:/@+")[:128] or "endpoint"
    try:
        parse_model(label, entry)  # the URL and the key's variable name are checked now
    except ConfigError as exc:
        raise ConfigError(f"--model {model}: {str(exc).split(': ', 1)[-1]}") from None
    return label, entry
