"""Execution providers: one configuration for CPU and GPU nodes, TensorRT with an engine cache.

The GPU providers themselves cannot run here (no GPU in CI); what is tested is the list of
(provider, options) onnxruntime receives, and that a GPU configuration still serves on a CPU build.
"""

from __future__ import annotations

import logging
from pathlib import Path

import httpx

from omnivec.server.api.app import create_app
from omnivec.server.inference.onnx import session_providers
from omnivec.server.settings import Settings
from tests.inprocess import InProcessServer

GPU_CHAIN = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
GPU_BUILD = GPU_CHAIN


def test_tensorrt_gets_an_engine_cache_and_user_options_win(tmp_path):
    options = {"TensorrtExecutionProvider": {"trt_fp16_enable": "True", "trt_timing_cache_path": "/fast/timing"}, "CUDAExecutionProvider": {"device_id": 1}}
    chosen = dict(session_providers(GPU_CHAIN, options, available=GPU_BUILD, tensorrt_cache=tmp_path / "trt"))
    assert list(chosen) == GPU_CHAIN
    trt = chosen["TensorrtExecutionProvider"]
    assert trt["trt_engine_cache_enable"] == "True" and trt["trt_engine_cache_path"] == str(tmp_path / "trt")
    assert trt["trt_fp16_enable"] == "True" and trt["trt_timing_cache_path"] == "/fast/timing"
    assert chosen["CUDAExecutionProvider"] == {"device_id": "1"}  # onnxruntime wants strings
    assert chosen["CPUExecutionProvider"] == {}


def test_missing_providers_are_skipped_with_a_warning_and_cpu_is_the_fallback(caplog):
    with caplog.at_level(logging.WARNING, logger="omnivec.inference"):
        chosen = session_providers(GPU_CHAIN[:2], available=["CPUExecutionProvider"])
    assert chosen == [("CPUExecutionProvider", {})]
    assert "TensorrtExecutionProvider is not available" in caplog.text and "CUDAExecutionProvider is not available" in caplog.text


def test_provider_options_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("OMNIVEC_MODEL__PROVIDERS", '["CUDAExecutionProvider", "CPUExecutionProvider"]')
    monkeypatch.setenv("OMNIVEC_MODEL__PROVIDER_OPTIONS", '{"CUDAExecutionProvider": {"device_id": "1"}}')
    settings = Settings()
    assert settings.model.providers == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert settings.model.provider_options == {"CUDAExecutionProvider": {"device_id": "1"}}
    assert settings.tensorrt_cache_dir == Path(settings.data_dir) / "tensorrt-cache"


def test_a_gpu_configuration_still_serves_on_a_cpu_build(tiny_bundle, tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    settings.model.bundle = tiny_bundle
    settings.model.providers = GPU_CHAIN
    settings.model.provider_options = {"TensorrtExecutionProvider": {"trt_fp16_enable": "True"}}
    settings.model.intra_op_threads = 1
    with InProcessServer(create_app(settings)) as server:
        towers = httpx.get(f"{server.url}/v1/models", timeout=10).json()["data"][0]["towers"]
        assert all(t["providers"] == ["CPUExecutionProvider"] for t in towers)
        assert httpx.post(f"{server.url}/v1/embed", json={"texts": ["still serves"]}, timeout=30).status_code == 200
    assert not (tmp_path / "data" / "tensorrt-cache").exists(), "the cache dir is made only when TensorRT is used"


def test_numbers_and_booleans_in_provider_options_become_strings(monkeypatch):
    monkeypatch.setenv("OMNIVEC_MODEL__PROVIDER_OPTIONS", '{"CUDAExecutionProvider": {"device_id": 1}, "TensorrtExecutionProvider": {"trt_fp16_enable": true}}')
    options = Settings().model.provider_options
    assert options == {"CUDAExecutionProvider": {"device_id": "1"}, "TensorrtExecutionProvider": {"trt_fp16_enable": "True"}}
