"""Helpers shared by the corpus build scripts (``corpora/<name>/build.py``).

Standard library only. Each build script puts this folder on ``sys.path``
and imports from here, so the scripts still run as plain files
(``python corpora/<name>/build.py``) from any working directory. Only
fetching, reading and writing live here; each corpus's own parsing,
filtering and selection stay in its build script.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def pip_download(spec: str, filename: str, dest: str, *, wheel: bool) -> str:
    """``pip download`` one package without its dependencies into ``dest``.

    ``wheel=False`` fetches the source archive (``--no-binary :all:``),
    ``wheel=True`` the wheel (``--only-binary :all:``). Returns the path of
    ``filename`` in ``dest``.
    """
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps",
           "--only-binary" if wheel else "--no-binary", ":all:", spec, "-d", dest]
    print("running:", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True)
    path = os.path.join(dest, filename)
    if not os.path.isfile(path):
        raise SystemExit(f"pip download did not produce {filename} in {dest}")
    return path


def read_tar_member(archive: str, member: str) -> bytes:
    """The bytes of one member of a .tar.gz, read without extracting the archive."""
    with tarfile.open(archive, "r:gz") as tar:
        for info in tar:  # streams; stops at the member
            if info.name == member:
                f = tar.extractfile(info)
                if f is None:
                    break
                return f.read()
    raise SystemExit(f"{member} not found in {archive}")


def write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def write_corpus(out: str, documents: list[dict], questions: list[dict], card: dict) -> None:
    """Write documents.jsonl, questions.jsonl and benchmark.json into ``out``."""
    os.makedirs(out, exist_ok=True)
    write_atomic(os.path.join(out, "documents.jsonl"), jsonl(documents))
    write_atomic(os.path.join(out, "questions.jsonl"), jsonl(questions))
    write_atomic(os.path.join(out, "benchmark.json"),
                 json.dumps(card, ensure_ascii=False, indent=2) + "\n")
