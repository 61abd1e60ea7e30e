"""The model runtime, loaded on first use: a rerun whose every cell is cached never loads the model."""
from __future__ import annotations

from harness.model.modelstore import resolve_model
from harness.model.resources import measure
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

    def get(self):
        if self._runtime is None:
            from harness.model.runtime import Runtime

            with measure() as m:
                self._runtime = Runtime(self._model, device=self._device, dtype=self._dtype, progress=self._progress,
                                        trust_remote_code=self._trust_remote_code)
            self.load_measured = m.as_dict()
        return self._runtime

    def __getattr__(self, name):  # only reached for what __init__ did not set
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.get(), name)
