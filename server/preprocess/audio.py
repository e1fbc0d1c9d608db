"""Audio bytes -> fixed-length waveform windows for the audio tower (numpy, soundfile, soxr).

Decode (WAV, FLAC, OGG/Vorbis, Opus, MP3 via libsndfile), downmix to mono, resample to the
model's rate with soxr (a band-limited, deterministic resampler — never naive interpolation),
drop the silence before and after the sound (a word inside seconds of quiet is embedded as that
word), then split into `clip_seconds` windows every `hop_seconds`; the last window is aligned to
the end of the sound and a sound shorter than a clip is zero-padded at the end. The log-mel
features are computed inside the exported audio tower (see model_export/audio_tower.py), so
training and serving share one implementation. Same bytes -> same windows, every time.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

from ..bundle import AudioPreprocess
from ..errors import ErrorCode, OmnivecError

SILENCE_PEAK = 1e-4  # peak amplitude (full scale = 1.0) below which audio counts as silent
QUIET_DB = 40.0  # 10 ms frames this far below the loudest one count as silence at the edges
EDGE_MARGIN_SECONDS = 0.1  # kept either side of the sounding part: soft onsets and decays


@dataclass
class AudioWindows:
    windows: np.ndarray  # (n, clip_samples) float32
    spans: list[tuple[float, float]]  # (start_s, end_s) of each window within the audio
    duration: float  # seconds


def decode_audio(data: bytes, *, max_seconds: float, label: str = "audio") -> tuple[np.ndarray, int]:
    """Mono float32 samples and their rate; refuses empty, corrupt and over-long input."""
    if not data:
        raise OmnivecError(ErrorCode.INVALID_AUDIO, f"{label} is empty: send the bytes of a WAV, FLAC, OGG, Opus or MP3 file")
    try:
        info = sf.info(io.BytesIO(data))
        if info.samplerate <= 0 or info.frames == 0:
            raise OmnivecError(ErrorCode.INVALID_AUDIO, f"{label} contains no samples; send a non-empty recording")
        duration = info.frames / info.samplerate
        if duration > max_seconds:
            raise OmnivecError(
                ErrorCode.AUDIO_TOO_LONG,
                f"{label} is {duration:.1f} s long, over the limit of {max_seconds:.0f} s; trim or split it",
            )
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except OmnivecError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise OmnivecError(
            ErrorCode.INVALID_AUDIO,
            f"{label} could not be decoded ({exc}); send a valid WAV, FLAC, OGG/Vorbis, Opus or MP3 file",
        ) from exc
    if samples.shape[0] == 0:
        raise OmnivecError(ErrorCode.INVALID_AUDIO, f"{label} contains no samples; send a non-empty recording")
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    if not np.all(np.isfinite(mono)):
        raise OmnivecError(ErrorCode.INVALID_AUDIO, f"{label} contains NaN or infinite samples; re-encode it")
    return np.ascontiguousarray(mono, dtype=np.float32), int(rate)


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return samples
    return soxr.resample(samples, rate, target, quality="HQ").astype(np.float32, copy=False)


def sounding_span(samples: np.ndarray, rate: int) -> tuple[int, int]:
    """[start, end) of the part between the first and last 10 ms frame within QUIET_DB of the
    loudest frame, widened by EDGE_MARGIN_SECONDS: a word inside seconds of silence or faint hiss
    is windowed on its own instead of being averaged with windows of nothing."""
    frame = max(1, rate // 100)
    usable = len(samples) // frame * frame
    if usable == 0:
        return 0, len(samples)
    rms = np.sqrt(np.mean(np.square(samples[:usable].reshape(-1, frame), dtype=np.float64), axis=1))
    loud = np.flatnonzero(rms >= rms.max() * 10 ** (-QUIET_DB / 20))
    margin = int(EDGE_MARGIN_SECONDS * rate)
    end = len(samples) if loud[-1] == len(rms) - 1 else (loud[-1] + 1) * frame
    return max(0, int(loud[0]) * frame - margin), min(len(samples), end + margin)


def split_windows(samples: np.ndarray, spec: AudioPreprocess) -> AudioWindows:
    """Fixed windows covering the sounding part of the signal (see `sounding_span`); deterministic
    placement and padding. Spans are seconds in the whole signal."""
    clip = int(round(spec.sample_rate * spec.clip_seconds))
    hop = max(1, int(round(spec.sample_rate * spec.hop_seconds)))
    total = len(samples)
    first, last = sounding_span(samples, spec.sample_rate)
    sounding = samples[first:last]
    n = len(sounding)
    if n <= clip:
        starts = [0]
    else:
        starts = list(range(0, n - clip + 1, hop))
        if starts[-1] + clip < n:
            starts.append(n - clip)  # cover the tail with a window aligned to the end
    windows = np.zeros((len(starts), clip), dtype=np.float32)
    spans = []
    for i, start in enumerate(starts):
        part = sounding[start : start + clip]
        windows[i, : len(part)] = part
        spans.append(((first + start) / spec.sample_rate, (first + min(n, start + clip)) / spec.sample_rate))
    return AudioWindows(windows, spans, total / spec.sample_rate)


def preprocess_audio(data: bytes, spec: AudioPreprocess, *, label: str = "audio") -> AudioWindows:
    """Encoded bytes -> windows at the model's rate; raises OmnivecError (4xx) for bad input."""
    samples, rate = decode_audio(data, max_seconds=spec.max_seconds, label=label)
    if float(np.max(np.abs(samples))) < SILENCE_PEAK:
        raise OmnivecError(
            ErrorCode.SILENT_AUDIO,
            f"{label} is silent (peak below {SILENCE_PEAK} of full scale); nothing to embed — check the recording level",
        )
    return split_windows(resample(samples, rate, spec.sample_rate), spec)
