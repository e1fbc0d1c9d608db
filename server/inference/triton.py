"""Triton Inference Server implementation of the Encoder protocol (OMNIVEC_MODEL__BACKEND=triton).

The towers run on a Triton server (a repository written by `omnivec triton-repo`); this process
keeps preprocessing, batching, the index and the API. Each model call is one Triton infer
request for the whole batch the batcher formed. Clients are per thread (tritonclient's are not
documented as thread-safe). Needs `pip install 'omnivec[triton]'` (tritonclient).
"""

from __future__ import annotations

import threading
from typing import Any, Mapping

import numpy as np

from ..bundle import BundleError, TowerSpec

_TRITON_TYPES = {np.dtype(np.float32): "FP32", np.dtype(np.float16): "FP16", np.dtype(np.int64): "INT64", np.dtype(np.int32): "INT32"}
_NUMPY = {"float32": np.float32, "float16": np.float16, "int64": np.int64, "int32": np.int32}
OUTPUT = "embeddings"


def _client_module(protocol: str) -> Any:
    try:
        if protocol == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
    except ImportError:
        raise BundleError("the Triton backend needs tritonclient: pip install 'omnivec[triton]'") from None
    return module


class TritonEncoder:
    """One tower as the Triton model `model_name`; checked against the bundle's manifest at start."""

    def __init__(self, url: str, model_name: str, modality: str, tower: TowerSpec, dim: int, *, protocol: str = "grpc", timeout_s: float = 30.0) -> None:
        self.url = url
        self.model_name = model_name
        self.modality = modality
        self.protocol = protocol
        self.timeout_s = timeout_s
        self.input_names = [spec.name for spec in tower.inputs]
        self._dtypes = {spec.name: _NUMPY[spec.dtype] for spec in tower.inputs}
        self.dim = dim
        self.providers = [f"triton:{protocol}://{url}/{model_name}"]
        self._module = _client_module(protocol)
        self._local = threading.local()
        self._check()

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            kwargs = {"network_timeout": self.timeout_s} if self.protocol == "http" else {}
            client = self._local.client = self._module.InferenceServerClient(self.url, **kwargs)
        return client

    def _check(self) -> None:
        """Fail at startup, naming the fix, when Triton is unreachable or serves another model."""
        hint = f"write the repository with `omnivec triton-repo --bundle BUNDLE --out REPO` and start tritonserver on it"
        try:
            live = self._client().is_server_live()
        except Exception as exc:  # noqa: BLE001 - connection refused, DNS, TLS: all mean the same to the user
            raise BundleError(f"no Triton server answers at {self.url} over {self.protocol} ({exc.__class__.__name__}: {exc}); {hint}") from exc
        if not live or not self._client().is_model_ready(self.model_name):
            raise BundleError(f"Triton at {self.url} has no ready model {self.model_name!r} for the {self.modality} tower; {hint}")
        as_json = {"as_json": True} if self.protocol == "grpc" else {}
        metadata = self._client().get_model_metadata(self.model_name, **as_json)
        config = self._client().get_model_config(self.model_name, **as_json)
        config = config.get("config", config)  # gRPC wraps it
        self.max_batch = int(config.get("max_batch_size") or 0) or None  # None: Triton does not batch this model
        served_inputs = sorted(i["name"] for i in metadata["inputs"])
        served_outputs = [o["name"] for o in metadata["outputs"]]
        if served_inputs != sorted(self.input_names) or OUTPUT not in served_outputs:
            raise BundleError(
                f"Triton model {self.model_name!r} takes {served_inputs} and gives {served_outputs}, but the bundle's {self.modality} tower "
                f"takes {sorted(self.input_names)} and gives [{OUTPUT!r}]: it was written from another bundle; {hint}"
            )

    def encode(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        rows = len(next(iter(inputs.values())))
        if self.max_batch and rows > self.max_batch:  # Triton refuses batches over the model's max_batch_size
            parts = [self.encode({k: v[i : i + self.max_batch] for k, v in inputs.items()}) for i in range(0, rows, self.max_batch)]
            return np.concatenate(parts)
        request = []
        for name in self.input_names:
            array = np.ascontiguousarray(inputs[name], dtype=self._dtypes[name])
            tensor = self._module.InferInput(name, list(array.shape), _TRITON_TYPES[array.dtype])
            tensor.set_data_from_numpy(array)
            request.append(tensor)
        kwargs = {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}
        result = self._client().infer(self.model_name, request, outputs=[self._module.InferRequestedOutput(OUTPUT)], **kwargs)
        return np.asarray(result.as_numpy(OUTPUT), dtype=np.float32)

    def close(self) -> None:
        client = getattr(self._local, "client", None)
        if client is not None:
            client.close()
            self._local.client = None
