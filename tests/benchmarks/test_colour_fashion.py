"""The RGB class-folder zip made from Fashion-MNIST for the small_rgb config's numbers."""

from __future__ import annotations

import gzip
import io
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `benchmarks` is a folder of the checkout, not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks.colour_fashion import CLASSES, colour_images, make  # noqa: E402


def _idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def test_ink_and_paper_take_each_images_own_colours() -> None:
    grey = np.zeros((2, 28, 28), dtype=np.uint8)
    grey[:, 10:18, 10:18] = 255
    rgb = colour_images(grey, np.random.default_rng(0))
    assert rgb.shape == (2, 32, 32, 3) and rgb.dtype == np.uint8
    for image in rgb:
        paper, ink = image[0, 0], image[16, 16]  # the padding, the middle of the square
        assert (image[:2] == paper).all() and (image[14:18, 14:18] == ink).all()
    assert not np.array_equal(rgb[0, 0, 0], rgb[1, 0, 0])  # colours differ between images


def test_the_zip_has_the_class_folder_layout_the_app_reads(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for prefix, n in (("train", 30), ("t10k", 12)):
        _idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    out = make(tmp_path / "out" / "colour.zip", tmp_path, train=20, test=5)
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
        first = Image.open(io.BytesIO(archive.read(names[0])))
    assert sum(n.startswith("train/") for n in names) == 20
    assert sum(n.startswith("test/") for n in names) == 5
    assert {n.split("/")[1] for n in names} <= set(CLASSES)
    assert first.mode == "RGB" and first.size == (32, 32)
    assert make(out, tmp_path) == out  # an existing file is kept
    assert not list(out.parent.glob("*.tmp"))
