"""A compact CNN image tower for small models trained on CPU (the default model, omnivec-mini).

A ViT of the same size trained for a few minutes memorised the colour-shape pairs it saw; a CNN
with global pooling composes colour and form better and trains several times faster on 2 cores.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn


@dataclass
class ImageTowerConfig:
    image_size: int = 64
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
    channels: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    embed_dim: int = 512

    def to_dict(self) -> dict:
        return asdict(self)


class ImageTower(nn.Module):
    """`forward(images)`: normalised (B, 3, S, S) images -> unnormalised (B, embed_dim) embeddings."""

    def __init__(self, cfg: ImageTowerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c0 = cfg.channels[0]
        layers: list[nn.Module] = [nn.Conv2d(3, c0, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c0), nn.ReLU()]
        for c_in, c_out in zip(cfg.channels, cfg.channels[1:]):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]
        self.cnn = nn.Sequential(*layers)
        self.proj = nn.Linear(2 * cfg.channels[-1], cfg.embed_dim)
        # open_clip and the exporter read the eval transform from here
        self.preprocess_cfg = {"size": (cfg.image_size, cfg.image_size), "mean": tuple(cfg.mean), "std": tuple(cfg.std), "interpolation": "bicubic", "resize_mode": "shortest"}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.cnn(images)
        return self.proj(torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1))
