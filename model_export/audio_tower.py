"""The audio tower: waveform -> embedding in the model's shared space.

The log-mel frontend is part of the network (a Conv1d whose kernels are the windowed DFT
basis, then a fixed mel filterbank and a log), so the exported ONNX graph takes raw 16-bit-range
waveforms and training and serving compute features with the very same operations; complex
STFT ops do not export to ONNX cleanly, a Conv1d DFT does. A small CNN follows.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

from .image_tower import lock_groups, norm_layer


@dataclass
class AudioTowerConfig:
    sample_rate: int = 16000
    clip_seconds: float = 2.0
    hop_seconds: float = 1.0  # stride between windows when long audio is split (server side)
    max_seconds: float = 600.0
    n_fft: int = 400
    hop_length: int = 160
    n_mels: int = 64
    f_min: float = 20.0
    f_max: float | None = None
    channels: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    embed_dim: int = 512
    norm: Literal["group", "batch"] = "group"  # see ImageTowerConfig.norm

    @property
    def clip_samples(self) -> int:
        return int(round(self.sample_rate * self.clip_seconds))

    def to_dict(self) -> dict:
        return asdict(self)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float | None) -> np.ndarray:
    """HTK-scale triangular filters, (n_fft // 2 + 1, n_mels), each normalised to unit area (Slaney)."""
    f_max = f_max or sample_rate / 2

    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(np.array(f_min)), hz_to_mel(np.array(f_max)), n_mels + 2))
    bank = np.zeros((len(freqs), n_mels))
    for m in range(n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        rising = (freqs - lo) / max(mid - lo, 1e-9)
        falling = (hi - freqs) / max(hi - mid, 1e-9)
        bank[:, m] = np.maximum(0, np.minimum(rising, falling)) * (2.0 / (hi - lo))
    return bank.astype(np.float32)


class LogMelFrontend(nn.Module):
    """waveform (B, samples) -> log-mel (B, n_mels, frames), ONNX-exportable, not trained."""

    def __init__(self, cfg: AudioTowerConfig) -> None:
        super().__init__()
        n = torch.arange(cfg.n_fft, dtype=torch.float64)
        window = 0.5 - 0.5 * torch.cos(2 * math.pi * n / cfg.n_fft)  # periodic Hann
        k = torch.arange(cfg.n_fft // 2 + 1, dtype=torch.float64)[:, None]
        angle = 2 * math.pi * k * n[None, :] / cfg.n_fft
        kernels = torch.cat([torch.cos(angle) * window, -torch.sin(angle) * window])[:, None, :]
        self.register_buffer("dft", kernels.float(), persistent=False)
        self.register_buffer("mel", torch.from_numpy(mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.f_min, cfg.f_max)), persistent=False)
        self.hop = cfg.hop_length
        self.pad = cfg.n_fft // 2
        self.n_freq = cfg.n_fft // 2 + 1

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        x = nn.functional.pad(waveform[:, None, :], (self.pad, self.pad))
        spec = nn.functional.conv1d(x, self.dft, stride=self.hop)  # (B, 2*F, frames)
        power = spec[:, : self.n_freq] ** 2 + spec[:, self.n_freq :] ** 2
        mel = torch.matmul(power.transpose(1, 2), self.mel)  # (B, frames, n_mels)
        return torch.log(mel + 1e-6).transpose(1, 2)


class AudioTower(nn.Module):
    """Log-mel frontend + CNN + projection; `forward(waveform)` returns unnormalised embeddings."""

    def __init__(self, cfg: AudioTowerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.frontend = LogMelFrontend(cfg)
        # per-clip normalisation of the log-mel over all mels and frames (BatchNorm1d over mels before)
        self.input_norm = nn.BatchNorm1d(cfg.n_mels) if cfg.norm == "batch" else nn.GroupNorm(1, cfg.n_mels)
        layers: list[nn.Module] = []
        c_in = 1
        for i, c_out in enumerate(cfg.channels):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), norm_layer(cfg.norm, c_out), nn.ReLU(inplace=True)]
            if i < len(cfg.channels) - 1:
                layers.append(nn.MaxPool2d(2))
            c_in = c_out
        self.cnn = nn.Sequential(*layers)
        self.proj = nn.Linear(2 * c_in, cfg.embed_dim)

    def lock(self, unlocked_groups: int = 0, freeze_bn_stats: bool = False) -> None:
        """Freeze the tower; groups: input norm, each conv block, the projection (last N stay trainable)."""
        layers, blocks, current = list(self.cnn), [], []
        for layer in layers:
            current.append(layer)
            if isinstance(layer, nn.MaxPool2d) or layer is layers[-1]:
                blocks.append(nn.ModuleList(current))
                current = []
        lock_groups([self.input_norm, *blocks, self.proj], unlocked_groups, freeze_bn_stats)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        feats = self.input_norm(self.frontend(waveform))  # (B, mels, frames)
        x = self.cnn(feats[:, None])  # (B, C, mels', frames')
        x = x.mean(dim=2)  # over frequency
        pooled = torch.cat([x.mean(dim=2), x.amax(dim=2)], dim=1)
        return self.proj(pooled)
