"""Exact CLIP (symmetric InfoNCE) loss without materialising the B x B logits.

Why: the full similarity matrix costs O(B^2) memory (several B x B fp32 buffers
once log-softmax outputs and gradients are counted), which caps the contrastive
batch size long before compute does. Following Inf-CL, the forward pass sweeps
``tile x tile`` blocks once and keeps only a running log-sum-exp per row (image
-> text) and per column (text -> image); the backward pass recomputes each tile.
Only the inputs and the two length-B LSE vectors are kept between forward and
backward, so extra memory is O(B*D + tile^2).

The value equals open_clip's single-process ``ClipLoss``::

    (CE(s * I @ T.T, arange(B)) + CE(s * T @ I.T, arange(B))) / 2

With ``labels`` every pair sharing a label is a positive (SupCon's "out" form, as in
CWCL/UniCL): row i's term averages ``-log softmax`` over its positives ``P(i)``, and
likewise per column. Equal to the plain loss when all labels differ.
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
    clip_backward_block,
    clip_forward_block,
    compute_dtype,
    positive_weights,
    resolve_tile_size,
)

__all__ = ["tiled_clip_loss"]


class _TiledClipLoss(torch.autograd.Function):
    @staticmethod
    @autocast_off
    def forward(ctx, image_emb: Tensor, text_emb: Tensor, logit_scale: Tensor, tile: int, labels: Tensor | None) -> Tensor:  # type: ignore[override]
        cd = compute_dtype(image_emb.dtype, text_emb.dtype)
        scale = logit_scale.detach().to(cd).reshape(())
        b = image_emb.shape[0]
        pos = None if labels is None else Positives(labels, labels, positive_weights(labels, labels, cd))
        row_lse = torch.full((b,), float("-inf"), device=image_emb.device, dtype=cd)
        col_lse = torch.full((b,), float("-inf"), device=image_emb.device, dtype=cd)
        diag = clip_forward_block(image_emb, text_emb, scale, tile, row_lse, col_lse, diagonal=True, pos=pos)
        acc = acc_dtype(image_emb.device)
        total = row_lse.sum(dtype=acc) + col_lse.sum(dtype=acc) - 2.0 * diag.to(acc)
        loss = (total / (2 * b)).to(cd)
        ctx.save_for_backward(image_emb, text_emb, logit_scale, row_lse, col_lse)
        ctx.tile, ctx.pos = tile, pos
        return loss

    @staticmethod
    @once_differentiable
    @autocast_off
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        image_emb, text_emb, logit_scale, row_lse, col_lse = ctx.saved_tensors
        need_img, need_txt, need_scale = ctx.needs_input_grad[:3]
        cd = row_lse.dtype
        tile = ctx.tile
        b, d = image_emb.shape
        scale = logit_scale.to(cd).reshape(())
        # The scale gradient sum(G * I @ T.T) equals <I, G @ T> (or <T, G.T @ I>):
        # reuse whichever accumulator is computed anyway instead of a B x B product.
        use_a = need_img or (need_scale and not need_txt)
        acc_i = torch.zeros((b, d), device=image_emb.device, dtype=cd) if use_a else None
        acc_t = torch.zeros((b, d), device=image_emb.device, dtype=cd) if need_txt else None
        clip_backward_block(image_emb, text_emb, scale, tile, row_lse, col_lse, True, acc_i, acc_t, pos=ctx.pos)
        coef = grad_out.to(cd) / (2 * b)
        d_scale = None
        if need_scale:
            dot = blockwise_dot(image_emb, acc_i, tile, cd) if acc_i is not None else blockwise_dot(text_emb, acc_t, tile, cd)
            d_scale = (coef * dot).to(logit_scale.dtype).reshape(logit_scale.shape)
        d_img = acc_i.mul_(coef * scale).to(image_emb.dtype) if need_img else None
        d_txt = acc_t.mul_(coef * scale).to(text_emb.dtype) if need_txt else None
        return d_img, d_txt, d_scale, None, None


def tiled_clip_loss(
    image_emb: Tensor,
    text_emb: Tensor,
    logit_scale: Tensor | float,
    tile_size: int | None = None,
    *,
    labels: Tensor | None = None,
) -> Tensor:
    """Mean symmetric InfoNCE over the batch, computed tile by tile.

    Args:
        image_emb, text_emb: ``(B, D)`` paired embeddings (row i of each is a
            positive pair); fp32/fp64/bf16/fp16. Not normalised here - pass
            normalised features as with open_clip.
        logit_scale: the already-exponentiated temperature (``model.logit_scale.exp()``),
            a 1-element tensor or a float.
        tile_size: tile edge; any value >= 1 (need not divide B). ``None`` picks a
            device default (see ``_kernels.DEFAULT_TILE_*``).
        labels: optional 1-D integer tensor of length B. With ``P(i) = {j : labels[j] ==
            labels[i]}``, row i's image->text term is ``-(1/|P(i)|) sum_{j in P(i)}
            log softmax_j(s_i.)``, column j's text->image term the same over columns,
            and the loss is the mean of the mean row and mean column terms. ``None``:
            one positive per row (the diagonal).

    Returns:
        0-dim loss in the compute dtype (fp32 for bf16/fp16 inputs, else the input
        dtype). Gradients come back in each input's own dtype; inputs that do
        not require grad get none.
    """
    check_pair(image_emb, text_emb)
    scale = as_scalar(logit_scale, image_emb, "logit_scale")
    tile = resolve_tile_size(tile_size, image_emb.device)
    labels = check_labels(labels, image_emb.shape[0], image_emb.device)
    return _TiledClipLoss.apply(image_emb, text_emb, scale, tile, labels)
