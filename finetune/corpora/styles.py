"""Picture styles for the default model's training corpus: what people actually show a model.

A tower trained on one renderer's look learns that look (issue 13: a plain red circle on white
was "a red square"). So every training picture draws its style at random from wide ranges:

- colour: any shade a person would still call by the name (hue, saturation and value ranges per
  name, plus the palette's canonical value);
- background: white, black, light, dark, saturated, muted, gradient, photographic-looking (smooth
  random fields with grain) or cluttered (lines, dots, scribbles, blobs in other colours);
  a white shape on white (black on black) is drawn filled and outlined in the opposite tone;
- shape: filled, outlined, outlined-and-filled, hand-drawn (wobbly strokes), textured; hearts
  with round lobes as well as the parametric curve; small to
  large, off-centre, partly cropped, several copies; rotation and aspect changes;
- capture: anti-aliased or not, blur, noise, JPEG artefacts, downscaling; canvases from 20 px to
  200 px and non-square ones (the server resizes the short side and centre-crops, so the shape is
  kept inside the centre square).

Everything is drawn from the `random.Random` passed in, so a seed gives the same pictures.
"""

from __future__ import annotations

import colorsys
import io
import math
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .shapes import COLORS, SHAPES, _outline

RGB = tuple[int, int, int]

# (hue ranges in degrees, saturation range, value range) per colour name; black and white are
# drawn from value and saturation alone.
COLOR_RANGES: dict[str, tuple[tuple[tuple[float, float], ...], tuple[float, float], tuple[float, float]]] = {
    "red": (((348, 360), (0, 7)), (0.7, 1.0), (0.6, 1.0)),
    "orange": (((20, 38),), (0.75, 1.0), (0.85, 1.0)),
    "yellow": (((48, 62),), (0.7, 1.0), (0.85, 1.0)),
    "green": (((90, 150),), (0.55, 1.0), (0.4, 1.0)),
    "blue": (((200, 245),), (0.6, 1.0), (0.5, 1.0)),
    "purple": (((265, 305),), (0.45, 1.0), (0.4, 0.9)),
    "black": (((0, 360),), (0.0, 1.0), (0.0, 0.15)),
    "white": (((0, 360),), (0.0, 0.05), (0.94, 1.0)),
}
BACKGROUND_STYLES = ("white", "black", "light", "dark", "saturated", "muted", "gradient", "photo", "clutter")
FILLS = ("solid", "solid", "outline", "outlined_fill", "sketch", "striped", "dotted")
SAME_GROUND_SHARE = 0.2  # of white shapes drawn on white or light grounds (black on black or dark)
# Grounds a shape of that colour would vanish into, and the grounds drawn instead of them.
VANISHING_GROUNDS = {"white": ("white", "light"), "black": ("black", "dark")}
CONTRASTING_GROUNDS = {"white": ("black", "dark", "saturated", "photo"), "black": ("white", "light", "saturated", "photo")}
# How far each shape may turn (radians) before it reads as another shape (a square at 45 degrees is a diamond).
MAX_TURN = {"circle": math.pi, "square": 0.3, "triangle": 0.5, "star": math.pi, "heart": 0.5, "crescent": math.pi, "cross": 0.3, "diamond": 0.3}


@dataclass(frozen=True)
class PictureStyle:
    """What was drawn, so captions can mention it."""

    size: str  # "small" | "large"
    position: str  # e.g. "top left", "centre"
    fill: str
    background: str
    count: int


def shade(color: str, rng: random.Random) -> RGB:
    """A shade that still reads as `color`: a quarter of the time the palette's own value."""
    if rng.random() < 0.25:
        return COLORS[color]
    hues, (s0, s1), (v0, v1) = COLOR_RANGES[color]
    lo, hi = rng.choice(hues)
    h, s, v = rng.uniform(lo, hi) / 360 % 1.0, rng.uniform(s0, s1), rng.uniform(v0, v1)
    return tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(h, s, v))  # type: ignore[return-value]


