"""One contract suite over every Encoder implementation, on the tiny bundle's real towers:
onnxruntime in-process, and Triton (gRPC and HTTP) serving a repository written by
`omnivec triton-repo` (tests/triton_host.py: pytriton's real tritonserver running each model.onnx).
Then the Triton backend end to end: `omnivec serve` with OMNIVEC_MODEL__BACKEND=triton."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path
from typing import IO

import httpx
import numpy as np
import pytest

from omnivec.model_export.triton_repo import write_repository
from omnivec.server.bundle import BundleError, ModelBundle
from omnivec.server.inference.encoder import Encoder
from omnivec.server.inference.onnx import OnnxEncoder
from omnivec.server.inference.triton import TritonEncoder
from omnivec.server_process import ServerProcess, free_port

HOST = Path(__file__).resolve().parents[1] / "triton_host.py"


def _forward_lines(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


class TritonHost:
    """tests/triton_host.py in a child process, on free ports.

    The child's stdout is read on a thread so a host that neither prints "ready" nor exits (seen once
    under CI load) fails after START_SECONDS instead of blocking until pytest's timeout; a start that
    fails is tried again on fresh ports, since a port picked free can be taken before Triton binds it."""

    START_SECONDS = 90
    ATTEMPTS = 2

    def __init__(self, repo: Path, log: Path) -> None:
        self.log = log
        log.write_text("")  # each attempt appends, so a failure shows every attempt's output
        for _ in range(self.ATTEMPTS):
            if self._start(repo):
                return
        raise RuntimeError("the Triton test host did not start:\n" + log.read_text()[-3000:])

    def _start(self, repo: Path) -> bool:
        self.http_port, self.grpc_port, metrics_port = free_port(), free_port(), free_port()
        env = {**os.environ, "LD_LIBRARY_PATH": sysconfig.get_config_var("LIBDIR") or ""}  # Triton's Python backend loads libpython
        with self.log.open("a") as err:
            cmd = [sys.executable, str(HOST), str(repo), str(self.http_port), str(self.grpc_port), str(metrics_port)]
            self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=_forward_lines, args=(self.proc.stdout, lines), daemon=True).start()
        deadline = time.monotonic() + self.START_SECONDS
        while (left := deadline - time.monotonic()) > 0:
            try:
                if lines.get(timeout=min(left, 1.0)).strip() == "ready":
                    return True
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
        self.stop()
        return False

    def url(self, protocol: str) -> str:
        return f"127.0.0.1:{self.grpc_port if protocol == 'grpc' else self.http_port}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def triton(tiny_bundle, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("triton")
    write_repository(tiny_bundle, tmp / "repo", max_batch_size=16)
    host = TritonHost(tmp / "repo", tmp / "triton.log")
    yield host
    host.stop()


@pytest.fixture(params=["onnxruntime", "triton-grpc", "triton-http"])
def make_encoder(request, tiny_bundle, triton):
    bundle = ModelBundle.load(tiny_bundle)
    made = []

    def make(modality: str) -> Encoder:
        if request.param == "onnxruntime":
            encoder = OnnxEncoder(bundle.tower_path(modality), modality, intra_op_threads=1)
        else:
            protocol = request.param.split("-")[1]
            tower = bundle.manifest.towers[modality]
            encoder = TritonEncoder(triton.url(protocol), f"omnivec_{modality}", modality, tower, bundle.manifest.embed_dim, protocol=protocol)
        made.append(encoder)
        return encoder

    yield make
    for encoder in made:
        encoder.close()


def _inputs(bundle: ModelBundle, modality: str, rows: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(rows)
    tower = bundle.manifest.towers[modality]
    out = {}
    for spec in tower.inputs:
        shape = [rows] + [d if isinstance(d, int) else 5 for d in spec.shape[1:]]
        out[spec.name] = rng.integers(0, 1000, shape).astype(spec.dtype) if spec.dtype.startswith("int") else rng.normal(size=shape).astype(spec.dtype)
    return out


@pytest.mark.parametrize("modality", ["text", "image"])
def test_every_encoder_gives_the_reference_embeddings(make_encoder, tiny_bundle, modality):
    bundle = ModelBundle.load(tiny_bundle)
    encoder = make_encoder(modality)
    reference = OnnxEncoder(bundle.tower_path(modality), modality, intra_op_threads=1)
    assert isinstance(encoder, Encoder)
    assert encoder.modality == modality and encoder.dim == bundle.manifest.embed_dim
    assert encoder.input_names == [spec.name for spec in bundle.manifest.towers[modality].inputs]
    for rows in (1, 3, 40):  # 40: over Triton's max_batch_size of 16, so the Triton encoder splits
        inputs = _inputs(bundle, modality, rows)
        out = encoder.encode(inputs)
        assert out.shape == (rows, encoder.dim) and out.dtype == np.float32
        np.testing.assert_allclose(out, reference.encode(inputs), atol=1e-5)


def test_every_encoder_is_safe_to_call_from_several_threads(make_encoder, tiny_bundle):
    from concurrent.futures import ThreadPoolExecutor

    bundle = ModelBundle.load(tiny_bundle)
    encoder = make_encoder("text")
    batches = [_inputs(bundle, "text", rows) for rows in range(1, 9)]
    expected = [encoder.encode(b) for b in batches]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(encoder.encode, batches))
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_triton_problems_fail_at_start_naming_the_fix(tiny_bundle, triton):
    bundle = ModelBundle.load(tiny_bundle)
    text = bundle.manifest.towers["text"]
    dim = bundle.manifest.embed_dim
    with pytest.raises(BundleError, match=r"no Triton server answers at 127\.0\.0\.1:\d+.*omnivec triton-repo"):
        TritonEncoder(f"127.0.0.1:{free_port()}", "omnivec_text", "text", text, dim, protocol="grpc")
    with pytest.raises(BundleError, match="no ready model 'other_text'"):
        TritonEncoder(triton.url("grpc"), "other_text", "text", text, dim, protocol="grpc")
    renamed = text.model_copy(update={"inputs": [text.inputs[0].model_copy(update={"name": "tokens"})]})
    with pytest.raises(BundleError, match="written from another bundle"):
        TritonEncoder(triton.url("http"), "omnivec_text", "text", renamed, dim, protocol="http")


def test_the_repository_is_what_triton_loads(tiny_bundle, tmp_path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    written = write_repository(tiny_bundle, tmp_path / "repo", prefix="m_", max_batch_size=8, gpu=True, tensorrt=True)
    bundle = ModelBundle.load(tiny_bundle)
    assert sorted(p.name for p in written) == sorted(f"m_{m}" for m in bundle.manifest.towers)
    for modality, tower in bundle.manifest.towers.items():
        config = text_format.Parse((tmp_path / "repo" / f"m_{modality}" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
        assert (config.name, config.platform, config.max_batch_size) == (f"m_{modality}", "onnxruntime_onnx", 8)
        assert [i.name for i in config.input] == [spec.name for spec in tower.inputs]
        assert list(config.output[0].dims) == [bundle.manifest.embed_dim]
        assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
        assert config.optimization.execution_accelerators.gpu_execution_accelerator[0].name == "tensorrt"
        assert (tmp_path / "repo" / f"m_{modality}" / "1" / "model.onnx").read_bytes() == bundle.tower_path(modality).read_bytes()
    with pytest.raises(ValueError, match="needs GPU"):
        write_repository(tiny_bundle, tmp_path / "other", tensorrt=True)


def test_serve_with_the_triton_backend_answers_like_onnxruntime(tiny_bundle, triton, server, tmp_path):
    env = {"OMNIVEC_MODEL__BACKEND": "triton", "OMNIVEC_MODEL__TRITON_URL": triton.url("grpc"), "OMNIVEC_DATA_DIR": str(tmp_path / "data")}
    body = {"texts": ["a red circle", "a quiet river"], "images": []}
    with ServerProcess(tiny_bundle, env=env, log=tmp_path / "serve.log") as served:
        models = httpx.get(f"{served.url}/v1/models", timeout=10).json()["data"][0]
        assert all(t["providers"][0].startswith("triton:grpc://") for t in models["towers"]), models["towers"]
        via_triton = httpx.post(f"{served.url}/v1/embed", json=body, timeout=30).json()["data"]
    local = httpx.post(f"{server.url}/v1/embed", json=body, timeout=30).json()["data"]
    for a, b in zip(via_triton, local):
        np.testing.assert_allclose(a["embedding"], b["embedding"], atol=1e-5)


def test_serve_refuses_to_start_without_its_triton(tiny_bundle, tmp_path):
    env = {**os.environ, "OMNIVEC_MODEL__BACKEND": "triton", "OMNIVEC_MODEL__TRITON_URL": f"127.0.0.1:{free_port()}", "OMNIVEC_DATA_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "omnivec", "serve", "--bundle", str(tiny_bundle)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no Triton server answers" in done.stderr and "omnivec triton-repo" in done.stderr
