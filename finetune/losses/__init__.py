"""Contrastive losses for fine-tuning: exact tiled (Inf-CL style) and ring-parallel variants.

* :func:`tiled_clip_loss`, :func:`tiled_siglip_loss` - single process, O(B*D) memory.
* :func:`ring_clip_loss`, :func:`ring_siglip_loss` - the same across ``torch.distributed`` ranks.
* :func:`full_clip_loss`, :func:`full_siglip_loss` - B x B references for tests/benchmarks.
"""

from .reference import full_clip_loss, full_siglip_loss
from .ring import ring_clip_loss, ring_siglip_loss
from .tiled_clip import tiled_clip_loss
from .tiled_siglip import tiled_siglip_loss

__all__ = [
    "tiled_clip_loss",
    "tiled_siglip_loss",
    "full_clip_loss",
    "full_siglip_loss",
    "ring_clip_loss",
    "ring_siglip_loss",
]
