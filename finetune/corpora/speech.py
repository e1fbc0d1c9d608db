"""Spoken words with captions, synthesised by espeak-ng: a speech corpus that needs no download.

Each utterance is one word in one of several English voices (accents x voice variants), at a
random speed, pitch, level and position inside a `CLIP_SECONDS` clip at 16 kHz. Some voices are
held out of training so a model can be checked on speakers it never heard; a second list of
caption templates, never used in the corpus, checks wording it never read.

Deterministic for a seed: espeak-ng renders the same arguments to the same bytes, and every
random choice is drawn up front, so concurrent synthesis cannot change the output.
"""

from __future__ import annotations

import io
import os
import random
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import write_manifest

RATE = 16000
CLIP_SECONDS = 1.5  # the omnivec-mini audio tower's window; shorter clips are zero-padded there

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
NOUNS = (
    "cat", "dog", "bird", "horse", "fish", "car", "train", "boat", "tree", "flower", "house", "water",
    "fire", "apple", "bread", "phone", "music", "coffee", "book", "chair", "rain", "sun", "moon", "key", "door",
)
COLOURS = ("red", "green", "blue", "yellow", "black", "white", "orange", "purple")
WORDS: tuple[str, ...] = DIGITS + NOUNS + COLOURS

# espeak-ng's British English voice is "en": "en-gb+f3" silently drops the variant, "en+f3" keeps it.
BASE_VOICES = ("en-us", "en", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-us-nyc")
VOICES: tuple[str, ...] = (
    "en-us", "en-us+m3", "en-us+f2", "en-us+f4",
    "en", "en+m2", "en+f3",
    "en-gb-scotland", "en-gb-scotland+f5",
    "en-029", "en-029+m4",
    "en-gb-x-rp+m1", "en-gb-x-rp+f1",
    "en-gb-x-gbclan+m7", "en-gb-x-gbclan+f2",
    "en-gb-x-gbcwmd", "en-gb-x-gbcwmd+f4",
    "en-us-nyc+m5",
    # More speakers of the same accents, in variants the held-out conditions' generator never picks
    # (they are not in heldout_audio.VARIANTS). Trained on the first 18 voices, new speakers of a new
    # accent were 0.87 top-1 even in clean recordings; on all 32, 0.93.
    "en-us+Mike", "en-us+Andrea", "en+Alex", "en+Gene",
    "en-gb-scotland+Hugo", "en-gb-scotland+Jacky", "en-029+Lee", "en-029+Marco",
    "en-gb-x-rp+Michael", "en-gb-x-rp+steph2", "en-gb-x-gbclan+iven3", "en-gb-x-gbclan+boris",
    "en-gb-x-gbcwmd+antonio", "en-gb-x-gbcwmd+shelby",
)

TEMPLATES = (
    "{w}",
    "the word {w}",
    "someone saying {w}",
    "a voice says the word {w}",
    "the spoken word {w}",
    "{w}, spoken aloud",
    "a person pronouncing {w}",
    "a speaker saying the word {w}",
)
# For evaluation only: wordings the corpus never uses, to see whether a model learned the word or the template.
HELDOUT_TEMPLATES = (
    "a recording of someone saying {w}",
    "you can hear the word {w}",
    "{w} being said out loud",
    "a clip of a voice saying {w}",
)

SPEED_WPM = (90, 260)  # slow and fast talkers: very long and very short utterances
PITCH = (10, 90)
PEAK = (0.3, 0.9)
LEAD_SECONDS = (0.02, 0.3)
TRAIL_SECONDS = (0.02, 0.3)
SILENCE_THRESHOLD = 0.01  # of the utterance's peak: quieter edges count as silence and are trimmed

INSTALL_HINT = "install it with `apt-get install espeak-ng` (Debian/Ubuntu) or `brew install espeak-ng` (macOS)"


class EspeakNotFound(RuntimeError):
    """espeak-ng is not on PATH; the message says how to install it."""


def espeak_path() -> str:
    """The espeak-ng executable, or EspeakNotFound naming the package to install."""
    path = shutil.which("espeak-ng")
    if path is None:
        raise EspeakNotFound(f"espeak-ng was not found on PATH; the speech corpus needs it: {INSTALL_HINT}")
    return path


def base_voice(voice: str) -> str:
    """The accent part of a voice spec: "en-us+f2" -> "en-us"."""
    return voice.split("+", 1)[0]


def split_voices(seed: int = 0, voices: Sequence[str] | None = None, held_out: int = 4) -> tuple[list[str], list[str]]:
    """(train, held-out) voices, both in input order.

    The held-out set holds one accent entirely (one with fewer voices than `held_out`), so the
    model meets an accent it never heard, and fills up with variants of accents that keep a
    training voice, so it meets new speakers of familiar accents. Never empty, never everything.
    """
    voices = list(VOICES if voices is None else voices)
    if len(set(voices)) != len(voices) or len(voices) < 2:
        raise ValueError(f"need at least two distinct voices, got {voices}")
    held_out = max(1, min(held_out, len(voices) - 1))
    groups: dict[str, list[str]] = {}
    for v in voices:
        groups.setdefault(base_voice(v), []).append(v)
    rng = random.Random(seed)
    held: list[str] = []
    unseen = sorted(b for b, vs in groups.items() if len(vs) <= max(1, held_out - 1) and len(groups) > 1)
    if unseen:
        held += groups[rng.choice(unseen)]
    train_left = {b: len(vs) for b, vs in groups.items() if vs[0] not in held}
    candidates = [v for v in voices if v not in held]
    rng.shuffle(candidates)
    for v in candidates:
        if len(held) >= held_out:
            break
        if train_left[base_voice(v)] > 1:  # keep the accent in training
            held.append(v)
            train_left[base_voice(v)] -= 1
    return [v for v in voices if v not in held], [v for v in voices if v in held]


def _trim(x: np.ndarray) -> np.ndarray:
    """The span between the first and last sample above the silence threshold."""
    loud = np.flatnonzero(np.abs(x) > SILENCE_THRESHOLD * (np.abs(x).max() + 1e-9))
    return x[loud[0] : loud[-1] + 1] if len(loud) else x[:0]


def synthesize(word: str, voice: str, *, speed: int = 160, pitch: int = 50) -> np.ndarray:
    """One word as 16 kHz mono float32, silence trimmed from both ends."""
    import soundfile as sf
    import soxr

    with tempfile.TemporaryDirectory(prefix="omnivec-espeak-") as tmp:
        wav = Path(tmp) / "word.wav"
        cmd = [espeak_path(), "-v", voice, "-s", str(speed), "-p", str(pitch), "-z", "-w", str(wav)]
        # The text goes in on stdin so that a word can never be read as an option.
        done = subprocess.run(cmd, input=word.encode(), capture_output=True, check=False)
        if done.returncode != 0 or not wav.is_file():
            raise RuntimeError(f"espeak-ng failed for {word!r} in voice {voice!r}: {done.stderr.decode(errors='replace').strip()}")
        samples, rate = sf.read(wav, dtype="float32")
    speech = _trim(soxr.resample(samples, rate, RATE).astype(np.float32))
    if len(speech) == 0:
        raise RuntimeError(f"espeak-ng produced silence for {word!r} in voice {voice!r}")
    return speech


@dataclass(frozen=True)
class Utterance:
    """Everything random about one clip, drawn before synthesis so that threads cannot reorder it."""

    name: str
    word: str
    voice: str
    split: str
    caption: str
    speed: int
    pitch: int
    peak: float
    lead: float
    trail: float


def _clip(u: Utterance, clip_seconds: float) -> np.ndarray:
    """The word at its level, with silence before and after, no longer than a clip."""
    speech = synthesize(u.word, u.voice, speed=u.speed, pitch=u.pitch)
    speech = speech * (u.peak / np.abs(speech).max())
    room = int(clip_seconds * RATE) - len(speech)
    if room < 0:  # too slow to fit (not seen with these ranges): keep the start, fade out the cut
        speech = speech[: int(clip_seconds * RATE)] * np.minimum(1.0, np.arange(int(clip_seconds * RATE))[::-1] / (0.01 * RATE))
        room = 0
    lead = min(int(u.lead * RATE), room)
    trail = min(int(u.trail * RATE), room - lead)
    return np.concatenate([np.zeros(lead), speech, np.zeros(trail)]).astype(np.float32)


def plan(
    *, per_word: int, seed: int = 0, words: Sequence[str] | None = None, voices: Sequence[str] | None = None, split_seed: int = 0
) -> list[Utterance]:
    """The corpus's utterances in manifest order: per word, training-voice clips then held-out-voice clips.

    Held-out voices get their share of each word's clips (at least one); voices are cycled in a
    shuffled order per word, so every word is spoken by many voices.
    """
    if per_word < 2:
        raise ValueError("per_word must be at least 2: each word needs a training and a held-out-voice utterance")
    words = list(WORDS if words is None else words)
    if not words or len(set(words)) != len(words):
        raise ValueError(f"need distinct words, got {words}")
    train_voices, held_voices = split_voices(split_seed, voices)
    n_held = min(per_word - 1, max(1, round(per_word * len(held_voices) / (len(train_voices) + len(held_voices)))))
    rng = random.Random(seed)
    plans = []
    for word in words:
        slug = word.replace(" ", "_")
        order = {"train": rng.sample(train_voices, len(train_voices)), "heldout_voice": rng.sample(held_voices, len(held_voices))}
        for k in range(per_word):
            split = "train" if k < per_word - n_held else "heldout_voice"
            index = k if split == "train" else k - (per_word - n_held)
            plans.append(
                Utterance(
                    name=f"audio/{slug}_{k:03d}.wav",
                    word=word,
                    voice=order[split][index % len(order[split])],
                    split=split,
                    caption=rng.choice(TEMPLATES).format(w=word),
                    speed=rng.randint(*SPEED_WPM),
                    pitch=rng.randint(*PITCH),
                    peak=round(rng.uniform(*PEAK), 4),
                    lead=rng.uniform(*LEAD_SECONDS),
                    trail=rng.uniform(*TRAIL_SECONDS),
                )
            )
    return plans


def generate(
    out: Path,
    *,
    per_word: int,
    seed: int = 0,
    words: list[str] | None = None,
    voices: list[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    split_seed: int = 0,
    clip_seconds: float = CLIP_SECONDS,
    workers: int | None = None,
) -> Path:
    """Write WAV files under out/audio and out/manifest.csv (audio, caption, label, voice, split); returns the manifest.

    `seed` draws the utterances; `split_seed` alone picks the held-out voices, so corpora made with
    different seeds (say, train and eval) hold out the same speakers. `progress(done, total)` is
    called after each clip is written.
    """
    import soundfile as sf

    espeak_path()  # fail before creating anything
    out = Path(out)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    plans = plan(per_word=per_word, seed=seed, words=words, voices=voices, split_seed=split_seed)

    def render(u: Utterance) -> Utterance:
        buf = io.BytesIO()
        sf.write(buf, _clip(u, clip_seconds), RATE, format="WAV", subtype="PCM_16")
        (out / u.name).write_bytes(buf.getvalue())
        return u

    # espeak-ng is a process per clip, so threads overlap its start-up; map() keeps plan order.
    with ThreadPoolExecutor(max_workers=workers or min(4, (os.cpu_count() or 1) + 1)) as pool:
        for done, _ in enumerate(pool.map(render, plans), 1):
            if progress:
                progress(done, len(plans))
    return write_manifest(out, ({"audio": u.name, "caption": u.caption, "label": u.word, "voice": u.voice, "split": u.split} for u in plans), ["audio", "caption", "label", "voice", "split"])
