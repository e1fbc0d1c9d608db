"""Synthetic sounds with captions, made with numpy: tones at named pitches and timbres, noise
colours, beeps and sirens, and (with `kinds(extended=True)`) chords, drum beats at two tempos,
a ringing phone, a struck bell, rising and falling tones and a ticking clock.

Deterministic for a seed; variable lengths and levels. The original kinds draw exactly what they
always drew, so corpora made before the extension are reproduced byte for byte.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from . import write_manifest

RATE = 16000
PITCHES = {"low": 220.0, "middle": 440.0, "high": 880.0, "very high": 1760.0}
WAVES = ("sine", "square", "sawtooth")
EXTRA_KINDS = ("chord:major", "chord:minor", "drums:slow", "drums:fast", "ring", "bell", "sweep:up", "sweep:down", "ticking")
# Rhythmic kinds need room for a few repetitions; every other kind lasts 0.6-1.8 s.
_MIN_SECONDS = {"drums": 1.2, "ring": 1.2, "ticking": 1.0}


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


def _pick(rng: np.random.Generator, captions: list[str]) -> str:
    return str(rng.choice(captions))


def _struck(freq: float, t: np.ndarray, partials: list[tuple[float, float, float]]) -> np.ndarray:
    """A struck, decaying note: (frequency ratio, amplitude, decay per second) per partial, with a 5 ms attack."""
    attack = np.minimum(1.0, t / 0.005)
    return attack * sum(a * np.exp(-d * t) * np.sin(2 * np.pi * freq * r * t) for r, a, d in partials)


def _chord(quality: str, t: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str, str]:
    """A triad on a random root, as soft sines or piano-like struck notes, the notes a little apart like a strum."""
    third = {"major": 4, "minor": 3}[quality]
    root = rng.uniform(196.0, 392.0)
    piano = bool(rng.random() < 0.5)
    x = np.zeros_like(t)
    for semitones in (0, third, 7, 12):
        onset = rng.uniform(0.0, 0.03)
        tt = np.maximum(t - onset, 0.0)
        freq = root * 2 ** (semitones / 12)
        if piano:
            note = _struck(freq, tt, [(h, h**-1.5, 1.5 + 0.8 * h) for h in range(1, 7)])
        else:
            note = np.sin(2 * np.pi * freq * tt) * np.exp(-0.8 * tt) * np.minimum(1.0, tt / 0.02)
        x += note * (t >= onset)
    mood = "happy" if quality == "major" else "sad"
    generic = [f"a {quality} chord", f"three notes forming a {quality} chord", f"a {mood} sounding {quality} chord"]
    instrument = [f"a {quality} chord played on a piano", f"a piano playing a {quality} chord"] if piano else [f"a soft {quality} chord", f"a {quality} chord of pure tones"]
    return x, f"{quality} chord", _pick(rng, generic + instrument)


def _drum_hit(t: np.ndarray, rng: np.random.Generator, tone: bool) -> np.ndarray:
    """A kick-like thump (pitch falling from ~150 Hz) or a snare-like noise burst over a short tone."""
    if tone:
        freq = rng.uniform(120, 170) * np.exp(-t * 12) + 45
        return np.sin(2 * np.pi * np.cumsum(freq) / RATE) * np.exp(-t * 14)
    return (0.6 * rng.standard_normal(len(t)) + np.sin(2 * np.pi * 190 * t)) * np.exp(-t * 25)


def _drums(tempo: str, t: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str, str]:
    """Evenly spaced drum hits: one every 0.65-1 s (slow) or every 0.13-0.2 s (fast)."""
    step = rng.uniform(*{"slow": (0.65, 1.0), "fast": (0.13, 0.2)}[tempo])
    kick = bool(rng.random() < 0.5)
    hit = _drum_hit(np.arange(int(0.3 * RATE)) / RATE, rng, kick)
    x = np.zeros_like(t)
    for start in np.arange(rng.uniform(0.0, 0.1), t[-1], step):
        i = int(start * RATE)
        n = min(len(hit), len(x) - i)
        x[i : i + n] += hit[:n]
    captions = [f"a {tempo} drum beat", f"{tempo} drumming", f"a {tempo} steady beat on a drum"]
    captions += ["a drum hit about once a second", "a slow, steady drum"] if tempo == "slow" else ["rapid drumming", "quick drum hits in a row"]
    return x, f"{tempo} drum beat", _pick(rng, captions)


def _ring(_: str, t: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str, str]:
    """A telephone's ring: two close tones warbling at ~20 Hz, in a ring-ring pattern (0.4 s on, 0.2 s off, 0.4 s on)."""
    low, high = (440.0, 480.0) if rng.random() < 0.5 else (400.0, 450.0)
    drift = rng.uniform(0.98, 1.02)
    tones = np.sin(2 * np.pi * low * drift * t) + np.sin(2 * np.pi * high * drift * t)
    warble = 0.6 + 0.4 * np.sign(np.sin(2 * np.pi * rng.uniform(16, 25) * t))
    start = rng.uniform(0.0, 0.15)
    phase = (t - start) % 2.0  # the pattern repeats every 2 s; a clip holds one ring-ring
    gate = (t >= start) & ((phase < 0.4) | ((phase >= 0.6) & (phase < 1.0)))
    captions = ["a ringing phone", "a telephone ringing", "a phone rings", "the ring of a telephone", "an incoming call ringing"]
    return tones * warble * gate, "ringing phone", _pick(rng, captions)


