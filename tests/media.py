"""Deterministic test media written in every format the server accepts."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw


def scene(width: int = 120, height: int = 90, seed: int = 0) -> Image.Image:
    """A non-trivial RGB picture: gradient background, shapes, some noise."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    base = np.stack([x * np.ones_like(y), y * np.ones_like(x), (x + y) / 2], -1) * 200
    base += rng.normal(0, 12, base.shape)
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    draw.ellipse((width // 6, height // 6, width // 2, height // 2 + 10), fill=(220, 30, 40))
    if width > 20 and height > 20:
        draw.rectangle((width // 2, height // 3, width - 8, height - 8), fill=(30, 60, 210))
    return img


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def sample_files() -> dict[str, bytes]:
    """name -> encoded bytes covering formats, modes and orientation."""
    rgb = scene(120, 90, seed=1)
    tall = scene(64, 150, seed=2)
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgb.size))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW when displayed
    frames = [scene(80, 80, seed=s).convert("P", palette=Image.Palette.ADAPTIVE) for s in (3, 4)]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=100)
    return {
        "photo.jpg": encode(rgb, "JPEG", quality=92),
        "tall.png": encode(tall, "PNG"),
        "alpha.png": encode(rgba, "PNG"),
        "grey.png": encode(rgb.convert("L"), "PNG"),
        "palette.png": encode(rgb.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        "photo.webp": encode(rgb, "WEBP", quality=90),
        "anim.gif": gif.getvalue(),
        "photo.bmp": encode(rgb, "BMP"),
        "rotated.jpg": encode(rgb, "JPEG", quality=92, exif=exif),
        "tiny.png": encode(scene(7, 5, seed=5), "PNG"),
    }


def open_as_user_expects(data: bytes) -> Image.Image:
    """What a user means by 'this image': first frame, EXIF orientation applied, RGB."""
    from PIL import ImageOps

    img = Image.open(io.BytesIO(data))
    img.seek(0)
    img = ImageOps.exif_transpose(img)
    return img.convert("RGB")


AUDIO_FORMATS = {
    "tone.wav": ("WAV", "PCM_16", 16000),
    "tone.flac": ("FLAC", "PCM_16", 44100),
    "tone.ogg": ("OGG", "VORBIS", 22050),
    "tone.opus": ("OGG", "OPUS", 48000),
    "tone.mp3": ("MP3", "MPEG_LAYER_III", 44100),
}


def tone(freq: float, seconds: float, rate: int, *, amplitude: float = 0.5, channels: int = 1) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    mono = (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([mono] * channels, axis=1) if channels > 1 else mono


def encode_audio(samples: np.ndarray, rate: int, fmt: str = "WAV", subtype: str = "PCM_16") -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, samples, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def audio_files(freq: float = 440.0, seconds: float = 1.3) -> dict[str, bytes]:
    """The same tone in every accepted container/codec, each at its own sample rate."""
    return {name: encode_audio(tone(freq, seconds, rate), rate, fmt, sub) for name, (fmt, sub, rate) in AUDIO_FORMATS.items()}


def sound_clips() -> dict[str, bytes]:
    """Distinct deterministic sounds (tone, noise, pulses, sweep, chord, clicks), one per container/codec.

    Varied enough that even a random audio tower keeps them apart (pairwise cosine <= 0.9995), so a
    file searched for finds itself first.
    """
    rng = np.random.default_rng(7)

    def t(seconds: float, rate: int) -> np.ndarray:
        return np.arange(int(round(seconds * rate))) / rate

    def f32(x: np.ndarray) -> np.ndarray:
        return x.astype(np.float32)

    x16, x44, x22, x48, x44b, xc = t(1.3, 16000), t(1.2, 44100), t(1.6, 22050), t(2.3, 48000), t(1.0, 44100), t(0.6, 16000)
    return {
        "a440.wav": encode_audio(f32(0.5 * np.sin(2 * np.pi * 440 * x16)), 16000),
        "noise.flac": encode_audio(f32(0.3 * rng.standard_normal(len(x44))), 44100, "FLAC", "PCM_16"),
        "pulses.ogg": encode_audio(f32(0.6 * (np.sin(2 * np.pi * 4 * x22) > 0) * np.sin(2 * np.pi * 900 * x22)), 22050, "OGG", "VORBIS"),
        "sweep.opus": encode_audio(f32(0.4 * np.sin(2 * np.pi * (100 * x48 + 1500 * x48 * x48))), 48000, "OGG", "OPUS"),
        "chord.mp3": encode_audio(f32(0.7 * np.sin(2 * np.pi * 110 * x44b) + 0.2 * np.sin(2 * np.pi * 3300 * x44b)), 44100, "MP3", "MPEG_LAYER_III"),
        "clicks.wav": encode_audio(f32(np.where((xc * 10) % 1 < 0.02, 0.9, 0.0)), 16000),
    }
