"""Kept previews stay within their bounds whatever the source: side, bytes, seconds, rate, channels."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
from PIL import Image

from omnivec.server.preprocess.previews import TEXT_PREVIEW_CHARS, audio_preview, image_thumbnail, make_preview, original_type, text_preview
from omnivec.server.settings import MediaSettings
from tests.media import encode, encode_audio, scene, tone


def noisy(width: int, height: int, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (height, width, len(mode)), dtype=np.uint8), mode)


def test_thumbnail_is_a_bounded_webp_that_keeps_the_aspect_ratio():
    settings = MediaSettings()
    thumb = image_thumbnail(encode(noisy(1600, 900), "PNG"), settings)  # noise: the worst case for the byte cap
    image = Image.open(io.BytesIO(thumb.data))
    assert thumb.content_type == "image/webp" and image.format == "WEBP"
    assert max(image.size) <= settings.thumbnail_px and len(thumb.data) <= settings.thumbnail_max_bytes
    assert abs(image.size[0] / image.size[1] - 16 / 9) < 0.05


def test_a_tight_byte_cap_shrinks_the_thumbnail_until_it_fits():
    settings = MediaSettings(thumbnail_max_bytes=4096)
    thumb = image_thumbnail(encode(noisy(800, 800), "PNG"), settings)
    assert len(thumb.data) <= 4096 and max(Image.open(io.BytesIO(thumb.data)).size) < settings.thumbnail_px


def test_thumbnail_applies_exif_orientation_and_keeps_transparency():
    wide = scene(width=200, height=100)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: a portrait photo stored landscape
    rotated = Image.open(io.BytesIO(image_thumbnail(encode(wide, "JPEG", exif=exif.tobytes()), MediaSettings()).data))
    assert rotated.size[1] > rotated.size[0]
    clear = Image.new("RGBA", (64, 64), (255, 0, 0, 0))
    assert Image.open(io.BytesIO(image_thumbnail(encode(clear, "PNG"), MediaSettings()).data)).mode == "RGBA"


def test_audio_preview_is_the_first_seconds_mono_at_most_22k():
    settings = MediaSettings(audio_preview_s=3.0)
    stereo = tone(440.0, 8.0, 44100, channels=2)
    preview = audio_preview(encode_audio(stereo, 44100, "FLAC"), settings)
    samples, rate = sf.read(io.BytesIO(preview.data))
    assert preview.content_type == "audio/ogg" and sf.info(io.BytesIO(preview.data)).subtype == "VORBIS"
    assert rate == 22050 and samples.ndim == 1 and abs(len(samples) / rate - 3.0) < 0.05
    assert len(preview.data) <= settings.audio_preview_max_bytes
    spectrum = np.abs(np.fft.rfft(samples))
    assert abs(np.argmax(spectrum) * rate / len(samples) - 440.0) < 5  # still the same sound


def test_audio_preview_is_shortened_to_fit_the_byte_cap():
    rng = np.random.default_rng(1)
    noise = rng.uniform(-0.5, 0.5, 16000 * 20).astype(np.float32)
    settings = MediaSettings(audio_preview_s=20.0, audio_preview_max_bytes=8192)
    preview = audio_preview(encode_audio(noise, 16000), settings)
    assert len(preview.data) <= 8192 and 0.5 <= sf.info(io.BytesIO(preview.data)).duration < 20.0


def test_text_preview_and_original_types():
    long = "word " * 1000
    assert len(text_preview(long).data.decode()) == TEXT_PREVIEW_CHARS and text_preview("short").data == b"short"
    assert make_preview("text", "ü", MediaSettings()).content_type == "text/plain; charset=utf-8"
    assert original_type("image", encode(scene(), "JPEG")) == "image/jpeg"
    assert original_type("audio", encode_audio(tone(440.0, 0.5, 16000), 16000, "FLAC")) == "audio/flac"
    assert original_type("audio", b"not audio") == "application/octet-stream"
