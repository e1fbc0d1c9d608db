"""GradCache-style chunked backward for contrastive training.

Why: a contrastive loss couples every example in the batch, so the usual
"split the batch and accumulate gradients" trick changes the loss. GradCache
(Gao et al., 2021) keeps the loss exact while bounding activation memory by the
chunk size:

1. embed every chunk without grad (no activations kept) and concatenate;
2. compute the loss on the full-batch embeddings (detached leaves) and
   backpropagate it to get d(loss)/d(embeddings) - and the gradients of any
   parameters used inside the loss, e.g. ``logit_scale``;
3. re-embed each chunk with grad and backpropagate its slice of the cached
   embedding gradient; only one chunk's activations exist at a time.

Dropout and other random ops must draw the same values in step 3 as in step 1,
so the RNG state is captured before each chunk's first pass and replayed for
its second pass (:class:`RandContext`). The capture must see the device the
encoder runs on: pass ``device`` and each chunk is moved there *before* the
state is saved, so a CUDA encoder's dropout (drawn from the CUDA generator, not
the CPU one) is replayed too. Capturing on CPU-resident inputs saves no CUDA
state, and the second pass would draw new masks.

Batch-dependent layers (BatchNorm in training mode) cannot be exact here: their
statistics would be per chunk and updated twice per step. The towers omnivec
ships use GroupNorm; the training loop freezes the statistics of any BatchNorm.

Combine with :func:`omnivec.finetune.losses.tiled_clip_loss` so that neither the
encoders' activations nor the loss's logits scale with the full batch.
Under DDP, wrap all but the last chunk's backward in ``model.no_sync()``
yourself (not handled here, and not tested).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

import torch
from torch import Tensor
from torch.utils.checkpoint import get_device_states, set_device_states

__all__ = ["RandContext", "chunked_backward", "split_batch", "to_device"]

Batch = Union[Tensor, Mapping[str, Tensor], Sequence[Tensor]]


class RandContext:
    """Snapshot of the CPU and CUDA RNG state, replayable with ``with ctx:``.

    Why forked: the replay must not rewind the caller's RNG stream, otherwise the
    next step would reuse the same dropout masks.
    """

    def __init__(self, *tensors: Tensor, devices: Sequence[torch.device | str] = ()) -> None:
        self.cpu_state = torch.get_rng_state()
        # explicit devices count even when no input tensor lives there yet (e.g. token ids kept on CPU)
        markers = [torch.empty(0, device=d) for d in devices if torch.device(d).type != "cpu"]
        self.devices, self.device_states = get_device_states(*tensors, *markers)
        self._fork: Any = None

    def __enter__(self) -> None:
        self._fork = torch.random.fork_rng(devices=self.devices, enabled=True)
        self._fork.__enter__()
        torch.set_rng_state(self.cpu_state)
        set_device_states(self.devices, self.device_states)

    def __exit__(self, *exc: object) -> None:
        self._fork.__exit__(*exc)
        self._fork = None


def _tensors(batch: Batch) -> list[Tensor]:
    if isinstance(batch, Tensor):
        return [batch]
    if isinstance(batch, Mapping):
        return [v for v in batch.values() if isinstance(v, Tensor)]
    return [v for v in batch if isinstance(v, Tensor)]


def split_batch(batch: Batch, chunk_size: int) -> list[Batch]:
    """Split a tensor, a mapping of tensors or a sequence of tensors along dim 0."""
    if isinstance(batch, Tensor):
        return list(batch.split(chunk_size))
    if isinstance(batch, Mapping):
        keys = list(batch)
        parts = [batch[k].split(chunk_size) for k in keys]
        return [dict(zip(keys, vals)) for vals in zip(*parts)]
    parts = [t.split(chunk_size) for t in batch]
    return [tuple(vals) for vals in zip(*parts)]


def to_device(batch: Batch, device: torch.device | str | None) -> Batch:
    """Move every tensor of a batch (tensor, mapping or sequence) to ``device``."""
    if device is None:
        return batch
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()}
    return type(batch)(v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for v in batch)  # type: ignore[call-arg]


def _call(encoder: Callable[..., Tensor], chunk: Batch) -> Tensor:
    if isinstance(chunk, Tensor):
        return encoder(chunk)
    if isinstance(chunk, Mapping):
        return encoder(**chunk)
    return encoder(*chunk)


def chunked_backward(
    encoders: Callable[..., Tensor] | Sequence[Callable[..., Tensor]],
    batches: Sequence[Batch],
    loss_fn: Callable[..., Tensor],
    chunk_size: int,
    device: torch.device | str | None = None,
) -> Tensor:
    """One GradCache step: accumulate into ``.grad`` what ``loss.backward()`` would.

    Args:
        encoders: one callable used for every batch (a shared encoder), or one per
            batch (e.g. ``(model.encode_image, model.encode_text)``). Each maps a
            chunk to ``(n, D)`` embeddings. A tensor chunk is passed positionally,
            a mapping as keyword arguments, a sequence as positional arguments.
        batches: one batch per tower, all with the same leading size.
        loss_fn: ``loss_fn(*embeddings) -> scalar`` over the full-batch embeddings,
            in the order of ``batches``; parameters it uses get their gradients too.
        chunk_size: rows per encoder call; bounds activation memory.
        device: where the encoders run. Chunks are moved there before their RNG
            state is captured, and that device's generator is always captured.

    Returns:
        The (detached) loss. Gradients are accumulated, not zeroed.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    encs = list(encoders) if isinstance(encoders, Sequence) else [encoders] * len(batches)
    if len(encs) != len(batches):
        raise ValueError("need one encoder per batch (or a single shared encoder)")

    chunks = [[to_device(part, device) for part in split_batch(b, chunk_size)] for b in batches]
    rng_devices = [device] if device is not None else []
    states: list[list[RandContext]] = []
    embeddings: list[Tensor] = []
    with torch.no_grad():
        for enc, parts in zip(encs, chunks):
            outs, rngs = [], []
            for part in parts:
                rngs.append(RandContext(*_tensors(part), devices=rng_devices))
                outs.append(_call(enc, part))
            embeddings.append(torch.cat(outs))
            states.append(rngs)

    leaves = [e.detach().requires_grad_() for e in embeddings]
    loss = loss_fn(*leaves)
    loss.backward()

    for enc, parts, rngs, leaf in zip(encs, chunks, states, leaves):
        if leaf.grad is None:  # the loss does not depend on this tower
            continue
        offset = 0
        for part, rng in zip(parts, rngs):
            with rng:
                out = _call(enc, part)
            if not out.requires_grad:
                break  # a frozen (locked) tower: nothing to backpropagate into
            n = out.shape[0]
            out.backward(leaf.grad[offset : offset + n])
            offset += n
    return loss.detach()
