"""The audio tower: log-mel frontend in the graph, exported with the other towers, parity through server preprocessing."""

from __future__ import annotations

import numpy as np
import pytest

from omnivec.server.bundle import AudioPreprocess, ModelBundle


@pytest.fixture(scope="module")
def audio_loaded(tiny_audio_loaded):
    return tiny_audio_loaded  # the session's model (conftest), loaded once for export and API tests


@pytest.fixture(scope="module")
def audio_bundle(tmp_path_factory, audio_loaded):
    from omnivec.model_export.export import export_bundle

    return export_bundle("omnivec-tiny-audio", "none", tmp_path_factory.mktemp("ab") / "b", loaded=audio_loaded, int8=True)


def test_frontend_equals_torch_stft_log_mel(audio_loaded):
    import torch

    frontend = audio_loaded.model.audio_tower.frontend
    x = torch.randn(3, 16000) * 0.1
    power = torch.stft(x, 400, 160, window=torch.hann_window(400), center=True, pad_mode="constant", return_complex=True).abs() ** 2
    reference = torch.log(torch.matmul(power.transpose(1, 2), frontend.mel) + 1e-6).transpose(1, 2)
    assert torch.allclose(frontend(x), reference, atol=1e-4)


def test_bundle_has_audio_tower_with_parity(audio_bundle):
    bundle = ModelBundle.load(audio_bundle.out)
    assert bundle.modalities == ["image", "text", "audio"]
    tower = bundle.manifest.towers["audio"]
    assert isinstance(tower.preprocess, AudioPreprocess)
    assert tower.preprocess.sample_rate == 16000 and tower.preprocess.frontend == "log-mel-in-graph"
    assert tower.inputs[0].name == "waveform" and tower.inputs[0].shape == ["batch", 16000]
    report = audio_bundle.parity["audio"]
    assert report["fp32"]["cos_min"] >= 0.99999
    int8 = report["int8"]
    assert int8["shipped"] == (int8["cos_min"] >= 0.99)
    assert ("int8" in tower.variants) == int8["shipped"]


def test_onnx_audio_matches_pytorch_on_every_format(audio_bundle, audio_loaded):
    import torch

    from omnivec.server.inference.onnx import OnnxEncoder
    from omnivec.server.preprocess.audio import preprocess_audio
    from tests.media import audio_files

    spec = ModelBundle.load(audio_bundle.out).manifest.towers["audio"].preprocess
    encoder = OnnxEncoder(audio_bundle.out / "audio.onnx", "audio", intra_op_threads=1)
    for name, data in audio_files().items():
        windows = preprocess_audio(data, spec).windows
        with torch.no_grad():
            ref = audio_loaded.model.encode_audio(torch.from_numpy(windows)).numpy()
        out = encoder.encode({"waveform": windows})
        cos = (ref * out).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(out, axis=1)
        assert cos.min() >= 0.99999, name


def test_checkpoint_with_audio_weights_round_trips(tmp_path, audio_loaded, audio_bundle):
    import torch

    from omnivec.model_export.export import export_bundle

    ckpt = tmp_path / "audio.pt"
    torch.save({"state_dict": audio_loaded.model.state_dict()}, ckpt)
    result = export_bundle("omnivec-tiny-audio", str(ckpt), tmp_path / "again", towers=["audio"], seed=99)
    assert result.manifest.space_id == audio_bundle.manifest.space_id


def test_asking_for_a_missing_tower_is_explained(tmp_path, tiny_loaded):
    from omnivec.model_export.export import export_bundle
    from omnivec.model_export.loader import ExportError

    with pytest.raises(ExportError, match="has no audio tower"):
        export_bundle("omnivec-tiny", "none", tmp_path / "x", loaded=tiny_loaded, towers=["audio"])
