"""Issue 17 in the training loop: RNG capture on the training device, NCCL device binding, locked
towers in eval mode, --lock-image on CNN towers, caption/label positives, mined batches, nested
dimensions, the exported scoring kind and the device-default tile size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from omnivec.finetune.config import FinetuneConfig

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    from omnivec.finetune.corpora.shapes import generate

    # 3 x 2 classes, 4 images each, captions repeat (4 templates over many images)
    return generate(tmp_path_factory.mktemp("shapes"), per_combo=4, colors=["red", "blue", "green"], shapes=["circle", "square"])


def _config(corpus: Path, out: Path, **overrides) -> FinetuneConfig:
    base = dict(train_data=corpus, out=out, epochs=1, batch_size=8, val_fraction=0.25, chunk_size=3, templates=["a {}"], threads=1, export=False, warmup_steps=1)
    base.update(overrides)
    return FinetuneConfig(**base)


class Spy:
    """Records calls of a wrapped function (the real one still runs)."""

    def __init__(self, fn):
        self.fn, self.calls = fn, []

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        return self.fn(*args, **kwargs)


@pytest.fixture(scope="module")
def spied_run(corpus, tmp_path_factory):
    """One short run (locked text tower, caption positives) with spies on the RNG capture,
    the loss and the text tower's mode."""
    import omnivec.finetune.chunked as chunked
    import omnivec.finetune.losses as losses
    import omnivec.model_export.loader as loader
    from omnivec.finetune.train import finetune

    text_modes: list[bool] = []

    def load_with_hook(*args, **kwargs):
        loaded = real_load(*args, **kwargs)
        loaded.model.transformer.register_forward_pre_hook(lambda module, _inp: text_modes.append(module.training))
        return loaded

    real_load = loader.load_model
    rng, loss = Spy(chunked.RandContext), Spy(losses.ring_clip_loss)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loader, "load_model", load_with_hook)
        mp.setattr(chunked, "RandContext", rng)
        mp.setattr(losses, "ring_clip_loss", loss)
        result = finetune(_config(corpus, tmp_path_factory.mktemp("spied"), lock_text=True, max_steps=2), progress=False, log=lambda _m: None)
    return dict(result=result, rng=rng, loss=loss, text_modes=text_modes)


def test_rng_is_captured_for_the_training_device(spied_run):
    """Item 1: the RNG snapshot names the device the encoders run on (CUDA state gets saved on a GPU)."""
    calls = spied_run["rng"].calls
    assert calls, "RandContext was used"
    assert all(kwargs.get("devices") == [torch.device("cpu")] for _args, kwargs in calls)


def test_locked_tower_runs_in_eval_mode_while_training(spied_run):
    """Item 4: a frozen text tower applies no dropout during training steps (LiT)."""
    train_calls = spied_run["loss"].calls
    assert len(train_calls) == 2
    modes = spied_run["text_modes"]
    assert modes and not any(modes), "the locked text tower was in training mode"


def test_identical_captions_are_positives_by_default(spied_run, corpus):
    """Item 6: the loss receives caption groups, so two pictures of one caption do not repel."""
    for _args, kwargs in spied_run["loss"].calls:
        labels = kwargs["labels"]
        assert labels is not None and labels.shape == (8,)
        assert kwargs["tile_size"] is None, "the config must not override the device's default tile"
    report = json.loads((spied_run["result"].out / "report.json").read_text())
    assert report["config"]["positives"] == "caption" and "identical captions are positives" in report["choices"]["positives"]


def test_positive_groups():
    from omnivec.finetune.data import Pair, positive_groups

    pairs = [Pair(Path("a"), "A red  circle", "x"), Pair(Path("b"), "a red circle", "y"), Pair(Path("c"), "a blue star", "x")]
    assert positive_groups(pairs, "caption") == [0, 0, 1]
    assert positive_groups(pairs, "label") == [0, 1, 0]
    assert positive_groups(pairs, "pair") == [0, 1, 2]
    with pytest.raises(ValueError, match="label"):
        positive_groups([Pair(Path("a"), "c")], "label")


