"""Names that become paths: a benchmark's name (from its benchmark.json), a strategy's, an id.

Whatever a name holds ('../../x', '/etc', 'a/b', NUL), the path made from it stays one plain
entry inside the folder it is joined to.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from harness.core.errors import HarnessError

# Where the harness's own files are: the checkout's root, or site-packages when installed from a
# wheel (corpora/, strategies/ and configs/ are installed beside harness/ either way).
SOURCE_ROOT = Path(__file__).resolve().parents[2]
CORPORA_DIR = SOURCE_ROOT / "corpora"
CONFIGS_DIR = SOURCE_ROOT / "configs"
DEFAULT_PRICES = CONFIGS_DIR / "prices.yaml"


def shown(path) -> str:
    """A path as records and reports show it: relative to the harness's own root for its built-in
    corpora (the same on every machine), else relative to the current folder when inside it."""
    p = Path(path).resolve()
    for base in (SOURCE_ROOT, Path.cwd()):
        if p.is_relative_to(base.resolve()):
            return str(p.relative_to(base.resolve())) or "."
    return str(path)


def cache_dir() -> Path:
    """The harness's cache: $HARNESS_CACHE, else $XDG_CACHE_HOME/rag-or-finetune (~/.cache/...)."""
    root = os.environ.get("HARNESS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "rag-or-finetune"
    )
    return Path(root)


def reports_root() -> Path:
    """Where runs are written: $HARNESS_REPORTS, else reports/ under the current folder (never inside
    site-packages). Read on every call, so a test or a caller can point it elsewhere."""
    return Path(os.environ.get("HARNESS_REPORTS") or Path.cwd() / "reports")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name: str, limit: int = 80) -> str:
    """A single file name made from `name`: letters, digits, '.', '_' and '-', no leading dot (so
    never '..' or hidden). A name that had to change gets a short hash of the original, so two
    different names never map to one folder."""
    clean = _UNSAFE.sub("_", name).lstrip(".")[:limit]
    if clean == name and clean:
        return clean
    return f"{clean or '_'}-{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


def inside(root: Path, *names: str) -> Path:
    """root / safe_name(n1) / safe_name(n2) ..., checked to resolve inside root (a symlink planted
    in the folder cannot lead out of it either)."""
    path = root.joinpath(*(safe_name(n) for n in names))
    if not path.resolve().is_relative_to(root.resolve()):
        raise HarnessError(f"{path} leads outside {root}")
    return path


def claim_folder(path: Path) -> Path:
    """Make `path` this run's folder: it must be missing or empty, and a marker file created with
    O_EXCL makes the claim atomic, so two runs given the same --out at once never share it."""
    if path.exists() and (not path.is_dir() or any(p.name != CLAIM for p in path.iterdir())):
        raise HarnessError(f"output folder {path} already exists and is not empty; pick another --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path / CLAIM, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        raise HarnessError(f"output folder {path} is taken by another run started at the same time; "
                           "pick another --out") from None
    except OSError as exc:
        raise HarnessError(f"cannot create the output folder {path}: {exc.strerror or exc}") from None
    return path


CLAIM = ".run-claimed"
