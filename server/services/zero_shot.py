"""Zero-shot classification: score inputs against label texts in the shared embedding space.

Label embeddings (CLIP-style prompt ensembling): each label is written into every template
("a photo of a {}."), the template texts are embedded and L2-normalised, averaged, and the mean
is renormalised. Images default to a small photo-template ensemble, audio to a sound-template
ensemble ("the sound of {}.", "a recording of {}.", "{}"); texts are compared with the label text
itself (template "{}") unless the request gives templates. Embedded template texts are cached
(LRU keyed by space id, template and label), so a label set costs one model call the first time
and nothing afterwards.

Scores follow the bundle's `scoring`:

* softmax models (CLIP): softmax over `logit_scale * cosine` across the labels; scores sum to 1.
* sigmoid models (SigLIP): `sigmoid(logit_scale * cosine + logit_bias)` per label, independent
  (multi-label by construction).
* softmax model with `multi_label: true`: such models have no calibrated per-label probability,
  so each label gets the two-way softmax between itself and the average of the other labels,
  `sigmoid(logit_scale * (cos_i - mean_{j != i} cos_j))` (with one label: `sigmoid(logit_scale *
  cos)`). Scores are independent and do not sum to 1; above 0.5 means "closer to this label than
  to the others on average".
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..bundle import Scoring
from ..errors import ErrorCode, OmnivecError
from .embedding import EmbeddingService

DEFAULT_IMAGE_TEMPLATES: tuple[str, ...] = ("a photo of a {}.", "a picture of a {}.", "an image of a {}.")
DEFAULT_AUDIO_TEMPLATES: tuple[str, ...] = ("the sound of {}.", "a recording of {}.", "{}")
TEXT_TEMPLATES: tuple[str, ...] = ("{}",)
DEFAULT_TEMPLATES: dict[str, tuple[str, ...]] = {"image": DEFAULT_IMAGE_TEMPLATES, "audio": DEFAULT_AUDIO_TEMPLATES, "text": TEXT_TEMPLATES}
MAX_LABELS = 1000
MAX_TEMPLATES = 100


@dataclass
class LabelScore:
    label: str
    score: float
    cosine: float


def check_labels(labels: Sequence[str] | None) -> list[str]:
    """Non-empty, distinct, non-blank labels (422 labels_empty / invalid_request otherwise)."""
    if not labels:
        raise OmnivecError(ErrorCode.LABELS_EMPTY, 'no labels to classify against: give "labels": ["cat", "dog", ...] or "labelset": "name"')
    if len(labels) > MAX_LABELS:
        raise OmnivecError(ErrorCode.INVALID_REQUEST, f"{len(labels)} labels is over the limit of {MAX_LABELS}")
    seen: set[str] = set()
    for i, label in enumerate(labels):
        if not isinstance(label, str) or not label.strip():
            raise OmnivecError(ErrorCode.LABELS_EMPTY, f"labels[{i}] is empty; every label needs some text")
        if label in seen:
            raise OmnivecError(ErrorCode.INVALID_REQUEST, f"label {label!r} appears twice; labels must be distinct")
        seen.add(label)
    return list(labels)


def check_templates(templates: Sequence[str] | None) -> list[str] | None:
    """None (use the defaults) or templates that each contain the label slot '{}'."""
    if not templates:
        return None
    if len(templates) > MAX_TEMPLATES:
        raise OmnivecError(ErrorCode.INVALID_REQUEST, f"{len(templates)} templates is over the limit of {MAX_TEMPLATES}")
    for i, template in enumerate(templates):
        if not isinstance(template, str) or "{}" not in template:
            raise OmnivecError(ErrorCode.INVALID_REQUEST, f"templates[{i}] {template!r} has no '{{}}' where the label goes, e.g. \"a photo of a {{}}.\"")
    return list(dict.fromkeys(templates))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def scores_from_cosine(cosine: np.ndarray, scoring: Scoring, multi_label: bool) -> tuple[np.ndarray, str]:
    """(n_inputs, n_labels) cosines -> scores and the rule used (see the module docstring)."""
    scale = scoring.logit_scale
    cosine = cosine.astype(np.float64)
    if scoring.kind == "sigmoid":
        return _sigmoid(scale * cosine + float(scoring.logit_bias or 0.0)), "sigmoid"
    if not multi_label:
        logits = scale * cosine
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True), "softmax"
    n = cosine.shape[1]
    others = (cosine.sum(axis=1, keepdims=True) - cosine) / (n - 1) if n > 1 else np.zeros_like(cosine)
    return _sigmoid(scale * (cosine - others)), "softmax-pairwise"


class LabelEmbeddingCache:
    """LRU of embedded template texts, keyed by (space id, template, label)."""

    def __init__(self, max_entries: int = 8192) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str, str], np.ndarray] = OrderedDict()

    def get(self, key: tuple[str, str, str]) -> np.ndarray | None:
        vector = self._entries.get(key)
        if vector is not None:
            self._entries.move_to_end(key)
        return vector

    def put(self, key: tuple[str, str, str], vector: np.ndarray) -> None:
        self._entries[key] = vector
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class ZeroShotClassifier:
    def __init__(self, embedding: EmbeddingService, cache: LabelEmbeddingCache | None = None) -> None:
        self.embedding = embedding
        self.cache = cache or LabelEmbeddingCache()

    async def label_vectors(self, labels: Sequence[str], templates: Sequence[str]) -> np.ndarray:
        """(n_labels, dim) unit vectors: the renormalised mean of each label's template embeddings."""
        space = self.embedding.manifest.space_id
        keys = [(space, t, label) for label in labels for t in templates]
        found = {k: v for k in dict.fromkeys(keys) if (v := self.cache.get(k)) is not None}
        missing = [k for k in dict.fromkeys(keys) if k not in found]
        if missing:
            texts = [t.replace("{}", label) for _, t, label in missing]
            result = await self.embedding.embed_texts(texts, labels=[f"label {label!r} in template {t!r}" for _, t, label in missing])
            for key, vector in zip(missing, result.vectors):
                self.cache.put(key, vector)
                found[key] = vector
        means = np.stack([found[k] for k in keys]).reshape(len(labels), len(templates), -1).mean(axis=1)
        return means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)

    async def classify(
        self,
        vectors: np.ndarray,
        modalities: Sequence[str],
        labels: Sequence[str],
        templates: Sequence[str] | None,
        top_k: int,
        multi_label: bool,
    ) -> tuple[list[list[LabelScore]], str]:
        """Ranked labels per input, and the scoring rule used."""
        labels = check_labels(labels)
        templates = check_templates(templates)
        cosine = np.zeros((len(vectors), len(labels)), np.float64)
        for modality in dict.fromkeys(modalities):
            rows = [i for i, m in enumerate(modalities) if m == modality]
            chosen = templates or DEFAULT_TEMPLATES.get(modality, TEXT_TEMPLATES)
            label_matrix = await self.label_vectors(labels, chosen)
            cosine[rows] = vectors[rows] @ label_matrix.T
        scores, rule = scores_from_cosine(cosine, self.embedding.manifest.scoring, multi_label)
        k = min(top_k, len(labels))
        ranked = []
        for row_scores, row_cos in zip(scores, cosine):
            order = np.argsort(-row_scores, kind="stable")[:k]
            ranked.append([LabelScore(labels[j], float(row_scores[j]), float(row_cos[j])) for j in order])
        return ranked, rule
