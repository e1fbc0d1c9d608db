"""Ring (sequence-parallel) tiled contrastive losses across ``torch.distributed`` ranks.

Why: with data parallelism each rank holds only its own embeddings, but the
contrastive loss couples every image with every text in the *global* batch.
Gathering all embeddings costs O(N*D) per rank and the full N x N logits are out
of the question; instead each rank keeps its own query rows (its images) and the
text blocks travel around the ring, one hop per step, so every rank sees every
key block once while holding at most two of them. The next block's transfer is
posted (``batch_isend_irecv``) before the current block is computed, so the
transfer can overlap compute (NCCL runs it on its own stream; gloo's transport
progresses it off the calling thread).

* CLIP: each tile yields both the row LSE (kept locally, for the local images)
  and a partial column LSE for the visiting text block; the partial column LSEs
  (one float per global text, O(N)) are combined with two small all-reduces.
* Backward: key blocks travel again; each rank adds its gradient contribution
  for the visiting text block to an accumulator that travels with the block and
  arrives back at its owner after W hops.

The loss equals the single-process loss over the concatenated batch
(rank order). Every rank returns that same *global mean* loss. With ``labels``
(each rank passes its rows' labels; all ranks must pass them or none), the
labels are all-gathered once (O(N) integers) so every tile can build its
positive mask and each row knows its global number of positives.

Gradient convention (``grad_reduction``), assuming every rank backpropagates the
same upstream gradient (each rank calls ``loss.backward()``):

* ``"mean"`` (default, for DDP's gradient *averaging*): each rank's embedding
  gradients are ``W * dL/d(local embeddings)`` and its logit-scale/bias
  gradient is ``W * share_r``, where ``share_r`` is the part of ``dL/ds`` from
  the logits tiles this rank computed (its image rows); ``sum_r share_r = dL/ds``.
  After DDP averages across ranks, every parameter holds exactly ``dL/dtheta``.
  (This matches what open_clip's ``gather_with_grad=True`` yields after DDP.)
* ``"sum"``: the same without the factor ``W``: embedding gradients are the true
  partials ``dL/d(local embeddings)`` and the scale/bias gradients are the shares;
  summing gradients over ranks gives ``dL/dtheta``.

Every rank must call the loss with the same settings and the same set of inputs
requiring grad (the ring exchanges are collective). Ranks may hold different
local batch sizes (>= 1).
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
import torch.distributed as dist
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
    scalar_acc,
    siglip_backward_block,
    siglip_forward_block,
)

__all__ = ["ring_clip_loss", "ring_siglip_loss", "GradReduction"]

GradReduction = Literal["mean", "sum"]


class _Ring:
    """Neighbour exchange and small collectives over one process group."""

    def __init__(self, group: dist.ProcessGroup | None) -> None:
        self.group = group
        if dist.is_available() and dist.is_initialized():
            self.world = dist.get_world_size(group)
            self.rank = dist.get_rank(group)
        else:
            self.world, self.rank = 1, 0
        if self.world > 1:
            to_global = (lambda r: dist.get_global_rank(group, r)) if group is not None else (lambda r: r)
            self.right = to_global((self.rank + 1) % self.world)
            self.left = to_global((self.rank - 1) % self.world)

    def sizes(self, n: int, device: torch.device) -> list[int]:
        if self.world == 1:
            return [n]
        mine = torch.tensor([n], dtype=torch.int64, device=device)
        out = [torch.empty_like(mine) for _ in range(self.world)]
        dist.all_gather(out, mine, group=self.group)
        return [int(t.item()) for t in out]

    def all_labels(self, labels: Tensor, sizes: list[int]) -> Tensor:
        """Every rank's labels in rank order (uneven sizes padded for the all-gather)."""
        if self.world == 1:
            return labels
        padded = torch.zeros(max(sizes), dtype=labels.dtype, device=labels.device)
        padded[: labels.shape[0]] = labels
        out = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(out, padded, group=self.group)
        return torch.cat([t[:n] for t, n in zip(out, sizes)])

    def exchange(self, send: Tensor, recv: Tensor, tag: int) -> list:
        """Post send-to-right and recv-from-left; returns the requests to wait on."""
        ops = [
            dist.P2POp(dist.isend, send, self.right, self.group, tag),
            dist.P2POp(dist.irecv, recv, self.left, self.group, tag),
        ]
        return dist.batch_isend_irecv(ops)

    def all_reduce(self, t: Tensor, op=None) -> Tensor:
        if self.world > 1:
            dist.all_reduce(t, op=op or dist.ReduceOp.SUM, group=self.group)
        return t

    def logsumexp(self, part: Tensor) -> Tensor:
        """Element-wise log-sum-exp across ranks of per-rank partial LSE vectors."""
        if self.world == 1:
            return part
        mx = self.all_reduce(part.clone(), dist.ReduceOp.MAX)
        s = self.all_reduce(torch.exp(part - mx))
        return s.log_().add_(mx)

    def rotate(
        self,
        keys: Tensor,
        sizes: list[int],
        visit: Callable[[int, Tensor, Tensor | None], None],
        acc_dim: int | None = None,
        acc_dtype: torch.dtype | None = None,
    ) -> Tensor | None:
        """Call ``visit(owner, key_block, acc)`` for every key block in the ring.

        At step s this rank holds the block owned by rank ``(rank - s) % W``; the
        next block is received while ``visit`` runs. If ``acc_dim`` is given,
        ``acc`` is a zero ``(n_owner, acc_dim)`` buffer the visit adds into; it is
        summed with the contributions of the ranks visited before and passed on,
        and the completed accumulator of the *local* block is returned.
        """
        w, r = self.world, self.rank
        buf = keys.contiguous()
        acc_in: Tensor | None = None
        acc_reqs: list = []
        sent: Tensor | None = None
        for step in range(w):
            owner = (r - step) % w
            key_reqs: list = []
            if step < w - 1:
                nxt = torch.empty((sizes[(owner - 1) % w], keys.shape[1]), dtype=keys.dtype, device=keys.device)
                key_reqs = self.exchange(buf, nxt, tag=2 * step)
            contrib = None
            if acc_dim is not None:
                contrib = torch.zeros((sizes[owner], acc_dim), dtype=acc_dtype, device=keys.device)
            visit(owner, buf, contrib)
            if contrib is not None:
                if w == 1:
                    acc_in = contrib
                else:
                    for req in acc_reqs:
                        req.wait()
                    if step > 0:
                        contrib += acc_in
                    sent = contrib  # keep alive until its send completes
                    acc_in = torch.empty((sizes[(owner - 1) % w], acc_dim), dtype=acc_dtype, device=keys.device)
                    acc_reqs = self.exchange(sent, acc_in, tag=2 * step + 1)
            for req in key_reqs:
                req.wait()
            if step < w - 1:
                buf = nxt
        for req in acc_reqs:
            req.wait()
        del sent
        return acc_in


