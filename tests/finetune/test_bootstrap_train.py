"""`train_tower`, the bootstrap's training loop: it trains in the channels-last layout for speed and
must hand back a tower in the default layout, trained and reproducible, for evaluation and export."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from omnivec.finetune.bootstrap import BootstrapConfig  # noqa: E402
from omnivec.finetune.bootstrap_data import Items  # noqa: E402
from omnivec.finetune.bootstrap_train import train_tower  # noqa: E402
from omnivec.model_export.image_tower import ImageTower, ImageTowerConfig  # noqa: E402

LABELS = ["red circle", "blue square", "green star", "black heart"]


class FixedTexts:
    """Stands in for the locked text tower: one fixed unit vector per caption (only the loop is under test)."""

    def __init__(self, dim: int) -> None:
        self.dim, self.cache = dim, {}

    def __call__(self, texts: list[str]) -> torch.Tensor:
        for t in texts:
            if t not in self.cache:
                g = torch.Generator().manual_seed(sum(map(ord, t)))
                self.cache[t] = torch.nn.functional.normalize(torch.randn(self.dim, generator=g), dim=0)
        return torch.stack([self.cache[t] for t in texts])


def _tower() -> ImageTower:
    torch.manual_seed(0)
    return ImageTower(ImageTowerConfig(image_size=32, channels=[8, 16], embed_dim=16))


def _train(tmp_path: Path) -> ImageTower:
    tower = _tower()
    model = types.SimpleNamespace(logit_scale=torch.nn.Parameter(torch.tensor(2.0)))
    images = torch.randn(len(LABELS) * 3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    labels = [label for label in LABELS for _ in range(3)]
    items = Items(images, labels, [f"a {label}" for label in labels], ["shape"] * len(labels))
    config = BootstrapConfig(out=tmp_path, batch_size=4, seed=0)
    train_tower(tower, model, items, FixedTexts(16), 5, config, "image", progress=False)
    return tower


def test_train_tower_returns_a_trained_tower_in_the_default_layout(tmp_path):
    untrained = _tower().state_dict()
    tower = _train(tmp_path)
    convs = [p for p in tower.parameters() if p.ndim == 4]
    assert convs and all(p.is_contiguous() for p in convs), "conv weights must be back in the default (contiguous) layout before export"
    assert not any(p.requires_grad for p in tower.parameters()) and not tower.training
    changed = [name for name, p in tower.state_dict().items() if not torch.equal(p, untrained[name])]
    assert changed, "five steps must change the weights"


def test_train_tower_is_reproducible_for_a_seed(tmp_path):
    one, two = _train(tmp_path / "one"), _train(tmp_path / "two")
    for (name, a), b in zip(one.state_dict().items(), two.state_dict().values()):
        assert torch.equal(a, b), name
