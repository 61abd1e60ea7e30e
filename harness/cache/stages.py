"""Stage cache: every stage's output keyed by a fingerprint of everything that determines it.

Layout under HARNESS_CACHE (default ~/.cache/rag-or-finetune)/stages/:
    index/<key>/   a FAISS index, once per corpus + embedder + chunking
    train/<key>/   trained adapter or weights, once per method + data + seed + settings
    cells/<key>.json   one cell's prepare record and its predictions, one per question id

Keys hash the config, the model's and the data's content, library versions and the source of the
code that produces the output, so a change anywhere upstream is a miss, never a stale hit.
Everything is written to a temporary name (with the writer's pid) and renamed into place; temporary
names whose process is gone are swept when a cache is opened.

The cache can also live on an object store (`--store s3://bucket/prefix`, any fsspec URL): the same
layout under that prefix, published without renames (harness/cache/store.py), with artifacts downloaded
into a local scratch folder before they are loaded.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from harness.cache.hashing import file_digest, fingerprint
from harness.cache.store import MARKER
from harness.core.errors import HarnessError
from harness.core.records import remove_stale_temps, write_json

FORMAT = 1  # bump when what a cached entry holds changes


class StageCache:
    """`root`: a folder, or the URL of an object store (harness/cache/store.py). `self.root` is what
    records and workers are given (the folder or the URL); `self.local` is the folder on this machine:
    the cache itself, or for an object store the scratch copy of what was downloaded from it."""

    def __init__(self, root: Path | str | None = None, enabled: bool = True):
        from harness.cache.store import ObjectStore, resolve
        from harness.core.paths import cache_dir

        root = resolve(root) if root else cache_dir() / "stages"
        self.remote = ObjectStore(root) if isinstance(root, str) else None
        self.root = root
        self.local = cache_dir() / "store-scratch" / fingerprint(root)[:16] if self.remote else root
        self.enabled = enabled
        self.counts = {"hit": 0, "miss": 0}
        self._hashes: dict | None = None
        if enabled and self.local.is_dir():
            remove_stale_temps(self.local)

    def check_writable(self) -> None:
        """A cache that cannot be written (HARNESS_CACHE a file, a read-only or full folder) is an
        error now, before any model loads, not every answer computed and then lost at the end."""
        if not self.enabled:
            return
        folder = self.local
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=folder, prefix=f".probe.{os.getpid()}.", suffix=".tmp")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise HarnessError(f"the stage cache {folder} cannot be written ({exc.strerror or exc}); set "
                               "HARNESS_CACHE to a writable folder, or run with --no-cache") from None

    # -- content hashes, remembered by (path, size, mtime) so a 540 MB model is hashed once ------
    def _hash_memo(self) -> dict:
        if self._hashes is None:
            try:
                self._hashes = json.loads((self.local / "hashes.json").read_text())
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
                memo[key] = file_digest(f)
                changed = True
            h.update(f"{f.relative_to(path) if f != path else f.name}\0{memo[key]}\n".encode())
        if changed:
            try:
                write_json(self.local / "hashes.json", memo)
            except OSError:
                pass  # a read-only cache still works; it just hashes again next time
        return h.hexdigest()

    # -- per-cell records ---------------------------------------------------------------------
    def _cell_path(self, key: str) -> Path:
        return self.root / "cells" / f"{key}.json"

    def load_cell(self, key: str) -> dict | None:
        if not self.enabled:
            return None
        if self.remote:
            data = self.remote.read_json(f"cells/{key}.json")
        else:
            try:
                data = json.loads(self._cell_path(key).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return None
        return data if isinstance(data, dict) and data.get("format") == FORMAT else None

    def store_cell(self, key: str, data: dict) -> None:
        if not self.enabled:
            return
        if self.remote:
            self.remote.put_json(f"cells/{key}.json", {"format": FORMAT, **data})  # one PUT, atomic
        else:
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
            key = fingerprint({"kind": kind, "format": FORMAT, **parts})
            final = self.local / kind / key
            meta = self._fetch(f"{kind}/{key}", final) if self.remote else _read_meta(final)
            if meta is not None:
                self.counts["hit"] += 1
                return final, meta, True
        else:
            final = fallback
        self.counts["miss"] += 1
        meta = build_into(final, build)
        if self.enabled and self.remote:
            manifest = self.remote.publish(f"{kind}/{key}", final)
            write_json(final / MARKER, manifest)  # this scratch copy is what the store holds
            meta = {**meta, "stored_at": f"{self.remote.url}/{kind}/{key}"}
        return final, meta, False

    def _fetch(self, rel: str, final: Path) -> dict | None:
        """An object store's entry as a local folder: the scratch copy when it matches its manifest,
        else downloaded and checked against the store's manifest. None: the store has no complete
        entry (or a corrupt one)."""
        meta = _read_meta(final)
        try:
            manifest = json.loads((final / MARKER).read_text(encoding="utf-8"))
            files = manifest["files"]
            ok = all((final / n).is_file() and (final / n).stat().st_size == f["size"] for n, f in files.items())
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            ok = False
        if not (ok and meta is not None):
            manifest = self.remote.complete(rel)
            if manifest is None:
                return None
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = _temp_name(final)
            tmp.mkdir()
            try:
                if not self.remote.fetch(rel, manifest, tmp):
                    return None
                write_json(tmp / MARKER, manifest)
                _replace(tmp, final)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
            meta = _read_meta(final)
            if meta is None:
                return None
        return {**meta, "stored_at": f"{self.remote.url}/{rel}"}


def _read_meta(folder: Path) -> dict | None:
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _temp_name(final: Path) -> Path:
    return final.parent / f".{final.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"


def _replace(tmp: Path, final: Path) -> None:
    """Rename a finished folder into place, replacing an earlier copy (cache off) or a concurrent
    builder's."""
    if final.exists():
        old = final.parent / f".{final.name}.{os.getpid()}.old.tmp"
        os.replace(final, old)
        shutil.rmtree(old, ignore_errors=True)
    os.replace(tmp, final)


def build_into(final: Path, build: Callable[[Path], dict]) -> dict:
    """Build a folder under a temporary name, write its meta.json, and rename it into place."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(final)
    tmp.mkdir()
    try:
        meta = build(tmp)
        write_json(tmp / "meta.json", meta)
        _replace(tmp, final)
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
