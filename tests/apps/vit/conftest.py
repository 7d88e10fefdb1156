"""Fixtures for the ViT app: generated image fixtures, the real-data skip and a CLI runner."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def shared_data(folder: str) -> Path:
    """The real dataset folder under ATTNLAB_DATA_DIR, or skip the test."""
    env = os.environ.get("ATTNLAB_DATA_DIR")
    if not env or not (Path(env) / folder).is_dir():
        pytest.skip(f"needs ATTNLAB_DATA_DIR with {folder}/")
    return Path(env) / folder


def write_idx(path: Path, array: np.ndarray) -> Path:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def make_idx_folder(root: Path, n_train: int = 40, n_test: int = 20, gz: bool = True) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(root / f"{prefix}-images-idx3-ubyte{ext}", rng.integers(0, 256, (n, 28, 28)))
        write_idx(root / f"{prefix}-labels-idx1-ubyte{ext}", np.arange(n) % 10)
    return root


def make_image_folder(
    root: Path, classes: tuple[str, ...] = ("cat", "dog", "owl"), per_class: int = 6, size: int = 16
) -> Path:
    """Class folders of small RGB PNGs whose colour depends on the class."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, (size, size, 3)) + 60 * c
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i:03d}.png")
    return root


def zip_folder(folder: Path, target: Path, wrap: str = "set") -> Path:
    with zipfile.ZipFile(target, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, f"{wrap}/{path.relative_to(folder)}")
    return target


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "images")


@pytest.fixture
def idx_folder(tmp_path: Path) -> Path:
    return make_idx_folder(tmp_path / "idx")


def run_attnlab(
    *args: str, cwd: Path, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0", **(env or {}))
    env.pop("ATTNLAB_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "attnlab.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
