"""The torchaudio front end: waveform -> log-mel spectrogram, and SpecAugment.

Features are log-mel power in dB (``MelSpectrogram`` + ``AmplitudeToDB``). Normalization with the
training set's mean and standard deviation happens inside the models (two buffers), so a
checkpoint or an exported model carries it and takes plain dB features.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torchaudio.transforms as T
from torch import Tensor, nn

__all__ = ["FrontEnd", "FrontEndConfig", "SpecAugment"]


@dataclass(frozen=True)
class FrontEndConfig:
    """Sample rate, clip duration and the STFT / mel settings."""

    sample_rate: int = 8000
    duration: float = 1.0
    n_fft: int = 256
    win_length: int | None = None
    hop_length: int = 128
    n_mels: int = 40
    f_min: float = 20.0
    f_max: float | None = None
    top_db: float = 80.0

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.duration <= 0:
            raise ValueError(
                f"sample_rate and duration must be positive, got {self.sample_rate}, {self.duration}"
            )
        nyquist = self.sample_rate / 2
        if self.f_max is not None and not self.f_min < self.f_max <= nyquist:
            raise ValueError(
                f"need f_min < f_max <= {nyquist:g} Hz, got {self.f_min}..{self.f_max}"
            )

    @property
    def num_samples(self) -> int:
        return round(self.sample_rate * self.duration)

    @property
    def num_frames(self) -> int:
        """Frames of a centred STFT over ``num_samples``."""
        return self.num_samples // self.hop_length + 1

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class FrontEnd(nn.Module):
    """(..., T) waveform -> (..., 1, n_mels, frames) log-mel in dB, clamped ``top_db`` below
    each clip's peak."""

    def __init__(self, cfg: FrontEndConfig):
        super().__init__()
        self.cfg = cfg
        self.mel = T.MelSpectrogram(
            sample_rate=cfg.sample_rate,
            n_fft=cfg.n_fft,
            win_length=cfg.win_length,
            hop_length=cfg.hop_length,
            f_min=cfg.f_min,
            f_max=cfg.f_max,
            n_mels=cfg.n_mels,
            power=2.0,
            norm="slaney",
            mel_scale="htk",
        )
        self.to_db = T.AmplitudeToDB(stype="power", top_db=cfg.top_db)

    @torch.no_grad()
    def forward(self, wave: Tensor) -> Tensor:
        spec = self.mel(wave)  # (..., n_mels, frames)
        return self.to_db(spec).unsqueeze(-3)  # (..., 1, n_mels, frames)


class SpecAugment(nn.Module):
    """Frequency and time masks (torchaudio), drawn per sample; identity in eval mode.

    Applied to *normalized* features so that a masked band is set to the mean (0), not to an
    arbitrary loud 0 dB.
    """

    def __init__(
        self, freq_masks: int = 2, freq_param: int = 8, time_masks: int = 2, time_param: int = 10
    ):
        super().__init__()
        self.freq = nn.ModuleList(
            T.FrequencyMasking(freq_param, iid_masks=True)
            for _ in range(freq_masks if freq_param else 0)
        )
        self.time = nn.ModuleList(
            T.TimeMasking(time_param, iid_masks=True)
            for _ in range(time_masks if time_param else 0)
        )

    def forward(self, x: Tensor) -> Tensor:
        """x (B, 1, F, T) -> (B, 1, F, T)."""
        if not self.training:
            return x
        for mask in [*self.freq, *self.time]:
            x = mask(x)
        return x
