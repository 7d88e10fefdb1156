"""Your own WAV files: the reader's memory is bounded by the file, not by what its header claims,
and `--help` lists the datasets (issues #18 and #23)."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from attnlab_audio.audio_io import MAX_WAV_BYTES, read_wav, write_wav

from attnlab.cli import main

from .conftest import tone


def _wav_header(data_bytes: int, rate: int = 8000, channels: int = 1, width: int = 2) -> bytes:
    """A 44-byte PCM WAV header announcing ``data_bytes`` of samples (true or not)."""
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * width, channels * width,
                      8 * width)  # fmt: skip
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", data_bytes)
    return b"RIFF" + struct.pack("<I", min(len(body) + data_bytes, 0xFFFFFFFF)) + body


def test_a_header_claiming_gigabytes_reads_only_what_the_file_holds(tmp_path: Path) -> None:
    """A 1.6 KB file whose header says 4 GiB of samples: the 800 real samples come back and the
    reader never allocates the claimed size (it did: 4 GiB traced before this fix)."""
    samples = (np.sin(np.arange(800) / 5) * 8000).astype("<i2")
    path = tmp_path / "liar.wav"
    path.write_bytes(_wav_header(0xFFFFFFF0) + samples.tobytes())
    tracemalloc.start()
    try:
        wave, rate = read_wav(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rate == 8000 and wave.shape == (800,)
    np.testing.assert_allclose(wave.numpy(), samples / 32768.0, atol=1e-6)
    assert peak < 1 << 20, f"{peak} bytes traced"


def _too_long(folder: Path) -> Path:
    """A WAV holding more than MAX_WAV_BYTES of samples, as a sparse file (no disk used)."""
    path = folder / "hour_long.wav"
    data = MAX_WAV_BYTES + 1024
    with open(path, "wb") as fh:
        fh.write(_wav_header(data))
        fh.truncate(44 + data)
    return path


def test_a_wav_over_the_limit_is_refused_before_reading(tmp_path: Path) -> None:
    path = _too_long(tmp_path)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"hour_long\.wav: 64 MiB of samples \(4194 s\), over "
                           r"the 64 MiB this reader takes; cut the recording"):  # fmt: skip
            read_wav(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_help_lists_the_datasets(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["audio", "fit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for entry in ("synthetic = generated DTMF", "fsdd = Free Spoken Digit", "speech_commands =",
                  "folder = your own WAVs at --data.root"):  # fmt: skip
        assert entry in text, entry


def test_a_folder_with_a_huge_wav_is_one_error_line(tmp_path: Path) -> None:
    """The user's view: `fit` on a class-folder tree holding an over-long recording stops with
    one `error:` line naming the file."""
    root = _class_folders(tmp_path / "sounds")
    _too_long(root / "low")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "attnlab.cli", "audio", "fit", "--config", "quick",
         "--data.dataset", "folder", "--data.root", str(root), "--trainer.max_epochs", "1",
         "--run_dir", str(tmp_path / "run")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode != 0
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if "error:" in line]
    assert len(errors) == 1 and "hour_long.wav: 64 MiB of samples" in errors[0], errors
    assert "Traceback" not in proc.stderr


def _class_folders(root: Path) -> Path:
    for label, freq in (("low", 400.0), ("high", 1600.0)):
        (root / label).mkdir(parents=True)
        for i in range(3):
            write_wav(root / label / f"{i}.wav", tone(freq + 10 * i), 8000)
    return root


@pytest.mark.parametrize("longer", [False, True])
def test_the_readme_recipes_build(tmp_path: Path, longer: bool) -> None:
    """The README's own-data commands: the fsdd config on a class-folder tree (and on 2-second
    clips with the frame count the README computes) builds without a mismatch."""
    from attnlab_audio import app

    root = _class_folders(tmp_path / "sounds")
    extra = ["--data.duration", "2", "--model.n_frames", "101"] if longer else []
    module, dm = app.build(
        ["fsdd"],
        ["--data.dataset", "folder", "--data.root", str(root), "--model.num_classes", "2", *extra],
    )
    assert dm.class_names == ["high", "low"] and dm.n_frames == (101 if longer else 51)
    assert module.hparams.n_frames == dm.n_frames
