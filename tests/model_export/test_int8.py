"""int8 variants: per-channel quantised towers with their own parity, served by setting.

Whether int8 holds on a CPU depends on its integer GEMM kernel. Without saturation, every
kernel (AVX2 vpmaddubsw, AVX-512 VNNI vpdpbusd, U8U8) sums the same integers exactly in 32
bits, so the int8 figure measured here is the figure everywhere up to fp32 rounding. The
tests therefore check the no-saturation property from the weights and the instruction's
arithmetic (an emulation of vpmaddubsw), not a cosine picked on one machine.
"""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from omnivec.model_export.parity import INT8_MIN_COS
from omnivec.model_export.quantize import INT16_MAX, U8_MAX, pair_sum_bound, quantize_int8
from omnivec.server.bundle import ModelBundle
from omnivec.server_process import ServerProcess


@pytest.fixture(scope="module")
def int8_bundle(tiny_int8_bundle):
    return tiny_int8_bundle


def test_int8_towers_and_parity(int8_bundle):
    bundle = ModelBundle.load(int8_bundle)
    report = json.loads((int8_bundle / "parity.json").read_text())
    for tower in ("image", "text"):
        int8 = report[tower]["int8"]
        assert int8["saturation_free"] and int8["worst_pair_sum"] <= INT16_MAX and int8["scheme"] == "s8-7bit"
        assert int8["shipped"] and int8["cos_min"] >= INT8_MIN_COS
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


def _integer_gemm_weights(path) -> list[np.ndarray]:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    weights = []
    for node in model.graph.node:
        if node.op_type == "MatMulInteger":
            w = numpy_helper.to_array(inits[node.input[1]])
            weights.append(w.reshape(w.shape[0], -1))  # (K, N)
    return weights


def _vpmaddubsw_gemm(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """An AVX2 u8s8 GEMM as MLAS computes it: u8*s8 products of adjacent k pairs summed into a
    saturating int16 (vpmaddubsw), then widened and accumulated in int32 (vpmaddwd + vpaddd)."""
    k = a.shape[1] + a.shape[1] % 2
    a = np.pad(a.astype(np.int32), ((0, 0), (0, k - a.shape[1])))
    w = np.pad(w.astype(np.int32), ((0, k - w.shape[0]), (0, 0)))
    pairs = a[:, 0::2, None] * w[None, 0::2, :] + a[:, 1::2, None] * w[None, 1::2, :]
    return np.clip(pairs, -INT16_MAX - 1, INT16_MAX).sum(axis=1)


def test_no_pair_sum_can_saturate_on_avx2(int8_bundle, tmp_path):
    """The shipped weights keep |w| <= 64, so 2 * 255 * |w| fits int16: the emulated AVX2 kernel
    equals exact int32 arithmetic even for the worst activations (all 255). The same check on
    full-range weights shows the emulation does catch saturation."""
    rng = np.random.default_rng(0)
    full_range = tmp_path / "full.onnx"
    quantize_int8(int8_bundle / "text.onnx", full_range, "s8")
    for tower in ("image", "text"):
        bound = pair_sum_bound(int8_bundle / f"{tower}.int8.onnx")
        assert bound.gemms > 0 and bound.s8_gemms == bound.gemms and bound.saturation_free
    shipped, full = _integer_gemm_weights(int8_bundle / "text.int8.onnx"), _integer_gemm_weights(full_range)
    assert np.abs(np.concatenate([w.ravel() for w in shipped]).astype(int)).max() * 2 * U8_MAX <= INT16_MAX
    for w in shipped:
        for a in (np.full((2, w.shape[0]), U8_MAX, np.uint8), rng.integers(0, 256, (4, w.shape[0]), dtype=np.uint8)):
            np.testing.assert_array_equal(_vpmaddubsw_gemm(a, w), a.astype(np.int64) @ w.astype(np.int64))
    assert not pair_sum_bound(full_range).saturation_free
    worst = np.full((1, full[0].shape[0]), U8_MAX, np.uint8)
    assert any((_vpmaddubsw_gemm(worst, w) != worst.astype(np.int64) @ w.astype(np.int64)).any() for w in full)


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
    for t in info["towers"]:  # the load-time probe ran on this host and its figure is reported
        assert t["probe"]["arithmetic"] == "int8" and t["probe"]["passed"] and t["probe"]["cos_min"] >= INT8_MIN_COS
    cos = (ref * got).sum(1)
    assert cos.min() >= INT8_MIN_COS and not np.allclose(ref, got, atol=1e-6), "int8 must be close to fp32 but really quantised"
