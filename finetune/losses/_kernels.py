"""Tile kernels shared by the single-process and ring contrastive losses.

Each kernel sweeps the logits block ``scale * Q @ K.T`` of one query block ``Q``
(image rows) against one key block ``K`` (text rows) in ``tile x tile`` pieces and
never holds more than two tiles of it. Why a separate module: the single-process
loss is exactly the one-block case of the ring loss, so both share these kernels
and therefore share their numerics.

Conventions:
* ``scale`` (and ``bias``) are 0-dim tensors already in the compute dtype.
* Queries/keys may be any floating dtype; every tile is computed in the compute
  dtype (``compute_dtype``), so bf16/fp16 inputs accumulate in fp32.
* ``diagonal=True`` means the global diagonal (the positive pairs) runs through
  this block at ``Q[i] <-> K[i]``; the block is then square.
* ``pos`` (a :class:`Positives`), when given, replaces the diagonal: pair (i, j) is
  positive when ``pos.query[i] == pos.key[j]`` (labels as positives, SupCon-style).
  The mask is built one tile at a time, so nothing B x B is ever held.
* Gradient accumulators receive *unscaled* sums ``sum_j G_ij K_j`` and
  ``sum_i G_ij Q_i``, where ``G`` is d(loss_sum)/d(logit); the caller applies
  the ``scale`` and upstream-gradient factors once at the end.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "Positives",
    "check_labels",
    "positive_weights",
    "check_pair",
    "no_autocast",
    "autocast_off",
    "compute_dtype",
    "as_scalar",
    "resolve_tile_size",
    "acc_dtype",
    "scalar_acc",
    "blockwise_dot",
    "clip_forward_block",
    "clip_backward_block",
    "siglip_forward_block",
    "siglip_backward_block",
]

# Chosen by measurement (bench/bench_loss_memory.py --tile-sweep, B=8192, D=512,
# fp32, 1 thread): 256/512/1024/2048/4096 took 1.95/1.81/1.77/1.83/2.00 s with
# 33/37/46/75/180 MiB peak; 1024 keeps a tile (4 MiB) cache-resident. On GPUs
# larger tiles amortise kernel launches; 4096 (two 64 MiB fp32 tile buffers) is
# NOT measured here (no GPU was available) - tune it with the same sweep.
# Note: with torch.backends.cuda.matmul.allow_tf32 enabled, the tile matmuls run
# in TF32 like any other fp32 matmul.
DEFAULT_TILE_CPU = 1024
DEFAULT_TILE_CUDA = 4096


def compute_dtype(*dtypes: torch.dtype) -> torch.dtype:
    """fp64 stays fp64; everything else (fp32, bf16, fp16) accumulates in fp32."""
    return torch.float64 if torch.float64 in dtypes else torch.float32


def check_pair(image_emb: Tensor, text_emb: Tensor) -> None:
    """Paired (B, D) floating-point embeddings with B >= 1."""
    if image_emb.dim() != 2 or text_emb.dim() != 2:
        raise ValueError("image_emb and text_emb must be 2-D (batch, dim)")
    if image_emb.shape != text_emb.shape:
        raise ValueError(
            f"paired embeddings must have equal shapes, got {tuple(image_emb.shape)} and {tuple(text_emb.shape)}"
        )
    if image_emb.shape[0] == 0:
        raise ValueError("empty batch")
    if not (image_emb.is_floating_point() and text_emb.is_floating_point()):
        raise TypeError("embeddings must be floating point")


class Positives(NamedTuple):
    """Labels of one (query block, key block) pair; pairs with equal labels are positives.

    ``weight[i]`` is ``1 / |P(i)|`` for query row i (its number of positives in the whole
    batch, over all ranks); used by the InfoNCE kernels, ignored by the sigmoid ones.
    """

    query: Tensor
    key: Tensor
    weight: Tensor | None = None


def check_labels(labels: Tensor | None, batch: int, device: torch.device) -> Tensor | None:
    """``labels`` must be None or a 1-D integer tensor with one entry per pair."""
    if labels is None:
        return None
    if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.shape[0] != batch:
        shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"labels must be a 1-D tensor of length {batch} (one per pair), got {shape}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor, got {labels.dtype}")
    return labels.to(device=device, dtype=torch.int64)


def positive_weights(query: Tensor, all_labels: Tensor, dtype: torch.dtype) -> Tensor:
    """``1 / |P(i)|`` per query label: how many entries of ``all_labels`` share it."""
    uniq, counts = torch.unique(all_labels, return_counts=True)
    return counts[torch.searchsorted(uniq, query)].to(dtype).reciprocal()


def _pos_tile(pos: Positives, i0: int, i1: int, j0: int, j1: int) -> Tensor:
    return pos.query[i0:i1, None] == pos.key[None, j0:j1]


def no_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Disable autocast inside the kernels: under an enclosing ``torch.autocast`` the
    tile matmuls would otherwise run in bf16/fp16 and lose the fp32 accumulation
    the loss promises (logits of size 100 keep only ~2 significant digits in bf16)."""
    try:
        return torch.autocast(device_type=device.type, enabled=False)
    except RuntimeError:  # device type without autocast support
        return contextlib.nullcontext()


