"""Stage cache: every stage's output keyed by a fingerprint of everything that determines it.

Layout under HARNESS_CACHE (default ~/.cache/rag-or-finetune)/stages/:
    index/<key>/   a FAISS index, once per corpus + embedder + chunking
    train/<key>/   trained adapter or weights, once per method + data + seed + settings
    cells/<key>.json   one cell's prepare record and its predictions, one per question id

Keys hash the config, the model's and the data's content, library versions and the source of the
code that produces the output, so a change anywhere upstream is a miss, never a stale hit.
Everything is written to a temporary name (with the writer's pid) and renamed into place; temporary
names whose process is gone are swept when a cache is opened.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import sys
import types
from importlib import metadata
from pathlib import Path
from typing import Callable

from .records import remove_stale_temps, write_json

FORMAT = 1  # bump when what a cached entry holds changes
LIBRARIES = ("torch", "transformers", "peft", "sentence-transformers", "faiss-cpu", "numpy", "tokenizers",
             "safetensors")
# Modules whose code decides what every strategy outputs (prompts, decoding, training, retrieval).
CORE = ("runtime.py", "strategy.py", "prompts.py", "retrieval.py", "train.py", "finetune.py", "types.py")
HARNESS_DIR = Path(__file__).resolve().parent


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


def _file_digest(path: Path) -> str:
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


class StageCache:
    def __init__(self, root: Path | None = None, enabled: bool = True):
        from .modelstore import cache_dir

        self.root = Path(root) if root else cache_dir() / "stages"
        self.enabled = enabled
        self.counts = {"hit": 0, "miss": 0}
        self._hashes: dict | None = None
        if enabled and self.root.is_dir():
            remove_stale_temps(self.root)

    # -- content hashes, remembered by (path, size, mtime) so a 540 MB model is hashed once ------
    def _hash_memo(self) -> dict:
        if self._hashes is None:
            try:
                self._hashes = json.loads((self.root / "hashes.json").read_text())
            except (OSError, ValueError):
                self._hashes = {}
        return self._hashes

    def tree_hash(self, path: Path) -> str:
        """sha256 over every file's name and content in a folder (or of one file)."""
        path = Path(path).resolve()
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()
                                                     and not p.name.startswith("."))
        memo, changed = self._hash_memo(), False
        h = hashlib.sha256()
        for f in files:
            st = f.stat()
            key = f"{f}:{st.st_size}:{st.st_mtime_ns}"
            if key not in memo:
                memo[key] = _file_digest(f)
                changed = True
            h.update(f"{f.relative_to(path) if f != path else f.name}\0{memo[key]}\n".encode())
        if changed:
            try:
                write_json(self.root / "hashes.json", memo)
            except OSError:
                pass  # a read-only cache still works; it just hashes again next time
        return h.hexdigest()

    # -- per-cell records ---------------------------------------------------------------------
    def _cell_path(self, key: str) -> Path:
        return self.root / "cells" / f"{key}.json"

    def load_cell(self, key: str) -> dict | None:
        if not self.enabled:
            return None
        try:
            data = json.loads(self._cell_path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if data.get("format") == FORMAT else None

    def store_cell(self, key: str, data: dict) -> None:
        if self.enabled:
            write_json(self._cell_path(key), {"format": FORMAT, **data})

    # -- artifact folders ---------------------------------------------------------------------
    def artifact(self, kind: str, parts: dict, build: Callable[[Path], dict],
                 fallback: Path) -> tuple[Path, dict, bool]:
        """The folder holding one stage's output, and its meta: (folder, meta, hit).

        On a miss `build(folder)` fills a temporary folder and returns the meta to keep
        (what was measured while building); the folder is then renamed into place. With the
        cache off the output goes to `fallback` (the run's own artifacts folder), the same way.
        """
        if self.enabled:
            final = self.root / kind / fingerprint({"kind": kind, "format": FORMAT, **parts})
            try:
                meta = json.loads((final / "meta.json").read_text(encoding="utf-8"))
                self.counts["hit"] += 1
                return final, meta, True
            except (OSError, ValueError):
                pass
        else:
            final = fallback
        self.counts["miss"] += 1
        return final, build_into(final, build), False


def build_into(final: Path, build: Callable[[Path], dict]) -> dict:
    """Build a folder under a temporary name, write its meta.json, and rename it into place."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    tmp.mkdir()
    try:
        meta = build(tmp)
        write_json(tmp / "meta.json", meta)
        if final.exists():  # an earlier run's copy (cache off) or a concurrent builder's: replace it
            old = final.parent / f".{final.name}.{os.getpid()}.old.tmp"
            os.replace(final, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, final)
        return meta
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def stage(ctx, kind: str, parts: dict, build: Callable[[Path], dict]) -> tuple[Path, dict, bool]:
    """A strategy's cached stage: through the run's cache when it has one, else into its workdir."""
    cache = getattr(ctx, "cache", None)
    if cache is None:
        return ctx.workdir / kind, build_into(ctx.workdir / kind, build), False
    return cache.artifact(kind, parts, build, ctx.workdir / kind)
