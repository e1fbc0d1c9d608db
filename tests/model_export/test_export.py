"""Export: a real open_clip model -> bundle with parity report; refusals and loading rules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from omnivec.model_export.loader import ExportError
from omnivec.server.bundle import ModelBundle


def test_bundle_contents_and_parity_report(tiny_bundle):
    bundle = ModelBundle.load(tiny_bundle)
    m = bundle.manifest
    assert set(bundle.modalities) == {"image", "text"}
    assert m.embed_dim == 64 and m.space_id.startswith("omnivec-tiny@")
    assert m.scoring.kind == "softmax" and m.scoring.logit_scale > 1
    assert m.towers["image"].inputs[0].shape[0] == "batch" and m.towers["text"].inputs[0].shape == ["batch", "sequence"]
    assert m.format_version == 2 and bundle.dynamic_sequence("text") and not bundle.dynamic_sequence("image")
    assert m.probes is not None and m.probes.min_cos["fp32"] == 0.99999
    for tower in ("image", "text"):
        inputs, reference = bundle.probe_arrays(tower)
        assert reference.shape == (len(next(iter(inputs.values()))), 64)
    report = json.loads((tiny_bundle / "parity.json").read_text())
    for tower in ("image", "text"):
        cos_keys = [k for k in report[tower]["fp32"] if "cos" in k]
        assert cos_keys and all(report[tower]["fp32"][k] >= 0.99999 for k in cos_keys)


def test_dynamic_batch_axis(tiny_bundle):
    import onnxruntime as ort

    session = ort.InferenceSession(str(tiny_bundle / "image.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 3, 9):
        (out,) = session.run(None, {"pixel_values": np.zeros((batch, 3, 64, 64), np.float32)})
        assert out.shape == (batch, 64)


def test_refuses_bundle_below_parity(tmp_path, tiny_loaded, monkeypatch):
    from omnivec.model_export import export as export_mod

    monkeypatch.setattr(export_mod, "FP32_MIN_COS", 1.5)  # unreachable: every tower must be refused
    out = tmp_path / "refused"
    with pytest.raises(ExportError, match="parity too low"):
        export_mod.export_bundle("omnivec-tiny", "none", out, loaded=tiny_loaded, towers=["image"])
    assert not out.exists()
    assert not list(tmp_path.iterdir()), "no half-written bundle or temp dir may remain"


def test_local_checkpoint_loads_and_keeps_space(tmp_path, tiny_loaded, tiny_bundle):
    import torch

    from omnivec.model_export.export import export_bundle

    ckpt = tmp_path / "tiny.pt"
    torch.save(tiny_loaded.model.state_dict(), ckpt)
    result = export_bundle("omnivec-tiny", str(ckpt), tmp_path / "from_ckpt", towers=["text"], seed=123)
    assert result.manifest.space_id == ModelBundle.load(tiny_bundle).manifest.space_id
    assert result.manifest.source["pretrained_kind"] == "file"
    assert set(ModelBundle.load(result.out).modalities) == {"text"}


def test_random_seed_changes_space(tmp_path):
    from omnivec.model_export.export import export_bundle

    a = export_bundle("omnivec-tiny", "none", tmp_path / "a", towers=["text"], seed=1)
    b = export_bundle("omnivec-tiny", "none", tmp_path / "b", towers=["text"], seed=2)
    assert a.manifest.space_id != b.manifest.space_id


def test_unfetchable_pretrained_tag_fails_fast_with_fix(tmp_path):
    """Without HF_HUB_OFFLINE: the loader itself must notice the hub is unreachable (this sandbox has no internet)."""
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "omnivec", "export", "--model", "ViT-B-32", "--pretrained", "laion2b_s34b_b79k", "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    elapsed = time.monotonic() - start
    assert proc.returncode == 2
    assert "--pretrained /path/to/checkpoint" in proc.stderr and "laion2b_s34b_b79k" in proc.stderr
    assert elapsed < 30, f"took {elapsed:.0f}s: offline failure must be quick"


@pytest.mark.parametrize(
    "model,pretrained,message",
    [
        ("no-such-arch", "none", "unknown model"),
        ("omnivec-tiny", "no-such-tag", "no pretrained tag"),
        ("omnivec-tiny", "/nonexistent/ckpt.safetensors", "does not exist"),
    ],
)
def test_bad_model_arguments(tmp_path, model, pretrained, message):
    from omnivec.model_export.export import export_bundle

    with pytest.raises(ExportError, match=message):
        export_bundle(model, pretrained, tmp_path / "out")


def test_refuses_non_bundle_output_dir(tmp_path, tiny_loaded):
    from omnivec.model_export.export import export_bundle

    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(ExportError, match="not a bundle"):
        export_bundle("omnivec-tiny", "none", tmp_path, loaded=tiny_loaded)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


@pytest.mark.slow
def test_vit_b_32_random_init_parity(tmp_path):
    from omnivec.model_export.export import export_bundle

    result = export_bundle("ViT-B-32", "none", tmp_path / "vitb32")
    for tower in ("image", "text"):
        assert result.parity[tower]["fp32"]["cos_min"] >= 0.99999
    bundle = ModelBundle.load(result.out)
    assert bundle.manifest.embed_dim == 512
    assert bundle.manifest.towers["image"].preprocess.size == (224, 224)
