"""Export one tower of an open_clip model to ONNX with a dynamic batch axis.

Text towers also get a dynamic sequence axis, so the server pads a batch only to its longest
text instead of the full context (a 13-token query then costs 13 tokens of work, not 77):
- CLIP-style causal towers take `input_ids` of any length up to the context. Trimming trailing
  padding is exact: with a causal mask no position attends forwards, so the end-of-text token
  (where the embedding is pooled) sees the same inputs whatever follows it.
- Hugging Face encoder towers (e.g. MiniLM) take `input_ids` and `attention_mask`; padded
  positions are masked out of attention and pooling, so any padding length gives the same result.
Towers outside these shapes (e.g. CoCa's appended class token, last-token pooling) keep the
fixed context length.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_BATCH = 4096
ENCODERS = {"image": "encode_image", "text": "encode_text", "audio": "encode_audio"}
SEQUENCE_DIM = "sequence"


@dataclass
class TowerGraph:
    """What an exported tower takes: input names and whether the text length is dynamic."""

    input_names: list[str]
    dynamic_sequence: bool = False


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


def _causal_text_parts(model: Any) -> dict | None:
    """The pieces of a CLIP-style causal text tower, or None when trimming would not be exact."""
    text = getattr(model, "text", None)
    if text is not None and hasattr(text, "token_embedding"):  # CustomTextCLIP with an open_clip TextTransformer
        owner, pool, eos = text, getattr(text, "pool_type", "argmax"), getattr(text, "eos_id", None)
        if getattr(text, "cls_emb", None) is not None or getattr(text, "use_pad_mask", False):
            return None
    elif hasattr(model, "token_embedding") and hasattr(model, "transformer"):  # CLIP
        owner, pool, eos = model, getattr(model, "text_pool_type", "argmax"), getattr(model, "text_eos_id", None)
    else:
        return None
    mask = getattr(owner, "attn_mask", None)
    if mask is None or pool not in ("argmax", "eos", "first"):
        return None  # no causal mask, or pooling at a position that moves with padding
    return {"owner": owner, "pool": pool, "eos": eos, "mask": mask}


def text_tower_module(model: Any) -> tuple[Any, TowerGraph]:
    """The text tower as a module taking sequences of any length, and the graph's inputs."""
    import torch
    from open_clip.transformer import text_global_pool

    hf = getattr(model, "text", None)
    if hf is not None and hasattr(hf, "transformer") and hasattr(hf, "pooler") and hasattr(hf, "config"):

        class HFText(torch.nn.Module):
            def __init__(self, t: Any) -> None:
                super().__init__()
                self.t = t

            def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
                out = self.t.transformer(input_ids=input_ids, attention_mask=attention_mask)
                return self.t.proj(self.t.pooler(out, attention_mask))

        return HFText(hf).eval(), TowerGraph(["input_ids", "attention_mask"], dynamic_sequence=True)

    parts = _causal_text_parts(model)
    if parts is None:
        return _tower_module(model, "text"), TowerGraph(["input_ids"], dynamic_sequence=False)

    class CausalText(torch.nn.Module):
        def __init__(self, owner: Any, pool: str, eos: int | None, mask: torch.Tensor) -> None:
            super().__init__()
            self.o, self.pool, self.eos = owner, pool, eos
            self.register_buffer("causal", mask.clone(), persistent=False)

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            o = self.o
            length = input_ids.shape[1]
            cast = o.transformer.get_cast_dtype()
            x = o.token_embedding(input_ids).to(cast) + o.positional_embedding[:length].to(cast)
            x = o.transformer(x, attn_mask=self.causal[:length, :length])
            x = o.ln_final(x)
            x = text_global_pool(x, input_ids, self.pool, eos_token_id=self.eos)
            proj = o.text_projection
            if proj is None:
                return x
            return proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj

    return CausalText(parts["owner"], parts["pool"], parts["eos"], parts["mask"]).eval(), TowerGraph(["input_ids"], dynamic_sequence=True)


def _export(module: Any, examples: tuple, input_names: list[str], dynamic_shapes: tuple, path: Path) -> None:
    import torch

    quiet = io.StringIO()
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(quiet), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            examples,
            dynamo=True,
            input_names=input_names,
            output_names=["embeddings"],  # not "embedding": it collides with a node name in text towers
            dynamic_shapes=dynamic_shapes,
            verbose=False,
        )
    program.save(str(path), external_data=False)


def export_tower(model: Any, modality: str, example: Any, input_name: str, path: Path) -> None:
    """Trace with the dynamo exporter from a batch >= 2 example (a batch of 1 would freeze the axis)."""
    import torch

    module = _tower_module(model, modality)
    if example.shape[0] < 2:
        example = torch.cat([example, example], dim=0)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    _export(module, (example,), [input_name], ({0: batch},), path)


def export_text_tower(model: Any, example: dict[str, Any], path: Path, context_length: int) -> TowerGraph:
    """Export the text tower with dynamic batch and (where exact) sequence axes; `example` holds
    full-context arrays by input name (batch >= 2). Returns the graph's inputs."""
    import torch

    module, graph = text_tower_module(model)
    tensors = [torch.as_tensor(example[name]) for name in graph.input_names]
    if tensors[0].shape[0] < 2:
        tensors = [torch.cat([t, t], dim=0) for t in tensors]
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    axes: dict[int, Any] = {0: batch}
    if graph.dynamic_sequence:
        axes[1] = torch.export.Dim(SEQUENCE_DIM, min=1, max=context_length)
    _export(module, tuple(tensors), graph.input_names, tuple(dict(axes) for _ in tensors), path)
    return graph
