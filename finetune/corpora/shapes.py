"""Coloured shapes on backgrounds, with captions: a corpus that needs no download.

`draw_shape` renders one shape (eight kinds, any of the eight colours) at a random size,
position and rotation, solid or textured, on a plain, gradient or noisy background that is
never the shape's own colour. `generate` writes a simple labelled corpus for tests; the default
model's richer corpus (`pictures.py`) is built from the same drawing code. Deterministic for a seed.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import write_manifest

COLORS = {
    "red": (220, 30, 30), "green": (30, 170, 50), "blue": (30, 60, 220), "yellow": (235, 215, 30),
    "orange": (245, 140, 20), "purple": (140, 40, 170), "black": (15, 15, 15), "white": (245, 245, 245),
}
SHAPES = ("circle", "square", "triangle", "star", "heart", "crescent", "cross", "diamond")
TEXTURES = ("solid", "striped", "dotted")
BACKGROUNDS = ("plain", "gradient", "noisy")
CAPTION_TEMPLATES = ("a {color} {shape}", "a photo of a {color} {shape}.", "a {shape} that is {color}", "{color} {shape} on a plain background")


@dataclass(frozen=True)
class ShapeDrawing:
    """What was drawn, so captions can mention it."""

    size: str  # "small" | "large"
    position: str  # e.g. "top left", "centre"
    texture: str
    background: str


def _regular(cx: float, cy: float, r: float, n: int, start: float) -> list[tuple[float, float]]:
    return [(cx + r * math.cos(start + k * 2 * math.pi / n), cy + r * math.sin(start + k * 2 * math.pi / n)) for k in range(n)]


def _outline(shape: str, cx: float, cy: float, r: float, turn: float) -> list[tuple[float, float]]:
    """Polygon vertices of a shape centred at (cx, cy) with radius r, rotated by `turn` radians."""
    if shape == "triangle":
        return _regular(cx, cy, r, 3, -math.pi / 2 + turn)
    if shape == "square":
        return _regular(cx, cy, r * 1.15, 4, math.pi / 4 + turn)
    if shape == "diamond":
        return [(cx, cy - r), (cx + r * 0.62, cy), (cx, cy + r), (cx - r * 0.62, cy)]
    if shape == "star":
        return [
            (cx + (r if k % 2 == 0 else r * 0.45) * math.cos(-math.pi / 2 + turn + k * math.pi / 5),
             cy + (r if k % 2 == 0 else r * 0.45) * math.sin(-math.pi / 2 + turn + k * math.pi / 5))
            for k in range(10)
        ]
    if shape == "cross":
        a, b = r, r * 0.33
        pts = [(-b, -a), (b, -a), (b, -b), (a, -b), (a, b), (b, b), (b, a), (-b, a), (-b, b), (-a, b), (-a, -b), (-b, -b)]
        c, s = math.cos(turn), math.sin(turn)
        return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts]
    if shape == "heart":
        pts = []
        for k in range(40):
            t = 2 * math.pi * k / 40
            x = 16 * math.sin(t) ** 3
            y = -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t))
            pts.append((cx + r * x / 17, cy + r * (y + 2) / 17))
        return pts
    raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")


def _shade(rgb: tuple[int, int, int], amount: float) -> tuple[int, int, int]:
    """Lighter (amount > 0) or darker (amount < 0) version of a colour that still reads as it."""
    if amount >= 0:
        return tuple(int(v + (255 - v) * amount) for v in rgb)  # type: ignore[return-value]
    return tuple(int(v * (1 + amount)) for v in rgb)  # type: ignore[return-value]


def background(size: int, avoid: str, style: str, rng: random.Random):
    """A muted background in a colour other than `avoid`: plain, a gradient, or noise."""
    from PIL import Image

    names = [c for c in COLORS if c != avoid]
    base = tuple(int(0.35 * v + 0.65 * 128) for v in COLORS[rng.choice(names)])
    img = Image.new("RGB", (size, size), base)
    if style == "gradient":
        other = tuple(int(0.35 * v + 0.65 * 128) for v in COLORS[rng.choice(names)])
        top, bottom = Image.new("RGB", (size, size), base), Image.new("RGB", (size, size), other)
        mask = Image.linear_gradient("L").resize((size, size)).rotate(rng.choice((0, 90, 180, 270)))
        img = Image.composite(bottom, top, mask)
    elif style == "noisy":  # numpy noise from our seeded rng (Pillow's effect_noise is not seedable)
        sigma = rng.uniform(10, 25)
        grain = np.random.default_rng(rng.getrandbits(32)).normal(128, sigma, (size, size, 1))
        noise = Image.fromarray(np.clip(grain, 0, 255).astype(np.uint8).repeat(3, axis=2))
        img = Image.blend(img, noise, 0.25)
    return img


def _position_name(cx: float, cy: float, size: int) -> str:
    col = "left" if cx < size * 0.4 else "right" if cx > size * 0.6 else ""
    row = "top" if cy < size * 0.4 else "bottom" if cy > size * 0.6 else ""
    return f"{row} {col}".strip() or "centre"


def draw_shape(color: str, shape: str, size: int, rng: random.Random, *, varied: bool = False):
    """One image of a `color` `shape`. With `varied`, also random rotation, texture and background
    style (the default model's corpus); returns (image, ShapeDrawing)."""
    from PIL import Image, ImageDraw

    style = rng.choice(BACKGROUNDS) if varied else "plain"
    texture = rng.choice(TEXTURES) if varied else "solid"
    img = background(size, color, style, rng)
    r = rng.uniform(0.2, 0.42) * size
    cx, cy = rng.uniform(r, size - r), rng.uniform(r, size - r)
    turn = rng.uniform(-0.3, 0.3) if varied and shape not in ("circle", "heart", "crescent") else 0.0
    fill = COLORS[color]
    mask = Image.new("L", (size, size), 0)
    md = ImageDraw.Draw(mask)
    if shape == "circle":
        md.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    elif shape == "crescent":  # a disc with an offset disc cut out
        md.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
        dx = r * 0.55 * (1 if rng.random() < 0.5 else -1)
        md.ellipse((cx - r * 0.85 + dx, cy - r * 0.95, cx + r * 0.85 + dx, cy + r * 0.75), fill=0)
    else:
        md.polygon(_outline(shape, cx, cy, r, turn), fill=255)
    paint = Image.new("RGB", (size, size), fill)
    if texture != "solid":
        pd = ImageDraw.Draw(paint)
        accent = _shade(fill, 0.45) if color != "white" else _shade(fill, -0.2)
        step = rng.randint(4, 7)
        for k in range(-size, 2 * size, step):
            if texture == "striped":
                pd.line((k, 0, k + size, size), fill=accent, width=max(1, step // 3))
            else:
                for y in range(0, size, step):
                    pd.ellipse((k, y, k + 1.5, y + 1.5), fill=accent)
    img.paste(paint, (0, 0), mask)
    return img, ShapeDrawing("small" if r < 0.3 * size else "large", _position_name(cx, cy, size), texture, style)


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
                draw_shape(color, shape, size, rng)[0].save(out / name)
                template = CAPTION_TEMPLATES[rng.randrange(len(CAPTION_TEMPLATES))]
                rows.append({"image": name, "caption": template.format(color=color, shape=shape), "label": f"{color} {shape}"})
    return write_manifest(out, rows, ["image", "caption", "label"])
