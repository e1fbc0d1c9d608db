"""Synthetic audio corpora: espeak-ng spoken words with held-out voices, and numpy sounds. Deterministic, fast, clip-sized."""

from __future__ import annotations

import hashlib
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from omnivec.finetune.corpora import sounds, speech
from omnivec.finetune.data import read_manifest
from tests.files import tree_digests

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
WORDS = ["seven", "cat", "coffee", "blue"]


@pytest.fixture(scope="module")
def spoken(tmp_path_factory) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    return speech.generate(tmp_path_factory.mktemp("speech") / "a", per_word=6, words=WORDS)


@needs_espeak
def test_speech_same_seed_same_bytes_other_seed_differs(spoken, tmp_path):
    again = speech.generate(tmp_path / "again", per_word=6, words=WORDS, workers=1)  # serial, unlike the fixture
    assert tree_digests(spoken.parent) == tree_digests(again.parent)
    other = speech.generate(tmp_path / "other", per_word=6, words=WORDS, seed=1)
    assert other.read_bytes() != spoken.read_bytes()
    assert tree_digests(other.parent / "audio") != tree_digests(spoken.parent / "audio")


@needs_espeak
def test_speech_manifest_labels_captions_and_splits(spoken):
    rows = read_manifest(spoken)
    assert list(rows[0]) == ["audio", "caption", "label", "voice", "split"]
    assert len(rows) == 6 * len(WORDS) and len({r["audio"] for r in rows}) == len(rows)
    train, held = speech.split_voices(0)
    splits: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        splits[r["label"]].add(r["split"])
        assert r["voice"] in (train if r["split"] == "train" else held)
        assert r["caption"] in {t.format(w=r["label"]) for t in speech.TEMPLATES}
    assert splits == {w: {"train", "heldout_voice"} for w in WORDS}
    assert len({r["caption"] for r in rows if r["label"] == "cat"}) > 1, "wording varies per utterance"


@needs_espeak
def test_speech_clips_are_16k_mono_audible_and_fit_the_window(spoken):
    for r in read_manifest(spoken):
        info = sf.info(spoken.parent / r["audio"])
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        x, _ = sf.read(spoken.parent / r["audio"], dtype="float32")
        assert 0.25 < len(x) / 16000 <= speech.CLIP_SECONDS
        assert 0.25 < np.abs(x).max() < 0.95 and np.sqrt(np.mean(x**2)) > 0.02
        assert x[0] == 0 and x[-1] == 0, "the word sits inside the clip, with silence around it"


@needs_espeak
def test_every_voice_spec_sounds_different():
    """An unknown variant ("en-gb+f3") silently falls back to the plain voice; distinct audio proves each spec took."""
    digests = {v: hashlib.sha256(speech.synthesize("water", v).tobytes()).hexdigest() for v in speech.VOICES}
    assert len(set(digests.values())) == len(speech.VOICES) >= 14


def test_held_out_voices():
    train, held = speech.split_voices(0)
    assert speech.split_voices(0) == (train, held)
    assert set(train).isdisjoint(held) and sorted(train + held) == sorted(speech.VOICES)
    for seed in range(20):
        train, held = speech.split_voices(seed)
        seen = {speech.base_voice(v) for v in train}
        assert 3 <= len(held) <= 4 and set(train).isdisjoint(held)
        assert any(speech.base_voice(v) in seen for v in held), "a new speaker of a familiar accent"
        assert any(speech.base_voice(v) not in seen for v in held), "an accent never heard in training"
        assert len(seen) == len(speech.BASE_VOICES) - 1
    small_train, small_held = speech.split_voices(0, voices=["en-us", "en-us+f2"])
    assert len(small_train) == len(small_held) == 1 and set(small_train + small_held) == {"en-us", "en-us+f2"}
    assert speech.split_voices(0, voices=["en-us", "en"], held_out=3) in ((["en-us"], ["en"]), (["en"], ["en-us"]))
    with pytest.raises(ValueError):
        speech.split_voices(0, voices=["en-us"])


def test_words_and_templates():
    assert set(speech.DIGITS) <= set(speech.WORDS) and len(speech.WORDS) >= 40 and len(set(speech.WORDS)) == len(speech.WORDS)
    assert set(speech.TEMPLATES).isdisjoint(speech.HELDOUT_TEMPLATES) and len(speech.HELDOUT_TEMPLATES) >= 3
    assert all("{w}" in t for t in speech.TEMPLATES + speech.HELDOUT_TEMPLATES)
    with pytest.raises(ValueError, match="per_word"):
        speech.plan(per_word=1)


def test_missing_espeak_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(speech.EspeakNotFound, match="apt-get install espeak-ng") as err:
        speech.generate(tmp_path / "out", per_word=2, words=["cat"])
    assert "brew install espeak-ng" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_sounds_keep_their_classes_and_add_new_ones():
    assert len(sounds.kinds()) == 3 * 4 + 5 and not set(sounds.EXTRA_KINDS) & set(sounds.kinds())
    assert sounds.kinds(extended=True) == sounds.kinds() + list(sounds.EXTRA_KINDS)
    labels = {sounds.sound(k, np.random.default_rng(0))[2] for k in sounds.EXTRA_KINDS}
    assert labels == {"major chord", "minor chord", "slow drum beat", "fast drum beat", "ringing phone", "bell", "rising tone", "falling tone", "ticking clock"}
    with pytest.raises((ValueError, KeyError)):
        sounds.sound("chord:diminished", np.random.default_rng(0))


def test_new_sounds_are_deterministic_audible_and_clip_sized(tmp_path):
    classes = list(sounds.EXTRA_KINDS)
    a = sounds.generate(tmp_path / "a", per_class=4, seed=3, classes=classes)
    b = sounds.generate(tmp_path / "b", per_class=4, seed=3, classes=classes)
    c = sounds.generate(tmp_path / "c", per_class=4, seed=4, classes=classes)
    assert tree_digests(a.parent) == tree_digests(b.parent) and tree_digests(a.parent) != tree_digests(c.parent)
    rows = read_manifest(a)
    assert list(rows[0]) == ["audio", "caption", "label"] and len(rows) == 4 * len(classes)
    for label in {r["label"] for r in rows}:
        assert len({r["caption"] for r in rows if r["label"] == label}) > 1, f"captions vary for {label}"
    for r in rows:
        x, rate = sf.read(a.parent / r["audio"], dtype="float32")
        assert rate == sounds.RATE and x.ndim == 1 and 0.6 <= len(x) / rate <= 1.8
        assert np.abs(x).max() > 0.1 and np.isfinite(x).all()


def test_drum_tempos_differ():
    """Fast beats hold several times as many hits as slow ones: counted as loud onsets in 10 ms frames."""

    def hits(kind: str) -> int:
        x, _, _ = sounds.sound(kind, np.random.default_rng(7))
        frames = np.abs(x[: len(x) // 160 * 160]).reshape(-1, 160).max(axis=1)
        loud = frames > 0.5 * frames.max()
        return int(np.sum(loud[1:] & ~loud[:-1]) + loud[0])

    assert hits("drums:fast") >= 3 * hits("drums:slow") >= 3
