"""Reading and writing WAV files with the standard library's ``wave`` module (no torchcodec).

Supported: RIFF WAV with integer PCM samples of 8 bits (unsigned), 16, 24 or 32 bits (signed),
any sample rate, one or more channels. Several channels are **downmixed** to mono by averaging
(stated here and in the README of the app), because every model in the app takes one channel.
Refused with a one-line error naming the file: an empty file, a file that is not RIFF WAV,
floating-point or compressed WAV (``wave`` reads only integer PCM), a WAV with no samples.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import torch
import torchaudio.functional as AF
from torch import Tensor

__all__ = ["SUPPORTED_SAMPLE_WIDTHS", "fit_length", "load_audio", "read_wav", "write_wav"]

SUPPORTED_SAMPLE_WIDTHS = (1, 2, 3, 4)  # bytes per sample


def _decode(raw: bytes, width: int) -> np.ndarray:
    """Little-endian PCM bytes -> float32 in [-1, 1)."""
    if width == 1:  # 8-bit WAV is unsigned, centred on 128
        return (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    if width == 2:
        return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    if width == 3:  # no numpy dtype: assemble 3 bytes into the top of an int32
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = (b[:, 0] << 8) | (b[:, 1] << 16) | (b[:, 2] << 24)  # sign lands in bit 31
        return (v >> 8).astype(np.float32) / 8388608.0
    return np.frombuffer(raw, dtype="<i4").astype(np.float32) / 2147483648.0


def read_wav(path: str | Path) -> tuple[Tensor, int]:
    """A WAV file -> (mono waveform (T,) float32 in [-1, 1), sample rate).

    Stereo and multi-channel files are averaged to mono.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such audio file")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: the file is empty (0 bytes); re-export or remove it")
    with open(path, "rb") as fh:
        head = fh.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise ValueError(
            f"{path}: not a RIFF WAV file (starts with {head[:4]!r}); convert it to 16-bit PCM "
            "WAV, e.g. `ffmpeg -i IN -acodec pcm_s16le OUT.wav`"
        )
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            frames = w.getnframes()
            raw = w.readframes(frames)
    except (wave.Error, EOFError) as exc:
        raise ValueError(
            f"{path}: unreadable WAV ({exc}); only integer PCM WAV is supported (8/16/24/32-bit), "
            "convert it with `ffmpeg -i IN -acodec pcm_s16le OUT.wav`"
        ) from None
    if width not in SUPPORTED_SAMPLE_WIDTHS:
        raise ValueError(
            f"{path}: {8 * width}-bit samples are not supported (8, 16, 24 or 32-bit PCM are); "
            "convert it to 16-bit PCM"
        )
    if rate <= 0:
        raise ValueError(f"{path}: invalid sample rate {rate}")
    usable = len(raw) - len(raw) % (width * channels)
    if usable == 0:
        raise ValueError(f"{path}: the WAV holds no audio samples; remove it from the data")
    samples = _decode(raw[:usable], width).reshape(-1, channels)  # (T, C)
    mono = samples.mean(axis=1) if channels > 1 else samples[:, 0]  # (T,)
    return torch.from_numpy(np.ascontiguousarray(mono)), rate


def write_wav(
    path: str | Path, waveform: Tensor | np.ndarray, sample_rate: int, width: int = 2
) -> None:
    """Write float samples in [-1, 1] as integer PCM: (T,) mono or (T, C) multi-channel."""
    x = np.asarray(waveform, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x  # (T, C)
    x = np.clip(x, -1.0, 1.0 - 1e-9)
    if width == 1:
        raw = np.round(x * 128.0 + 128.0).clip(0, 255).astype(np.uint8).tobytes()
    elif width == 2:
        raw = np.round(x * 32768.0).clip(-32768, 32767).astype("<i2").tobytes()
    elif width == 3:
        v = np.round(x * 8388608.0).clip(-8388608, 8388607).astype("<i4").reshape(-1)
        raw = (
            np.stack([v & 0xFF, (v >> 8) & 0xFF, (v >> 16) & 0xFF], axis=1)
            .astype(np.uint8)
            .tobytes()
        )
    elif width == 4:
        raw = np.round(x * 2147483648.0).clip(-2147483648, 2147483647).astype("<i4").tobytes()
    else:
        raise ValueError(f"width must be 1, 2, 3 or 4 bytes, got {width}")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(x.shape[1])
        w.setsampwidth(width)
        w.setframerate(sample_rate)
        w.writeframes(raw)


def fit_length(
    wave_: Tensor,
    length: int,
    offset: int | None = None,
    *,
    source: str = "clip",
    max_factor: float = 0.0,
) -> Tensor:
    """Pad with zeros or crop (T,) to ``length`` samples.

    ``offset`` is where the clip starts in the output when it is shorter (padding on the left)
    or where the crop starts when it is longer; None centres it. With ``max_factor`` > 0 a clip
    longer than ``max_factor * length`` is refused: it is more likely a recording of something
    else than a short sound, and silently keeping a slice of it would hide that.
    """
    n = wave_.shape[0]
    if max_factor > 0 and n > max_factor * length:
        raise ValueError(
            f"{source}: {n} samples is {n / length:.1f}x the configured clip length ({length} "
            f"samples); raise --data.duration, or --data.max_length_factor (now {max_factor:g}) "
            "to crop it anyway, or cut the file into short clips"
        )
    if n == length:
        return wave_
    if n < length:
        left = (length - n) // 2 if offset is None else min(max(offset, 0), length - n)
        return torch.nn.functional.pad(wave_, (left, length - n - left))
    start = (n - length) // 2 if offset is None else min(max(offset, 0), n - length)
    return wave_[start : start + length]


def load_audio(path: str | Path, sample_rate: int) -> Tensor:
    """Read a WAV file as mono and resample it to ``sample_rate``: (T,) float32."""
    wave_, rate = read_wav(path)
    if rate != sample_rate:
        wave_ = AF.resample(wave_, rate, sample_rate)
    return wave_
