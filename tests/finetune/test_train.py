"""The fine-tune loop on a tiny model and a synthetic shapes corpus: it learns, reports, resumes, exports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from omnivec.finetune.config import FinetuneConfig


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    from omnivec.finetune.corpora.shapes import generate

    return generate(tmp_path_factory.mktemp("shapes"), per_combo=10, colors=["red", "green", "blue", "yellow"], shapes=["circle", "square", "triangle"])


def _config(corpus: Path, out: Path, **overrides) -> FinetuneConfig:
    base = dict(
        train_data=corpus, out=out, epochs=15, batch_size=24, lr=2e-3, warmup_steps=3, val_fraction=0.3,
        tile_size=7, chunk_size=12, templates=["a {}"], weight_decay=0.0, threads=1,
    )
    base.update(overrides)
    return FinetuneConfig(**base)


def _mean_recall(metrics: dict, k: int) -> float:
    return (metrics[f"image_to_text_r@{k}"] + metrics[f"text_to_image_r@{k}"]) / 2


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    from omnivec.finetune.train import finetune

    return finetune(_config(corpus, tmp_path_factory.mktemp("run")), progress=False, log=lambda _m: None)


def test_training_improves_validation_recall(trained):
    first, last = trained.history[0]["metrics"], trained.history[-1]["metrics"]
    assert trained.history[0]["epoch"] == 0 and len(trained.history) == 16
    assert _mean_recall(last, 5) >= _mean_recall(first, 5) + 0.15, (first, last)
    assert _mean_recall(last, 10) >= _mean_recall(first, 10) + 0.15, (first, last)
    assert last["alignment"] < first["alignment"]
    assert "zero_shot_top1" in last


def test_reports_written(trained):
    report = json.loads((trained.out / "report.json").read_text())
    assert len(report["history"]) == 16 and report["config"]["loss"] == "clip"
    md = (trained.out / "report.md").read_text()
    assert "| epoch |" in md and "image_to_text_r@1" in md


def test_exported_bundle_serves_the_trained_weights(trained, tiny_bundle):
    import torch
    from fastapi.testclient import TestClient

    from omnivec.server.api.app import create_app
    from omnivec.server.bundle import ModelBundle
    from omnivec.server.settings import Settings

    bundle = ModelBundle.load(trained.bundle)
    assert bundle.manifest.space_id != ModelBundle.load(tiny_bundle).manifest.space_id, "fine-tuned weights form a new space"
    assert bundle.manifest.source["finetune_steps"] == trained.steps
    settings = Settings()
    settings.model.bundle = trained.bundle
    settings.model.intra_op_threads = 1
    with TestClient(create_app(settings)) as client:
        served = np.array(client.post("/v1/embed", json={"texts": ["a red circle"]}).json()["data"][0]["embedding"])
    from omnivec.model_export.loader import load_model

    reference = load_model("omnivec-tiny", str(trained.out / "checkpoints" / "last.pt"))
    with torch.no_grad():
        expected = torch.nn.functional.normalize(reference.model.encode_text(reference.tokenizer(["a red circle"])), dim=-1)[0].numpy()
    assert float(served @ expected) >= 0.99999


def test_resume_continues_from_checkpoint(corpus, tmp_path):
    from omnivec.finetune.train import finetune

    out = tmp_path / "resume"
    first = finetune(_config(corpus, out, epochs=2, export=False), progress=False, log=lambda _m: None)
    second = finetune(_config(corpus, out, epochs=3, export=False, resume=out / "checkpoints" / "last.pt"), progress=False, log=lambda _m: None)
    assert second.steps == first.steps * 3 // 2
    assert [h["epoch"] for h in second.history] == [0, 1, 2, 3]


def test_start_from_own_checkpoint_and_locked_text_tower(corpus, tmp_path, trained):
    import torch

    from omnivec.finetune.train import finetune
    from omnivec.model_export.loader import load_model

    ckpt = trained.out / "checkpoints" / "last.pt"
    result = finetune(
        _config(corpus, tmp_path / "lit", epochs=1, pretrained=str(ckpt), lock_text=True, export=True),
        progress=False, log=lambda _m: None,
    )
    before = load_model("omnivec-tiny", str(ckpt))
    after = load_model("omnivec-tiny", str(result.out / "checkpoints" / "last.pt"))
    text_before = before.model.transformer.state_dict()
    for name, tensor in after.model.transformer.state_dict().items():
        assert torch.equal(tensor, text_before[name]), f"locked text tower changed: {name}"
    assert not torch.equal(after.model.visual.conv1.weight, before.model.visual.conv1.weight), "the image tower trains"


def test_siglip_loss_trains(corpus, tmp_path):
    from omnivec.finetune.train import finetune

    result = finetune(_config(corpus, tmp_path / "siglip", epochs=2, loss="siglip", export=True), progress=False, log=lambda _m: None)
    from omnivec.server.bundle import ModelBundle

    scoring = ModelBundle.load(result.bundle).manifest.scoring
    assert scoring.kind == "sigmoid" and scoring.logit_bias is not None


def test_config_from_yaml_and_flags(tmp_path, corpus):
    import argparse

    from omnivec.finetune.config import add_config_flags, config_from_args

    yaml_file = tmp_path / "ft.yaml"
    yaml_file.write_text(f"train_data: {corpus}\nepochs: 7\nlr: 0.01\nlock_text: true\n")
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path)
    add_config_flags(parser)
    cfg = config_from_args(parser.parse_args(["--config", str(yaml_file), "--epochs", "3", "--no-lock-text", "--templates", "a {}", "--templates", "the {}"]))
    assert (cfg.epochs, cfg.lr, cfg.lock_text, cfg.templates) == (3, 0.01, False, ["a {}", "the {}"])
    with pytest.raises(ValueError, match="batch_size"):
        config_from_args(parser.parse_args(["--config", str(yaml_file), "--batch-size", "1"]))


def test_audio_tower_trains_into_the_locked_text_space(tmp_path):
    """CLAP-style binding: only the audio tower learns; the text tower (and so the space's text side) stays put."""
    import torch

    from omnivec.finetune.corpora.sounds import generate, kinds
    from omnivec.finetune.train import finetune
    from omnivec.model_export.loader import load_model
    from omnivec.server.bundle import ModelBundle

    manifest = generate(tmp_path / "sounds", per_class=10, classes=kinds(pitches=["low", "high"], waves=["sine", "square"]))
    config = _config(manifest, tmp_path / "run", model="omnivec-tiny-audio", modality="audio", epochs=12, lr=3e-3, lock_text=True, templates=["{}"])
    result = finetune(config, progress=False, log=lambda _m: None)
    first, last = result.history[0]["metrics"], result.history[-1]["metrics"]
    mean = lambda m, k: (m[f"audio_to_text_r@{k}"] + m[f"text_to_audio_r@{k}"]) / 2  # noqa: E731
    assert mean(last, 5) >= mean(first, 5) + 0.3, (first, last)
    assert last["zero_shot_top1"] >= first["zero_shot_top1"] + 0.2
    assert ModelBundle.load(result.bundle).modalities == ["image", "text", "audio"]
    _text_to_audio_search_finds_the_right_sounds(result.bundle, tmp_path)
    start = load_model("omnivec-tiny-audio", "none")
    trained = load_model("omnivec-tiny-audio", str(result.out / "checkpoints" / "last.pt"))
    tokens = start.tokenizer(["a low sine tone"])
    with torch.no_grad():
        assert torch.equal(start.model.encode_text(tokens), trained.model.encode_text(tokens))
        assert not torch.equal(start.model.audio_tower.proj.weight, trained.model.audio_tower.proj.weight)


def test_bf16_autocast_trains(corpus, tmp_path):
    from omnivec.finetune.train import finetune

    result = finetune(_config(corpus, tmp_path / "bf16", epochs=3, precision="bf16", export=False), progress=False, log=lambda _m: None)
    losses_finite = all(v == v for h in result.history for v in h["metrics"].values())
    assert result.steps == 3 * (84 // 24) and losses_finite
    assert _mean_recall(result.history[-1]["metrics"], 10) > _mean_recall(result.history[0]["metrics"], 10)


def _text_to_audio_search_finds_the_right_sounds(bundle: Path, tmp_path: Path) -> None:
    """The trained bundle, served over real HTTP: index unseen clips, query by caption text."""
    import base64
    import csv

    import httpx

    from omnivec.finetune.corpora.sounds import generate, kinds
    from omnivec.server_process import ServerProcess

    classes = kinds(pitches=["low", "high"], waves=["sine", "square"])
    held_out = generate(tmp_path / "unseen", per_class=2, seed=99, classes=classes)
    rows = list(csv.DictReader(held_out.open()))
    with ServerProcess(bundle, env={"OMNIVEC_DATA_DIR": str(tmp_path / "data")}, log=tmp_path / "serve.log") as srv:
        assert httpx.post(f"{srv.url}/v1/collections", json={"name": "sounds"}, timeout=10).status_code == 201
        items = [
            {"audio": base64.b64encode((held_out.parent / r["audio"]).read_bytes()).decode(), "payload": {"label": r["label"]}}
            for r in rows
        ]
        items.append({"text": "a distractor caption", "payload": {"label": "none"}})
        body = httpx.post(f"{srv.url}/v1/collections/sounds/items", json={"items": items}, timeout=60).json()
        assert body["errors"] == [] and body["indexed"] == len(items)
        labels = sorted({r["label"] for r in rows})
        hits_in_top2 = 0
        for label in labels:
            r = httpx.post(f"{srv.url}/v1/collections/sounds/search", json={"query": {"text": label}, "top_k": 2, "modality": "audio"}, timeout=30)
            results = r.json()["results"]
            assert {h["modality"] for h in results} == {"audio"}
            hits_in_top2 += any(h["payload"]["label"] == label for h in results)
    print(f"text->audio: {hits_in_top2}/{len(labels)} classes in the top 2")
    # chance is about 2 x 2/18 per query; the trained tower finds most classes
    assert hits_in_top2 >= len(labels) // 2, f"{hits_in_top2}/{len(labels)} classes found by their caption"
