"""The default model's image corpus: coloured shapes, rendered words and digits, with varied captions.

Generalisation, not memory, is what the held-out parts measure:
- `held_out_combos(seed)`: colour-shape pairs never drawn in training (each colour and each
  shape is still seen with other partners), so a model must compose colour and shape;
- `HELD_OUT_TEMPLATES`: caption wordings used only at evaluation.
Every picture's look is drawn at random from wide ranges (`styles`: backgrounds, fills,
hand-drawn strokes, sizes, canvases from 20 to 200 px, blur, noise, JPEG), so the towers learn
colour and form rather than one renderer's style. Rendering uses Pillow's bundled font, so images
are identical on every machine for a seed.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import write_manifest
from .shapes import COLORS, SHAPES
from .styles import PictureStyle, capture, draw_styled_shape, shade, styled_ground

WORDS = ("cat", "dog", "sun", "car", "tree", "fish", "bird", "book", "key", "moon", "boat", "cake", "door", "hat", "cup", "bus")
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

SHAPE_TEMPLATES = (
    "a {color} {shape}", "a photo of a {color} {shape}", "a {shape} that is {color}", "{color} {shape}",
    "a drawing of a {color} {shape}", "a {size} {color} {shape}", "a {color} {shape} in the {position}",
    "a {texture} {color} {shape}", "a {color} {shape} on a {background} background", "an image of a {shape} coloured {color}",
    "the {shape} is {color}", "a {color} {shape} shape", "a simple {color} {shape} picture",
)
HELD_OUT_TEMPLATES = ("there is a {color} {shape} here", "look at this {color} {shape}", "a picture showing one {color} {shape}")
WORD_TEMPLATES = ('the word "{word}"', "text that says {word}", "a sign reading {word}", "{word} written in {color} letters", 'the written word {word}')
DIGIT_TEMPLATES = ("the digit {digit}", "the number {name}", "a {color} number {digit}", "the numeral {digit}", "{name}, written as a digit")
SEVERAL_TEMPLATES = ("some {color} {plural}", "a few {color} {plural}", "{color} {plural}", "several {plural} that are {color}")
TEXTURE_WORDS = {"solid": "plain", "outline": "outlined", "outlined_fill": "clip-art", "sketch": "hand-drawn", "striped": "striped", "dotted": "dotted"}
# Background words that name no colour, so a caption never pulls a picture toward another colour's class.
BACKGROUND_WORDS = {"white": "light", "light": "light", "black": "dark", "dark": "dark", "saturated": "bright", "muted": "plain", "gradient": "gradient", "photo": "photographic", "clutter": "busy"}


@dataclass(frozen=True)
class PictureSet:
    manifest: Path
    classes: list[str]  # every label, in a fixed order
    held_out: list[str]  # colour-shape labels never seen in training


def shape_label(color: str, shape: str) -> str:
    return f"{color} {shape}"


def held_out_combos(seed: int = 0, per_color: int = 2) -> list[tuple[str, str]]:
    """A Latin-square choice: each colour loses `per_color` shapes and each shape `per_color` colours."""
    colors, shapes = list(COLORS), list(SHAPES)
    offsets = random.Random(seed).sample(range(len(shapes)), per_color)
    return [(c, shapes[(i + o) % len(shapes)]) for i, c in enumerate(colors) for o in offsets]


def with_articles(text: str) -> str:
    """"a orange" -> "an orange": templates say "a {color}" and some colours start with a vowel."""
    return re.sub(r"\b([Aa]) (?=[aeiou])", r"\1n ", text)


def plural(shape: str) -> str:
    return shape + ("es" if shape.endswith("s") else "s")


def shape_caption(template: str, color: str, shape: str, drawing: PictureStyle) -> str:
    return with_articles(template.format(
        color=color, shape=shape, plural=plural(shape), size=drawing.size, position=drawing.position,
        texture=TEXTURE_WORDS[drawing.fill], background=BACKGROUND_WORDS[drawing.background],
    ))


def draw_text(text: str, color: str, size: int, rng: random.Random):
    """`text` in a shade of `color` at a random size and place on a background of any style, then
    camera and file effects (the canvas is `size` or, half the time, another side from 24 to 160 px)."""
    from PIL import ImageDraw, ImageFont

    if rng.random() < 0.5:
        size = rng.choice((24, 32, 48, 96, 128, 160))
    img, _ = styled_ground(size, size, color, rng)
    draw = ImageDraw.Draw(img)
    points = rng.uniform(0.42, 0.6) * size if len(text) == 1 else rng.uniform(0.85, 1.05) * size / max(2.6, len(text) * 0.62)
    font = ImageFont.load_default(size=points)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    w, h = right - left, bottom - top
    x = rng.uniform(1, max(1.5, size - w - 1)) - left
    y = rng.uniform(1, max(1.5, size - h - 1)) - top
    draw.text((x, y), text, fill=shade(color, rng), font=font)
    return capture(img, rng)


def generate(
    out: Path, *, per_combo: int = 30, per_word: int = 30, size: int = 64, seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> PictureSet:
    """Write images and manifest.csv (image, caption, label, kind, split).

    split is "train", or "heldout_combo" for colour-shape pairs kept out of training. Captions of
    training rows use `SHAPE_TEMPLATES`; held-out rows get a held-out wording.
    """
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    held = set(held_out_combos(seed))
    jobs: list[tuple[str, ...]] = [("shape", c, s) for c in COLORS for s in SHAPES] + [("word", w) for w in WORDS] + [("digit", str(d)) for d in range(10)]
    total = len(COLORS) * len(SHAPES) * per_combo + (len(WORDS) + 10) * per_word
    rows, done = [], 0
    for job in jobs:
        for k in range(per_combo if job[0] == "shape" else per_word):
            if job[0] == "shape":
                _, color, shape = job
                img, drawing = draw_styled_shape(color, shape, rng)
                split = "heldout_combo" if (color, shape) in held else "train"
                templates = HELD_OUT_TEMPLATES if split != "train" else SEVERAL_TEMPLATES if drawing.count > 1 else SHAPE_TEMPLATES
                caption = shape_caption(rng.choice(templates), color, shape, drawing)
                label, stem = shape_label(color, shape), f"{color}_{shape}"
            elif job[0] == "word":
                word, color = job[1], rng.choice(list(COLORS))
                img = draw_text(word, color, size, rng)
                caption, label, split, stem = rng.choice(WORD_TEMPLATES).format(word=word, color=color), f"the word {word}", "train", f"word_{word}"
            else:
                digit, color = job[1], rng.choice(list(COLORS))
                img = draw_text(digit, color, size, rng)
                caption = with_articles(rng.choice(DIGIT_TEMPLATES).format(digit=digit, name=DIGIT_NAMES[int(digit)], color=color))
                label, split, stem = f"the number {DIGIT_NAMES[int(digit)]}", "train", f"digit_{digit}"
            name = f"images/{stem}_{k:03d}.png"
            img.save(out / name)
            rows.append({"image": name, "caption": caption, "label": label, "kind": job[0], "split": split})
            done += 1
            if progress:
                progress(done, total)
    manifest = write_manifest(out, rows, ["image", "caption", "label", "kind", "split"])
    classes = [shape_label(c, s) for c in COLORS for s in SHAPES] + [f"the word {w}" for w in WORDS] + [f"the number {n}" for n in DIGIT_NAMES]
    return PictureSet(manifest, classes, sorted(shape_label(c, s) for c, s in held))
