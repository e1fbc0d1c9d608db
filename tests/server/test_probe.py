"""Load-time parity probes: each variant is checked on this host before it serves; an int8
variant that drifts falls back to fp32, an fp32 one that fails refuses to start; `/v1/models`
shows the figure; version-1 bundles (no probes, fixed-length text) still serve."""

from __future__ import annotations

import asyncio
import json
import shutil

import httpx
import numpy as np
import pytest

from omnivec.model_export.parity import cosine_rows
from omnivec.server.bundle import BundleError, ModelBundle
from omnivec.server.inference.onnx import OnnxEncoder
from omnivec.server.inference.probe import arithmetic_of, run_probe
from omnivec.server.services.embedding import EmbeddingService
from omnivec.server.settings import Settings
from omnivec.server_process import ServerProcess


def _copy(src, dst, edit=None):
    shutil.copytree(src, dst)
    if edit is not None:
        path = dst / "manifest.json"
        data = json.loads(path.read_text())
        edit(data)
        path.write_text(json.dumps(data))
    return dst


@pytest.fixture(scope="module")
def int8_bundle(tiny_int8_bundle):
    return tiny_int8_bundle


def test_arithmetic_follows_precision_and_provider():
    trt = {"TensorrtExecutionProvider": {"trt_fp16_enable": "True"}}
    assert arithmetic_of("int8", ["CPUExecutionProvider"], None) == "int8"
    assert arithmetic_of("fp32", ["CPUExecutionProvider"], trt) == "fp32", "an fp16 option on a provider not in use does not count"
    assert arithmetic_of("fp32", ["TensorrtExecutionProvider", "CPUExecutionProvider"], trt) == "fp16"
    assert arithmetic_of("fp32", ["CUDAExecutionProvider", "CPUExecutionProvider"], None) == "fp32"


def test_probe_on_every_tower_and_variant(int8_bundle):
    bundle = ModelBundle.load(int8_bundle)
    for modality in ("image", "text"):
        for precision in ("fp32", "int8"):
            encoder = OnnxEncoder(bundle.tower_path(modality, precision), modality)
            result = run_probe(encoder, bundle, modality, precision)
            assert result is not None and result.passed and result.n >= 5
            assert result.threshold == bundle.manifest.probes.min_cos[precision]
            assert result.cos_min >= (0.99999 if precision == "fp32" else 0.99)


def test_int8_failing_its_probe_falls_back_to_fp32(int8_bundle, tmp_path):
    """A variant that fails its threshold (here: an unreachable int8 threshold, as on a CPU where int8 drifts)."""
    drifting = _copy(int8_bundle, tmp_path / "b", lambda m: m["probes"]["min_cos"].update(int8=1.01))
    log = tmp_path / "server.log"
    with ServerProcess(drifting, env={"OMNIVEC_MODEL__PRECISION": "int8"}, log=log) as server:
        info = httpx.get(f"{server.url}/v1/models", timeout=10).json()["data"][0]
        r = httpx.post(f"{server.url}/v1/embed", json={"texts": ["a dog"]}, timeout=30)
    assert r.status_code == 200
    towers = {t["modality"]: t for t in info["towers"]}
    for modality in ("image", "text"):
        assert towers[modality]["precision"] == "fp32" and towers[modality]["file"] == f"{modality}.onnx"
        assert towers[modality]["probe"]["arithmetic"] == "fp32" and towers[modality]["probe"]["cos_min"] >= 0.99999
    text = log.read_text()
    assert "text tower: the int8 variant reaches cos_min" in text and "serving fp32 instead" in text


def test_fp32_failing_its_probe_refuses_to_start(tiny_bundle, tmp_path):
    broken = _copy(tiny_bundle, tmp_path / "b", lambda m: m["probes"]["min_cos"].update(fp32=1.01))
    with pytest.raises(BundleError, match=r"fails its load-time parity probe on CPUExecutionProvider: cos_min (0\.99999|1\.00000)\d* < 1\.01 \(fp32\).*re-export"):
        EmbeddingService(ModelBundle.load(broken), Settings())
    log = tmp_path / "server.log"
    with pytest.raises(RuntimeError, match="server exited"):
        ServerProcess(broken, log=log).start()
    assert "fails its load-time parity probe" in log.read_text()


def test_version_1_bundle_serves_fixed_length(tiny_bundle, tmp_path, tiny_loaded):
    """A bundle written before dynamic text (format_version 1: fixed [batch, 77], no probes) still serves, padded to the context."""
    import torch

    def downgrade(m):
        m["format_version"] = 1
        m.pop("probes")
        m["towers"]["text"]["inputs"][0]["shape"] = ["batch", 77]

    old = _copy(tiny_bundle, tmp_path / "v1", downgrade)
    (old / "probes.npz").unlink()
    bundle = ModelBundle.load(old)
    assert not bundle.dynamic_sequence("text") and bundle.manifest.probes is None
    service = EmbeddingService(bundle, Settings())
    assert service.text_preprocessor.dynamic is False and service.encoders["text"].probe is None
    assert service.text_preprocessor(["a dog"]).arrays["input_ids"].shape == (1, 77)

    async def embed():
        try:
            return (await service.embed_texts(["a dog", "x"])).vectors
        finally:
            await service.close()

    got = asyncio.run(embed())
    with torch.no_grad():
        ref = tiny_loaded.model.encode_text(tiny_loaded.tokenizer(["a dog", "x"])).numpy()
    assert cosine_rows(ref, got).min() >= 0.99999


@pytest.mark.parametrize("version,message", [(3, "upgrade omnivec"), (0, "re-export the bundle")])
def test_unknown_versions_say_what_to_do(tiny_bundle, tmp_path, version, message):
    bad = _copy(tiny_bundle, tmp_path / "b", lambda m: m.update(format_version=version))
    with pytest.raises(BundleError, match=message):
        ModelBundle.load(bad)


def test_missing_probe_file_is_named(tiny_bundle, tmp_path):
    b = _copy(tiny_bundle, tmp_path / "b")
    (b / "probes.npz").unlink()
    with pytest.raises(BundleError, match=r"probes\.npz is missing"):
        ModelBundle.load(b)
