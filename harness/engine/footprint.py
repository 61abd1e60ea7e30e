"""What a cell holds in memory: the peak the cell itself needed, and the bytes its deployment must hold.

Memory per cell is measured as a rise, not in isolation: before the cell, freed memory is handed back
to the OS (harness/model/resources.release_memory), then the cell's resident memory is sampled and
its rise above that start recorded. The cell's figure is

    cell_mb = base_mb + rise_mb + reused_mb

base_mb: the process right after the base model loaded (interpreter, libraries, base weights): what
every cell needs. rise_mb: the cell's own peak above its start (training copies, optimizer state,
embedder, index, activations, KV cache). reused_mb: a model another cell trained and this one
answers with (lora-rag with lora's adapter), resident before the cell started and so not in its
rise. What earlier cells left behind (models kept for reuse, the allocator's free pages) is in
neither, so no cell inherits another's high-water mark. In-process measurement was chosen over a
process per cell because a fresh process would load the model again for every cell.
"""
from __future__ import annotations

from pathlib import Path

from harness.model.resources import Measured, tensor_bytes


def _dir_bytes(path) -> int:
    path = Path(path)
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def deployment(strat, prepare: dict, runtime) -> dict:
    """The bytes one serving replica of this strategy must hold (weights and retrieval state; the KV
    cache and activations come on top), in the fields of harness/analysis/serving.Deployment.

    base_bytes: the base model's weights in the run's dtype (0 for a full fine-tune, which holds its
    own copy instead: own_weights_bytes; 0 for an endpoint model, served elsewhere). adapter_bytes: the
    saved adapter (peft methods), which loads beside a shared base. embedder_bytes: the embedding
    model's weights. index_bytes: the vectors (4 bytes x dimensions x chunks), the chunk table and the
    documents' text the prompts are cut from."""
    if getattr(runtime, "served", False):
        base = 0  # an endpoint's weights live on its server: this deployment holds only retrieval state
    else:
        base = getattr(runtime, "weights_bytes", None)
        if base is None:
            base = tensor_bytes(runtime.model)
    tuned = getattr(strat, "model", None)
    full = bool(getattr(strat, "fine_tunes", False)) and tuned is not None and not prepare.get("peft_type")
    own = tensor_bytes(tuned) if full else 0
    adapter = _dir_bytes(strat.artifact_path) if getattr(strat, "fine_tunes", False) and not full \
        and getattr(strat, "artifact_path", None) else 0
    embedder = index = 0
    found = getattr(getattr(strat, "retriever", None), "index", None)  # TopK's Index (strategies/rag.py)
    if found is not None and getattr(found, "index", None) is not None:
        model = getattr(found, "model", None)
        embedder = tensor_bytes(model) if hasattr(model, "parameters") else 0
        vectors = found.index.ntotal * found.index.d * 4
        table = sum(a.itemsize * len(a) for a in found.rows)
        text = sum(len(d.text.encode("utf-8")) for d in found.docs)
        index = vectors + table + text
    held_base = 0 if full else base
    return {"base_bytes": held_base, "own_weights_bytes": own, "adapter_bytes": adapter,
            "embedder_bytes": embedder, "index_bytes": index,
            "total_bytes": held_base + own + adapter + embedder + index, "shares_base": not full,
            "note": "weights, adapter, embedder and index; the KV cache and activations need more"}


def memory(whole: Measured, runtime, prepare: Measured | dict | None, answer_rise_mb: float | None,
           reused_bytes: int = 0) -> dict:
    """The cell's memory record (see the module's docstring)."""
    load = getattr(runtime, "load_measured", None) or {}
    base = load.get("resident_mb")
    rise = whole.rise_mb
    out = {"method": "rise above the cell's start after freed memory was returned to the OS, plus the process "
                     "with the base model loaded",
           "base_mb": base, "start_rss_mb": round(whole.start_rss_mb or 0.0, 1),
           "rise_mb": None if rise is None else round(rise, 1),
           "prepare_rise_mb": (prepare or {}).get("rise_rss_mb") if isinstance(prepare, dict) else None,
           "answer_rise_mb": None if answer_rise_mb is None else round(answer_rise_mb, 1),
           "reused_mb": round(reused_bytes / 2**20, 1),
           "cell_mb": None if base is None or rise is None else round(base + rise + reused_bytes / 2**20, 1)}
    d = whole.as_dict()
    if "rise_gpu_mb" in d:
        out["rise_gpu_mb"] = d["rise_gpu_mb"]
    return out
