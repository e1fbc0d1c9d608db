"""A real Triton server for tests: pytriton's tritonserver hosting every model of an omnivec Triton
repository (written by `omnivec triton-repo`), each running its `1/model.onnx` with onnxruntime.

pytriton ships Triton with the Python backend only, so this stands in for Triton's onnxruntime
backend; everything else is Triton's own: the repository's config.pbtxt (tensor names, dtypes,
dims, max_batch_size), the HTTP/gRPC protocols, model metadata and readiness.

    LD_LIBRARY_PATH=<python's LIBDIR> python tests/triton_host.py REPO HTTP_PORT GRPC_PORT METRICS_PORT

Prints "ready" once serving; SIGTERM stops Triton cleanly.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from google.protobuf import text_format
from pytriton.decorators import batch
from pytriton.model_config import ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig
from tritonclient.grpc import model_config_pb2

NUMPY = {
    model_config_pb2.TYPE_FP32: np.float32,
    model_config_pb2.TYPE_FP16: np.float16,
    model_config_pb2.TYPE_INT64: np.int64,
    model_config_pb2.TYPE_INT32: np.int32,
}


def infer_function(model_file: Path, output: str):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model_file), sess_options=options, providers=["CPUExecutionProvider"])

    @batch
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        (out,) = session.run([output], inputs)
        return {output: out}

    return infer


def main(repo: Path, http_port: int, grpc_port: int, metrics_port: int) -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # unwind the context manager: Triton stops with us
    config = TritonConfig(http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port, exit_timeout_secs=1)
    with Triton(config=config) as triton:
        for model_dir in sorted(p for p in repo.iterdir() if (p / "config.pbtxt").is_file()):
            spec = text_format.Parse((model_dir / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
            triton.bind(
                model_name=spec.name,
                infer_func=infer_function(model_dir / "1" / "model.onnx", spec.output[0].name),
                inputs=[Tensor(name=i.name, dtype=NUMPY[i.data_type], shape=tuple(i.dims)) for i in spec.input],
                outputs=[Tensor(name=o.name, dtype=NUMPY[o.data_type], shape=tuple(o.dims)) for o in spec.output],
                config=ModelConfig(max_batch_size=spec.max_batch_size),
            )
        triton.run()
        print("ready", flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
