"""The default model's picture corpus: deterministic, held-out pairs that still teach every colour and shape."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from omnivec.finetune.corpora import pictures
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
            assert img.size == (64, 64) and img.mode == "RGB"


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
