"""A second, independently written picture generator for evaluation only.

Why it exists: a model that only ever saw one renderer learns that renderer's style. These pictures
are drawn by different code (numpy shape functions, supersampled coverage, own backgrounds, own
colours and sizes), in the styles people actually produce: paint-program shapes on white, icons on
dark or saturated fields, sketches, photos with clutter, JPEG thumbnails. Nothing here is used in
training; it was written without reading the training renderers. Kept in one file of a little over
400 lines so that nothing in it is shared with (or reaches into) the training code.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageFilter
from scipy import ndimage

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (212, 28, 36),
    "green": (36, 158, 64),
    "blue": (32, 84, 204),
    "yellow": (246, 212, 28),
    "orange": (246, 132, 22),
    "purple": (128, 48, 168),
    "black": (14, 14, 14),
    "white": (252, 252, 252),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "heart", "crescent", "cross", "diamond")

BACKGROUNDS: tuple[str, ...] = ("white", "black", "light", "dark", "saturated", "gradient", "photo", "clutter")
STROKES: tuple[str, ...] = ("filled", "outlined", "sketch", "filled+outline")
LAYOUTS: tuple[str, ...] = ("centred", "small", "large", "off-centre", "cropped", "several")

Mask = Callable[[np.ndarray, np.ndarray], np.ndarray]


# --- shapes: boolean "inside" tests on local coordinates (u right, v down, unit half-size) ---------


def _inside_polygon(u: np.ndarray, v: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Even-odd crossing test, vectorised over the sample points; works for concave outlines (star)."""
    inside = np.zeros(u.shape, dtype=bool)
    n = len(corners)
    for i in range(n):
        (x1, y1), (x2, y2) = corners[i], corners[(i + 1) % n]
        straddles = (y1 > v) != (y2 > v)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_cross = x1 + (v - y1) * (x2 - x1) / (y2 - y1)
        inside ^= straddles & (u < x_cross)
    return inside


def _star_corners() -> np.ndarray:
    angles = -np.pi / 2 + np.arange(10) * np.pi / 5
    radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles) + 0.08], axis=1)


_TRIANGLE = np.array([[0.0, -0.95], [0.98, 0.78], [-0.98, 0.78]])
_STAR = _star_corners()


def _heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    x, y = u * 1.2, -(v * 1.2) + 0.15  # the classic sextic heart, y up
    x2, y2 = x * x, y * y
    r = x2 + y2 - 1.0
    return r * r * r <= x2 * y2 * y


SHAPE_MASKS: dict[str, Mask] = {
    "circle": lambda u, v: u * u + v * v <= 1.0,
    "square": lambda u, v: np.maximum(np.abs(u), np.abs(v)) <= 0.82,
    "triangle": lambda u, v: _inside_polygon(u, v, _TRIANGLE),
    "star": lambda u, v: _inside_polygon(u, v, _STAR),
    "heart": _heart,
    "crescent": lambda u, v: (u * u + v * v <= 1.0) & ((u - 0.48) ** 2 + (v + 0.12) ** 2 > 0.78**2),
    "cross": lambda u, v: ((np.abs(u) <= 0.3) & (np.abs(v) <= 0.95)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 0.95)),
    "diamond": lambda u, v: np.abs(u) / 0.68 + np.abs(v) / 1.0 <= 1.0,
}

# Rotating a square by 45 degrees makes a diamond (and back): those two turn less.
_MAX_TURN = {"square": 18.0, "diamond": 15.0}
# log of the width stretch (height shrinks by the same factor): a stretched square is a rectangle,
# a widened diamond a tilted square, so those two barely stretch.
_ASPECT = {"square": (-0.05, 0.05), "diamond": (-0.15, 0.03), "circle": (-0.1, 0.1)}


class _Placement:
    """Where one object goes: centre (px), half-size (px), turn (degrees), aspect, wobble."""

    def __init__(self, cx: float, cy: float, half: float, turn: float, aspect: float, wobble: tuple[float, ...] | None):
        self.cx, self.cy, self.half, self.turn, self.aspect, self.wobble = cx, cy, half, turn, aspect, wobble


