"""Coloured shapes on backgrounds, with captions: a corpus that needs no download.

Deterministic for a seed. Used by tests and as the seed of the default model's image corpus.
"""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path

COLORS = {
    "red": (220, 30, 30), "green": (30, 170, 50), "blue": (30, 60, 220), "yellow": (235, 215, 30),
    "orange": (245, 140, 20), "purple": (140, 40, 170), "black": (15, 15, 15), "white": (245, 245, 245),
}
SHAPES = ("circle", "square", "triangle", "star")
CAPTION_TEMPLATES = ("a {color} {shape}", "a photo of a {color} {shape}.", "a {shape} that is {color}", "{color} {shape} on a plain background")


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "triangle":
        return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    if shape == "star":
        return [
            (cx + (r if k % 2 == 0 else r * 0.45) * math.cos(-math.pi / 2 + k * math.pi / 5), cy + (r if k % 2 == 0 else r * 0.45) * math.sin(-math.pi / 2 + k * math.pi / 5))
            for k in range(10)
        ]
    raise ValueError(shape)


def draw_shape(color: str, shape: str, size: int, rng: random.Random):
    """One image: a shape of a colour, random size/position, a background that is not that colour."""
    from PIL import Image, ImageDraw

    background_names = [c for c in COLORS if c != color]
    bg = tuple(int(0.35 * v + 0.65 * 128) for v in COLORS[rng.choice(background_names)])
    img = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(img)
    r = rng.uniform(0.22, 0.4) * size
    cx, cy = rng.uniform(r, size - r), rng.uniform(r, size - r)
    fill = COLORS[color]
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "square":
        draw.rectangle((cx - r * 0.85, cy - r * 0.85, cx + r * 0.85, cy + r * 0.85), fill=fill)
    else:
        draw.polygon(_polygon(shape, cx, cy, r), fill=fill)
    return img


def generate(out: Path, *, per_combo: int = 8, size: int = 64, seed: int = 0, colors: list[str] | None = None, shapes: list[str] | None = None) -> Path:
    """Write images and a manifest.csv (image, caption, label); returns the manifest path."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    rows = []
    for color in colors or list(COLORS):
        for shape in shapes or list(SHAPES):
            for k in range(per_combo):
                name = f"images/{color}_{shape}_{k:03d}.png"
                draw_shape(color, shape, size, rng).save(out / name)
                template = CAPTION_TEMPLATES[rng.randrange(len(CAPTION_TEMPLATES))]
                rows.append({"image": name, "caption": template.format(color=color, shape=shape), "label": f"{color} {shape}"})
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["image", "caption", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest
