"""Where the stage cache lives: a local folder, or any fsspec URL (s3://, gs://, az://, memory://, ...).

A folder (a plain path or file://) publishes as it always did: written under a temporary name, then
renamed into place (harness/cache/stages.py). Object stores cannot rename, so on them an artifact folder is
published by uploading its files under their final prefix and then writing a completion marker,
`_COMPLETE`, LAST: a manifest with every file's size and sha256. A reader takes an entry only when the
marker is there, parses, and every file it lists is present with that size; a half-uploaded entry (no
marker) or a bad manifest is ignored, recomputed and overwritten. Artifacts are loaded from local
files (adapters, FAISS indexes, checkpoints), so a hit is first downloaded into a local scratch folder
under the same key and each file checked against the manifest's sha256; a mismatch is a miss.

Cell records are small JSON objects written with one PUT each, and we rely on that PUT being atomic:
S3, GCS and Azure Blob show a reader the old object or the new one, never part of one, and read back
what was written. A backend without atomic puts can at worst show a truncated record, which does not
parse as JSON and is therefore recomputed, never loaded.
"""
from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

from harness.cache.hashing import file_digest
from harness.core.errors import ConfigError, HarnessError

MARKER = "_COMPLETE"
MANIFEST_FORMAT = 1
# The extras of pyproject.toml that install a protocol's driver.
EXTRAS = {"s3fs": "s3", "gcsfs": "gcs", "adlfs": "azure"}


def resolve(url: str | Path) -> Path | str:
    """A --store value as the stage cache takes it: a local folder (plain path, file://) as a Path,
    anything else as a checked fsspec URL. Unknown protocols and missing drivers are ConfigErrors."""
    if isinstance(url, Path):
        return url
    if url.startswith("file://"):
        url = url[len("file://"):]
    elif "://" in url:
        filesystem_class(url)
        if not url.split("://", 1)[1].strip("/"):
            raise ConfigError(f"--store {url}: name a bucket or folder, e.g. s3://bucket/prefix")
        return url.rstrip("/")
    if not url:
        raise ConfigError("--store: empty path")
    return Path(url).expanduser().resolve()


def filesystem_class(url: str):
    protocol = url.split("://", 1)[0]
    try:
        import fsspec
    except ImportError:
        raise ConfigError(f"--store {url}: object stores need fsspec: pip install fsspec") from None
    try:
        return fsspec.get_filesystem_class(protocol)
    except ValueError:
        known = [p for p in ("s3", "gs", "az", "hdfs", "memory") if p in fsspec.available_protocols()]
        raise ConfigError(f"--store {url}: unknown protocol {protocol}:// (fsspec knows {', '.join(known)}, ...; "
                          "or a folder: file:///path)") from None
    except ImportError:
        from fsspec.registry import known_implementations

        pkg = known_implementations.get(protocol, {}).get("class", protocol).split(".")[0].split(":")[0]
        extra = f" (or pip install -e '.[{EXTRAS[pkg]}]')" if pkg in EXTRAS else ""
        raise ConfigError(f"--store {url}: the {protocol}:// store needs the {pkg} package: pip install {pkg}"
                          + extra) from None


def _safe(name) -> bool:
    """A manifest entry names a file inside the entry, never elsewhere (a corrupt manifest must
    not write outside the scratch folder)."""
    p = PurePosixPath(name) if isinstance(name, str) else None
    return p is not None and bool(p.parts) and not p.is_absolute() and ".." not in p.parts and name != MARKER