def autocast_off(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run an autograd.Function's forward/backward with autocast disabled (see ``no_autocast``)."""

    @functools.wraps(fn)
    def wrapper(ctx: Any, *args: Any) -> Any:
        dev = next((a.device for a in args if isinstance(a, Tensor)), None)
        with no_autocast(dev) if dev is not None else contextlib.nullcontext():
            return fn(ctx, *args)

    return wrapper


def as_scalar(value: Tensor | float, like: Tensor, name: str) -> Tensor:
    """Accept a Python number or a 1-element tensor (``[]`` or ``[1]``) for scale/bias."""
    if not isinstance(value, Tensor):
        # fp64 so a Python float keeps its full precision for fp64 inputs; cast to the compute dtype later
        return torch.tensor(float(value), device=like.device, dtype=acc_dtype(like.device))
    if value.numel() != 1:
        raise ValueError(f"{name} must have exactly one element, got shape {tuple(value.shape)}")
    return value


def resolve_tile_size(tile_size: int | None, device: torch.device) -> int:
    if tile_size is None:
        return DEFAULT_TILE_CUDA if device.type == "cuda" else DEFAULT_TILE_CPU
    tile_size = int(tile_size)
    if tile_size < 1:
        raise ValueError(f"tile_size must be >= 1, got {tile_size}")
    return tile_size


def acc_dtype(device: torch.device) -> torch.dtype:
    """dtype for scalar running totals: fp64 wherever the device has it."""
    return torch.float32 if device.type == "mps" else torch.float64


def scalar_acc(device: torch.device) -> Tensor:
    """A 0-dim running total in fp64: thousands of per-tile partial sums added
    sequentially in fp32 would lose ~1e-4 relative (seen with tile_size=1)."""
    return torch.zeros((), device=device, dtype=acc_dtype(device))


def blockwise_dot(x: Tensor, y: Tensor, tile: int, dtype: torch.dtype) -> Tensor:
    """sum(x * y) in ``dtype`` without materialising an upcast copy of all of ``x``."""
    out = scalar_acc(y.device)
    for i0 in range(0, x.shape[0], tile):
        xs = x[i0 : i0 + tile].to(dtype).reshape(-1)
        out += torch.dot(xs, y[i0 : i0 + tile].to(dtype).reshape(-1))
    return out.to(dtype)


def _buffers(m: int, n: int, tile: int, device: torch.device, dtype: torch.dtype, count: int) -> list[Tensor]:
    size = min(tile, m) * min(tile, n)
    return [torch.empty(size, device=device, dtype=dtype) for _ in range(count)]


def clip_forward_block(
    q: Tensor,
    k: Tensor,
    scale: Tensor,
    tile: int,
    row_lse: Tensor,
    col_lse: Tensor,
    diagonal: bool,
    pos: Positives | None = None,
) -> Tensor:
    """Fold this block into the running row and column log-sum-exp, in one sweep.

    ``row_lse`` (len m) and ``col_lse`` (len n) are updated in place; both
    directions come from the same tile so each logit is computed once.
    Returns the sum of the diagonal logits in this block (0 if ``diagonal`` is False),
    or with ``pos`` the sum over positive pairs of ``pos.weight[i] * logit_ij``.
    """
    cd = row_lse.dtype
    m, n = q.shape[0], k.shape[0]
    lbuf, ebuf = _buffers(m, n, tile, q.device, cd, 2)
    diag_sum = scalar_acc(q.device)
    for i0 in range(0, m, tile):
        i1 = min(i0 + tile, m)
        qs = q[i0:i1].to(cd) * scale
        racc = row_lse[i0:i1]
        for j0 in range(0, n, tile):
            j1 = min(j0 + tile, n)
            kt = k[j0:j1].to(cd)
            shape = (i1 - i0, j1 - j0)
            logits = lbuf[: shape[0] * shape[1]].view(shape)
            e = ebuf[: shape[0] * shape[1]].view(shape)
            torch.mm(qs, kt.T, out=logits)
            if pos is not None:
                mask = _pos_tile(pos, i0, i1, j0, j1)
                diag_sum += torch.where(mask, logits, 0.0).sum(dim=1).dot(pos.weight[i0:i1])
            elif diagonal and i0 == j0:
                diag_sum += logits.diagonal().sum()
            # rows: stable log-sum-exp with the tile's row max
            mx = logits.amax(dim=1)
            torch.sub(logits, mx[:, None], out=e).exp_()
            part = e.sum(dim=1).log_().add_(mx)
            racc.copy_(torch.logaddexp(racc, part))
            # columns: same tile, column max
            mx = logits.amax(dim=0)
            torch.sub(logits, mx[None, :], out=e).exp_()
            part = e.sum(dim=0).log_().add_(mx)
            cacc = col_lse[j0:j1]
            cacc.copy_(torch.logaddexp(cacc, part))
    return diag_sum.to(cd)


def clip_backward_block(
    q: Tensor,
    k: Tensor,
    scale: Tensor,
    tile: int,
    row_lse: Tensor,
    col_lse: Tensor,
    diagonal: bool,
    dq: Tensor | None,
    dk: Tensor | None,
    pos: Positives | None = None,
) -> None:
    """Recompute each tile and accumulate the InfoNCE gradient sums.

    With ``P = softmax`` over rows, ``Q' = softmax`` over columns and ``Y`` the
    identity on the diagonal, ``G = P + Q' - 2Y`` is the gradient of
    ``sum_i CE_row_i + sum_j CE_col_j`` w.r.t. the logits. With ``pos``,
    ``Y_ij = [label_i == label_j] / |P(i)|`` (each row's targets sum to 1). Adds ``G @ K`` into
    ``dq`` (m x D) and ``G.T @ Q`` into ``dk`` (n x D); either may be None.
    """
    if dq is None and dk is None:
        return
    cd = row_lse.dtype
    m, n = q.shape[0], k.shape[0]
    lbuf, ebuf = _buffers(m, n, tile, q.device, cd, 2)
    for i0 in range(0, m, tile):
        i1 = min(i0 + tile, m)
        qr = q[i0:i1].to(cd)
        qs = qr * scale
        rl = row_lse[i0:i1, None]
        for j0 in range(0, n, tile):
            j1 = min(j0 + tile, n)
            kt = k[j0:j1].to(cd)
            shape = (i1 - i0, j1 - j0)
            g = lbuf[: shape[0] * shape[1]].view(shape)
            p = ebuf[: shape[0] * shape[1]].view(shape)
            torch.mm(qs, kt.T, out=g)
            torch.sub(g, rl, out=p).exp_()
            g.sub_(col_lse[None, j0:j1]).exp_().add_(p)
            if pos is not None:
                mask = _pos_tile(pos, i0, i1, j0, j1)
                g.sub_(torch.where(mask, 2.0 * pos.weight[i0:i1, None], 0.0))
            elif diagonal and i0 == j0:
                g.diagonal().sub_(2.0)
            if dq is not None:
                dq[i0:i1].addmm_(g, kt)
            if dk is not None:
                dk[j0:j1].addmm_(g.T, qr)


def siglip_forward_block(
    q: Tensor,
    k: Tensor,
    scale: Tensor,
    bias: Tensor,
    tile: int,
    diagonal: bool,
    cd: torch.dtype,
    pos: Positives | None = None,
) -> Tensor:
    """Sum of ``-logsigmoid(y * (scale * q.k + bias))`` over the block (y=+1 on the diagonal,
    or with ``pos`` where the labels agree; else -1)."""
    m, n = q.shape[0], k.shape[0]
    (lbuf,) = _buffers(m, n, tile, q.device, cd, 1)
    total = scalar_acc(q.device)
    for i0 in range(0, m, tile):
        i1 = min(i0 + tile, m)
        qs = q[i0:i1].to(cd) * scale
        for j0 in range(0, n, tile):
            j1 = min(j0 + tile, n)
            shape = (i1 - i0, j1 - j0)
            z = lbuf[: shape[0] * shape[1]].view(shape)
            torch.mm(qs, k[j0:j1].to(cd).T, out=z)
            # y * z: negatives everywhere, positives flipped back on the diagonal
            z.add_(bias).neg_()
            if pos is not None:
                z.copy_(torch.where(_pos_tile(pos, i0, i1, j0, j1), -z, z))
            elif diagonal and i0 == j0:
                z.diagonal().neg_()
            total -= F.logsigmoid(z).sum()
    return total.to(cd)


def siglip_backward_block(
    q: Tensor,
    k: Tensor,
    scale: Tensor,
    bias: Tensor,
    tile: int,
    diagonal: bool,
    dq: Tensor | None,
    dk: Tensor | None,
    cd: torch.dtype,
    need_bias: bool,
    pos: Positives | None = None,
) -> Tensor:
    """Accumulate ``G @ K`` / ``G.T @ Q`` with ``G = sigmoid(z) - Y``; return ``sum(G)`` (bias share).

    ``Y`` is 1 on the positive pairs (the diagonal, or equal labels with ``pos``), else 0."""
    m, n = q.shape[0], k.shape[0]
    gsum = scalar_acc(q.device)
    if dq is None and dk is None and not need_bias:
        return gsum.to(cd)
    (lbuf,) = _buffers(m, n, tile, q.device, cd, 1)
    for i0 in range(0, m, tile):
        i1 = min(i0 + tile, m)
        qr = q[i0:i1].to(cd)
        qs = qr * scale
        for j0 in range(0, n, tile):
            j1 = min(j0 + tile, n)
            kt = k[j0:j1].to(cd)
            shape = (i1 - i0, j1 - j0)
            g = lbuf[: shape[0] * shape[1]].view(shape)
            torch.mm(qs, kt.T, out=g)
            g.add_(bias)
            if pos is not None:
                # d/dz -logsigmoid(y z) = -y sigmoid(-y z); positives computed without 1 - sigmoid cancellation
                mask = _pos_tile(pos, i0, i1, j0, j1)
                g.copy_(torch.where(mask, -torch.sigmoid(-g), torch.sigmoid(g)))
            elif diagonal and i0 == j0:
                # d/dz -logsigmoid(z) = -sigmoid(-z): computed directly, no 1 - sigmoid cancellation
                pos_grad = torch.sigmoid(-g.diagonal())
                g.sigmoid_()
                g.diagonal().copy_(pos_grad.neg_())
            else:
                g.sigmoid_()
            if need_bias:
                gsum += g.sum()
            if dq is not None:
                dq[i0:i1].addmm_(g, kt)
            if dk is not None:
                dk[j0:j1].addmm_(g.T, qr)
    return gsum.to(cd)
