"""Fixtures for the captioning tests: generated caption sets in both layouts, a tiny vocabulary
and model, the real Flickr8k subset (skipped when absent) and the `attnlab` command runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from attnlab_captioning.vocab import Vocab
from PIL import Image

WORDS = ["a", "dog", "cat", "runs", "sits", "on", "grass", "red", "ball", "the"]


def write_images(folder: Path, names: list[str], size: int = 24, seed: int = 0) -> None:
    """Small random RGB JPEGs / PNGs named ``names`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in names:
        pixels = rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / name)


def caption_for(i: int, k: int) -> str:
    return f"A {WORDS[1 + i % 2]} {WORDS[3 + (i + k) % 2]} on the {WORDS[6 + k % 3]}, quickly!"


@pytest.fixture
def flickr_csv_root(tmp_path: Path) -> Path:
    """Flickr8k's captions.txt layout: 6 train, 2 dev, 2 test images, 3 captions each; one
    caption has an unquoted comma, one a quoted one."""
    root = tmp_path / "flickr8k"
    names = [f"{i:04d}_img.jpg" for i in range(10)]
    write_images(root / "images", names)
    lines = ["image,caption"]
    for i, name in enumerate(names):
        for k in range(3):
            text = caption_for(i, k)
            lines.append(f'{name},"{text}"' if k == 1 else f"{name},{text}")
    (root / "captions.txt").write_text("\n".join(lines) + "\n")
    (root / "Flickr_8k.trainImages.txt").write_text("\n".join(names[:6]) + "\n")
    (root / "Flickr_8k.devImages.txt").write_text("\n".join(names[6:8]) + "\n")
    (root / "Flickr_8k.testImages.txt").write_text("\n".join(names[8:]) + "\n")
    return root


@pytest.fixture
def karpathy_root(tmp_path: Path) -> Path:
    """Karpathy's dataset_flickr8k.json layout with a ``restval`` image and a ``filepath``."""
    root = tmp_path / "karpathy"
    splits = ["train", "train", "restval", "val", "test"]
    images = []
    for i, split in enumerate(splits):
        name = f"k{i}.png"
        write_images(root / "images" / "sub", [name], seed=i)
        images.append(
            {
                "filename": name,
                "filepath": "sub",
                "split": split,
                "sentences": [{"raw": caption_for(i, k), "tokens": []} for k in range(2)],
            }
        )
    (root / "dataset_flickr8k.json").write_text(
        json.dumps({"images": images, "dataset": "flickr8k"})
    )
    return root


@pytest.fixture
def vocab() -> Vocab:
    return Vocab(["a", "1", "2", "3", "left", "of", "above", "and"])


@pytest.fixture
def flickr8k_real() -> Path:
    """The shared Flickr8k subset under $ATTNLAB_DATA_DIR, or skip."""
    root = os.environ.get("ATTNLAB_DATA_DIR")
    if not root or not (Path(root) / "flickr8k" / "captions.txt").is_file():
        pytest.skip("needs $ATTNLAB_DATA_DIR/flickr8k (the Flickr8k subset)")
    return Path(root) / "flickr8k"


def run_cli(
    *args: str, cwd: Path, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The real `attnlab` command in a subprocess."""
    full = dict(os.environ)
    full.update(env or {})
    full.setdefault("OMP_NUM_THREADS", "1")
    full.pop("ATTNLAB_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "attnlab.cli", *args],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
