"""Fingerprints: what every cache key and data check is made of.

A key hashes the config, the content of the model and the data, library versions and the source of
the code that produces an output, so a change anywhere upstream is a miss, never a stale hit.
"""
from __future__ import annotations

import functools
import hashlib
import json
import sys
import types
from importlib import metadata
from pathlib import Path

LIBRARIES = ("torch", "transformers", "peft", "sentence-transformers", "faiss-cpu", "numpy", "tokenizers",
             "safetensors")
# Modules whose code decides what every strategy outputs (prompts, decoding, training, retrieval).
CORE = ("model/runtime.py", "model/batching.py", "methods/strategy.py", "methods/prompts.py",
        "methods/retrieval.py", "methods/train.py", "methods/finetune.py", "core/types.py", "data/chunks.py",
        "data/tasks.py")
HARNESS_DIR = Path(__file__).resolve().parents[1]


def fingerprint(parts) -> str:
    blob = json.dumps(parts, sort_keys=True, default=repr, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


@functools.lru_cache(maxsize=1)
def library_versions() -> dict:
    out = {}
    for pkg in LIBRARIES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MB pieces (model weights are hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def documents_hash(documents) -> str:
    blob = json.dumps([[d.id, d.title, d.text] for d in documents], ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def code_version(cls: type) -> str:
    """Hash of the source that produces a strategy's output: the core modules, the modules of its
    classes, and the strategy modules those import from (lora-rag answers through strategies.rag)."""
    mods: set[types.ModuleType] = set()
    for c in cls.__mro__:
        mod = sys.modules.get(c.__module__)
        if mod is None or not mod.__name__.startswith(("strategies", "harness")):
            continue
        mods.add(mod)
        for value in vars(mod).values():
            name = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
            if isinstance(name, str) and name.startswith("strategies.") and name in sys.modules:
                mods.add(sys.modules[name])
    files = {Path(m.__file__).resolve() for m in mods if getattr(m, "__file__", None)}
    files |= {HARNESS_DIR / f for f in CORE}
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]
