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


def full_clip_loss(image_emb: Tensor, text_emb: Tensor, logit_scale: Tensor | float, *, labels: Tensor | None = None) -> Tensor:
    """``(CE(s I T^T, arange) + CE(s T I^T, arange)) / 2`` from one logits matrix.

    With ``labels``: the mean over rows of ``-mean_{j in P(i)} log_softmax(row i)_j`` and the
    same over columns, averaged (SupCon "out" form, written straight from the definition).
    """
    logits = (logit_scale * image_emb) @ text_emb.T
    if labels is None:
        targets = torch.arange(logits.shape[0], device=logits.device)
        return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
    positive = (labels[:, None] == labels[None, :]).to(logits.dtype)
    rows = -(positive * F.log_softmax(logits, dim=1)).sum(dim=1) / positive.sum(dim=1)
    cols = -(positive * F.log_softmax(logits, dim=0)).sum(dim=0) / positive.sum(dim=0)
    return (rows.mean() + cols.mean()) / 2


def full_siglip_loss(
    image_emb: Tensor,
    text_emb: Tensor,
    logit_scale: Tensor | float,
    logit_bias: Tensor | float,
    *,
    labels: Tensor | None = None,
) -> Tensor:
    """``-sum(logsigmoid(Y * (s I T^T + b))) / B`` with ``Y = 2 eye - 1`` (open_clip's convention),
    or with ``labels`` ``Y_ij = +1`` where the labels agree, else -1."""
    b = image_emb.shape[0]
    logits = logit_scale * image_emb @ text_emb.T + logit_bias
    if labels is None:
        targets = 2 * torch.eye(b, device=logits.device, dtype=logits.dtype) - 1
    else:
        targets = 2 * (labels[:, None] == labels[None, :]).to(logits.dtype) - 1
    return -F.logsigmoid(targets * logits).sum() / b