def test_init_distributed_binds_the_cuda_device_before_nccl(monkeypatch):
    """Item 2: set_device(LOCAL_RANK) happens before the NCCL group exists (else the ring can hang)."""
    import torch.distributed as dist

    from omnivec.finetune.train import init_distributed

    events = []
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: events.append(("set_device", torch.device(d))))
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kw: events.append(("init", backend, kw.get("device_id"))))
    device, own = init_distributed(2)
    assert device == torch.device("cuda:1") and own
    assert events == [("set_device", torch.device("cuda:1")), ("init", "nccl", torch.device("cuda:1"))]


def test_cnn_towers_lock(tmp_path):
    """Item 3: omnivec's CNN image and audio towers support open_clip's lock (LiT), with unlocked groups."""
    from omnivec.model_export.audio_tower import AudioTower, AudioTowerConfig
    from omnivec.model_export.image_tower import ImageTower, ImageTowerConfig

    for tower in (ImageTower(ImageTowerConfig(channels=[8, 16, 16], embed_dim=8)), AudioTower(AudioTowerConfig(channels=[8, 16], n_mels=16, embed_dim=8))):
        tower.lock()
        assert not any(p.requires_grad for p in tower.parameters())
        for p in tower.parameters():
            p.requires_grad_(True)
        tower.lock(unlocked_groups=1)
        assert all(p.requires_grad for p in tower.proj.parameters())
        assert not any(p.requires_grad for n, p in tower.named_parameters() if not n.startswith("proj."))


def test_lock_image_trains_on_a_cnn_image_tower(corpus, tmp_path):
    """Item 3 end to end: --lock-image on a model with omnivec's CNN image tower (as omnivec-mini has)."""
    from omnivec.finetune.train import finetune
    from omnivec.model_export.loader import CONFIG_DIR, load_model

    config = json.loads((CONFIG_DIR / "omnivec-tiny.json").read_text())
    config["image_tower_cfg"] = {"image_size": 64, "channels": [8, 16]}
    path = tmp_path / "tiny-cnn.json"
    path.write_text(json.dumps(config))
    result = finetune(_config(corpus, tmp_path / "run", model=str(path), lock_image=True, max_steps=2), progress=False, log=lambda _m: None)
    before = load_model(str(path), "none")
    after = load_model(str(path), str(result.out / "checkpoints" / "last.pt"))
    for name, tensor in after.model.visual.state_dict().items():
        assert torch.equal(tensor, before.model.visual.state_dict()[name]), f"locked image tower changed: {name}"
    assert not torch.equal(after.model.text_projection, before.model.text_projection), "the text tower trains"


def test_set_train_mode_freezes_batchnorm_statistics():
    """Item 5 for models that still carry BatchNorm (legacy towers, open_clip ResNets): statistics frozen."""
    from omnivec.finetune.train import set_train_mode
    from omnivec.model_export.image_tower import ImageTower, ImageTowerConfig

    model = torch.nn.Module()
    model.visual = ImageTower(ImageTowerConfig(channels=[8, 16], embed_dim=8, norm="batch"))
    held = set_train_mode(model)
    assert held["batchnorm_layers"] == 2 and model.visual.training
    before = model.visual.cnn[1].running_mean.clone()
    model.visual(torch.randn(4, 3, 64, 64))
    assert torch.equal(model.visual.cnn[1].running_mean, before)


@pytest.fixture(scope="module")
def mined_nested_run(corpus, tmp_path_factory):
    import omnivec.finetune.losses as losses
    from omnivec.finetune.train import finetune

    loss = Spy(losses.ring_siglip_loss)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(losses, "ring_siglip_loss", loss)
        result = finetune(
            _config(corpus, tmp_path_factory.mktemp("mined"), epochs=2, batches="mined", mine_neighbours=4, nested_dims="16,32", loss="siglip", export=True),
            progress=False, log=lambda _m: None,
        )
    return result, loss


