"""Writing run records safely: every file goes to a temporary name first, then is renamed into place.

Temporary names are `.<name>.<pid>.<random>.tmp`: a process killed mid-write (SIGKILL included)
leaves at most such a file, never a half-written record, and `remove_stale_temps` sweeps the ones
whose writer is gone.
"""
from __future__ import annotations

import errno
import json
import math
import os
import re
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable

from harness.core.errors import DataError, HarnessError

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


def finite(obj):
    """obj with every NaN and infinity replaced by None (null): records stay strict JSON, which every
    reader (the harness's own, a browser's JSON.parse, jq) accepts. A measurement that is not a
    number is recorded as no measurement."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def dumps(obj, **kw) -> str:
    """json.dumps that never writes NaN or Infinity (not JSON): they become null."""
    try:
        return json.dumps(obj, ensure_ascii=False, allow_nan=False, **kw)
    except ValueError:  # a non-finite float somewhere: the rare case pays for the walk
        return json.dumps(finite(obj), ensure_ascii=False, allow_nan=False, **kw)


def write_json(path: Path, obj) -> None:
    write_atomic(path, dumps(obj, indent=1) + "\n")


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    write_atomic(path, "".join(dumps(r) + "\n" for r in rows))


class NotStrictJSON(ValueError):
    """NaN, Infinity or -Infinity in a record: Python's json accepts them, JSON does not."""


def _refuse_constant(name: str):
    raise NotStrictJSON(f"{name} is not a JSON number")


def loads_strict(text: str):
    """json.loads that refuses NaN, Infinity and -Infinity (NotStrictJSON, a ValueError)."""
    return json.loads(text, parse_constant=_refuse_constant)


_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|(-?Infinity|NaN)')


def nonfinite_line(text: str) -> int | None:
    """The line of the first NaN / Infinity token outside a string, for an error message."""
    for m in _TOKEN.finditer(text):
        if m.group(1):
            return text.count("\n", 0, m.start()) + 1
    return None


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def regular_file(path: Path, what: str = "file") -> Path:
    """path, checked to be a regular file (after links): a FIFO would block a read forever and a
    device (/dev/zero) never ends. DataError naming it otherwise; FileNotFoundError passes through."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        kind = ("a folder" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
                else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise DataError(f"is {kind}, not a regular {what}: refused", path)
    return path


@contextmanager
def run_lock(run_dir: Path):
    """One writer per run folder: a second run, a --resume or a `harness report` of the same folder
    stops at once (filelock: an OS lock, released when the process dies)."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(Path(run_dir) / ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise HarnessError(f"{run_dir} is being written by another harness process") from None
    except OSError as exc:
        raise HarnessError(f"{run_dir}: cannot lock the run folder ({exc.strerror or exc})") from None
    try:
        yield
    finally:
        lock.release()
        (Path(run_dir) / ".lock").unlink(missing_ok=True)


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
