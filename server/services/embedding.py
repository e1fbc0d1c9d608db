"""Embedding service: media and text in, unit-length vectors out (framework-free).

Preprocessing runs on its own thread pool so decoding overlaps model execution;
model calls go through one TowerRunner per modality.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ..bundle import AudioPreprocess, ImagePreprocess, ModelBundle, TextPreprocess
from ..errors import ErrorCode, OmnivecError
from ..inference.encoder import Encoder, l2_normalize
from ..inference.onnx import OnnxEncoder
from ..inference.batcher import BatchingRunner
from ..inference.probe import arithmetic_of, open_checked
from ..inference.runner import DirectRunner, TowerRunner
from ..inference.sequences import Sequences
from ..metrics import Metrics
from ..preprocess.audio import AudioWindows, preprocess_audio
from ..preprocess.image import preprocess_image
from ..preprocess.text import TextPreprocessor
from ..settings import Settings


@dataclass
class TextEmbeddings:
    vectors: np.ndarray
    truncated: list[bool] = field(default_factory=list)
    token_counts: list[int] = field(default_factory=list)


@dataclass
class AudioEmbeddings:
    vectors: np.ndarray  # (n, dim): per item, the renormalised mean of its unit window embeddings
    windows: list[np.ndarray] = field(default_factory=list)  # per item (windows, dim), unit rows
    spans: list[list[tuple[float, float]]] = field(default_factory=list)  # per item, seconds
    durations: list[float] = field(default_factory=list)


def load_encoders(bundle: ModelBundle, settings: Settings, on_tower: Callable[[str], None] | None = None) -> dict[str, Encoder]:
    """One encoder per tower on the configured backend: onnxruntime here, or a Triton server.

    `on_tower(modality)` is called before each tower is opened (progress of a background load)."""
    model = settings.model
    if model.backend == "triton":
        from ..inference.triton import TritonEncoder

        return {
            modality: TritonEncoder(
                model.triton_url or "", f"{model.triton_model_prefix}{modality}", modality, tower, bundle.manifest.embed_dim,
                protocol=model.triton_protocol, timeout_s=model.triton_timeout_s,
            )
            for modality, tower in bundle.manifest.towers.items()
        }
    encoders: dict[str, Encoder] = {}
    for modality in bundle.modalities:  # each variant is probed on this host before it serves (inference/probe.py)
        if on_tower is not None:
            on_tower(modality)
        encoder, precision, probe = open_checked(
            bundle,
            modality,
            model.precision,
            lambda path, m=modality: OnnxEncoder(
                path, m, intra_op_threads=settings.model_threads(), inter_op_threads=model.inter_op_threads,
                providers=model.providers, provider_options=model.provider_options, tensorrt_cache=settings.tensorrt_cache_dir,
            ),
            lambda precision, enc: arithmetic_of(precision, list(getattr(enc, "providers", [])), model.provider_options),
        )
        encoder.precision, encoder.probe = precision, probe  # type: ignore[attr-defined]
        encoders[modality] = encoder
    return encoders


class EmbeddingService:
    """Owns the towers of one bundle and turns requests into normalised embeddings."""

    def __init__(
        self,
        bundle: ModelBundle,
        settings: Settings,
        encoders: dict[str, Encoder] | None = None,
        metrics: Metrics | None = None,
        on_tower: Callable[[str], None] | None = None,
    ) -> None:
        self.bundle = bundle
        self.settings = settings
        self.manifest = bundle.manifest
        self.name = self.manifest.model_name  # the name it is served under (ModelRegistry sets it)
        self._preprocess_pool = ThreadPoolExecutor(settings.server.preprocess_threads, thread_name_prefix="omnivec-pre")
        self._inference_pool = ThreadPoolExecutor(settings.server.inference_threads, thread_name_prefix="omnivec-infer")
        self.encoders: dict[str, Encoder] = encoders if encoders is not None else load_encoders(bundle, settings, on_tower)
        self.metrics = metrics
        self.runners: dict[str, TowerRunner] = {m: self._runner(e) for m, e in self.encoders.items()}
        self.precisions = {m: self._precision_of(m) for m in self.encoders}
        self.text_preprocessor: TextPreprocessor | None = None
        if "text" in self.manifest.towers:
            tower = self.manifest.towers["text"]
            assert isinstance(tower.preprocess, TextPreprocess)
            self.text_preprocessor = TextPreprocessor(
                bundle.root, tower.preprocess, [i.name for i in tower.inputs], max_chars=settings.limits.max_text_chars,
                dynamic=bundle.dynamic_sequence("text"),
            )

    def _runner(self, encoder: Encoder) -> TowerRunner:
        cfg = self.settings.batching
        if not cfg.enabled:
            return DirectRunner(encoder, self._inference_pool)
        return BatchingRunner(
            encoder,
            self._inference_pool,
            max_batch=cfg.max_batch,
            max_queue=cfg.max_queue,
            max_wait_ms=cfg.max_wait_ms,
            workers=cfg.workers,
            metrics=self.metrics,
        )

    def _precision_of(self, modality: str) -> str:
        loaded = getattr(self.encoders[modality], "precision", None)  # what load_encoders settled on after its probe
        if loaded is not None:
            return loaded
        wanted = self.settings.model.precision
        return wanted if wanted in self.manifest.towers[modality].variants else "fp32"  # type: ignore[index]

    @property
    def modalities(self) -> list[str]:
        return list(self.encoders)

    def require(self, modality: str) -> None:
        if modality not in self.encoders:
            served = ", ".join(self.modalities) or "none"
            raise OmnivecError(
                ErrorCode.MODALITY_NOT_SERVED,
                f"model {self.name!r} has no {modality} tower (it serves: {served}); "
                f"load a bundle exported with --towers including {modality}",
            )

    async def embed_texts(self, texts: Sequence[str], *, truncate: bool = True, labels: Sequence[str] | None = None) -> TextEmbeddings:
        if not texts:
            return TextEmbeddings(np.zeros((0, self.manifest.embed_dim), np.float32))
        self.require("text")
        assert self.text_preprocessor is not None
        loop = asyncio.get_running_loop()
        batch = await loop.run_in_executor(
            self._preprocess_pool, lambda: self.text_preprocessor(list(texts), truncate=truncate, labels=list(labels) if labels else None)  # type: ignore[misc]
        )
        tp = self.text_preprocessor
        sequences = Sequences(np.asarray(batch.token_counts, dtype=np.int64), tp.pad_values) if batch.padded_to_longest else None
        vectors = await self.runners["text"].run(batch.arrays, sequences)
        return TextEmbeddings(l2_normalize(vectors), batch.truncated, batch.token_counts)

    async def embed_images(self, images: Sequence[bytes], *, labels: Sequence[str] | None = None) -> np.ndarray:
        if not images:
            return np.zeros((0, self.manifest.embed_dim), np.float32)
        self.require("image")
        spec = self.manifest.towers["image"].preprocess
        assert isinstance(spec, ImagePreprocess)
        max_pixels = self.settings.limits.max_image_pixels
        loop = asyncio.get_running_loop()
        names = list(labels) if labels else [f"images[{i}]" for i in range(len(images))]
        arrays = await asyncio.gather(
            *(
                loop.run_in_executor(self._preprocess_pool, lambda d=d, n=n: preprocess_image(d, spec, max_pixels=max_pixels, label=n))
                for d, n in zip(images, names)
            )
        )
        input_name = self.encoders["image"].input_names[0]
        vectors = await self.runners["image"].run({input_name: np.stack(arrays)})
        return l2_normalize(vectors)

    async def embed_audios(self, audios: Sequence[bytes], *, labels: Sequence[str] | None = None) -> AudioEmbeddings:
        """Each file is split into the tower's windows; windows of all files go through the tower
        together and are pooled per file (mean of unit vectors, renormalised)."""
        if not audios:
            return AudioEmbeddings(np.zeros((0, self.manifest.embed_dim), np.float32))
        self.require("audio")
        spec = self.manifest.towers["audio"].preprocess
        assert isinstance(spec, AudioPreprocess)
        loop = asyncio.get_running_loop()
        names = list(labels) if labels else [f"audios[{i}]" for i in range(len(audios))]
        parts: list[AudioWindows] = await asyncio.gather(
            *(loop.run_in_executor(self._preprocess_pool, lambda d=d, n=n: preprocess_audio(d, spec, label=n)) for d, n in zip(audios, names))
        )
        input_name = self.encoders["audio"].input_names[0]
        vectors = l2_normalize(await self.runners["audio"].run({input_name: np.concatenate([p.windows for p in parts])}))
        result = AudioEmbeddings(np.zeros((len(parts), self.manifest.embed_dim), np.float32))
        offset = 0
        for i, part in enumerate(parts):
            rows = vectors[offset : offset + len(part.windows)]
            offset += len(part.windows)
            result.vectors[i] = l2_normalize(rows.mean(axis=0, keepdims=True))[0]
            result.windows.append(rows)
            result.spans.append(part.spans)
            result.durations.append(part.duration)
        return result

    async def close(self) -> None:
        for runner in self.runners.values():
            await runner.close()
        for encoder in self.encoders.values():
            encoder.close()
        self._preprocess_pool.shutdown(wait=False, cancel_futures=True)
        self._inference_pool.shutdown(wait=True)