def _coverage(shape: str, p: _Placement, height: int, width: int, stroke: str, stroke_px: float) -> tuple[np.ndarray, tuple[slice, slice]] | None:
    """Anti-aliased coverage in [0, 1] of the object's bounding box, by supersampling its inside test."""
    reach = p.half * 1.45 * max(p.aspect, 1.0 / p.aspect) + stroke_px + 2
    x0, x1 = max(0, int(p.cx - reach)), min(width, int(np.ceil(p.cx + reach)))
    y0, y1 = max(0, int(p.cy - reach)), min(height, int(np.ceil(p.cy + reach)))
    if x1 <= x0 or y1 <= y0:
        return None
    # a sample budget: small objects get 4x4 samples a pixel, big ones (whose edges are a tiny share) fewer
    pixels = (x1 - x0) * (y1 - y0)
    ss = 4 if pixels < 12_000 else 3 if pixels < 40_000 else 2 if pixels < 160_000 else 1
    xs = x0 + (np.arange((x1 - x0) * ss, dtype=np.float32) + 0.5) / ss
    ys = y0 + (np.arange((y1 - y0) * ss, dtype=np.float32) + 0.5) / ss
    dx, dy = np.meshgrid(xs - np.float32(p.cx), ys - np.float32(p.cy))
    t = np.deg2rad(p.turn)
    c, s = np.float32(np.cos(t)), np.float32(np.sin(t))
    u = (c * dx + s * dy) / np.float32(p.half * p.aspect)
    v = (-s * dx + c * dy) / np.float32(p.half / p.aspect)
    if p.wobble is not None:  # a hand's unsteady line: slow sinusoidal displacement of the outline
        a, f1, f2, ph1, ph2 = p.wobble
        u, v = u + a * np.sin(f1 * v + ph1), v + a * np.sin(f2 * u + ph2)
    inside = SHAPE_MASKS[shape](u, v)
    if stroke != "filled":
        ring = inside & (_depth_px(inside, ss) <= stroke_px)
        inside = ring if stroke in ("outlined", "sketch") else inside
        if stroke == "filled+outline":
            fill = inside & ~ring
            cov_fill = _box_mean(fill, ss, y1 - y0, x1 - x0)
            cov_ring = _box_mean(ring, ss, y1 - y0, x1 - x0)
            return np.stack([cov_fill, cov_ring]), (slice(y0, y1), slice(x0, x1))
    cov = _box_mean(inside, ss, y1 - y0, x1 - x0)
    return cov[None], (slice(y0, y1), slice(x0, x1))