def _offsets(sizes: list[int]) -> list[int]:
    offs = [0]
    for n in sizes:
        offs.append(offs[-1] + n)
    return offs


def _block_positives(
    labels: Tensor | None, ring: _Ring, sizes: list[int], offs: list[int], cd: torch.dtype
) -> Callable[[int], Positives | None]:
    """``owner -> Positives`` of (this rank's rows, owner's key block); None without labels."""
    if labels is None:
        return lambda _owner: None
    everyone = ring.all_labels(labels, sizes)
    weight = positive_weights(labels, everyone, cd)
    return lambda owner: Positives(labels, everyone[offs[owner] : offs[owner + 1]], weight)


def _grad_factor(ring: _Ring, grad_reduction: str) -> int:
    if grad_reduction == "mean":
        return ring.world
    if grad_reduction == "sum":
        return 1
    raise ValueError(f"grad_reduction must be 'mean' or 'sum', got {grad_reduction!r}")


class _RingClipLoss(torch.autograd.Function):
    @staticmethod
    @autocast_off
    def forward(ctx, image_emb, text_emb, logit_scale, tile, ring, factor, labels):  # type: ignore[override]
        cd = compute_dtype(image_emb.dtype, text_emb.dtype)
        scale = logit_scale.detach().to(cd).reshape(())
        dev = image_emb.device
        sizes = ring.sizes(image_emb.shape[0], dev)
        offs = _offsets(sizes)
        positives = _block_positives(labels, ring, sizes, offs, cd)
        n_total = offs[-1]
        row_lse = torch.full((image_emb.shape[0],), float("-inf"), device=dev, dtype=cd)
        col_part = torch.full((n_total,), float("-inf"), device=dev, dtype=cd)
        diag = torch.zeros((), device=dev, dtype=cd)

        def visit(owner: int, keys: Tensor, _acc: Tensor | None) -> None:
            nonlocal diag
            cols = col_part[offs[owner] : offs[owner + 1]]
            diag = diag + clip_forward_block(image_emb, keys, scale, tile, row_lse, cols, owner == ring.rank, positives(owner))

        ring.rotate(text_emb, sizes, visit)
        col_lse = ring.logsumexp(col_part)
        own = col_lse[offs[ring.rank] : offs[ring.rank + 1]]
        acc = acc_dtype(dev)
        total = ring.all_reduce((row_lse.sum(dtype=acc) + own.sum(dtype=acc) - 2.0 * diag.to(acc)).reshape(1))
        ctx.save_for_backward(image_emb, text_emb, logit_scale, row_lse, col_lse)
        ctx.tile, ctx.ring, ctx.factor, ctx.sizes, ctx.offs, ctx.positives = tile, ring, factor, sizes, offs, positives
        return (total / (2 * n_total)).to(cd).reshape(())

    @staticmethod
    @once_differentiable
    @autocast_off
    def backward(ctx, grad_out):  # type: ignore[override]
        image_emb, text_emb, logit_scale, row_lse, col_lse = ctx.saved_tensors
        need_img, need_txt, need_scale = ctx.needs_input_grad[:3]
        ring, tile, sizes, offs = ctx.ring, ctx.tile, ctx.sizes, ctx.offs
        cd = row_lse.dtype
        scale = logit_scale.to(cd).reshape(())
        n, d = image_emb.shape
        acc_i = torch.zeros((n, d), device=image_emb.device, dtype=cd) if (need_img or need_scale) else None
        if acc_i is None and not need_txt:
            return None, None, None, None, None, None, None

        def visit(owner: int, keys: Tensor, acc_t: Tensor | None) -> None:
            cols = col_lse[offs[owner] : offs[owner + 1]]
            clip_backward_block(
                image_emb, keys, scale, tile, row_lse, cols, owner == ring.rank, acc_i, acc_t, ctx.positives(owner)
            )

        acc_t = ring.rotate(text_emb, sizes, visit, acc_dim=d if need_txt else None, acc_dtype=cd)
        coef = grad_out.to(cd) * (ctx.factor / (2 * offs[-1]))
        d_scale = None
        if need_scale:
            d_scale = (coef * blockwise_dot(image_emb, acc_i, tile, cd)).to(logit_scale.dtype).reshape(logit_scale.shape)
        d_img = acc_i.mul_(coef * scale).to(image_emb.dtype) if need_img else None
        d_txt = acc_t.mul_(coef * scale).to(text_emb.dtype) if need_txt else None
        return d_img, d_txt, d_scale, None, None, None, None


