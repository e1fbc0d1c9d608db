"""int8 variants: per-channel quantised towers with their own parity, served by setting."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from omnivec.server.bundle import ModelBundle
from omnivec.server_process import ServerProcess


@pytest.fixture(scope="module")
def int8_bundle(tmp_path_factory, tiny_loaded):
    from omnivec.model_export.export import export_bundle

    return export_bundle("omnivec-tiny", "none", tmp_path_factory.mktemp("int8") / "tiny8", loaded=tiny_loaded, int8=True).out


def test_int8_towers_and_parity(int8_bundle):
    bundle = ModelBundle.load(int8_bundle)
    report = json.loads((int8_bundle / "parity.json").read_text())
    for tower in ("image", "text"):
        int8 = report[tower]["int8"]
        assert int8["shipped"] and int8["cos_min"] >= 0.99
        assert bundle.manifest.towers[tower].variants == {"int8": f"{tower}.int8.onnx"}
        assert (int8_bundle / f"{tower}.int8.onnx").stat().st_size < (int8_bundle / f"{tower}.onnx").stat().st_size


def test_int8_below_floor_is_not_shipped(tmp_path, tiny_loaded, monkeypatch):
    from omnivec.model_export import export as export_mod

    monkeypatch.setattr(export_mod, "INT8_MIN_COS", 1.01)
    result = export_mod.export_bundle("omnivec-tiny", "none", tmp_path / "b", loaded=tiny_loaded, towers=["text"], int8=True)
    text = result.parity["text"]["int8"]
    assert text["shipped"] is False and "serves fp32" in text["reason"]
    assert not (result.out / "text.int8.onnx").exists()
    assert result.manifest.towers["text"].variants == {}


def test_server_serves_int8_by_setting(int8_bundle, tmp_path):
    texts = ["a photo of a dog", "a red circle", "日本語"]
    with ServerProcess(int8_bundle, args=["--precision", "fp32"], log=tmp_path / "fp32.log") as fp32:
        ref = np.array([d["embedding"] for d in httpx.post(f"{fp32.url}/v1/embed", json={"texts": texts}, timeout=30).json()["data"]])
    with ServerProcess(int8_bundle, env={"OMNIVEC_MODEL__PRECISION": "int8"}, log=tmp_path / "int8.log") as int8:
        info = httpx.get(f"{int8.url}/v1/models", timeout=10).json()["data"][0]
        got = np.array([d["embedding"] for d in httpx.post(f"{int8.url}/v1/embed", json={"texts": texts}, timeout=30).json()["data"]])
    assert {t["modality"]: (t["precision"], t["file"]) for t in info["towers"]} == {
        "image": ("int8", "image.int8.onnx"),
        "text": ("int8", "text.int8.onnx"),
    }
    cos = (ref * got).sum(1)
    assert cos.min() >= 0.99 and not np.allclose(ref, got, atol=1e-6), "int8 must be close to fp32 but really quantised"
