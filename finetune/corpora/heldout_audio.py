"""Held-out audio conditions for evaluation only: the 43 words in voices and rooms training never heard.

Why it exists: a speech tower can score perfectly on clean clips from the voices it trained on and
still fail on the first noisy microphone. This generator is written independently of the training
audio code: its own voice choice (anything the caller says training used is excluded), its own babble
(other espeak-ng utterances mixed together), noise colours, synthetic room impulse responses,
tape-speed changes, gain, clipping, telephone band-limiting and long silences.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
import io
import os
from pathlib import Path
import subprocess
from typing import Iterator, Sequence

import numpy as np
from scipy import signal
import soundfile as sf

SAMPLE_RATE = 16_000
WORDS: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "cat", "dog", "bird", "horse", "fish", "car", "train", "boat", "tree", "flower", "house", "water",
    "fire", "apple", "bread", "phone", "music", "coffee", "book", "chair", "rain", "sun", "moon", "key",
    "door", "red", "green", "blue", "yellow", "black", "white", "orange", "purple",
)  # fmt: skip

# English accents espeak-ng ships, and its human-sounding voice variants (no whisper/robot/demonic).
ACCENTS: tuple[str, ...] = ("en", "en-us", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
VARIANTS: tuple[str, ...] = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "klatt4", "Alicia", "Andy", "Annie", "adam", "anika", "aunty", "belinda",
    "benjamin", "caleb", "david", "ed", "edward", "grandma", "grandpa", "iven", "john", "linda", "max",
    "michel", "norbert", "paul", "quincy", "rob", "robert", "steph", "travis", "victor", "zac",
)  # fmt: skip

# (name, whether it mixes noise at an SNR). White and babble appear twice: the headline cases.
CONDITIONS: tuple[tuple[str, bool], ...] = (
    ("white_noise", True), ("babble", True), ("pink_noise", True), ("reverb", False), ("tape_speed", False),
    ("white_noise", True), ("babble", True), ("brown_noise", True), ("speech_rate", False), ("pitch", False),
    ("gain", False), ("clipped", False), ("silence_padded", False), ("telephone", False),
)  # fmt: skip

_BABBLE_LINES: tuple[str, ...] = (
    "we should probably leave a little earlier tomorrow morning",
    "could you pass me the salt and pepper please",
    "the meeting has been moved to the third floor",
    "I think the bus is running about ten minutes late",
    "she said they would call us back after lunch",
    "have you seen the new paintings in the gallery",
    "the children were laughing in the garden all afternoon",
    "please remember to lock the back gate tonight",
    "there is a small shop around the corner that sells maps",
    "he forgot his umbrella on the platform again",
)


@dataclass
class _Clip:
    word: str
    voice: str
    condition: str
    snr_db: float | None
    rate: int
    pitch: int


_SAME_ACCENT = {"en-gb": "en", "en-uk": "en", "en-gb-x-rp": "en-gb-x-rp"}  # espeak-ng aliases of one voice file


def _split(voice: str) -> tuple[str, str]:
    accent, _, variant = voice.lower().partition("+")
    return _SAME_ACCENT.get(accent, accent), variant


def heldout_voices(exclude_voices: Sequence[str], at_least: int = 8) -> list[str]:
    """Voices ("accent+variant") not used in training, preferring ones sharing neither part with any training voice.

    Tier 0: neither the accent nor the variant occurs in `exclude_voices`; tier 1: the variant does not;
    tier 2: the exact voice does not. The lowest tiers that together give `at_least` voices are used.
    """
    excluded = {v.lower() for v in exclude_voices}
    excluded_pairs = {_split(v) for v in excluded}
    used_accents = {_split(v)[0] for v in excluded}
    used_variants = {_split(v)[1] for v in excluded if _split(v)[1]}
    tiers: list[list[str]] = [[], [], []]
    for accent in ACCENTS:
        for variant in VARIANTS:
            voice = f"{accent}+{variant}"
            if voice.lower() in excluded or _split(voice) in excluded_pairs:
                continue
            if variant.lower() not in used_variants:
                tiers[0 if accent not in used_accents else 1].append(voice)
            else:
                tiers[2].append(voice)
    chosen: list[str] = []
    for tier in tiers:
        chosen += tier
        if len(chosen) >= at_least:
            break
    if not chosen:
        raise ValueError("every espeak-ng voice this generator knows is in exclude_voices; nothing is held out")
    return chosen


def speak(text: str, voice: str, rate: int = 170, pitch: int = 50) -> np.ndarray:
    """espeak-ng's rendering of `text`, resampled to 16 kHz mono float32."""
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(rate), "-p", str(pitch), "--stdout", text],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    audio, sr = sf.read(io.BytesIO(wav), dtype="float32")
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    if sr != SAMPLE_RATE:
        g = np.gcd(sr, SAMPLE_RATE)
        audio = signal.resample_poly(audio, SAMPLE_RATE // g, sr // g).astype(np.float32)
    return audio


def power(x: np.ndarray) -> float:
    return float(np.mean(np.asarray(x, dtype=np.float64) ** 2))


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> tuple[np.ndarray, np.ndarray]:
    """Speech plus `noise` scaled so the whole-clip power ratio is `snr_db`; returns (mixture, scaled noise)."""
    noise = noise[: len(speech)]
    scaled = noise * np.sqrt(power(speech) / (power(noise) * 10 ** (snr_db / 10)))
    return (speech + scaled).astype(np.float32), scaled.astype(np.float32)


def coloured_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Gaussian noise whose power falls as 1/f**exponent (0 white, 1 pink, 2 brown), unit power."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    f[0] = f[1]
    x = np.fft.irfft(spectrum / f ** (exponent / 2), n)
    return (x / np.sqrt(power(x))).astype(np.float32)


def babble(rng: np.random.Generator, bank: Sequence[np.ndarray], n: int) -> np.ndarray:
    """Several talkers at once: 4-6 bank utterances, each looped, shifted and weighted, summed."""
    out = np.zeros(n, dtype=np.float32)
    for i in rng.choice(len(bank), size=int(rng.integers(4, 7)), replace=False):
        talker = np.tile(bank[i], n // len(bank[i]) + 2)
        start = int(rng.integers(0, len(bank[i])))
        out += talker[start : start + n] / np.sqrt(power(bank[i])) * rng.uniform(0.6, 1.0)
    return out


def room_impulse(rng: np.random.Generator) -> np.ndarray:
    """A synthetic room: direct sound, a few early reflections, then an exponentially decaying diffuse tail."""
    rt60 = rng.uniform(0.3, 0.9)
    n = int(rt60 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    ir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60) * 0.25
    ir[:int(0.004 * SAMPLE_RATE)] = 0.0
    ir[0] = 1.0
    for _ in range(6):
        ir[int(rng.uniform(0.004, 0.04) * SAMPLE_RATE)] += rng.uniform(-0.6, 0.6)
    b, a = signal.butter(2, rng.uniform(3000, 7000) / (SAMPLE_RATE / 2))  # walls absorb the highs
    return signal.lfilter(b, a, ir).astype(np.float32)


def _plan(seed: int, voices: list[str], per_word: int) -> list[_Clip]:
    rng = np.random.default_rng([seed, 7])
    clips = []
    for w, word in enumerate(WORDS):
        for k in range(per_word):
            name, noisy = CONDITIONS[(w * per_word + k) % len(CONDITIONS)]
            voice = voices[int(rng.integers(len(voices)))]
            rate, pitch = int(rng.integers(140, 200)), int(rng.integers(35, 66))
            if name == "speech_rate":
                rate = int(rng.choice([int(rng.integers(85, 115)), int(rng.integers(240, 300))]))
            if name == "pitch":
                pitch = int(rng.choice([int(rng.integers(0, 15)), int(rng.integers(85, 100))]))
            snr = round(float(rng.uniform(10, 20)), 1) if noisy else None
            clips.append(_Clip(word, voice, name, snr, rate, pitch))
    return clips


def _pad(rng: np.random.Generator, x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    lead, trail = (int(rng.uniform(lo, hi) * SAMPLE_RATE) for _ in range(2))
    return np.concatenate([np.zeros(lead, np.float32), x, np.zeros(trail, np.float32)])


def _apply(clip: _Clip, speech: np.ndarray, bank: Sequence[np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(mixture, clean part, noise part, note) for one clip, before the final level is set."""
    x = _pad(rng, speech, 0.1, 0.35)
    name, note = clip.condition, ""
    if clip.snr_db is not None:
        if name == "babble":
            noise = babble(rng, bank, len(x))
        else:
            noise = coloured_noise(rng, len(x), {"white_noise": 0.0, "pink_noise": 1.0, "brown_noise": 2.0}[name])
        mix, scaled = mix_at_snr(x, noise, clip.snr_db)
        return mix, x, scaled, ""
    if name == "reverb":
        x = signal.fftconvolve(x, room_impulse(rng))[: len(x) + SAMPLE_RATE // 3].astype(np.float32)
    elif name == "tape_speed":  # played faster/slower: pitch and tempo move together
        factor = float(rng.choice([rng.uniform(0.78, 0.9), rng.uniform(1.12, 1.3)]))
        x = signal.resample(x, int(len(x) / factor)).astype(np.float32)
        note = f"x{factor:.2f}"
    elif name == "silence_padded":  # a long recording with the word somewhere inside, faint room hiss
        x = _pad(rng, x, 0.5, 2.5)
        x = x + coloured_noise(rng, len(x), 1.0) * np.sqrt(power(speech)) * 10 ** (-55 / 20)
    elif name == "telephone":  # 300-3400 Hz band and 8 kHz mu-law, the sound of a phone line
        sos = signal.butter(4, [300, 3400], btype="bandpass", fs=SAMPLE_RATE, output="sos")
        x = signal.sosfilt(sos, x)
        x = x / (np.abs(x).max() + 1e-9)
        mu = np.sign(x) * np.log1p(255 * np.abs(x)) / np.log1p(255)
        x = (np.sign(mu) * np.expm1(np.round(mu * 127) / 127 * np.log1p(255)) / 255).astype(np.float32)
    elif name in ("speech_rate", "pitch"):
        note = f"rate={clip.rate}" if name == "speech_rate" else f"pitch={clip.pitch}"
    x = x.astype(np.float32)
    return x, x, np.zeros(len(x), np.float32), note


def _level(clip: _Clip, audio: np.ndarray, rng: np.random.Generator) -> tuple[float, str]:
    """The factor that sets the clip's final level, and a note; clipping is applied by the caller."""
    peak = float(np.abs(audio).max()) + 1e-9
    if clip.condition == "gain":
        db = float(rng.choice([rng.uniform(-38, -26), rng.uniform(-3, -0.5)]))
        return 10 ** (db / 20) / peak, f"peak={db:.0f}dBFS"
    if clip.condition == "clipped":
        over = float(rng.uniform(2.0, 6.0))
        return over / peak, f"overdriven x{over:.1f}"
    return 10 ** (float(rng.uniform(-6, -1)) / 20) / peak, ""


def iter_clips(seed: int, exclude_voices: Sequence[str], per_word: int = 2) -> Iterator[tuple[dict, np.ndarray, np.ndarray, np.ndarray]]:
    """(record without path, final audio, clean part, noise part) per clip: the audio is gain * (clean + noise), clipped to [-1, 1].

    The parts are returned so a test can measure what was really mixed. espeak-ng runs in a small
    thread pool (it is a subprocess); everything random happens in one fixed order, so the output
    depends only on the seed and espeak-ng's version.
    """
    voices = heldout_voices(exclude_voices)
    clips = _plan(seed, voices, per_word)
    brng = np.random.default_rng([seed, 11])
    babble_jobs = [(line, voices[int(brng.integers(len(voices)))], int(brng.integers(140, 200)), int(brng.integers(30, 70))) for line in _BABBLE_LINES]
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
        bank = list(pool.map(lambda j: speak(*j), babble_jobs))
        speeches = list(pool.map(lambda c: speak(c.word, c.voice, c.rate, c.pitch), clips))
    for i, (clip, speech) in enumerate(zip(clips, speeches)):
        rng = np.random.default_rng([seed, 13, i])
        mix, clean, noise, note = _apply(clip, speech, bank, rng)
        gain, level_note = _level(clip, mix, rng)
        audio = np.clip(mix * gain, -1.0, 1.0).astype(np.float32)
        condition = " ".join(s for s in (clip.condition, note, level_note) if s)
        record = {"word": clip.word, "voice": clip.voice, "condition": condition, "snr_db": clip.snr_db}
        yield record, audio, clean * gain, noise * gain


def render_audio_conditions(out_dir: Path, seed: int, exclude_voices: Sequence[str], per_word: int = 2) -> list[dict]:
    """`per_word` 16 kHz mono WAV clips of each of the 43 words, each in one held-out condition.

    Records: {"path" (relative to out_dir), "word", "voice", "condition", "snr_db" (None without noise)}.
    The condition string starts with the condition's name (e.g. "babble", "reverb", "clipped ...").
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for i, (record, audio, _, _) in enumerate(iter_clips(seed, exclude_voices, per_word)):
        name = f"clip_{i:04d}_{record['word']}.wav"
        sf.write(out_dir / name, audio, SAMPLE_RATE, subtype="PCM_16")
        records.append({"path": name, **record})
    return records
