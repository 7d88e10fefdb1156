"""The front end against hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch
from attnlab_audio.features import FrontEnd, FrontEndConfig, SpecAugment


def hz_to_mel(f: float) -> float:
    return 2595.0 * math.log10(1.0 + f / 700.0)


@pytest.mark.parametrize("freq", [250.0, 1000.0, 2500.0])
def test_pure_tone_lands_in_the_nearest_mel_bin(freq: float) -> None:
    cfg = FrontEndConfig(
        sample_rate=8000, duration=0.5, n_fft=512, hop_length=128, n_mels=32, f_min=0.0
    )
    t = torch.arange(cfg.num_samples) / cfg.sample_rate
    feats = FrontEnd(cfg)(0.5 * torch.sin(2 * math.pi * freq * t))  # (1, 32, frames)
    assert feats.shape == (1, 32, cfg.num_frames)
    # by hand: n_mels + 2 points evenly spaced in HTK mel between f_min and Nyquist; bin k is the
    # triangle centred on point k + 1
    top = hz_to_mel(cfg.sample_rate / 2)
    centres = [top * (k + 1) / (cfg.n_mels + 1) for k in range(cfg.n_mels)]
    expected = min(range(cfg.n_mels), key=lambda k: abs(centres[k] - hz_to_mel(freq)))
    assert int(feats[0].mean(-1).argmax()) == expected


def test_frames_and_db_floor() -> None:
    cfg = FrontEndConfig(sample_rate=8000, duration=1.0, hop_length=80, top_db=60.0)
    assert cfg.num_samples == 8000 and cfg.num_frames == 101
    x = torch.zeros(8000)
    x[4000] = 1.0  # one click: the rest is silence, clamped 60 dB below the peak
    feats = FrontEnd(cfg)(x)
    assert feats.shape == (1, 40, 101)
    assert float(feats.max() - feats.min()) == pytest.approx(60.0, abs=1e-3)


def test_bad_front_end_settings() -> None:
    with pytest.raises(ValueError, match="f_max"):
        FrontEndConfig(sample_rate=8000, f_max=6000.0)
    with pytest.raises(ValueError, match="positive"):
        FrontEndConfig(duration=0.0)


def test_spec_augment_masks_in_training_only() -> None:
    aug = SpecAugment(freq_masks=1, freq_param=10, time_masks=1, time_param=10)
    x = torch.ones(8, 1, 32, 40)
    assert torch.equal(aug.eval()(x), x)
    torch.manual_seed(1)
    y = aug.train()(x)
    zero_rows = (y == 0).all(dim=-1).sum(dim=(1, 2))  # masked mel bands per sample
    zero_cols = (y == 0).all(dim=-2).sum(dim=(1, 2))  # masked frames per sample
    assert (zero_rows <= 10).all() and (zero_cols <= 10).all()
    assert (y == 0).any() and not torch.equal(y[0], y[1])  # masks differ per sample
