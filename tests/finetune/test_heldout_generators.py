"""The independent evaluation generators: deterministic, complete, really in the styles and conditions they claim."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from omnivec.finetune.corpora import heldout_audio, heldout_style
from tests.files import tree_digests

TRAINING_VOICES = ["en", "en-us", "en+m1", "en-us+f2", "en-gb+m3", "en-gb-x-rp+klatt"]


@pytest.fixture(scope="module")
def style_set(tmp_path_factory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("style")
    return out, heldout_style.render_style_set(out, seed=3, per_class=2)


@pytest.fixture(scope="module")
def plain_set(tmp_path_factory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("plain")
    return out, heldout_style.render_plain_white_set(out, seed=3)


@pytest.fixture(scope="module")
def audio_set(tmp_path_factory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("audio")
    return out, heldout_audio.render_audio_conditions(out, seed=3, exclude_voices=TRAINING_VOICES, per_word=2)


def _style_field(record: dict, key: str) -> str:
    return dict(part.split("=", 1) for part in record["style"].split() if "=" in part)[key]


def _border(path: Path) -> np.ndarray:
    """Pixels of the outermost 2-pixel ring: mostly background in every layout."""
    a = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    return np.concatenate([a[:2].reshape(-1, 3), a[-2:].reshape(-1, 3), a[:, :2].reshape(-1, 3), a[:, -2:].reshape(-1, 3)])


def test_pictures_same_seed_same_bytes_other_seed_differs(style_set, plain_set, tmp_path):
    out, records = style_set
    assert heldout_style.render_style_set(tmp_path / "again", seed=3, per_class=2) == records
    assert tree_digests(tmp_path / "again") == tree_digests(out)
    heldout_style.render_plain_white_set(tmp_path / "plain", seed=3)
    assert tree_digests(tmp_path / "plain") == tree_digests(plain_set[0])
    heldout_style.render_plain_white_set(tmp_path / "other", seed=4)
    assert tree_digests(tmp_path / "other") != tree_digests(plain_set[0])


def test_every_class_present_and_every_picture_decodes(style_set, plain_set):
    for (out, records), per_class in ((style_set, 2), (plain_set, 1)):
        labels = Counter(r["label"] for r in records)
        assert len(labels) == 64 and set(labels.values()) == {per_class}
        for r in records:
            assert r["label"] == f"{r['colour']} {r['shape']}"
            with Image.open(out / r["path"]) as im:
                im.load()
                assert 32 <= min(im.size) and max(im.size) <= 512


def test_style_set_spans_sizes_formats_layouts_and_strokes(style_set):
    out, records = style_set
    sizes = [Image.open(out / r["path"]).size for r in records]
    assert min(min(s) for s in sizes) < 64 and max(max(s) for s in sizes) > 384
    assert sum(w != h for w, h in sizes) > len(sizes) // 4
    assert {Path(r["path"]).suffix for r in records} == {".png", ".jpg"}
    for key, kinds in (("bg", heldout_style.BACKGROUNDS), ("stroke", heldout_style.STROKES), ("layout", heldout_style.LAYOUTS)):
        assert set(Counter(_style_field(r, key) for r in records)) == set(kinds)
    assert any("blur=" in r["style"] for r in records) and any("noise=" in r["style"] for r in records)


def test_backgrounds_really_are_what_they_say(style_set):
    out, records = style_set
    luminance, saturation = {}, {}
    for r in records:
        border = np.median(_border(out / r["path"]), axis=0)
        bg = _style_field(r, "bg")
        luminance.setdefault(bg, []).append(float(border.mean()))
        saturation.setdefault(bg, []).append(float(border.max() - border.min()))
        assert not (r["colour"] == "white" and bg in ("white", "light")), "white shapes must stay visible"
        assert not (r["colour"] == "black" and bg in ("black", "dark")), "black shapes must stay visible"
    assert min(luminance["white"]) > 235 and max(luminance["black"]) < 30
    assert min(luminance["light"]) > 180 and max(luminance["dark"]) < 90
    assert min(saturation["saturated"]) > 100 and np.median(saturation["white"]) < 10


def test_plain_white_set_is_one_flat_colour_on_pure_white(plain_set):
    out, records = plain_set
    for r in records:
        a = np.asarray(Image.open(out / r["path"]).convert("RGB"), dtype=np.int16)
        assert r["path"].endswith(".png") and (a[0, 0] == 255).all() and (_border(out / r["path"]) == 255).all()
        ink = a[(a != 255).any(axis=2)]
        colour = np.array(heldout_style.COLOURS[r["colour"]])
        if r["colour"] == "white":  # near-white fill inside a thin black outline
            outline = (a.max(axis=2) < 60).mean()
            fill = ((a >= 245).all(axis=2) & (a != 255).any(axis=2)).mean()
            assert 0.004 < outline < 0.1 and fill > 0.05
        else:  # most non-white pixels are the named colour itself (the rest: anti-aliased edge)
            assert (np.abs(ink - colour).max(axis=1) <= 2).mean() > 0.7
        assert 0.05 < len(ink) / (a.shape[0] * a.shape[1]) < 0.6


def test_audio_same_seed_same_bytes(audio_set, tmp_path):
    out, records = audio_set
    assert heldout_audio.render_audio_conditions(tmp_path, seed=3, exclude_voices=TRAINING_VOICES, per_word=2) == records
    assert tree_digests(tmp_path) == tree_digests(out)


def test_audio_words_conditions_and_voices(audio_set):
    out, records = audio_set
    assert Counter(r["word"] for r in records) == {w: 2 for w in heldout_audio.WORDS} and len(heldout_audio.WORDS) == 43
    assert {r["condition"].split()[0] for r in records} == {name for name, _ in heldout_audio.CONDITIONS}
    training = {heldout_audio._split(v) for v in TRAINING_VOICES}
    training_accents = {a for a, _ in training}
    training_variants = {v for _, v in training if v}
    for r in records:
        accent, variant = heldout_audio._split(r["voice"])
        assert (accent, variant) not in training and r["voice"] not in TRAINING_VOICES
        assert accent not in training_accents and variant not in training_variants  # enough voices share nothing
    assert len({r["voice"] for r in records}) > 20


def test_excluding_every_variant_still_avoids_exact_training_voices():
    everything = [f"{a}+{v}" for a in heldout_audio.ACCENTS[:-1] for v in heldout_audio.VARIANTS]
    voices = heldout_audio.heldout_voices(everything)
    assert voices and not set(voices) & set(everything)


def test_audio_clips_decode_with_sane_durations_and_levels(audio_set):
    out, records = audio_set
    for r in records:
        audio, sr = sf.read(out / r["path"], dtype="float32")
        assert sr == 16_000 and audio.ndim == 1
        assert 0.3 < len(audio) / sr < 8.0, r
        peak = float(np.abs(audio).max())
        name = r["condition"].split()[0]
        if name == "clipped":
            assert (np.abs(audio) > 0.999).mean() > 0.01
        elif name != "gain":
            assert 10 ** (-6.5 / 20) < peak < 10 ** (-0.9 / 20)
        if name == "silence_padded":
            assert len(audio) / sr > 1.3


def test_noise_is_mixed_at_the_requested_snr(audio_set):
    out, records = audio_set
    clips = list(heldout_audio.iter_clips(seed=3, exclude_voices=TRAINING_VOICES, per_word=2))
    measured = 0
    for r, (rec, audio, clean, noise) in zip(records, clips):
        assert rec == {k: v for k, v in r.items() if k != "path"}
        written, _ = sf.read(out / r["path"], dtype="float32")
        assert np.abs(written - audio).max() <= 1.0 / 32768 + 1e-6  # the file is that clip, 16-bit
        if r["snr_db"] is None:
            continue
        assert 10 <= r["snr_db"] <= 20
        residual = written.astype(np.float64) - clean  # everything in the file that is not the speech
        snr = 10 * np.log10(np.sum(clean.astype(np.float64) ** 2) / np.sum(residual**2))
        assert abs(snr - r["snr_db"]) < 0.5, (r, snr)
        assert np.allclose(residual, noise, atol=2.0 / 32768)
        measured += 1
    assert measured >= 30


def test_mix_at_snr_and_noise_colours():
    rng = np.random.default_rng(0)
    speech = np.sin(np.arange(16_000) * 0.05).astype(np.float32) * 0.3
    for exponent in (0.0, 1.0, 2.0):
        noise = heldout_audio.coloured_noise(rng, 16_000, exponent)
        mix, scaled = heldout_audio.mix_at_snr(speech, noise, 12.5)
        assert abs(10 * np.log10(heldout_audio.power(speech) / heldout_audio.power(mix - speech)) - 12.5) < 0.01
    white, brown = heldout_audio.coloured_noise(rng, 16_000, 0.0), heldout_audio.coloured_noise(rng, 16_000, 2.0)
    low = lambda x: np.abs(np.fft.rfft(x)[:500]).sum() / np.abs(np.fft.rfft(x)).sum()  # noqa: E731
    assert low(brown) > 5 * low(white)
