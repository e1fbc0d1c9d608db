"""Fine-tune configuration: one pydantic model, loadable from YAML, every field also a CLI flag."""

from __future__ import annotations

import argparse
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class FinetuneConfig(BaseModel):
    """What to train, on what, and how."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("omnivec-tiny", description="open_clip architecture, omnivec config name, or config .json path")
    pretrained: str = Field("none", description="pretrained tag, local checkpoint (also one this module wrote), or none")
    resume: Path | None = Field(None, description="resume training from a checkpoint this module wrote (model, optimizer, step)")
    modality: Literal["image", "audio"] = Field("image", description="which tower trains against the text tower: image, or audio (the model needs an audio tower)")
    train_data: Path = Field(description="CSV/JSONL manifest of (image or audio, caption[, label]) rows, or a class-folder tree")
    val_data: Path | None = Field(None, description="validation manifest/tree; default: a split of train_data")
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="share of train_data held out when val_data is not given")
    templates: list[str] = Field(default_factory=lambda: ["a photo of a {}."], description="caption templates for class-folder data and zero-shot eval")
    lock_image: bool = Field(False, description="freeze the image tower (LiT-style)")
    lock_image_unlocked_groups: int = Field(0, ge=0, description="with lock_image: leave the last N layer groups trainable")
    lock_text: bool = Field(False, description="freeze the text tower")
    lock_text_unlocked_layers: int = Field(0, ge=0, description="with lock_text: leave the last N layers trainable")
    loss: Literal["clip", "siglip"] = Field("clip", description="tiled InfoNCE (clip) or tiled sigmoid loss (siglip)")
    tile_size: int | None = Field(None, ge=1, description="loss tile size: the BxB similarity matrix is never materialised; default: 1024 on CPU, 4096 on CUDA")
    chunk_size: int | None = Field(None, ge=1, description="GradCache chunk: rows per encoder pass (bounds activation memory); default whole batch")
    # --- issue 17: what counts as a positive, how batches are built, nested dimensions ---
    positives: Literal["caption", "label", "pair"] = Field(
        "caption",
        description="which pairs in a batch are positives: caption (pairs with identical captions, so duplicates do not repel), "
        "label (pairs sharing the manifest's label or class folder), pair (only each row's own caption)",
    )
    batches: Literal["random", "mined"] = Field(
        "random", description="random batches, or mined: each batch grown from a nearest-neighbour graph of the model's embeddings (hard negatives)"
    )
    mine_neighbours: int = Field(16, ge=1, description="with batches=mined: neighbours per item in the graph")
    mine_every: int = Field(1, ge=0, description="with batches=mined: rebuild the graph every N epochs from the current model; 0: once, from the starting model (a fixed teacher)")
    nested_dims: list[int] | None = Field(
        None, description="Matryoshka: comma-separated prefix lengths (e.g. 32,64,128); the loss is summed over these prefixes and the full dim"
    )
    epochs: int = Field(5, ge=1)
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps (smoke runs)")
    batch_size: int = Field(64, ge=2, description="global batch (pairs per step, over all processes)")
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.1, ge=0)
    warmup_steps: int = Field(10, ge=0)
    grad_clip: float | None = Field(1.0, gt=0, description="max global grad norm; none to disable")
    precision: Literal["fp32", "bf16"] = Field("fp32", description="bf16 autocast for the encoders (loss accumulates in fp32)")
    augment: bool = Field(False, description="open_clip's train-time augmentation instead of the eval transform")
    seed: int = 0
    workers: int = Field(0, ge=0, description="DataLoader worker processes")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: torch's)")
    out: Path = Field(Path("runs/finetune"), description="output directory: checkpoints/, report.json, report.md, bundle/")
    export: bool = Field(True, description="export a servable bundle at the end")
    int8: bool = Field(False, description="with export: also write int8 towers")
    publish: str | None = Field(
        None,
        description="URL of a running omnivec server that loads the exported bundle at the end (POST /v1/models; the bundle path must "
        "be readable by the server; an admin key comes from $OMNIVEC_API_KEY)",
    )
    publish_name: str | None = Field(None, description="with publish: the name the model is served under (default: <model name>-<space id hash>)")
    publish_reembed: list[str] | None = Field(None, description="with publish: collections to re-embed into the new model's space and swap in")

    @field_validator("nested_dims", mode="before")
    @classmethod
    def _parse_dims(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = [int(v) for v in value.replace(" ", "").split(",") if v]
            except ValueError as exc:
                raise ValueError(f"nested_dims must be comma-separated integers, got {value!r}") from exc
        if isinstance(value, list):
            if not value or any(int(v) < 1 for v in value) or sorted(set(value)) != list(value):
                raise ValueError(f"nested_dims must be increasing positive integers, got {value}")
        return value

    @classmethod
    def load(cls, path: Path | None, overrides: dict[str, Any]) -> "FinetuneConfig":
        data: dict[str, Any] = {}
        if path is not None:
            import yaml

            loaded = yaml.safe_load(Path(path).read_text()) or {}
            if not isinstance(loaded, dict):
                raise ValueError(f"{path}: expected a mapping of config fields")
            data.update(loaded)
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(data)


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One --flag per config field (booleans as --x/--no-x), described by the field's description."""
    for name, field in FinetuneConfig.model_fields.items():
        flag = "--" + name.replace("_", "-")
        default = "required" if field.is_required() else field.get_default(call_default_factory=True)
        help_text = f"{field.description or ''} (default: {default})".strip()
        annotation = str(field.annotation)
        if typing.get_origin(field.annotation) is Literal:
            parser.add_argument(flag, dest=name, choices=typing.get_args(field.annotation), default=None, help=help_text)
        elif field.annotation is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif name == "nested_dims":
            parser.add_argument(flag, dest=name, default=None, metavar="D1,D2,...", help=help_text)
        elif name in ("templates", "publish_reembed"):
            parser.add_argument(flag, dest=name, action="append", default=None, help=help_text + " (repeatable)")
        elif "int" in annotation and "float" not in annotation:
            parser.add_argument(flag, dest=name, type=int, default=None, help=help_text)
        elif "float" in annotation:
            parser.add_argument(flag, dest=name, type=float, default=None, help=help_text)
        else:
            parser.add_argument(flag, dest=name, default=None, help=help_text)


def config_from_args(args: argparse.Namespace) -> FinetuneConfig:
    overrides = {name: getattr(args, name, None) for name in FinetuneConfig.model_fields}
    try:
        return FinetuneConfig.load(getattr(args, "config", None), overrides)
    except ValidationError as exc:
        raise ValueError(f"invalid fine-tune config:\n{exc}") from exc