class _RingSigLipLoss(torch.autograd.Function):
    @staticmethod
    @autocast_off
    def forward(ctx, image_emb, text_emb, logit_scale, logit_bias, tile, ring, factor, labels):  # type: ignore[override]
        cd = compute_dtype(image_emb.dtype, text_emb.dtype)
        scale = logit_scale.detach().to(cd).reshape(())
        bias = logit_bias.detach().to(cd).reshape(())
        sizes = ring.sizes(image_emb.shape[0], image_emb.device)
        positives = _block_positives(labels, ring, sizes, _offsets(sizes), cd)
        total = scalar_acc(image_emb.device)

        def visit(owner: int, keys: Tensor, _acc: Tensor | None) -> None:
            nonlocal total
            total = total + siglip_forward_block(
                image_emb, keys, scale, bias, tile, owner == ring.rank, cd, positives(owner)
            ).to(total.dtype)

        ring.rotate(text_emb, sizes, visit)
        total = ring.all_reduce(total.reshape(1))
        ctx.save_for_backward(image_emb, text_emb, logit_scale, logit_bias)
        ctx.tile, ctx.ring, ctx.factor, ctx.sizes, ctx.cd, ctx.positives = tile, ring, factor, sizes, cd, positives
        return (total / sum(sizes)).to(cd).reshape(())

    @staticmethod
    @once_differentiable
    @autocast_off
    def backward(ctx, grad_out):  # type: ignore[override]
        image_emb, text_emb, logit_scale, logit_bias = ctx.saved_tensors
        need_img, need_txt, need_scale, need_bias = ctx.needs_input_grad[:4]
        ring, tile, sizes, cd = ctx.ring, ctx.tile, ctx.sizes, ctx.cd
        scale = logit_scale.to(cd).reshape(())
        bias = logit_bias.to(cd).reshape(())
        n, d = image_emb.shape
        acc_i = torch.zeros((n, d), device=image_emb.device, dtype=cd) if (need_img or need_scale) else None
        if acc_i is None and not need_txt and not need_bias:
            return None, None, None, None, None, None, None, None
        gsum = torch.zeros((), device=image_emb.device, dtype=cd)

        def visit(owner: int, keys: Tensor, acc_t: Tensor | None) -> None:
            nonlocal gsum
            gsum = gsum + siglip_backward_block(
                image_emb, keys, scale, bias, tile, owner == ring.rank, acc_i, acc_t, cd, need_bias, ctx.positives(owner)
            )

        acc_t = ring.rotate(text_emb, sizes, visit, acc_dim=d if need_txt else None, acc_dtype=cd)
        coef = grad_out.to(cd) * (ctx.factor / sum(sizes))
        d_scale = d_bias = None
        if need_scale:
            d_scale = (coef * blockwise_dot(image_emb, acc_i, tile, cd)).to(logit_scale.dtype).reshape(logit_scale.shape)
        if need_bias:
            d_bias = (coef * gsum).to(logit_bias.dtype).reshape(logit_bias.shape)
        d_img = acc_i.mul_(coef * scale).to(image_emb.dtype) if need_img else None
        d_txt = acc_t.mul_(coef * scale).to(text_emb.dtype) if need_txt else None
        return d_img, d_txt, d_scale, d_bias, None, None, None, None


