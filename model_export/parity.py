"""Parity of exported towers against the PyTorch model they came from.

Inputs go through the *server's* preprocessing (numpy/Pillow), so the report covers the
whole serving path for those inputs, not only the graph conversion.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

FP32_MIN_COS = 0.99999
FP16_MIN_COS = 0.999  # load-time probe floor for fp16 arithmetic (e.g. TensorRT fp16): ~1e-3 relative error per value
INT8_MIN_COS = 0.99  # below this an int8 tower is not shipped (per-tensor lost ~0.96 on real MiniLM, per-channel kept 0.992)

PARITY_TEXTS = [
    "a photo of a dog",
    "A red circle on a white background.",
    "dog",
    "two cats asleep on a sunny windowsill",
    "what is the capital of france and how many people live there",
    "café naïve résumé — “quoted” text",
    "日本語のテキストと emoji 🐶",
    "&amp;lt;b&amp;gt;html entities&amp;lt;/b&amp;gt;",
    "it's we're they'll I'd",
    "x",
    " ".join(["a very long caption"] * 40),
]


def parity_images(size: int = 96, seed: int = 0) -> list[Any]:
    """Deterministic, varied PIL images: gradients, shapes, noise, odd aspect ratios, greyscale."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    images = []
    grad = np.linspace(0, 255, size, dtype=np.float32)
    images.append(Image.fromarray(np.stack([np.tile(grad, (size, 1)), np.tile(grad[:, None], (1, size)), np.full((size, size), 128.0)], -1).astype(np.uint8)))
    img = Image.new("RGB", (size * 2, size), "white")
    draw = ImageDraw.Draw(img)
    draw.ellipse((10, 10, size - 10, size - 10), fill="red")
    draw.rectangle((size + 10, 20, 2 * size - 10, size - 20), fill="blue")
    images.append(img)
    images.append(Image.fromarray(rng.integers(0, 256, (size + 17, size // 2, 3), dtype=np.uint8)))
    images.append(Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8), mode="L").convert("RGB"))
    images.append(Image.new("RGB", (7, 300), (10, 200, 30)))
    return images


def parity_audio(seed: int = 0) -> list[bytes]:
    """Deterministic, varied audio files: tones, a chirp spanning several windows, noise, stereo clicks."""
    import io

    import soundfile as sf

    rng = np.random.default_rng(seed)
    files = []

    def wav(samples: np.ndarray, rate: int) -> bytes:
        buf = io.BytesIO()
        sf.write(buf, samples, rate, format="WAV", subtype="PCM_16")
        return buf.getvalue()

    t = np.arange(int(0.7 * 44100)) / 44100
    files.append(wav(0.5 * np.sin(2 * np.pi * 440 * t), 44100))
    t = np.arange(int(2.3 * 16000)) / 16000
    files.append(wav(0.4 * np.sin(2 * np.pi * (200 + 1500 * t) * t), 16000))
    files.append(wav(0.2 * rng.standard_normal(16000), 16000))
    clicks = np.zeros((int(1.2 * 22050), 2))
    clicks[:: 2205, 0], clicks[1000 :: 3000, 1] = 0.9, -0.8
    files.append(wav(clicks, 22050))
    return files


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return (a * b).sum(axis=1)


def compare(reference: np.ndarray, candidate: np.ndarray) -> dict:
    cos = cosine_rows(reference.astype(np.float64), candidate.astype(np.float64))
    return {
        "n": int(len(cos)),
        "cos_min": float(cos.min()),
        "cos_mean": float(cos.mean()),
        "max_abs_diff": float(np.abs(reference - candidate).max()),
    }


def compare_many(reference: np.ndarray, candidates: list[np.ndarray]) -> dict:
    """`compare` over several runs of the same rows (e.g. each text alone and all texts in one batch)."""
    report = compare(np.concatenate([reference] * len(candidates)), np.concatenate(candidates))
    report["runs"] = len(candidates)
    return report


def text_runs(path: Path, batch: dict[str, np.ndarray], lengths: np.ndarray, dynamic: bool, threads: int = 1) -> list[np.ndarray]:
    """Embeddings of the parity texts as the server computes them: all in one batch (padded to
    the longest when the tower is dynamic), each text alone at its own length, and the batch
    cut into groups of similar length the way the batcher does."""
    from omnivec.server.inference.onnx import OnnxEncoder
    from omnivec.server.inference.sequences import run_grouped, take

    encoder = OnnxEncoder(path, "parity", intra_op_threads=threads)
    try:
        runs = [encoder.encode(batch)]
        if dynamic:
            alone = [encoder.encode(take(batch, np.array([i]), int(n))) for i, n in enumerate(lengths)]
            runs.append(np.concatenate(alone))
            runs.append(run_grouped(encoder.encode, batch, lengths))
        return runs
    finally:
        encoder.close()


def onnx_embed(path: Path, inputs: dict[str, np.ndarray], threads: int = 1) -> np.ndarray:
    from omnivec.server.inference.onnx import OnnxEncoder

    encoder = OnnxEncoder(path, "parity", intra_op_threads=threads)
    try:
        return encoder.encode(inputs)
    finally:
        encoder.close()
