"""Training-time audio augmentation for the default model: the rooms, microphones and noise of
real recordings, applied to decoded clips in torch so every step sees new conditions.

Speech gets speed (and with it pitch) changes, background noise (white, pink, brown, mains hum, or
babble made from other training utterances) at 0-30 dB SNR, and the rest; any clip may get
reverberation and a microphone's or phone line's band limits (some of those low-bit coding too),
and every clip gets a gain (with clipping when loud) and a time shift. SNR counts the signal's power
over its active samples only, so a short word in a long clip is not credited with the silence.
All randomness comes from the `torch.Generator` passed in: the same seed gives the same batches.
"""

from __future__ import annotations

import math

import torch

RATE = 16000


def _u(gen: torch.Generator, lo: float, hi: float) -> float:
    return float(torch.empty(()).uniform_(lo, hi, generator=gen))


def _chance(gen: torch.Generator, p: float) -> bool:
    return float(torch.rand((), generator=gen)) < p


def coloured_noise(n: int, colour: str, gen: torch.Generator) -> torch.Tensor:
    """Unit-power white, pink (1/f) or brown (1/f^2) noise of `n` samples."""
    white = torch.randn(n, generator=gen)
    if colour != "white":
        spectrum = torch.fft.rfft(white)
        f = torch.clamp(torch.fft.rfftfreq(n), min=1.0 / n)
        white = torch.fft.irfft(spectrum / (f.sqrt() if colour == "pink" else f), n)
    return white / white.pow(2).mean().sqrt().clamp_min(1e-9)


def hum(n: int, gen: torch.Generator) -> torch.Tensor:
    """Mains hum: 50 or 60 Hz and a few harmonics, unit power."""
    base = 50.0 if _chance(gen, 0.5) else 60.0
    t = torch.arange(n) / RATE
    x = sum(torch.sin(2 * math.pi * base * k * t + _u(gen, 0, 6.28)) / k for k in range(1, 6))
    return x / x.pow(2).mean().sqrt().clamp_min(1e-9)


def babble(pool: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """Several other utterances from `pool` (M, samples) at random offsets and levels, `n` samples of unit power."""
    voices = int(torch.randint(3, 7, (1,), generator=gen))
    idx = torch.randint(0, len(pool), (voices,), generator=gen)
    x = torch.zeros(n)
    for i in idx.tolist():
        clip = torch.nn.functional.pad(pool[i, :n], (0, max(0, n - pool.shape[1])))
        clip = clip / clip.abs().max().clamp_min(1e-6)
        x += torch.roll(clip, int(torch.randint(0, n, (1,), generator=gen))) * _u(gen, 0.5, 1.0)
    return x / x.pow(2).mean().sqrt().clamp_min(1e-9)


def active_power(x: torch.Tensor) -> torch.Tensor:
    """Mean power over the samples louder than 5% of the peak (the speech, not the silence)."""
    loud = x.abs() > 0.05 * x.abs().max().clamp_min(1e-9)
    return x[loud].pow(2).mean() if bool(loud.any()) else x.pow(2).mean()


def add_noise(x: torch.Tensor, noise: torch.Tensor, snr_db: float) -> torch.Tensor:
    return x + noise * (active_power(x) / 10 ** (snr_db / 10)).sqrt()


def room_response(gen: torch.Generator) -> torch.Tensor:
    """A synthetic room's impulse response: direct sound plus exponentially decaying noise (RT60 0.15-0.9 s)."""
    rt60 = _u(gen, 0.15, 0.9)
    t = torch.arange(int(rt60 * RATE)) / RATE
    ir = torch.randn(len(t), generator=gen) * torch.exp(-6.9 * t / rt60) * _u(gen, 0.1, 0.5)
    ir[0] = 1.0
    return ir


def reverb(x: torch.Tensor, irs: list[torch.Tensor]) -> torch.Tensor:
    """Each clip of `x` (B, samples) in its room (one response per clip), at the clip's own peak.
    One batched FFT of a power-of-two size: odd sizes are many times slower."""
    n = 1 << (x.shape[-1] + max(len(ir) for ir in irs) - 1).bit_length()
    h = torch.stack([torch.nn.functional.pad(ir, (0, n - len(ir))) for ir in irs])
    wet = torch.fft.irfft(torch.fft.rfft(x, n) * torch.fft.rfft(h, n), n)[:, : x.shape[-1]]
    return wet * (x.abs().amax(1, keepdim=True) / wet.abs().amax(1, keepdim=True).clamp_min(1e-9))


def band_limit(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each clip of `x` (B, samples) through its own microphone or phone line: a smooth high-pass
    at 50-600 Hz and low-pass at 2.5-7.5 kHz (Butterworth magnitudes of order 1-4), at the clip's peak."""
    n = x.shape[-1]
    f = torch.fft.rfftfreq(n, 1.0 / RATE).clamp_min(1.0)
    gains = []
    for _ in range(len(x)):
        low, high, order = _u(gen, 50.0, 600.0), _u(gen, 2500.0, 7500.0), int(torch.randint(1, 5, (1,), generator=gen))
        gains.append(((1 + (low / f) ** (2 * order)) * (1 + (f / high) ** (2 * order))).rsqrt())
    y = torch.fft.irfft(torch.fft.rfft(x) * torch.stack(gains), n)
    return y * (x.abs().amax(1, keepdim=True) / y.abs().amax(1, keepdim=True).clamp_min(1e-9))


def quantize(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A low-bit codec: mu-law (as phone lines use) or linear, 5-8 bits, of a clip scaled to its peak."""
    peak = x.abs().max().clamp_min(1e-9)
    levels = 2 ** int(torch.randint(5, 9, (1,), generator=gen)) // 2 - 1
    y = x / peak
    if _chance(gen, 0.5):
        mu = torch.sign(y) * torch.log1p(255 * y.abs()) / math.log1p(255)
        y = torch.sign(y) * torch.expm1(torch.round(mu * levels).abs() / levels * math.log1p(255)) / 255
    else:
        y = torch.round(y * levels) / levels
    return y * peak


def change_speed(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Played `factor` times faster (pitch moves with it), cut or zero-padded back to the same length."""
    n = x.shape[-1]
    y = torch.nn.functional.interpolate(x[None, None], size=max(8, int(round(n / factor))), mode="linear", align_corners=False)[0, 0]
    return y[:n] if len(y) >= n else torch.nn.functional.pad(y, (0, n - len(y)))


def augment_batch(x: torch.Tensor, is_speech: list[bool], pool: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A new recording condition for each clip of `x` (B, samples); see the module docstring."""
    n = x.shape[1]
    clips = [change_speed(c, math.exp(_u(gen, -0.25, 0.25))) if speech and _chance(gen, 0.4) else c for c, speech in zip(x, is_speech)]
    rooms = [i for i in range(len(clips)) if _chance(gen, 0.3)]
    if rooms:
        wet = reverb(torch.stack([clips[i] for i in rooms]), [room_response(gen) for _ in rooms])
        for k, i in enumerate(rooms):
            clips[i] = wet[k]
    lines = [i for i in range(len(clips)) if _chance(gen, 0.25)]
    if lines:
        narrow = band_limit(torch.stack([clips[i] for i in lines]), gen)
        for k, i in enumerate(lines):
            clips[i] = quantize(narrow[k], gen) if _chance(gen, 0.4) else narrow[k]
    out = []
    for clip, speech in zip(clips, is_speech):
        if speech and _chance(gen, 0.7):
            kind = ("white", "pink", "brown", "babble", "babble", "hum")[int(torch.randint(0, 6, (1,), generator=gen))]
            noise = babble(pool, n, gen) if kind == "babble" else hum(n, gen) if kind == "hum" else coloured_noise(n, kind, gen)
            clip = add_noise(clip, noise, _u(gen, 0.0, 30.0))
        gain = math.exp(_u(gen, math.log(0.05), math.log(8.0)))
        clip = torch.clamp(clip * gain / clip.abs().max().clamp_min(1e-6) * _u(gen, 0.3, 0.9), -1.0, 1.0)  # loud ones clip
        out.append(torch.roll(clip, int(torch.randint(0, n // 8, (1,), generator=gen))))
    return torch.stack(out)