def _depth_px(inside: np.ndarray, ss: int) -> np.ndarray:
    """Distance in pixels from each sample to the outside, at sample resolution.

    The exact transform runs on a pixel-spaced grid (ss*ss times fewer points) and is spread back
    (nearest, then a box filter): strokes are a pixel or more wide, so their edges stay smooth.
    """
    if ss == 1:
        return ndimage.distance_transform_edt(np.pad(inside, 1))[1:-1, 1:-1]
    coarse = ndimage.distance_transform_edt(np.pad(inside[ss // 2 :: ss, ss // 2 :: ss], 1))[1:-1, 1:-1]
    fine = np.repeat(np.repeat(coarse.astype(np.float32), ss, axis=0), ss, axis=1)
    return ndimage.uniform_filter(fine, size=ss)  # a box over the repeated cells: piecewise-linear in effect


def _box_mean(samples: np.ndarray, ss: int, h: int, w: int) -> np.ndarray:
    """Pixel coverage from ss x ss samples; at one sample a pixel, a 2x2 box filter softens the edge instead."""
    if ss == 1:
        return ndimage.uniform_filter(samples.astype(np.float32), size=2)
    return samples.reshape(h, ss, w, ss).mean(axis=(1, 3), dtype=np.float32)


def _paint(canvas: np.ndarray, cov: np.ndarray, box: tuple[slice, slice], rgb: np.ndarray) -> None:
    alpha = cov[..., None]
    canvas[box] = canvas[box] * (1.0 - alpha) + rgb * alpha


# --- colours and backgrounds ------------------------------------------------------------------------


def _shade(rng: np.random.Generator, colour: str) -> np.ndarray:
    """The named colour with a small per-picture variation a person would still call by that name."""
    base = np.array(COLOURS[colour], dtype=np.float32)
    if colour in ("black", "white"):
        return np.clip(base + rng.uniform(-8, 8), 0, 255)
    return np.clip(base * rng.uniform(0.88, 1.06) + rng.uniform(-10, 10, 3), 0, 255)


def _far_from(rng: np.random.Generator, obj: np.ndarray, sample: Callable[[], np.ndarray], min_dist: float = 110.0) -> np.ndarray:
    """A sampled colour far enough from the object's colour that the object stays visible."""
    best, best_d = sample(), -1.0
    for _ in range(40):
        c = sample()
        d = float(np.linalg.norm(c - obj))
        if d >= min_dist:
            return c
        if d > best_d:
            best, best_d = c, d
    return best


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    i, f = int(h * 6) % 6, h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    r, g, b = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.array([r, g, b], dtype=np.float32) * 255


def _smooth_field(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Low-frequency random field in [0, 1]: bicubic upsampling of a coarse random grid."""
    grid = (rng.random((cells, cells)) * 255).astype(np.uint8)
    up = Image.fromarray(grid).resize((w, h), Image.BICUBIC)
    return np.asarray(up, dtype=np.float32) / 255.0


def _background(rng: np.random.Generator, kind: str, h: int, w: int, obj: np.ndarray) -> np.ndarray:
    if kind == "white":
        return np.full((h, w, 3), 255.0, dtype=np.float32)
    if kind == "black":
        return np.full((h, w, 3), float(rng.integers(0, 12)), dtype=np.float32)
    if kind == "light":
        c = _far_from(rng, obj, lambda: _hsv(rng.random(), rng.uniform(0.04, 0.22), rng.uniform(0.88, 0.98)), 90)
        return np.broadcast_to(c, (h, w, 3)).astype(np.float32)
    if kind == "dark":
        c = _far_from(rng, obj, lambda: _hsv(rng.random(), rng.uniform(0.1, 0.6), rng.uniform(0.1, 0.3)), 90)
        return np.broadcast_to(c, (h, w, 3)).astype(np.float32)
    if kind == "saturated":
        c = _far_from(rng, obj, lambda: _hsv(rng.random(), rng.uniform(0.8, 1.0), rng.uniform(0.75, 1.0)), 150)
        return np.broadcast_to(c, (h, w, 3)).astype(np.float32)
    if kind == "gradient":
        a = _far_from(rng, obj, lambda: _hsv(rng.random(), rng.uniform(0.2, 1.0), rng.uniform(0.2, 1.0)), 130)
        b = _far_from(rng, obj, lambda: _hsv(rng.random(), rng.uniform(0.2, 1.0), rng.uniform(0.2, 1.0)), 130)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        if rng.random() < 0.6:
            ang = rng.uniform(0, 2 * np.pi)
            t = (xx / w - 0.5) * np.cos(ang) + (yy / h - 0.5) * np.sin(ang) + 0.5
        else:
            t = np.hypot(xx / w - rng.uniform(0.2, 0.8), yy / h - rng.uniform(0.2, 0.8)) * 1.4
        t = np.clip(t, 0, 1)[..., None]
        return a * (1 - t) + b * t
    if kind == "photo":  # a soft out-of-focus scene: a few colour regions, texture, grain, vignette
        palette = [(112, 150, 196), (84, 120, 60), (150, 110, 74), (128, 128, 122), (214, 196, 160), (60, 64, 70)]
        cols = [_far_from(rng, obj, lambda: np.array(palette[rng.integers(len(palette))], np.float32) * rng.uniform(0.7, 1.2), 90) for _ in range(3)]
        m1, m2 = _smooth_field(rng, h, w, int(rng.integers(2, 5))), _smooth_field(rng, h, w, int(rng.integers(3, 7)))
        img = cols[0] * m1[..., None] + cols[1] * (1 - m1[..., None])
        img = img * (1 - 0.5 * m2[..., None]) + cols[2] * 0.5 * m2[..., None]
        img = img + (_smooth_field(rng, h, w, 24)[..., None] - 0.5) * 40
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        vignette = 1.0 - 0.35 * (((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2) * 2)
        img = img * vignette[..., None] + rng.normal(0, 5, (h, w, 3))
        return np.clip(img, 0, 255).astype(np.float32)
    if kind == "clutter":  # a desk or a page: light-to-mid base with many greyish strokes and blobs
        base = _far_from(rng, obj, lambda: _hsv(rng.random(), rng.uniform(0.0, 0.25), rng.uniform(0.55, 0.9)), 90)
        img = np.broadcast_to(base, (h, w, 3)).astype(np.float32).copy()
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        for _ in range(int(rng.integers(8, 20))):
            tone = base * rng.uniform(0.55, 1.25) + rng.uniform(-20, 20, 3)
            if rng.random() < 0.5:  # a straight line of some width
                ang, off = rng.uniform(0, np.pi), rng.uniform(-0.5, 0.5) * max(h, w)
                dist = np.abs((xx - w / 2) * np.sin(ang) - (yy - h / 2) * np.cos(ang) - off)
                a = np.clip(rng.uniform(0.6, 2.5) - dist, 0, 1)
            else:  # a soft blob
                r = rng.uniform(0.03, 0.15) * max(h, w)
                d = np.hypot(xx - rng.uniform(0, w), yy - rng.uniform(0, h))
                a = np.clip((r - d) / 2.0, 0, 1) * rng.uniform(0.3, 0.8)
            img = img * (1 - a[..., None]) + np.clip(tone, 0, 255) * a[..., None]
        return img
    raise ValueError(f"unknown background {kind!r}")


# --- one picture ------------------------------------------------------------------------------------


def _placements(rng: np.random.Generator, shape: str, layout: str, h: int, w: int, sketch: bool, min_half: float) -> list[_Placement]:
    """Objects for one layout; none smaller than `min_half` (a shape a few pixels wide is no longer a shape)."""
    short = min(h, w)
    max_turn = _MAX_TURN.get(shape, 35.0)

    def one(cx: float, cy: float, half: float) -> _Placement:
        wobble = (rng.uniform(0.012, 0.025), rng.uniform(5, 9), rng.uniform(5, 9), rng.uniform(0, 6.3), rng.uniform(0, 6.3)) if sketch else None
        return _Placement(cx, cy, max(half, min_half), rng.uniform(-max_turn, max_turn), float(np.exp(rng.uniform(*_ASPECT.get(shape, (-0.15, 0.15))))), wobble)

    if layout == "centred":
        return [one(w / 2 + rng.uniform(-0.05, 0.05) * w, h / 2 + rng.uniform(-0.05, 0.05) * h, short * rng.uniform(0.28, 0.38))]
    if layout == "small":
        half = short * rng.uniform(0.1, 0.16)
        return [one(rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h, half)]
    if layout == "large":
        return [one(w / 2, h / 2, short * rng.uniform(0.42, 0.48))]
    if layout == "off-centre":
        half = short * rng.uniform(0.18, 0.26)
        return [one(rng.choice([0.27, 0.73]) * w + rng.uniform(-0.04, 0.04) * w, rng.choice([0.27, 0.73]) * h, half)]
    if layout == "cropped":  # a third of the object out of frame at one edge
        half = short * rng.uniform(0.3, 0.4)
        edge = int(rng.integers(4))
        cx, cy = w / 2, h / 2
        cx = half * 0.45 if edge == 0 else w - half * 0.45 if edge == 1 else cx
        cy = half * 0.45 if edge == 2 else h - half * 0.45 if edge == 3 else cy
        return [one(cx, cy, half)]
    if layout == "several":
        n = int(rng.integers(2, 5))
        cols = int(np.ceil(np.sqrt(n)))
        rows = int(np.ceil(n / cols))
        cells = rng.permutation(rows * cols)[:n]
        half = min(w / cols, h / rows) * rng.uniform(0.28, 0.36)
        return [one((c % cols + 0.5 + rng.uniform(-0.08, 0.08)) * w / cols, (c // cols + 0.5 + rng.uniform(-0.08, 0.08)) * h / rows, half) for c in cells]
    raise ValueError(f"unknown layout {layout!r}")


def _canvas_size(rng: np.random.Generator) -> tuple[int, int]:
    """Width and height: thumbnails to photos, square or not (log-uniform side, aspect up to 2:1)."""
    side = float(np.exp(rng.uniform(np.log(32), np.log(512))))
    aspect = float(np.exp(rng.uniform(-0.7, 0.7))) if rng.random() < 0.6 else 1.0
    w, h = side * np.sqrt(aspect), side / np.sqrt(aspect)
    scale = min(1.0, 512 / max(w, h))
    return max(32, int(round(w * scale))), max(32, int(round(h * scale)))


def _encode(rng: np.random.Generator, img: Image.Image, notes: list[str]) -> tuple[bytes, str]:
    """Degrade like real pictures (blur, sensor noise, downscaling, JPEG) and encode; returns bytes, extension."""
    if rng.random() < 0.3:
        radius = float(rng.uniform(0.5, 1.8)) * max(img.size) / 256
        img = img.filter(ImageFilter.GaussianBlur(radius))
        notes.append(f"blur={radius:.1f}")
    if rng.random() < 0.3:
        sigma = float(rng.uniform(3, 14))
        arr = np.asarray(img, dtype=np.float32) + rng.normal(0, sigma, (img.size[1], img.size[0], 3))
        img = Image.fromarray(np.clip(arr, 0, 255).round().astype(np.uint8))
        notes.append(f"noise={sigma:.0f}")
    buf = io.BytesIO()
    if rng.random() < 0.45:
        quality = int(rng.integers(15, 80))
        img.save(buf, format="JPEG", quality=quality)
        notes.append(f"jpeg={quality}")
        return buf.getvalue(), "jpg"
    img.save(buf, format="PNG")
    return buf.getvalue(), "png"


def _draw(rng: np.random.Generator, colour: str, shape: str, background: str, stroke: str, layout: str) -> tuple[bytes, str, str]:
    w, h = _canvas_size(rng)
    # small pictures are drawn larger and shrunk, as thumbnails are; bigger ones are drawn at size
    draw_scale = 1 if min(w, h) >= 96 else int(rng.integers(2, 5))
    W, H = w * draw_scale, h * draw_scale
    obj = _shade(rng, colour)
    canvas = _background(rng, background, H, W, obj).copy()
    stroke_px = max(1.5, min(W, H) * rng.uniform(0.015, 0.035))
    line = obj
    if stroke == "filled+outline":  # cartoon style: a dark outline (light for black shapes)
        line = np.full(3, 235.0 if colour == "black" else rng.uniform(0, 40), dtype=np.float32)
    for p in _placements(rng, shape, layout, H, W, sketch=stroke == "sketch", min_half=7.0 * draw_scale):
        got = _coverage(shape, p, H, W, stroke, stroke_px)
        if got is None:
            continue
        cov, box = got
        _paint(canvas, cov[0], box, obj)
        if len(cov) == 2:
            _paint(canvas, cov[1], box, line)
        if stroke == "sketch":  # a second, slightly different pass of the pencil
            p.wobble = tuple(x * rng.uniform(0.8, 1.2) for x in p.wobble)  # type: ignore[union-attr]
            p.cx, p.cy = p.cx + rng.uniform(-1, 1) * stroke_px, p.cy + rng.uniform(-1, 1) * stroke_px
            again = _coverage(shape, p, H, W, stroke, stroke_px * 0.6)
            if again is not None:
                _paint(canvas, again[0][0] * 0.8, again[1], obj)
    img = Image.fromarray(np.clip(canvas, 0, 255).round().astype(np.uint8))
    notes = [f"bg={background}", f"stroke={stroke}", f"layout={layout}", f"size={w}x{h}"]
    if draw_scale > 1:
        img = img.resize((w, h), Image.LANCZOS)
        notes.append(f"downscaled={draw_scale}x")
    data, ext = _encode(rng, img, notes)
    return data, ext, " ".join(notes)


def _background_for(colour: str, index: int) -> str:
    """Backgrounds cycle over the set; a white object never lands on white or light, a black one never on black or dark."""
    kinds = [b for b in BACKGROUNDS if not (colour == "white" and b in ("white", "light")) and not (colour == "black" and b in ("black", "dark"))]
    return kinds[index % len(kinds)]


def render_style_set(out_dir: Path, seed: int, per_class: int = 2) -> list[dict]:
    """`per_class` pictures of each of the 64 colour-shape classes, each in a different user-like style.

    Background, stroke and layout are cycled so every kind appears across the set; size, turn, aspect,
    blur, noise and JPEG are drawn from `seed`. Same seed, same bytes.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    n = 0
    for ci, colour in enumerate(COLOURS):
        for si, shape in enumerate(SHAPES):
            for k in range(per_class):
                rng = np.random.default_rng([seed, ci, si, k])
                background = _background_for(colour, ci * 3 + si + k * 5)
                stroke = STROKES[(si + ci + k * 3) % len(STROKES)]
                layout = LAYOUTS[(ci * 5 + si * 2 + k) % len(LAYOUTS)]
                data, ext, style = _draw(rng, colour, shape, background, stroke, layout)
                name = f"style_{n:04d}_{colour}_{shape}.{ext}"
                (out_dir / name).write_bytes(data)
                records.append({"path": name, "colour": colour, "shape": shape, "label": f"{colour} {shape}", "style": style})
                n += 1
    return records


def render_plain_white_set(out_dir: Path, seed: int, per_class: int = 1) -> list[dict]:
    """The first thing a person draws: one filled shape, one flat colour, roughly centred, pure white, PNG.

    White shapes cannot be seen on white, so they are drawn as a person would in a paint program:
    white fill with a thin black outline, still on pure white.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    n = 0
    for ci, colour in enumerate(COLOURS):
        for si, shape in enumerate(SHAPES):
            for k in range(per_class):
                rng = np.random.default_rng([seed, 1000 + ci, si, k])
                side = int(rng.choice([128, 160, 200, 224, 256, 300]))
                canvas = np.full((side, side, 3), 255.0, dtype=np.float32)
                rgb = np.array(COLOURS[colour], dtype=np.float32)
                p = _Placement(side / 2 + rng.uniform(-0.06, 0.06) * side, side / 2 + rng.uniform(-0.06, 0.06) * side,
                               side * rng.uniform(0.28, 0.38), 0.0, 1.0, None)
                stroke = "filled+outline" if colour == "white" else "filled"
                got = _coverage(shape, p, side, side, stroke, max(2.0, side / 80))
                assert got is not None
                cov, box = got
                _paint(canvas, cov[0], box, rgb)
                if len(cov) == 2:
                    _paint(canvas, cov[1], box, np.zeros(3, np.float32))
                buf = io.BytesIO()
                Image.fromarray(np.clip(canvas, 0, 255).round().astype(np.uint8)).save(buf, format="PNG")
                name = f"plain_{n:04d}_{colour}_{shape}.png"
                (out_dir / name).write_bytes(buf.getvalue())
                style = "plain white bg, filled" + (", white fill with black outline" if colour == "white" else "")
                records.append({"path": name, "colour": colour, "shape": shape, "label": f"{colour} {shape}", "style": f"{style}, {side}x{side}"})
                n += 1
    return records
