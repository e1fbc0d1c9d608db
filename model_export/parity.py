"""Parity of exported towers against the PyTorch model they came from.

Inputs go through the *server's* preprocessing (numpy/Pillow), so the report covers the
whole serving path for those inputs, not only the graph conversion.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

FP32_MIN_COS = 0.99999
INT8_MIN_COS = 0.99  # below this an int8 tower is not shipped (per-tensor lost ~0.96 on real MiniLM, per-channel kept 0.992)

PARITY_TEXTS = [
    "a photo of a dog",
    "A red circle on a white background.",
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


def onnx_embed(path: Path, inputs: dict[str, np.ndarray], threads: int = 1) -> np.ndarray:
    from omnivec.server.inference.onnx import OnnxEncoder

    encoder = OnnxEncoder(path, "parity", intra_op_threads=threads)
    try:
        return encoder.encode(inputs)
    finally:
        encoder.close()
