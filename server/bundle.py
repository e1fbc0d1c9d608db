"""The model bundle: the contract between export, fine-tune and the server.

A bundle is a directory holding `manifest.json`, one ONNX file per tower (any subset of
image / text / audio), the tokenizer file and `parity.json`. The manifest carries everything
the server needs to reproduce training-time preprocessing exactly, so nothing about a model
(pooling, normalisation, crop mode, tokenizer cleaning) is a flag a user must remember.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field, ValidationError, model_validator

FORMAT_VERSION = 2  # 2: text towers may have a dynamic sequence axis; the bundle may carry probes
READABLE_VERSIONS = (1, 2)  # a version-1 bundle is served as it was: fixed-length text, no probe check
MANIFEST_FILE = "manifest.json"
PARITY_FILE = "parity.json"
PROBES_FILE = "probes.npz"

Modality = Literal["image", "text", "audio"]
MODALITIES: tuple[str, ...] = ("image", "text", "audio")


class BundleError(Exception):
    """A bundle that cannot be served; the message names the file or field at fault."""


class TensorSpec(BaseModel):
    name: str
    dtype: Literal["float32", "float16", "int64", "int32"]
    shape: list[int | str] = Field(description="Symbolic dims are strings, e.g. 'batch'.")


class ImagePreprocess(BaseModel):
    size: tuple[int, int] = Field(description="(height, width) fed to the tower.")
    resize_mode: Literal["shortest", "longest", "squash"] = "shortest"
    interpolation: Literal["bicubic", "bilinear"] = "bicubic"
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    fill_color: int = 0


class TextPreprocess(BaseModel):
    tokenizer: Literal["clip-bpe", "hf"] = Field(description="clip-bpe: open_clip's SimpleTokenizer rebuilt for `tokenizers`; hf: a Hugging Face tokenizer.json.")
    file: str = "tokenizer.json"
    context_length: int = Field(ge=2)
    cleaning: Literal["lower", "whitespace", "none"] = Field(
        description="lower: ftfy + double html.unescape + whitespace collapse + lowercase (open_clip's default)."
    )


class AudioPreprocess(BaseModel):
    sample_rate: int = Field(ge=1000, description="Rate the tower expects; input is resampled to it (soxr).")
    clip_seconds: float = Field(gt=0, description="Window fed to the tower; shorter audio is zero-padded.")
    hop_seconds: float = Field(gt=0, description="Stride between windows when long audio is split.")
    pooling: Literal["mean"] = Field("mean", description="How window embeddings combine: mean of unit vectors, renormalised.")
    max_seconds: float = Field(gt=0, description="Longest audio accepted.")
    frontend: Literal["log-mel-in-graph"] = Field(
        "log-mel-in-graph", description="Features are computed inside the ONNX graph from the waveform (Conv1d DFT + mel + log)."
    )
    n_fft: int = Field(400, ge=16)
    hop_length: int = Field(160, ge=1)
    n_mels: int = Field(64, ge=1)


class TowerSpec(BaseModel):
    file: str
    inputs: list[TensorSpec]
    output: TensorSpec
    variants: dict[str, str] = Field(default_factory=dict, description="Other precisions, e.g. {'int8': 'image.int8.onnx'}.")
    preprocess: ImagePreprocess | TextPreprocess | AudioPreprocess


class Probes(BaseModel):
    """A few inputs per tower with their fp32 reference embeddings (from the PyTorch model at
    export), so a server can check the variant it is about to serve on *its* CPU or GPU."""

    file: str = PROBES_FILE
    min_cos: dict[Literal["fp32", "fp16", "int8"], float] = Field(
        description="Lowest cosine to the reference a variant may show at load time, by arithmetic: fp32, fp16 (e.g. TensorRT fp16), int8."
    )


class Scoring(BaseModel):
    kind: Literal["softmax", "sigmoid"]
    logit_scale: float = Field(gt=0, description="Already exponentiated: logits = logit_scale * cosine (+ bias).")
    logit_bias: float | None = None

    @model_validator(mode="after")
    def _bias_for_sigmoid(self) -> "Scoring":
        if self.kind == "sigmoid" and self.logit_bias is None:
            raise ValueError("scoring.kind 'sigmoid' needs scoring.logit_bias")
        return self


class Manifest(BaseModel):
    format_version: int
    model_name: str
    space_id: str = Field(description="Names the embedding space: vectors from different spaces never share a collection.")
    embed_dim: int = Field(ge=1)
    scoring: Scoring
    towers: dict[Modality, TowerSpec]
    source: dict = Field(default_factory=dict, description="Where the weights came from (architecture, checkpoint, versions).")
    created_at: str = ""
    probes: Probes | None = Field(None, description="Load-time parity probes (format_version >= 2).")
    # issue 17 (Matryoshka fine-tune): prefix lengths the model was trained for; optional
    nested_dims: list[int] | None = Field(
        None, description="Prefix lengths the embeddings were trained to work at (each renormalised), ending with embed_dim; absent: full dim only."
    )

    @model_validator(mode="after")
    def _consistent(self) -> "Manifest":
        if not self.towers:
            raise ValueError("towers is empty: a bundle needs at least one of image, text, audio")
        expected = {"image": ImagePreprocess, "text": TextPreprocess, "audio": AudioPreprocess}
        for modality, tower in self.towers.items():
            if not isinstance(tower.preprocess, expected[modality]):
                raise ValueError(f"towers.{modality}.preprocess is not {modality} preprocessing")
            out_dim = tower.output.shape[-1] if tower.output.shape else None
            if out_dim != self.embed_dim:
                raise ValueError(f"towers.{modality}.output last dim {out_dim} != embed_dim {self.embed_dim}")
        dims = self.nested_dims
        if dims is not None and (not dims or sorted(set(dims)) != dims or dims[0] < 1 or dims[-1] != self.embed_dim):
            raise ValueError(f"nested_dims {dims} must be increasing positive integers ending with embed_dim {self.embed_dim}")
        return self


class ModelBundle:
    """A validated bundle directory; construct with `ModelBundle.load(path)`."""

    def __init__(self, root: Path, manifest: Manifest) -> None:
        self.root = root
        self.manifest = manifest

    @classmethod
    def load(cls, root: str | Path) -> "ModelBundle":
        root = Path(root)
        path = root / MANIFEST_FILE
        if not root.is_dir():
            raise BundleError(f"bundle directory {root} does not exist; create one with `omnivec export --out {root}`")
        if not path.is_file():
            raise BundleError(f"{path} is missing: {root} is not a model bundle (create one with `omnivec export`)")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise BundleError(f"{path} is not valid JSON: {exc}") from exc
        version = raw.get("format_version") if isinstance(raw, dict) else None
        if version not in READABLE_VERSIONS:
            newer = isinstance(version, int) and version > FORMAT_VERSION
            raise BundleError(
                f"{path}: format_version {version!r} is not supported (this server reads "
                f"{', '.join(map(str, READABLE_VERSIONS))}); "
                + ("upgrade omnivec to serve it" if newer else "re-export the bundle with this omnivec version (`omnivec export`)")
            )
        try:
            manifest = Manifest.model_validate(raw)
        except ValidationError as exc:
            raise BundleError(f"{path} is inconsistent:\n{exc}") from exc
        bundle = cls(root, manifest)
        bundle._check_files()
        return bundle

    def _check_files(self) -> None:
        for modality, tower in self.manifest.towers.items():
            files = [tower.file, *tower.variants.values()]
            if isinstance(tower.preprocess, TextPreprocess):
                files.append(tower.preprocess.file)
            for name in files:
                if not (self.root / name).is_file():
                    raise BundleError(f"{self.root / name} is missing (named by towers.{modality} in {MANIFEST_FILE})")
        probes = self.manifest.probes
        if probes is not None and not (self.root / probes.file).is_file():
            raise BundleError(f"{self.root / probes.file} is missing (named by probes in {MANIFEST_FILE}); re-export the bundle")

    def dynamic_sequence(self, modality: str) -> bool:
        """True when the tower takes text of any length up to its context (a symbolic second axis);
        version-1 bundles and fixed exports take exactly `context_length` tokens."""
        tower = self.manifest.towers[modality]  # type: ignore[index]
        shape = tower.inputs[0].shape
        return len(shape) > 1 and isinstance(shape[1], str)

    @property
    def modalities(self) -> list[str]:
        return [m for m in MODALITIES if m in self.manifest.towers]

    def tower_path(self, modality: str, precision: str = "fp32") -> Path:
        """The ONNX file for a tower at the requested precision (fp32 when no such variant exists)."""
        tower = self.manifest.towers[modality]  # type: ignore[index]
        name = tower.variants.get(precision, tower.file) if precision != "fp32" else tower.file
        return self.root / name

    def probe_arrays(self, modality: str) -> tuple[dict[str, np.ndarray], np.ndarray] | None:
        """The tower's probe inputs (by input name) and fp32 reference embeddings, or None without probes."""
        if self.manifest.probes is None:
            return None
        with np.load(self.root / self.manifest.probes.file) as data:
            prefix = f"{modality}."
            arrays = {k[len(prefix):]: data[k] for k in data.files if k.startswith(prefix)}
        reference = arrays.pop("reference", None)
        return (arrays, reference) if reference is not None and arrays else None

    def parity_report(self) -> dict:
        path = self.root / PARITY_FILE
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def unpack_bundle(archive: Path, dest: Path) -> Path:
    """Extract an uploaded bundle archive (tar, tar.gz/.bz2/.xz) into `dest`; the directory holding its manifest.

    Extraction uses tarfile's "data" filter: no absolute paths, no `..`, no links out of `dest`, no
    device files, so an archive cannot write outside the directory it is given.
    """
    import tarfile

    try:
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BundleError(f"the upload is not a readable bundle archive ({exc.__class__.__name__}: {exc}); send `tar czf - -C DIR .` of a bundle directory") from exc
    for root in (dest, *sorted(p for p in dest.iterdir() if p.is_dir())):
        if (root / MANIFEST_FILE).is_file():
            return root
    raise BundleError(f"the archive holds no {MANIFEST_FILE} at its top level or in one top-level directory; archive a bundle directory written by `omnivec export`")
