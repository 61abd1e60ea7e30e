"""The model runtime, loaded on first use: a rerun whose every cell is cached never loads the model."""
from __future__ import annotations

from harness.model.modelstore import resolve_model
from harness.model.resources import (
    BYTES_PER_ELEMENT,
    measure,
    release_memory,
    rss_bytes,
    safetensors_params,
    touch_weights,
)
from harness.model.runtime import default_batch_size, pick_device, resolve_dtype


class LazyRuntime:
    """What fingerprints need (device, dtype, model path, default batch size) is known without
    loading; any other attribute loads the one Runtime and is read from it."""

    served = False  # local weights (harness/model/served.py is the endpoint's runtime)

    def __init__(self, model: str, device: str = "auto", dtype: str = "auto", *, trust_remote_code: bool = False,
                 progress: bool = True):
        self._model, self._device, self._dtype = model, device, dtype
        self._trust_remote_code, self._progress, self._runtime = trust_remote_code, progress, None
        self.device = pick_device(device)
        self.dtype_name = resolve_dtype(self.device, dtype)
        self.path, self.provenance = resolve_model(model, progress=progress, trust_remote_code=trust_remote_code)
        self.default_batch_size = default_batch_size(self.device)
        self.load_measured = None
        # The base weights a deployment holds, in the dtype it runs in; known without loading them.
        params = safetensors_params(self.path)
        self.weights_bytes = params * BYTES_PER_ELEMENT[self.dtype_name] if params is not None \
            and self.dtype_name in BYTES_PER_ELEMENT else None

    def get(self):
        if self._runtime is None:
            from harness.model.runtime import Runtime

            with measure() as m:
                self._runtime = Runtime(self._model, device=self._device, dtype=self._dtype, progress=self._progress,
                                        trust_remote_code=self._trust_remote_code)
                # The weights come memory-mapped from the safetensors file and are read in on first use: read
                # them now, so the first cell's memory does not carry the base model's (measured: resident
                # memory went from 424 to 924 MB on the first pass over SmolLM2-135M's weights).
                touch_weights(self._runtime.model)
            release_memory()
            # what every cell starts from: interpreter, libraries and the loaded base model
            self.load_measured = {**m.as_dict(), "resident_mb": round(rss_bytes() / 2**20, 1)}
        return self._runtime

    def __getattr__(self, name):  # only reached for what __init__ did not set
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.get(), name)