def _bell(_: str, t: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str, str]:
    """One strike of a bell: inharmonic partials (hum, prime, minor third, fifth, nominal...) that die away slowly."""
    partials = [(0.5, 0.5, 1.0), (1.0, 1.0, 1.6), (1.19, 0.6, 2.2), (1.5, 0.4, 2.8), (2.0, 0.7, 3.5), (2.51, 0.3, 5.0), (3.01, 0.2, 6.5)]
    x = _struck(rng.uniform(300.0, 900.0), t, partials)
    captions = ["a bell being struck", "the chime of a bell", "a bell ringing out", "a single bell chime", "a church bell"]
    return x, "bell", _pick(rng, captions)


def _sweep(direction: str, t: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str, str]:
    """A sine gliding up or down two to three octaves, evenly in pitch (exponentially in Hz)."""
    low, octaves = rng.uniform(200.0, 400.0), rng.uniform(2.0, 3.0)
    position = t / t[-1] if direction == "up" else 1.0 - t / t[-1]
    x = np.sin(2 * np.pi * np.cumsum(low * 2 ** (octaves * position)) / RATE)
    if direction == "up":
        return x, "rising tone", _pick(rng, ["a rising tone", "a tone sweeping upward", "a pitch going up", "an upward sweep"])
    return x, "falling tone", _pick(rng, ["a falling tone", "a tone sweeping downward", "a pitch going down", "a downward sweep"])


def _ticking(_: str, t: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str, str]:
    """A clock: short high clicks every 0.45-0.55 s, alternating a higher tick and a lower tock."""
    step = rng.uniform(0.45, 0.55)
    click_t = np.arange(int(0.02 * RATE)) / RATE
    x = np.zeros_like(t)
    for k, start in enumerate(np.arange(rng.uniform(0.0, 0.2), t[-1], step)):
        freq = rng.uniform(2500, 3500) if k % 2 == 0 else rng.uniform(1700, 2300)
        click = (np.sin(2 * np.pi * freq * click_t) + 0.3 * rng.standard_normal(len(click_t))) * np.exp(-click_t * 300)
        i = int(start * RATE)
        n = min(len(click), len(x) - i)
        x[i : i + n] += click[:n]
    captions = ["a ticking clock", "a clock ticking", "the tick tock of a clock", "a clock's steady ticking"]
    return x, "ticking clock", _pick(rng, captions)


_EXTRA = {"chord": _chord, "drums": _drums, "ring": _ring, "bell": _bell, "sweep": _sweep, "ticking": _ticking}


def sound(kind: str, rng: np.random.Generator) -> tuple[np.ndarray, str, str]:
    """(samples, caption, label) for one of the corpus classes."""
    family = kind.split(":")[0]
    seconds = rng.uniform(_MIN_SECONDS.get(family, 0.6), 1.8)
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
    elif kind in EXTRA_KINDS:
        x, label, caption = _EXTRA[family](kind.split(":")[1] if ":" in kind else "", t, rng)
        x = x / (np.abs(x).max() + 1e-9)
    else:
        raise ValueError(kind)
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.01)
    return (level * x * fade).astype(np.float32), str(caption), label


def kinds(pitches: list[str] | None = None, waves: list[str] | None = None, *, extended: bool = False) -> list[str]:
    """Class names for `sound`: tones x pitches, noises, beeps and siren, then EXTRA_KINDS if extended."""
    basic = [f"tone:{w}:{p}" for w in waves or WAVES for p in pitches or PITCHES] + ["noise:white", "noise:pink", "noise:brown", "beeps", "siren"]
    return basic + list(EXTRA_KINDS) if extended else basic


def generate(out: Path, *, per_class: int = 8, seed: int = 0, classes: list[str] | None = None) -> Path:
    """Write WAV files and manifest.csv (audio, caption, label); returns the manifest path.

    `classes` defaults to the original `kinds()`, so existing corpora stay as they were; pass
    `kinds(extended=True)` for chords, drums, phone, bell, sweeps and ticking too.
    """
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
    return write_manifest(out, rows, ["audio", "caption", "label"])
