"""Audio preprocessing: every format decodes, resampling keeps frequencies, windows are deterministic."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from omnivec.server.bundle import AudioPreprocess
from omnivec.server.errors import ErrorCode, OmnivecError
from omnivec.server.preprocess.audio import decode_audio, preprocess_audio, resample, split_windows
from tests.media import audio_files, encode_audio, tone

SPEC = AudioPreprocess(sample_rate=16000, clip_seconds=1.0, hop_seconds=0.5, max_seconds=30)


def _peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


@pytest.mark.parametrize("name", sorted(audio_files()))
def test_every_format_decodes_to_the_tone(name):
    data = audio_files()[name]
    samples, rate = decode_audio(data, max_seconds=30)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(len(samples) / rate - 1.3) < 0.1, "duration survives (codec padding aside)"
    assert abs(_peak_hz(samples, rate) - 440) < 5
    windows = preprocess_audio(data, SPEC).windows
    assert windows.shape[1] == 16000 and abs(_peak_hz(windows[0], 16000) - 440) < 5


def test_resampling_keeps_a_sine_frequency_44k1_to_16k():
    x = tone(3000.0, 1.0, 44100)
    y = resample(x, 44100, 16000)
    assert len(y) == 16000
    assert abs(_peak_hz(y, 16000) - 3000.0) < 2
    # band-limited: a tone above the new Nyquist must be removed, not aliased to 16000 - 9000 = 7000 Hz
    alias = resample(tone(9000.0, 1.0, 44100), 44100, 16000)
    assert np.sqrt(np.mean(alias**2)) < 0.01 * np.sqrt(np.mean(tone(9000.0, 1.0, 44100) ** 2))


def test_stereo_is_downmixed():
    left = tone(300, 1.0, 16000)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    samples, _ = decode_audio(encode_audio(stereo, 16000), max_seconds=30)
    np.testing.assert_allclose(samples, left / 2, atol=1e-3)


def test_windows_cover_long_audio_and_pad_short_audio():
    long = split_windows(np.ones(int(2.3 * 16000), np.float32), SPEC)
    assert [tuple(round(v, 2) for v in s) for s in long.spans] == [(0.0, 1.0), (0.5, 1.5), (1.0, 2.0), (1.3, 2.3)]
    short = split_windows(np.ones(4000, np.float32), SPEC)
    assert short.windows.shape == (1, 16000) and short.windows[0, :4000].all() and not short.windows[0, 4000:].any()
    assert short.spans == [(0.0, 0.25)]


def test_silence_around_a_sound_is_not_windowed():
    """A 0.6 s tone inside 2 s of silence and faint hiss (-60 dB) gets one window holding all of it,
    at its real place in the file; without the trim it would be averaged with windows of hiss."""
    rng = np.random.default_rng(0)
    word = tone(440.0, 0.6, 16000) * 0.5
    hiss = rng.standard_normal(int(4.6 * 16000)).astype(np.float32) * 0.5 * 10 ** (-60 / 20)
    signal = hiss.copy()
    signal[32000 : 32000 + len(word)] += word
    out = split_windows(signal, SPEC)
    assert len(out.windows) == 1 and out.duration == pytest.approx(4.6)
    start, end = out.spans[0]
    assert 1.85 <= start <= 2.0 and 2.6 <= end <= 2.75, out.spans
    assert np.abs(out.windows[0]).max() == pytest.approx(np.abs(signal).max())
    # a sound across the whole recording is windowed whole; noise at 10 dB SNR is not "silence"
    noisy = word + rng.standard_normal(len(word)).astype(np.float32) * 0.5 * 10 ** (-10 / 20)
    assert split_windows(np.concatenate([noisy] * 4), SPEC).spans[-1][1] == pytest.approx(2.4)


def test_same_file_same_windows_across_processes():
    data = audio_files()["tone.mp3"]
    here = preprocess_audio(data, SPEC).windows
    code = (
        "import sys, numpy as np; from omnivec.server.bundle import AudioPreprocess; "
        "from omnivec.server.preprocess.audio import preprocess_audio; "
        "spec = AudioPreprocess(sample_rate=16000, clip_seconds=1.0, hop_seconds=0.5, max_seconds=30); "
        "sys.stdout.buffer.write(preprocess_audio(sys.stdin.buffer.read(), spec).windows.tobytes())"
    )
    out = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True, check=True).stdout
    np.testing.assert_array_equal(np.frombuffer(out, np.float32).reshape(here.shape), here)
    np.testing.assert_array_equal(preprocess_audio(data, SPEC).windows, here)


@pytest.mark.parametrize(
    "data,code",
    [
        (b"", ErrorCode.INVALID_AUDIO),
        (b"RIFF....WAVEfmt garbage", ErrorCode.INVALID_AUDIO),
        (encode_audio(np.zeros(16000, np.float32), 16000), ErrorCode.SILENT_AUDIO),
        (encode_audio(np.zeros(0, np.float32), 16000), ErrorCode.INVALID_AUDIO),
        (encode_audio(tone(440, 31, 8000), 8000), ErrorCode.AUDIO_TOO_LONG),
    ],
    ids=["empty", "corrupt", "silent", "no-samples", "too-long"],
)
def test_bad_audio_is_refused(data, code):
    with pytest.raises(OmnivecError) as info:
        preprocess_audio(data, SPEC, label="audios[0]")
    assert info.value.code == code and "audios[0]" in info.value.message