def ring_clip_loss(
    image_emb: Tensor,
    text_emb: Tensor,
    logit_scale: Tensor | float,
    tile_size: int | None = None,
    group: dist.ProcessGroup | None = None,
    grad_reduction: GradReduction = "mean",
    *,
    labels: Tensor | None = None,
) -> Tensor:
    """Global-batch CLIP loss with this rank's ``(n_r, D)`` image/text rows as input.

    Returns the global mean symmetric InfoNCE over all ranks' pairs (identical on
    every rank); see the module docstring for ``grad_reduction``. Without an
    initialised process group this is the single-process loss. ``labels``: this
    rank's rows' labels, with :func:`tiled_clip_loss`'s meaning over the global batch.
    """
    check_pair(image_emb, text_emb)
    scale = as_scalar(logit_scale, image_emb, "logit_scale")
    tile = resolve_tile_size(tile_size, image_emb.device)
    labels = check_labels(labels, image_emb.shape[0], image_emb.device)
    ring = _Ring(group)
    return _RingClipLoss.apply(image_emb, text_emb, scale, tile, ring, _grad_factor(ring, grad_reduction), labels)


def ring_siglip_loss(
    image_emb: Tensor,
    text_emb: Tensor,
    logit_scale: Tensor | float,
    logit_bias: Tensor | float,
    tile_size: int | None = None,
    group: dist.ProcessGroup | None = None,
    grad_reduction: GradReduction = "mean",
    *,
    labels: Tensor | None = None,
) -> Tensor:
    """Global-batch SigLIP loss (sum over all N^2 pairs / N), ring-parallel like :func:`ring_clip_loss`."""
    check_pair(image_emb, text_emb)
    scale = as_scalar(logit_scale, image_emb, "logit_scale")
    bias = as_scalar(logit_bias, image_emb, "logit_bias")
    tile = resolve_tile_size(tile_size, image_emb.device)
    labels = check_labels(labels, image_emb.shape[0], image_emb.device)
    ring = _Ring(group)
    return _RingSigLipLoss.apply(
        image_emb, text_emb, scale, bias, tile, ring, _grad_factor(ring, grad_reduction), labels
    )