def test_nested_dims_loss_manifest_and_report(mined_nested_run):
    from omnivec.server.bundle import ModelBundle

    result, loss = mined_nested_run
    widths = [args[0].shape[1] for args, _kw in loss.calls]
    assert widths == [16, 32, 64] * (len(widths) // 3) and widths, "one loss term per prefix, full dim included"
    manifest = ModelBundle.load(result.bundle).manifest
    assert manifest.nested_dims == [16, 32, 64] and manifest.scoring.kind == "sigmoid"
    last = result.history[-1]["metrics"]
    for dim in (16, 32):
        assert 0.0 <= last[f"d{dim}/image_to_text_r@1"] <= 1.0 and f"d{dim}/zero_shot_top1" in last
    assert "## Per dimension" in (result.out / "report.md").read_text()


def test_mined_batches_report_their_cost(mined_nested_run):
    result, _loss = mined_nested_run
    report = json.loads((result.out / "report.json").read_text())
    assert [m["epoch"] for m in report["mining"]] == [1, 2]
    for entry in report["mining"]:
        assert entry["embed_s"] > 0 and entry["graph_s"] >= 0 and entry["train_s"] > 0
        assert -1 <= entry["hardness_mined"] <= 1 and -1 <= entry["hardness_random"] <= 1
    assert "mining_cost" in (result.out / "report.md").read_text()


def test_scoring_kind_follows_the_loss_not_the_checkpoint(mined_nested_run, corpus, tmp_path):
    """Item 7: a SigLIP checkpoint (it has a logit_bias) fine-tuned with InfoNCE exports softmax scoring."""
    from omnivec.finetune.train import finetune
    from omnivec.server.bundle import ModelBundle

    siglip, _ = mined_nested_run
    result = finetune(
        _config(corpus, tmp_path / "clip", pretrained=str(siglip.out / "checkpoints" / "last.pt"), loss="clip", max_steps=1, export=True),
        progress=False, log=lambda _m: None,
    )
    scoring = ModelBundle.load(result.bundle).manifest.scoring
    assert scoring.kind == "softmax" and scoring.logit_bias is None


def test_neighbour_graph_and_mined_batches():
    from omnivec.finetune.mining import batch_hardness, mined_batches, neighbour_graph

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 16))
    media = np.repeat(centres, 8, axis=0) + 0.1 * rng.normal(size=(48, 16))
    text = media + 0.1 * rng.normal(size=(48, 16))
    media /= np.linalg.norm(media, axis=1, keepdims=True)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    groups = np.arange(48)
    groups[1] = groups[0]  # a positive pair: never each other's neighbour
    graph, weights = neighbour_graph(media, text, groups, k=5, block=7)
    sims = (media @ text.T + text @ media.T) / 2
    for i in range(48):
        allowed = [j for j in range(48) if groups[j] != groups[i]]
        want = sorted(allowed, key=lambda j: -sims[i, j])[:5]
        assert list(graph[i]) == want
        np.testing.assert_allclose(weights[i], [sims[i, j] for j in want])
    assert 1 not in graph[0] and 0 not in graph[1]
    batches = mined_batches(graph, weights, 8, seed=1)
    flat = [i for b in batches for i in b]
    assert len(batches) == 6 and all(len(b) == 8 for b in batches) and len(set(flat)) == 48
    shuffled = rng.permutation(48).tolist()
    random_batches = [shuffled[i : i + 8] for i in range(0, 48, 8)]
    def purity(bs):  # share of each batch in its most common cluster
        return np.mean([np.bincount([i // 8 for i in b]).max() / len(b) for b in bs])

    assert purity(batches) >= 0.85 > purity(random_batches), (purity(batches), purity(random_batches))
    packed = mined_batches(graph, weights, 8, seed=1, group_size=4)  # groups of 4 neighbours, packed
    assert len(packed) == 6 and len({i for b in packed for i in b}) == 48
    assert batch_hardness(media, text, groups, batches) > batch_hardness(media, text, groups, random_batches)


def test_cli_flags_for_the_new_choices(corpus):
    import argparse

    from omnivec.finetune.config import add_config_flags, config_from_args

    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    cfg = config_from_args(parser.parse_args(["--train-data", str(corpus), "--positives", "label", "--batches", "mined", "--nested-dims", "32,64"]))
    assert (cfg.positives, cfg.batches, cfg.nested_dims, cfg.tile_size) == ("label", "mined", [32, 64], None)
    with pytest.raises(ValueError, match="nested_dims"):
        config_from_args(parser.parse_args(["--train-data", str(corpus), "--nested-dims", "64,32"]))
