"""The WAV reader on generated fixtures, and each bad input as a clear error."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from attnlab_audio.audio_io import fit_length, load_audio, read_wav, write_wav

from .conftest import tone


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_read_round_trips_each_sample_width(tmp_path: Path, width: int) -> None:
    x = tone(440.0, sr=8000, seconds=0.1, amp=0.7)
    path = tmp_path / f"w{width}.wav"
    write_wav(path, x, 8000, width=width)
    got, rate = read_wav(path)
    assert rate == 8000 and got.dtype == torch.float32 and got.shape == (len(x),)
    tol = {1: 1.0 / 128, 2: 1.0 / 32768, 3: 1.0 / 8388608, 4: 1e-6}[width]
    np.testing.assert_allclose(got.numpy(), x, atol=tol * 1.01)


def test_24_bit_sign_and_extremes(tmp_path: Path) -> None:
    path = tmp_path / "s24.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(3)
        w.setframerate(8000)
        w.writeframes(bytes([0xFF, 0xFF, 0x7F, 0x00, 0x00, 0x80, 0xFF, 0xFF, 0xFF]))
    got, _ = read_wav(path)
    torch.testing.assert_close(got, torch.tensor([8388607 / 8388608, -1.0, -1 / 8388608]))


def test_stereo_is_downmixed_to_mono(tmp_path: Path) -> None:
    left, right = tone(440.0, seconds=0.05), np.zeros(400)
    write_wav(tmp_path / "st.wav", np.stack([left, right], axis=1), 8000)
    got, _ = read_wav(tmp_path / "st.wav")
    np.testing.assert_allclose(got.numpy(), left / 2, atol=2e-4)


def test_load_audio_resamples(tmp_path: Path) -> None:
    write_wav(tmp_path / "a.wav", tone(440.0, sr=16000, seconds=0.5), 16000)
    got = load_audio(tmp_path / "a.wav", 8000)
    assert got.shape == (4000,)
    spectrum = torch.fft.rfft(got).abs()
    assert abs(int(spectrum.argmax()) * 8000 / 4000 - 440) <= 2


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.wav").write_bytes(b"")
    with pytest.raises(ValueError, match=r"e\.wav: the file is empty"):
        read_wav(tmp_path / "e.wav")


def test_not_a_wav(tmp_path: Path) -> None:
    (tmp_path / "n.wav").write_bytes(b"ID3\x03 this is an mp3 really" * 4)
    with pytest.raises(ValueError, match=r"n\.wav: not a RIFF WAV file"):
        read_wav(tmp_path / "n.wav")


def test_wav_without_samples(tmp_path: Path) -> None:
    write_wav(tmp_path / "z.wav", np.zeros(0), 8000)
    with pytest.raises(ValueError, match="holds no audio samples"):
        read_wav(tmp_path / "z.wav")


def test_float_wav_is_refused(tmp_path: Path) -> None:
    data = struct.pack("<4f", 0.1, 0.2, 0.3, 0.4)
    fmt = struct.pack("<HHIIHH", 3, 1, 8000, 32000, 4, 32)  # format 3 = IEEE float
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data"
    body += struct.pack("<I", len(data)) + data
    (tmp_path / "f.wav").write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    with pytest.raises(ValueError, match=r"f\.wav: unreadable WAV .*integer PCM"):
        read_wav(tmp_path / "f.wav")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such audio file"):
        read_wav(tmp_path / "absent.wav")


def test_fit_length_pads_crops_and_refuses_far_longer_clips() -> None:
    x = torch.arange(1.0, 5.0)
    torch.testing.assert_close(fit_length(x, 8), torch.tensor([0, 0, 1, 2, 3, 4, 0, 0.0]))
    torch.testing.assert_close(fit_length(x, 6, offset=0), torch.tensor([1, 2, 3, 4, 0, 0.0]))
    torch.testing.assert_close(fit_length(x, 2), torch.tensor([2.0, 3.0]))
    torch.testing.assert_close(fit_length(x, 2, offset=2), torch.tensor([3.0, 4.0]))
    with pytest.raises(ValueError, match=r"long\.wav: 40 samples is 10\.0x the configured"):
        fit_length(torch.zeros(40), 4, source="long.wav", max_factor=4.0)
    assert fit_length(torch.zeros(40), 4, max_factor=0.0).shape == (4,)
