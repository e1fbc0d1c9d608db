"""Telling image from audio: declared type first, then the file extension, then magic bytes."""

from __future__ import annotations

import pytest

from omnivec.server.errors import OmnivecError
from omnivec.server.media import declared_modality, detect_modality, media_modality, sniff_modality, suffix_modality
from tests.media import audio_files, sample_files


@pytest.mark.parametrize("name", sorted(audio_files()))
def test_every_audio_format_is_sniffed(name):
    assert sniff_modality(audio_files()[name]) == "audio"


@pytest.mark.parametrize("name", sorted(sample_files()))
def test_every_image_format_is_sniffed(name):
    assert sniff_modality(sample_files()[name]) == "image"


def test_unknown_bytes_are_not_guessed():
    assert sniff_modality(b"hello world") is None and sniff_modality(b"") is None
    assert sniff_modality(b"RIFF\0\0\0\0AVI LIST") is None


def test_declared_type_then_extension_then_bytes():
    wav = audio_files()["tone.wav"]
    assert declared_modality("audio/x-wav; codecs=1") == "audio" and declared_modality("application/ogg") == "audio"
    assert declared_modality("image/png") == "image" and declared_modality("text/plain") is None and declared_modality("") is None
    assert suffix_modality("a/B.FLAC") == "audio" and suffix_modality("x.jpeg") == "image" and suffix_modality(None) is None
    assert media_modality("image/png", "a.wav", wav) == "image", "a declared type wins"
    assert media_modality("application/octet-stream", "a.png", wav) == "image", "then the extension"
    assert media_modality("", "blob", wav) == "audio", "then the bytes"
    assert media_modality("", "blob", b"???") == "image", "else the image decoder explains"


def test_a_declared_non_media_type_is_refused():
    with pytest.raises(OmnivecError) as info:
        detect_modality("text/plain", "notes.txt", b"hello", "items[3] (notes.txt)")
    assert info.value.status == 415 and "items[3] (notes.txt)" in info.value.message and "audio/*" in info.value.message
