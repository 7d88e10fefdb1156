"""Fixtures for the audio app: generated WAV files in tmp_path and the real-data skip."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from attnlab_audio.audio_io import write_wav


def tone(freq: float, sr: int = 8000, seconds: float = 0.5, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return amp * np.sin(2 * math.pi * freq * t)


def data_dir(subdir: str) -> Path:
    """``$ATTNLAB_DATA_DIR/<subdir>``, or skip the test when it is absent."""
    env = os.environ.get("ATTNLAB_DATA_DIR")
    if not env or not (Path(env) / subdir).is_dir():
        pytest.skip(f"needs ATTNLAB_DATA_DIR with a {subdir}/ folder")
    return Path(env) / subdir


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    """Tiny tensors: one thread avoids oversubscribing the shared CI cores."""
    torch.set_num_threads(1)


@pytest.fixture
def fsdd_fixture(tmp_path: Path) -> Path:
    """A miniature FSDD: digits 0-2, two speakers, indices 0-6 (0-4 are the test split)."""
    folder = tmp_path / "fsdd" / "recordings"
    folder.mkdir(parents=True)
    for digit in range(3):
        for speaker in ("alice", "bob"):
            for index in range(7):
                wave = tone(300 + 200 * digit, seconds=0.3 + 0.02 * index)
                write_wav(folder / f"{digit}_{speaker}_{index}.wav", wave, 8000)
    return tmp_path / "fsdd"


@pytest.fixture
def class_folder(tmp_path: Path) -> Path:
    """Two classes of 16 kHz WAVs in class sub-folders (low and high tones)."""
    root = tmp_path / "classes"
    for name, freq in (("high", 3000.0), ("low", 400.0)):
        (root / name).mkdir(parents=True)
        for i in range(10):
            write_wav(
                root / name / f"{i}.wav", tone(freq * (1 + 0.01 * i), sr=16000, seconds=0.4), 16000
            )
    return root
