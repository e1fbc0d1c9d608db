"""Full-matrix reference losses: the obvious B x B implementations.

Why they exist: ground truth for the tiled/ring losses in tests, and the
baseline in bench/bench_loss_memory.py. They use plain autograd and materialise
the whole logits matrix, so do not use them for large batches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["full_clip_loss", "full_siglip_loss"]


def full_clip_loss(image_emb: Tensor, text_emb: Tensor, logit_scale: Tensor | float) -> Tensor:
    """``(CE(s I T^T, arange) + CE(s T I^T, arange)) / 2`` from one logits matrix."""
    logits = (logit_scale * image_emb) @ text_emb.T
    labels = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def full_siglip_loss(
    image_emb: Tensor, text_emb: Tensor, logit_scale: Tensor | float, logit_bias: Tensor | float
) -> Tensor:
    """``-sum(logsigmoid(Y * (s I T^T + b))) / B`` with ``Y = 2 eye - 1`` (open_clip's convention)."""
    b = image_emb.shape[0]
    logits = logit_scale * image_emb @ text_emb.T + logit_bias
    labels = 2 * torch.eye(b, device=logits.device, dtype=logits.dtype) - 1
    return -F.logsigmoid(labels * logits).sum() / b
