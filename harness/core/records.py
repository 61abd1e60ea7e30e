"""Writing run records safely: every file goes to a temporary name first, then is renamed into place.

Temporary names are `.<name>.<pid>.<random>.tmp`: a process killed mid-write (SIGKILL included)
leaves at most such a file, never a half-written record, and `remove_stale_temps` sweeps the ones
whose writer is gone.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

from harness.core.errors import HarnessError

SCHEMA_VERSION = 1


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, fsync it, then rename it over `path`: a reader (or
    a crash, or a full disk) sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise HarnessError(f"{path}: no space left on the device; the previous version of the file "
                               "is kept") from exc
        raise


def write_json(path: Path, obj) -> None:
    write_atomic(path, json.dumps(obj, indent=1, ensure_ascii=False) + "\n")


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temp_files(root: Path) -> list[Path]:
    return sorted(p for p in Path(root).rglob(".*.tmp"))


def remove_stale_temps(root: Path) -> int:
    """Delete temporary files and folders under root left by processes that no longer run."""
    removed = 0
    for p in temp_files(root):
        fields = p.name.split(".")
        pid = next((int(f) for f in fields[2:] if f.isdigit()), None)
        if pid is not None and pid != os.getpid() and _alive(pid):
            continue
        if pid == os.getpid():
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed += 1
    return removed
