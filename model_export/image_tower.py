"""A compact CNN image tower for small models trained on CPU (the default model, omnivec-mini).

A ViT of the same size trained for a few minutes memorised the colour-shape pairs it saw; a CNN
with global pooling composes colour and form better and trains several times faster on 2 cores.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Literal

import torch
from torch import nn


@dataclass
class ImageTowerConfig:
    image_size: int = 64
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
    channels: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    embed_dim: int = 512
    # "group": per-sample GroupNorm, so a chunked (GradCache) or multi-process step equals a
    # full-batch step; "batch" only loads checkpoints written before GroupNorm became the default.
    norm: Literal["group", "batch"] = "group"

    def to_dict(self) -> dict:
        return asdict(self)


def norm_layer(kind: str, channels: int, groups: int = 8) -> nn.Module:
    """GroupNorm (statistics per sample, independent of the batch) or the legacy BatchNorm."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind != "group":
        raise ValueError(f"norm must be 'group' or 'batch', got {kind!r}")
    return nn.GroupNorm(math.gcd(groups, channels), channels)


def lock_groups(groups: list[nn.Module], unlocked_groups: int, freeze_bn_stats: bool) -> None:
    """Freeze all but the last `unlocked_groups` of `groups` (LiT); optionally freeze BatchNorm statistics too."""
    frozen = groups[: len(groups) - unlocked_groups] if unlocked_groups else groups
    for group in frozen:
        for p in group.parameters():
            p.requires_grad = False
        if freeze_bn_stats:
            for m in group.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()


class ImageTower(nn.Module):
    """`forward(images)`: normalised (B, 3, S, S) images -> unnormalised (B, embed_dim) embeddings."""

    def __init__(self, cfg: ImageTowerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c0 = cfg.channels[0]
        layers: list[nn.Module] = [nn.Conv2d(3, c0, 3, stride=2, padding=1, bias=False), norm_layer(cfg.norm, c0), nn.ReLU()]
        for c_in, c_out in zip(cfg.channels, cfg.channels[1:]):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), norm_layer(cfg.norm, c_out), nn.ReLU(), nn.MaxPool2d(2)]
        self.cnn = nn.Sequential(*layers)
        self.proj = nn.Linear(2 * cfg.channels[-1], cfg.embed_dim)
        # open_clip and the exporter read the eval transform from here
        self.preprocess_cfg = {"size": (cfg.image_size, cfg.image_size), "mean": tuple(cfg.mean), "std": tuple(cfg.std), "interpolation": "bicubic", "resize_mode": "shortest"}

    def lock(self, unlocked_groups: int = 0, freeze_bn_stats: bool = False) -> None:
        """Freeze the tower for LiT-style training (open_clip's `lock_image_tower` calls this).

        Groups, first to last: the stem (conv + norm), each later conv block, the projection;
        `unlocked_groups=N` leaves the last N trainable.
        """
        stem, rest = list(self.cnn)[:3], list(self.cnn)[3:]
        blocks = [nn.ModuleList(stem)] + [nn.ModuleList(rest[i : i + 4]) for i in range(0, len(rest), 4)]
        lock_groups([*blocks, self.proj], unlocked_groups, freeze_bn_stats)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.cnn(images)
        return self.proj(torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1))
