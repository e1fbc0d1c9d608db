"""Export one tower of an open_clip model to ONNX with a dynamic batch axis."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Any

MAX_BATCH = 4096
ENCODERS = {"image": "encode_image", "text": "encode_text", "audio": "encode_audio"}


def _tower_module(model: Any, modality: str) -> Any:
    """A module whose forward is one tower's encode method (the exporter traces `forward`)."""
    import torch

    if modality not in ENCODERS:
        raise ValueError(f"no ONNX wrapper for modality {modality!r}")

    class Tower(torch.nn.Module):
        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m
            self.encode = getattr(m, ENCODERS[modality])

        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            return self.encode(inputs)

    return Tower(model).eval()


def export_tower(model: Any, modality: str, example: Any, input_name: str, path: Path) -> None:
    """Trace with the dynamo exporter from a batch >= 2 example (a batch of 1 would freeze the axis)."""
    import torch

    module = _tower_module(model, modality)
    if example.shape[0] < 2:
        example = torch.cat([example, example], dim=0)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    quiet = io.StringIO()
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(quiet), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            (example,),
            dynamo=True,
            input_names=[input_name],
            output_names=["embeddings"],  # not "embedding": it collides with a node name in text towers
            dynamic_shapes=({0: batch},),
            verbose=False,
        )
    program.save(str(path), external_data=False)
