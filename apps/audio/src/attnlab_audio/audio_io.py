"""Reading and writing WAV files with the standard library's ``wave`` module (no torchcodec).

Supported: RIFF WAV with integer PCM samples of 8 bits (unsigned), 16, 24 or 32 bits (signed),
any sample rate, one or more channels. Several channels are **downmixed** to mono by averaging
(stated here and in the README of the app), because every model in the app takes one channel.
Refused with a one-line error naming the file: an empty file, a file that is not RIFF WAV,
floating-point or compressed WAV (``wave`` reads only integer PCM), a WAV with no samples, a
sample rate outside 1 kHz - 1 MHz (a corrupt header), and a rate whose ratio to the target rate
is so odd that resampling would need a kernel of gigabytes (8001 Hz to 8000 Hz, say).

Memory is bounded before anything is read: the frames read are those the header claims, but
never more than the file holds (a header claiming 4 GiB of samples in a 2 KB file reads the
2 KB), and a file with more than ``MAX_WAV_BYTES`` of samples is refused naming the file.
"""

from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np
import torch
import torchaudio.functional as AF
from torch import Tensor

__all__ = [
    "MAX_WAV_BYTES",
    "SUPPORTED_SAMPLE_WIDTHS",
    "check_length",
    "fit_length",
    "load_audio",
    "read_wav",
    "resample",
    "write_wav",
]

SUPPORTED_SAMPLE_WIDTHS = (1, 2, 3, 4)  # bytes per sample
SAMPLE_RATES = (1_000, 1_000_000)  # Hz; outside this a header is corrupt rather than exotic
# torchaudio's sinc kernel has (rate/g) x (target/g) entries (g their gcd): 44.1 -> 16 kHz is
# 441 x 160; 8001 -> 8000 Hz would be 64 million.
MAX_RESAMPLE_RATIO_PRODUCT = 2**22
# Samples one file may hold: 35 minutes of 16-bit 16 kHz mono. Reading takes about 4x this at
# peak (the bytes, float32 samples, the mono mix); clips of this app are seconds long.
MAX_WAV_BYTES = 64 << 20


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
            frame_bytes = max(1, channels * width)
            # wave.readframes allocates what the header claims before reading: ask for no more
            # frames than the file can hold.
            frames = min(w.getnframes(), path.stat().st_size // frame_bytes)
            if frames * frame_bytes > MAX_WAV_BYTES:
                raise ValueError(
                    f"{path}: {frames * frame_bytes / 2**20:.0f} MiB of samples "
                    f"({frames / max(rate, 1):.0f} s), over the {MAX_WAV_BYTES >> 20} MiB this "
                    "reader takes; cut the recording into short clips"
                )
            raw = w.readframes(frames)
    except (wave.Error, EOFError, RuntimeError) as exc:  # RuntimeError: a chunk size past EOF
        raise ValueError(
            f"{path}: unreadable WAV ({exc or type(exc).__name__}); only integer PCM WAV is "
            "supported (8/16/24/32-bit), convert it with `ffmpeg -i IN -acodec pcm_s16le OUT.wav`"
        ) from None
    if width not in SUPPORTED_SAMPLE_WIDTHS:
        raise ValueError(
            f"{path}: {8 * width}-bit samples are not supported (8, 16, 24 or 32-bit PCM are); "
            "convert it to 16-bit PCM"
        )
    if not SAMPLE_RATES[0] <= rate <= SAMPLE_RATES[1]:
        raise ValueError(
            f"{path}: sample rate {rate} Hz is outside {SAMPLE_RATES[0]}-{SAMPLE_RATES[1]} Hz; "
            "the header is corrupt or the file is not audio: re-export it"
        )
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


def resample(wave_: Tensor, rate: int, target: int, source: str = "clip") -> Tensor:
    """(T,) at ``rate`` -> at ``target``; refuses rates whose ratio needs a huge kernel."""
    if rate == target:
        return wave_
    g = math.gcd(rate, target)
    if (rate // g) * (target // g) > MAX_RESAMPLE_RATIO_PRODUCT:
        raise ValueError(
            f"{source}: sample rate {rate} Hz does not resample cheaply to {target} Hz (ratio "
            f"{rate // g}/{target // g}); convert it first, e.g. `ffmpeg -i IN -ar {target} OUT.wav`"
        )
    return AF.resample(wave_, rate, target)


def check_length(n: int, length: int, source: str, max_factor: float) -> None:
    """Refuse ``n`` samples when that is more than ``max_factor`` times ``length`` (0: never)."""
    if max_factor > 0 and n > max_factor * length:
        raise ValueError(
            f"{source}: {n} samples is {n / length:.1f}x the configured clip length ({length} "
            f"samples); raise --data.duration, or --data.max_length_factor (now {max_factor:g}) "
            "to crop it anyway, or cut the file into short clips"
        )


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
    check_length(n, length, source, max_factor)
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
    return resample(wave_, rate, sample_rate, str(path))
