"""Synthetic sounds with captions, made with numpy: tones at named pitches and timbres, noise
colours, beeps and sirens. Deterministic for a seed; variable lengths and levels.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

import numpy as np

RATE = 16000
PITCHES = {"low": 220.0, "middle": 440.0, "high": 880.0, "very high": 1760.0}
WAVES = ("sine", "square", "sawtooth")


def _wave(kind: str, freq: float, t: np.ndarray) -> np.ndarray:
    phase = 2 * np.pi * freq * t
    if kind == "sine":
        return np.sin(phase)
    if kind == "square":
        return np.sign(np.sin(phase))
    return 2 * ((freq * t) % 1.0) - 1.0


def _noise(colour: str, n: int, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(n)
    if colour == "white":
        return white
    spectrum = np.fft.rfft(white)
    f = np.maximum(np.fft.rfftfreq(n), 1.0 / n)
    shaped = np.fft.irfft(spectrum / (np.sqrt(f) if colour == "pink" else f), n)
    return shaped / (np.abs(shaped).max() + 1e-9)


def sound(kind: str, rng: np.random.Generator) -> tuple[np.ndarray, str, str]:
    """(samples, caption, label) for one of the corpus classes."""
    seconds = rng.uniform(0.6, 1.8)
    t = np.arange(int(seconds * RATE)) / RATE
    level = rng.uniform(0.2, 0.8)
    if kind.startswith("tone:"):
        _, wave, pitch = kind.split(":")
        x = _wave(wave, PITCHES[pitch] * rng.uniform(0.98, 1.02), t)
        label = f"{pitch} {wave} tone"
        caption = rng.choice([f"a {pitch} pitched {wave} tone", f"a {wave} wave at a {pitch} pitch", f"{label}"])
    elif kind.startswith("noise:"):
        colour = kind.split(":")[1]
        x = _noise(colour, len(t), rng)
        label = f"{colour} noise"
        caption = rng.choice([f"{colour} noise", f"a burst of {colour} noise", f"hissing {colour} noise"])
    elif kind == "beeps":
        x = _wave("sine", 1000.0, t) * ((t * rng.uniform(3, 5)) % 1.0 < 0.5)
        label, caption = "beeping", rng.choice(["repeated beeps", "a beeping alarm", "short beeps"])
    elif kind == "siren":
        freq = 700 + 300 * np.sin(2 * np.pi * rng.uniform(0.8, 1.5) * t)
        x = np.sin(2 * np.pi * np.cumsum(freq) / RATE)
        label, caption = "siren", rng.choice(["a wailing siren", "a siren", "an emergency siren"])
    else:
        raise ValueError(kind)
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.01)
    return (level * x * fade).astype(np.float32), str(caption), label


def kinds(pitches: list[str] | None = None, waves: list[str] | None = None) -> list[str]:
    return [f"tone:{w}:{p}" for w in waves or WAVES for p in pitches or PITCHES] + ["noise:white", "noise:pink", "noise:brown", "beeps", "siren"]


def generate(out: Path, *, per_class: int = 8, seed: int = 0, classes: list[str] | None = None) -> Path:
    """Write WAV files and manifest.csv (audio, caption, label); returns the manifest path."""
    import soundfile as sf

    out = Path(out)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for kind in classes or kinds():
        for k in range(per_class):
            samples, caption, label = sound(kind, rng)
            name = f"audio/{label.replace(' ', '_')}_{k:03d}.wav"
            sf.write(out / name, samples, RATE, subtype="PCM_16")
            rows.append({"audio": name, "caption": caption, "label": label})
    random.Random(seed).shuffle(rows)
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["audio", "caption", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest
