"""Training-time audio augmentation: SNRs as asked, lengths kept, levels in range, seeded."""

from __future__ import annotations

import math

import pytest
import torch

from omnivec.finetune import audio_augment as aug


def _word(n: int = 24000) -> torch.Tensor:
    """A 0.4 s tone burst in the middle of silence: a stand-in for one spoken word."""
    x = torch.zeros(n)
    t = torch.arange(6400) / aug.RATE
    x[8000:14400] = 0.5 * torch.sin(2 * math.pi * 300 * t)
    return x


@pytest.mark.parametrize("colour", ["white", "pink", "brown"])
def test_noise_is_added_at_the_asked_snr_of_the_active_part(colour):
    x = _word()
    gen = torch.Generator().manual_seed(0)
    noise = aug.coloured_noise(len(x), colour, gen)
    assert noise.pow(2).mean().item() == pytest.approx(1.0, rel=1e-4)
    for snr in (0.0, 10.0, 20.0):
        noisy = aug.add_noise(x, noise, snr)
        measured = 10 * math.log10(x[8000:14400].pow(2).mean().item() / (noisy - x).pow(2).mean().item())
        assert measured == pytest.approx(snr, abs=0.3)  # the 5%-of-peak gate keeps a sine's crossings out


def test_babble_and_hum_are_unit_power_and_babble_is_built_from_the_pool():
    gen = torch.Generator().manual_seed(1)
    pool = torch.stack([_word(), torch.roll(_word(), 3000)])
    b = aug.babble(pool, 24000, gen)
    assert b.pow(2).mean().item() == pytest.approx(1.0, rel=1e-4)
    spectrum = torch.fft.rfft(b).abs()
    assert spectrum.argmax().item() * aug.RATE / 24000 == pytest.approx(300, abs=5)
    assert aug.hum(24000, gen).pow(2).mean().item() == pytest.approx(1.0, rel=1e-4)


def test_speed_and_reverb_keep_length_and_peak():
    x = _word()
    gen = torch.Generator().manual_seed(2)
    fast = aug.change_speed(x, 1.25)
    assert fast.shape == x.shape and (fast.abs() > 0.01).sum() < (x.abs() > 0.01).sum()
    wet = aug.reverb(torch.stack([x, 0.5 * x]), [aug.room_response(gen), aug.room_response(gen)])
    assert wet.shape == (2, len(x))
    assert wet.abs().amax(1).tolist() == pytest.approx([0.5, 0.25], rel=1e-4)
    assert (wet[:, 14400:].abs() > 0.01).any(dim=1).all()  # each room rings on after the word


def test_augment_batch_is_seeded_bounded_and_varied():
    x = torch.stack([_word(), torch.roll(_word(), 2000), _word() * 0.2])
    pool = x.clone()
    first = aug.augment_batch(x, [True, True, False], pool, torch.Generator().manual_seed(3))
    again = aug.augment_batch(x, [True, True, False], pool, torch.Generator().manual_seed(3))
    other = aug.augment_batch(x, [True, True, False], pool, torch.Generator().manual_seed(4))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.shape == x.shape and first.abs().max() <= 1.0


def _tone_power(x: torch.Tensor, hz: float) -> float:
    spectrum = torch.fft.rfft(x).abs()
    return spectrum[round(hz * len(x) / aug.RATE)].item()


def test_band_limit_keeps_the_voice_band_and_cuts_both_ends():
    """A mix of 60 Hz, 1 kHz and 7.9 kHz tones through eight seeded random lines (cut-offs inside
    50-600 Hz and 2.5-7.5 kHz): relative to the input, each extreme comes out weaker than the middle.
    The draws come from torch's CPU generator, the same on every machine."""
    t = torch.arange(32000) / aug.RATE
    x = sum(0.3 * torch.sin(2 * math.pi * hz * t) for hz in (60.0, 1000.0, 7900.0))
    lines = aug.band_limit(torch.stack([x] * 8), torch.Generator().manual_seed(5))
    assert lines.shape == (8, len(x)) and lines.abs().amax(1).tolist() == pytest.approx([x.abs().max().item()] * 8, rel=1e-4)
    for y in lines:
        middle = _tone_power(y, 1000.0) / _tone_power(x, 1000.0)
        assert _tone_power(y, 60.0) / _tone_power(x, 60.0) < 0.75 * middle
        assert _tone_power(y, 7900.0) / _tone_power(x, 7900.0) < 0.75 * middle


def test_quantize_keeps_the_peak_and_uses_few_levels():
    x = 0.6 * torch.sin(2 * math.pi * 440 * torch.arange(16000) / aug.RATE)
    for seed in range(6):
        y = aug.quantize(x, torch.Generator().manual_seed(seed))
        assert y.abs().max().item() == pytest.approx(0.6, rel=1e-5)
        assert 9 <= len(torch.unique(y)) <= 2 * 127 + 1  # at most 8 bits (a sine need not hit every level)
        assert (y - x).abs().max().item() < 0.1  # coarse, but the same waveform