class ObjectStore:
    """A stage cache on an fsspec filesystem, using no rename: marker-last publication (see above)."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        filesystem_class(self.url)  # a clear error for an unknown protocol or a missing driver
        # storage options come from fsspec's own config (FSSPEC_S3_*, ~/.config/fsspec) and the
        # driver's usual credentials (AWS_* variables, ~/.aws, gcloud), on every node alike
        from fsspec.core import url_to_fs

        self.fs, base = url_to_fs(self.url)
        self.base = base.rstrip("/")

    def _path(self, rel: str) -> str:
        return f"{self.base}/{rel}"

    def _failed(self, what: str, rel: str, exc: Exception) -> HarnessError:
        return HarnessError(f"{self.url}/{rel}: could not {what} the store: {type(exc).__name__}: {exc}")

    # -- single objects (cell records) ---------------------------------------------------------
    def read_json(self, rel: str):
        """The JSON object at rel, or None when it is absent or does not parse."""
        try:
            raw = self.fs.cat_file(self._path(rel))
        except FileNotFoundError:
            return None
        except Exception as exc:  # network, credentials, permissions: one clear message
            raise self._failed("read from", rel, exc) from exc
        try:
            return json.loads(raw)
        except ValueError:
            return None

    def put_json(self, rel: str, obj) -> None:
        """One PUT of the whole object (atomic on S3, GCS, Azure Blob)."""
        data = (json.dumps(obj, indent=1, ensure_ascii=False) + "\n").encode()
        try:
            self.fs.pipe_file(self._path(rel), data)
        except Exception as exc:
            raise self._failed("write to", rel, exc) from exc

    # -- artifact folders ----------------------------------------------------------------------
    def complete(self, rel: str) -> dict | None:
        """The manifest of the complete entry at rel, or None: no marker (absent or half-uploaded),
        a marker that is not a manifest, or a listed file missing or of another size."""
        manifest = self.read_json(f"{rel}/{MARKER}")
        files = manifest.get("files") if isinstance(manifest, dict) else None
        if not isinstance(files, dict) or manifest.get("format") != MANIFEST_FORMAT or "meta.json" not in files:
            return None
        prefix = self._path(rel) + "/"
        try:
            found = self.fs.find(prefix, detail=True)
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise self._failed("list", rel, exc) from exc
        sizes = {p[len(prefix):]: info.get("size") for p, info in found.items() if p.startswith(prefix)}
        for name, want in files.items():
            if not (_safe(name) and isinstance(want, dict) and isinstance(want.get("sha256"), str)
                    and sizes.get(name) == want.get("size")):
                return None
        return manifest

    def fetch(self, rel: str, manifest: dict, dest: Path) -> bool:
        """Download a complete entry's files into the local folder dest; False when one of them is not
        the file the manifest describes (changed or corrupted after the marker was written)."""
        for name, want in manifest["files"].items():
            local = dest / name
            local.parent.mkdir(parents=True, exist_ok=True)
            try:
                self.fs.get_file(self._path(f"{rel}/{name}"), str(local))
            except FileNotFoundError:
                return False
            except Exception as exc:
                raise self._failed("download from", rel, exc) from exc
            if local.stat().st_size != want["size"] or file_digest(local) != want["sha256"]:
                return False
        return True

    def publish(self, rel: str, folder: Path) -> dict:
        """Upload a finished local folder under rel, then its manifest as the marker, last. Whatever
        was there (a half-upload, a bad entry) is deleted first, the marker before the files."""
        prefix = self._path(rel)
        try:
            old = self.fs.find(prefix + "/")
            if old:
                marker = f"{prefix}/{MARKER}"
                if marker in old:
                    self.fs.rm_file(marker)
                rest = [p for p in old if p != marker]
                if rest:
                    self.fs.rm(rest)
            files = {}
            for f in sorted(p for p in folder.rglob("*") if p.is_file()):
                name = f.relative_to(folder).as_posix()
                self.fs.put_file(str(f), f"{prefix}/{name}")
                files[name] = {"size": f.stat().st_size, "sha256": file_digest(f)}
        except Exception as exc:
            raise self._failed("upload to", rel, exc) from exc
        manifest = {"format": MANIFEST_FORMAT, "files": files}
        self.put_json(f"{rel}/{MARKER}", manifest)
        return manifest