def _other_color(avoid: str, rng: random.Random, exclude: tuple[str, ...] = ()) -> RGB:
    return shade(rng.choice([c for c in COLORS if c != avoid and c not in exclude]), rng)


def _near(a: RGB, b: RGB) -> bool:
    return sum((x - y) ** 2 for x, y in zip(a, b)) < 70**2


def _background_color(kind: str, avoid: str, rng: random.Random) -> RGB:
    """One flat colour of a background kind that never reads as the shape's colour."""
    if kind == "white":
        v = rng.randint(235, 255)
        return (v, v, v)
    if kind == "black":
        v = rng.randint(0, 30)
        return (v, v, v)
    h = rng.random()
    if kind == "light":
        s, v = rng.uniform(0.03, 0.25), rng.uniform(0.85, 1.0)
    elif kind == "dark":
        s, v = rng.uniform(0.1, 0.6), rng.uniform(0.12, 0.35)
    elif kind == "saturated":
        return _other_color(avoid, rng, exclude=("black", "white"))
    else:  # muted mid-tone
        s, v = rng.uniform(0.1, 0.4), rng.uniform(0.4, 0.7)
    return tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(h, s, v))  # type: ignore[return-value]


def _smooth_field(w: int, h: int, rng: random.Random, cells: int) -> np.ndarray:
    """Random values on a coarse grid, resized smoothly: (h, w) floats in [0, 1]."""
    coarse = np.random.default_rng(rng.getrandbits(32)).random((cells, cells)).astype(np.float32)
    img = Image.fromarray((coarse * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)
    return np.asarray(img, dtype=np.float32) / 255.0


def background(w: int, h: int, avoid: str, kind: str, rng: random.Random) -> Image.Image:
    """A `kind` background (one of BACKGROUND_STYLES) for a shape coloured `avoid`."""
    flat_kinds = ("white", "black", "light", "dark", "saturated", "muted")
    if kind in flat_kinds:
        return Image.new("RGB", (w, h), _background_color(kind, avoid, rng))
    if kind == "gradient":
        a = np.array(_background_color(rng.choice(flat_kinds), avoid, rng), np.float32)
        b = np.array(_background_color(rng.choice(flat_kinds), avoid, rng), np.float32)
        angle = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        t = (xx / w - 0.5) * math.cos(angle) + (yy / h - 0.5) * math.sin(angle)
        t = (t - t.min()) / max(1e-6, float(t.max() - t.min()))
        return Image.fromarray((a + (b - a) * t[..., None]).clip(0, 255).astype(np.uint8))
    if kind == "photo":  # smooth blotches of a few natural tones, lighting and film grain
        tones = np.array([_background_color(rng.choice(("light", "dark", "muted")), avoid, rng) for _ in range(3)], np.float32)
        f1, f2 = _smooth_field(w, h, rng, rng.randint(2, 6)), _smooth_field(w, h, rng, rng.randint(3, 8))
        img = tones[0] * (1 - f1[..., None]) + tones[1] * f1[..., None]
        img = img * (1 - 0.5 * f2[..., None]) + tones[2] * 0.5 * f2[..., None]
        light = 0.75 + 0.5 * _smooth_field(w, h, rng, 2)[..., None]
        grain = np.random.default_rng(rng.getrandbits(32)).normal(0, rng.uniform(2, 12), (h, w, 1))
        return Image.fromarray((img * light + grain).clip(0, 255).astype(np.uint8))
    # clutter: a plain or gradient ground with strokes, dots and blobs in colours other than the shape's
    img = background(w, h, avoid, rng.choice(("white", "light", "muted", "dark", "gradient")), rng)
    draw = ImageDraw.Draw(img)
    scale = max(w, h)
    for _ in range(rng.randint(4, 14)):
        color = _other_color(avoid, rng)
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        mark = rng.random()
        if mark < 0.4:
            draw.line([(x0, y0), (x0 + rng.uniform(-0.5, 0.5) * scale, y0 + rng.uniform(-0.5, 0.5) * scale)], fill=color, width=max(1, int(scale * rng.uniform(0.005, 0.03))))
        elif mark < 0.7:
            r = scale * rng.uniform(0.005, 0.03)
            draw.ellipse((x0 - r, y0 - r, x0 + r, y0 + r), fill=color)
        else:  # a wobbly scribble
            pts = [(x0, y0)]
            for _ in range(rng.randint(3, 8)):
                pts.append((pts[-1][0] + rng.uniform(-0.12, 0.12) * scale, pts[-1][1] + rng.uniform(-0.12, 0.12) * scale))
            draw.line(pts, fill=color, width=max(1, int(scale * 0.01)))
    return img


def _outline_points(shape: str, cx: float, cy: float, r: float, turn: float, stretch: float, rng: random.Random) -> list[tuple[float, float]]:
    """The shape's outline as a polygon (circles and crescents too), turned and stretched about its centre."""
    if shape == "circle":
        pts = [(cx + r * math.cos(2 * math.pi * k / 48), cy + r * math.sin(2 * math.pi * k / 48)) for k in range(48)]
    elif shape == "heart" and rng.random() < 0.5:
        pts = _round_heart(cx, cy, r, rng)
    elif shape == "crescent":
        # a disc less an offset disc: the outer arc outside the cut, then the cut's arc inside the disc
        side = 1 if rng.random() < 0.5 else -1
        ox, orad = cx - side * 0.45 * r, 0.85 * r
        angles = np.linspace(0, 2 * math.pi, 96, endpoint=False)
        outer = [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in angles]
        outer = [p for p in outer if math.hypot(p[0] - ox, p[1] - cy) > orad]
        inner = [(ox + orad * math.cos(a), cy + orad * math.sin(a)) for a in angles]
        inner = [p for p in inner if math.hypot(p[0] - cx, p[1] - cy) < r]
        start = lambda p: math.atan2(p[1] - cy, side * (p[0] - cx))  # noqa: E731 - order along each arc
        pts = sorted(outer, key=start) + sorted(inner, key=lambda p: -math.atan2(p[1] - cy, side * (p[0] - ox)))
    else:
        pts = _outline(shape, cx, cy, r, 0.0)
    c, s = math.cos(turn), math.sin(turn)
    return [(cx + ((x - cx) * stretch) * c - ((y - cy) / stretch) * s, cy + ((x - cx) * stretch) * s + ((y - cy) / stretch) * c) for x, y in pts]


def _round_heart(cx: float, cy: float, r: float, rng: random.Random) -> list[tuple[float, float]]:
    """The heart people draw by hand: two round lobes and straight sides down to the point, with
    random lobe size, spacing and depth (the parametric curve alone taught "round top = circle")."""
    rho = rng.uniform(0.42, 0.55)  # lobe radius
    d = rho * rng.uniform(0.55, 0.95)  # lobe centres at (+-d, -c)
    c, tip = rng.uniform(0.2, 0.45), rng.uniform(0.75, 1.0)
    dip = -c - math.sqrt(rho * rho - d * d)  # where the lobes meet, on the axis
    vx, vy = -d, tip + c  # from the right lobe's centre to the tip
    dist = math.hypot(vx, vy)
    beta = math.acos(min(1.0, rho / dist))
    base = math.atan2(vy, vx)
    a1 = max(base + beta, base - beta, key=lambda a: math.cos(a))  # the tangent point on the outer side
    a0 = math.atan2(dip + c, -d)
    if a1 < a0:
        a1 += 2 * math.pi
    right = [(d + rho * math.cos(a), -c + rho * math.sin(a)) for a in np.linspace(a0, a1, 24)]
    half = right + [(0.0, tip)]
    outline = half + [(-x, y) for x, y in reversed(right[1:])]
    shift = -(min(y for _, y in outline) + tip) / 2  # centre the heart's height on cy
    fit = r / max(math.hypot(x, y + shift) for x, y in outline)  # and fit it in radius r, as the other shapes
    return [(cx + fit * x, cy + fit * (y + shift)) for x, y in outline]


def _wobble(pts: list[tuple[float, float]], amount: float, rng: random.Random) -> list[tuple[float, float]]:
    """A hand-drawn look: points densified along each edge and jittered."""
    out = []
    for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1]):
        steps = max(1, int(math.hypot(x1 - x0, y1 - y0) / max(1.0, amount * 4)))
        for k in range(steps):
            t = k / steps
            out.append((x0 + (x1 - x0) * t + rng.gauss(0, amount), y0 + (y1 - y0) * t + rng.gauss(0, amount)))
    return out


