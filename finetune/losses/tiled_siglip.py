"""Exact SigLIP (pairwise sigmoid) loss without materialising the B x B logits.

Why: SigLIP needs no normaliser across the row, so it tiles even more simply
than InfoNCE - each tile's contribution is independent - but the full-matrix
version still allocates several B x B buffers (logits, labels, log-sigmoid and
their gradients). Here the forward sweeps tiles and sums; the backward
recomputes each tile. Nothing but the inputs is saved.

The value equals open_clip's single-process ``SigLipLoss``::

    -sum(logsigmoid(Y * (s * I @ T.T + b))) / B,   Y = 2 * eye(B) - 1

With ``labels``, ``Y_ij = +1`` wherever ``labels[i] == labels[j]`` (else -1).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ._kernels import (
    Positives,
    acc_dtype,
    as_scalar,
    autocast_off,
    blockwise_dot,
    check_labels,
    check_pair,
    compute_dtype,
    resolve_tile_size,
    siglip_backward_block,
    siglip_forward_block,
)

__all__ = ["tiled_siglip_loss"]


class _TiledSigLipLoss(torch.autograd.Function):
    @staticmethod
    @autocast_off
    def forward(ctx, image_emb: Tensor, text_emb: Tensor, logit_scale: Tensor, logit_bias: Tensor, tile: int, labels: Tensor | None) -> Tensor:  # type: ignore[override]
        cd = compute_dtype(image_emb.dtype, text_emb.dtype)
        pos = None if labels is None else Positives(labels, labels)
        scale = logit_scale.detach().to(cd).reshape(())
        bias = logit_bias.detach().to(cd).reshape(())
        b = image_emb.shape[0]
        total = siglip_forward_block(image_emb, text_emb, scale, bias, tile, True, cd, pos=pos)
        ctx.save_for_backward(image_emb, text_emb, logit_scale, logit_bias)
        ctx.tile, ctx.pos = tile, pos
        ctx.cd = cd
        return (total.to(acc_dtype(image_emb.device)) / b).to(cd)

    @staticmethod
    @once_differentiable
    @autocast_off
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        image_emb, text_emb, logit_scale, logit_bias = ctx.saved_tensors
        need_img, need_txt, need_scale, need_bias = ctx.needs_input_grad[:4]
        cd, tile = ctx.cd, ctx.tile
        b, d = image_emb.shape
        scale = logit_scale.to(cd).reshape(())
        bias = logit_bias.to(cd).reshape(())
        use_a = need_img or (need_scale and not need_txt)
        acc_i = torch.zeros((b, d), device=image_emb.device, dtype=cd) if use_a else None
        acc_t = torch.zeros((b, d), device=image_emb.device, dtype=cd) if need_txt else None
        gsum = siglip_backward_block(image_emb, text_emb, scale, bias, tile, True, acc_i, acc_t, cd, need_bias, pos=ctx.pos)
        coef = grad_out.to(cd) / b
        d_scale = d_bias = None
        if need_scale:
            dot = blockwise_dot(image_emb, acc_i, tile, cd) if acc_i is not None else blockwise_dot(text_emb, acc_t, tile, cd)
            d_scale = (coef * dot).to(logit_scale.dtype).reshape(logit_scale.shape)
        if need_bias:
            d_bias = (coef * gsum).to(logit_bias.dtype).reshape(logit_bias.shape)
        d_img = acc_i.mul_(coef * scale).to(image_emb.dtype) if need_img else None
        d_txt = acc_t.mul_(coef * scale).to(text_emb.dtype) if need_txt else None
        return d_img, d_txt, d_scale, d_bias, None, None


def tiled_siglip_loss(
    image_emb: Tensor,
    text_emb: Tensor,
    logit_scale: Tensor | float,
    logit_bias: Tensor | float,
    tile_size: int | None = None,
    *,
    labels: Tensor | None = None,
) -> Tensor:
    """Sigmoid contrastive loss (sum over all B^2 pairs, divided by B), tile by tile.

    ``logit_scale`` is the already-exponentiated scale, ``logit_bias`` the
    additive bias (1-element tensors or floats). Same dtype, tiling and
    gradient rules as :func:`tiled_clip_loss`. ``labels`` (1-D integer, length B):
    the target of pair (i, j) is +1 when ``labels[i] == labels[j]``, else -1;
    ``None`` keeps the identity targets.
    """
    check_pair(image_emb, text_emb)
    scale = as_scalar(logit_scale, image_emb, "logit_scale")
    bias = as_scalar(logit_bias, image_emb, "logit_bias")
    tile = resolve_tile_size(tile_size, image_emb.device)
    labels = check_labels(labels, image_emb.shape[0], image_emb.device)
    return _TiledSigLipLoss.apply(image_emb, text_emb, scale, bias, tile, labels)
