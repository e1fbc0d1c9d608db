"""The default model's picture corpus: deterministic, held-out pairs that still teach every colour and shape."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from omnivec.finetune.corpora import pictures, styles
from omnivec.finetune.corpora.shapes import COLORS, SHAPES
from omnivec.finetune.data import read_manifest
from tests.files import tree_digests


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> pictures.PictureSet:
    return pictures.generate(tmp_path_factory.mktemp("pics") / "a", per_combo=2, per_word=2, seed=3)


def test_same_seed_same_bytes_other_seed_differs(corpus, tmp_path):
    again = pictures.generate(tmp_path / "again", per_combo=2, per_word=2, seed=3)
    assert tree_digests(corpus.manifest.parent) == tree_digests(again.manifest.parent)
    other = pictures.generate(tmp_path / "other", per_combo=2, per_word=2, seed=4)
    assert tree_digests(corpus.manifest.parent) != tree_digests(other.manifest.parent)


def test_classes_cover_every_colour_shape_word_and_digit(corpus):
    rows = read_manifest(corpus.manifest)
    labels = {r["label"] for r in rows}
    assert labels == set(corpus.classes)
    assert len([c for c in corpus.classes if c.split()[-1] in SHAPES]) == len(COLORS) * len(SHAPES) >= 24
    assert {"the word cat", "the number seven"} <= labels
    for row in rows[:: len(rows) // 20]:
        with Image.open(corpus.manifest.parent / row["image"]) as img:
            assert img.mode == "RGB" and 20 <= min(img.size) <= max(img.size) <= 320


def test_held_out_pairs_are_a_latin_square_and_never_in_training(corpus):
    held = pictures.held_out_combos(3)
    assert len(held) == 16
    assert Counter(c for c, _ in held) == {c: 2 for c in COLORS}  # every colour still seen with 6 shapes
    assert Counter(s for _, s in held) == {s: 2 for s in SHAPES}  # every shape still seen in 6 colours
    rows = read_manifest(corpus.manifest)
    held_labels = {pictures.shape_label(c, s) for c, s in held}
    assert set(corpus.held_out) == held_labels
    assert all((r["split"] == "heldout_combo") == (r["label"] in held_labels) for r in rows)


def test_held_out_rows_use_held_out_wording_and_articles_are_right(corpus):
    rows = read_manifest(corpus.manifest)
    stems = [t.split("{")[0] for t in pictures.HELD_OUT_TEMPLATES]
    for row in rows:
        caption = row["caption"].replace(" an ", " a ")
        assert any(caption.startswith(s) for s in stems) == (row["split"] == "heldout_combo"), row
        assert " a orange" not in f" {row['caption']}" and "a orange" not in row["caption"].lower()
    assert len({r["caption"] for r in rows if r["kind"] == "shape"}) > 60  # varied wording, not one template


def test_articles():
    assert pictures.with_articles("a orange star and a red one") == "an orange star and a red one"
    assert pictures.with_articles("A orange") == "An orange"


def test_styles_cover_backgrounds_fills_sizes_and_several_objects():
    rng = random.Random(0)
    drawn = [styles.draw_styled_shape(c, s, rng) for _ in range(3) for c in COLORS for s in SHAPES]
    assert {d.background for _, d in drawn} == set(styles.BACKGROUND_STYLES)
    assert {d.fill for _, d in drawn} == set(styles.FILLS)
    assert {d.size for _, d in drawn} == {"small", "large"} and max(d.count for _, d in drawn) > 1
    sides = [min(img.size) for img, _ in drawn]
    assert min(sides) <= 32 and max(sides) >= 128 and any(img.size[0] != img.size[1] for img, _ in drawn)
    again = random.Random(0)
    assert all(img.tobytes() == styles.draw_styled_shape(c, s, again)[0].tobytes() for (img, _), (c, s) in zip(drawn[:16], [(c, s) for c in COLORS for s in SHAPES]))


def test_colour_ranges_do_not_overlap_and_shades_stay_in_them():
    import colorsys

    spans = [(lo, hi, name) for name, (hues, _, _) in styles.COLOR_RANGES.items() if name not in ("black", "white") for lo, hi in hues]
    for a in spans:
        for b in spans:
            assert a[2] == b[2] or a[1] <= b[0] or b[1] <= a[0], (a, b)
    rng = random.Random(1)
    for name in COLORS:
        for _ in range(50):
            h, s, v = colorsys.rgb_to_hsv(*(x / 255 for x in styles.shade(name, rng)))
            if name == "black":
                assert v <= 0.16
            elif name == "white":
                assert v >= 0.93 and s <= 0.06
            else:
                assert any(lo - 1 <= h * 360 <= hi + 1 for lo, hi, n in spans if n == name) and s >= 0.44, (name, h * 360, s, v)


def test_shapes_stand_out_from_their_background():
    """A shape's colour differs from the ground at the centre, except a white shape on white (black
    on black), which is drawn as clip art draws it: filled and outlined in the opposite tone."""
    import numpy as np

    rng = random.Random(2)
    same_ground = 0
    for c, ground, outline_is_dark in (("white", ("white", "light"), True), ("black", ("black", "dark"), False), ("yellow", (), True)):
        for _ in range(60):
            img, drawing = styles.draw_styled_shape(c, "circle", rng)
            if drawing.background in ground:
                same_ground += 1
                assert drawing.fill == "outlined_fill", drawing
                grey = np.asarray(img.convert("L"), dtype=np.float32)
                # the outline is there: some pixels far from the ground's tone
                assert (grey < 170).any() if outline_is_dark else (grey > 85).any(), drawing
    assert same_ground > 0  # the case is drawn at all


def test_round_hearts_are_symmetric_and_fit_their_radius():
    import math

    for seed in range(20):
        pts = styles._round_heart(50.0, 50.0, 10.0, random.Random(seed))
        assert all(math.hypot(x - 50, y - 50) <= 10.0 * 1.05 for x, y in pts)
        xs = sorted(round(x - 50, 6) for x, _ in pts)
        assert xs == sorted(round(50 - x, 6) for x, _ in pts)  # mirror-symmetric about the vertical axis
        assert max(y for _, y in pts) - min(y for _, y in pts) > 12  # a heart, not a sliver