def _paint_shape(img: Image.Image, pts: list[tuple[float, float]], rgb: RGB, fill: str, line: int, rng: random.Random, ground: RGB) -> None:
    draw = ImageDraw.Draw(img)
    if fill in ("solid", "striped", "dotted"):
        mask = Image.new("L", img.size, 0)
        ImageDraw.Draw(mask).polygon(pts, fill=255)
        paint = Image.new("RGB", img.size, rgb)
        if fill != "solid":
            accent = tuple(int(v + (255 - v) * 0.45) for v in rgb) if sum(rgb) < 600 else tuple(int(v * 0.75) for v in rgb)
            pd = ImageDraw.Draw(paint)
            step = max(3, int(line * rng.uniform(2.5, 4)))
            w, h = img.size
            for k in range(-h, w + h, step):
                if fill == "striped":
                    pd.line((k, 0, k + h, h), fill=accent, width=max(1, step // 3))
                else:
                    for y in range(0, h, step):
                        pd.ellipse((k, y, k + step / 3, y + step / 3), fill=accent)
        img.paste(paint, (0, 0), mask)
    elif fill == "outline":
        draw.line(pts + pts[:1], fill=rgb, width=line, joint="curve")
    elif fill == "outlined_fill":  # filled, with a dark or light border like clip art
        draw.polygon(pts, fill=rgb)
        border = (20, 20, 20) if sum(rgb) > 200 and not _near((20, 20, 20), ground) else (240, 240, 240)
        draw.line(pts + pts[:1], fill=border, width=max(1, line // 2), joint="curve")
    else:  # sketch: a wobbly outline, drawn twice, sometimes coloured in with loose strokes
        wobbly = _wobble(pts, line * 0.6, rng)
        draw.line(wobbly + wobbly[:1], fill=rgb, width=line, joint="curve")
        if rng.random() < 0.5:
            draw.polygon(_wobble(pts, line * 0.4, rng), fill=rgb)
        else:
            again = _wobble(pts, line * 0.6, rng)
            draw.line(again + again[:1], fill=rgb, width=max(1, line // 2))


def _position_name(cx: float, cy: float, w: int, h: int) -> str:
    col = "left" if cx < w * 0.4 else "right" if cx > w * 0.6 else ""
    row = "top" if cy < h * 0.4 else "bottom" if cy > h * 0.6 else ""
    return f"{row} {col}".strip() or "centre"


def _canvas(rng: random.Random) -> tuple[int, int, int]:
    """(width, height, side of the centre square the server keeps) of a canvas."""
    side = rng.choice((20, 24, 32, 40, 48, 64, 64, 64, 80, 96, 128, 160, 200))
    if rng.random() < 0.25:  # landscape or portrait: the server crops to the centre square
        long = int(side * rng.uniform(1.1, 1.6))
        return (long, side, side) if rng.random() < 0.5 else (side, long, side)
    return side, side, side


def capture(img: Image.Image, rng: random.Random) -> Image.Image:
    """Camera and file effects: blur, noise, downscaling, JPEG."""
    if rng.random() < 0.25:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2) * max(img.size) / 64))
    if rng.random() < 0.25:
        arr = np.asarray(img, np.float32) + np.random.default_rng(rng.getrandbits(32)).normal(0, rng.uniform(3, 18), (img.size[1], img.size[0], 1 if rng.random() < 0.5 else 3))
        img = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
    if rng.random() < 0.15:
        w, h = img.size
        f = rng.uniform(0.3, 0.7)
        img = img.resize((max(8, int(w * f)), max(8, int(h * f))), Image.BILINEAR).resize((w, h), rng.choice((Image.NEAREST, Image.BILINEAR)))
    if rng.random() < 0.35:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=rng.randint(15, 90))
        img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return img


def draw_styled_shape(color: str, shape: str, rng: random.Random) -> tuple[Image.Image, PictureStyle]:
    """One picture of a `color` `shape` in a random style (see the module docstring)."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")
    w, h, side = _canvas(rng)
    ss = 1 if side >= 128 or rng.random() < 0.3 else rng.choice((2, 4))  # supersampling = anti-aliased edges
    kind = rng.choice(BACKGROUND_STYLES)
    # A white shape on white (black on black) shows only by its outline, as clip art draws it:
    # SAME_GROUND_SHARE of those draws keep the ground and outline the shape; the rest change it.
    vanishes = kind in VANISHING_GROUNDS.get(color, ())
    same_ground = vanishes and rng.random() < SAME_GROUND_SHARE
    if vanishes and not same_ground:
        kind = rng.choice(CONTRASTING_GROUNDS[color])
    rgb = shade(color, rng)
    for _ in range(4):  # a ground whose centre the shape stands out from
        img = background(w * ss, h * ss, color, kind, rng)
        ground = img.getpixel((w * ss // 2, h * ss // 2))
        if same_ground or not _near(rgb, ground):
            break
        rgb, kind = COLORS[color], rng.choice(("white", "black", "photo", "clutter"))
    fill = "outlined_fill" if same_ground else rng.choice(FILLS)
    count = 1 if rng.random() < 0.85 else rng.randint(2, 4)
    x0, y0 = (w - side) / 2 * ss, (h - side) / 2 * ss  # the centre square, in supersampled pixels
    big = side * ss
    radii = []
    for _ in range(count):
        r = big * (rng.uniform(0.1, 0.45) if count == 1 else rng.uniform(0.08, 0.2))
        margin = 0.3 * r if count == 1 and rng.random() < 0.1 else r  # sometimes partly cropped
        cx = x0 + rng.uniform(margin, big - margin)
        cy = y0 + rng.uniform(margin, big - margin)
        turn = rng.uniform(-MAX_TURN[shape], MAX_TURN[shape])
        if shape == "triangle" and rng.random() < 0.15:
            turn += math.pi  # upside down is still a triangle
        stretch = math.exp(rng.uniform(-0.15, 0.15) if shape in ("circle", "square") else rng.uniform(-0.25, 0.25))
        line = max(1, int(round(r * rng.uniform(0.08, 0.22))))
        if same_ground:  # the outline is all that shows: at least one output pixel wide
            line = max(line, 2 * ss)
        _paint_shape(img, _outline_points(shape, cx, cy, r, turn, stretch, rng), rgb, fill, line, rng, ground)
        radii.append((r, cx, cy))
    if ss > 1:
        img = img.resize((w, h), Image.LANCZOS)
    img = capture(img, rng)
    r, cx, cy = radii[0]
    style = PictureStyle("small" if r < 0.25 * big else "large", _position_name(cx - x0, cy - y0, big, big), fill, kind, count)
    return img, style


def styled_ground(w: int, h: int, avoid: str, rng: random.Random) -> tuple[Image.Image, str]:
    """A background for rendered words and digits, in any style; returns (image, kind)."""
    kind = rng.choice(BACKGROUND_STYLES)
    if avoid == "white" and kind in ("white", "light"):
        kind = "dark"
    if avoid == "black" and kind in ("black", "dark"):
        kind = "light"
    return background(w, h, avoid, kind, rng), kind


__all__ = ["BACKGROUND_STYLES", "COLOR_RANGES", "FILLS", "PictureStyle", "draw_styled_shape", "shade", "styled_ground", "background", "capture"]
