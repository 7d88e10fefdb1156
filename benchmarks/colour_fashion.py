"""A 32x32 RGB class-folder zip made from Fashion-MNIST, for the ``small_rgb`` config's numbers.

No RGB class-folder set is available offline here, so this makes one: each Fashion-MNIST image is
padded to 32x32 and painted with a random foreground and background colour (drawn per image from
a seeded generator, so colour carries no class information), then written as a PNG into
``train/<class>/`` or ``test/<class>/`` of a zip, the layout ``--data.dataset folder`` reads.
It is Fashion-MNIST's shapes in colour, not a natural-image set: its numbers say that the RGB
recipe and the zip reader work and how accuracy grows with the budget, not how the recipe does on
photographs.

``python -m benchmarks.colour_fashion OUT.zip [--train N] [--test N]`` (reads the IDX files from
``$ATTNLAB_DATA_DIR/fashion-mnist``).
"""

from __future__ import annotations

import argparse
import io
import os
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = (
    "t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
    "ankle-boot",
)  # fmt: skip


def _read_idx(path: Path) -> np.ndarray:
    from attnlab_vit.readers import read_idx

    return np.asarray(read_idx(path))


def colour_images(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 (N, 28, 28) -> uint8 (N, 32, 32, 3): padded by 2, each image's ink a random colour
    over a random background colour (alpha = the grey level)."""
    n = len(grey)
    alpha = np.pad(grey, ((0, 0), (2, 2), (2, 2))).astype(np.float32)[..., None] / 255.0
    ink = rng.integers(0, 256, (n, 1, 1, 3)).astype(np.float32)
    paper = rng.integers(0, 256, (n, 1, 1, 3)).astype(np.float32)
    return np.round(alpha * ink + (1 - alpha) * paper).astype(np.uint8)


def make(out: Path, data_dir: Path, train: int = 10_000, test: int = 2_000, seed: int = 0) -> Path:
    """Write the zip (``train`` and ``test`` images, the first of each Fashion-MNIST split in a
    seeded order) and return its path; an existing file is left as it is."""
    if out.exists():
        return out
    rng = np.random.default_rng(seed)
    splits = {
        "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", train),
        "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", test),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + f".{os.getpid()}.tmp")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED) as archive:
        for split, (images_file, labels_file, count) in splits.items():
            images = _read_idx(data_dir / images_file)
            labels = _read_idx(data_dir / labels_file)
            order = rng.permutation(len(labels))[:count]
            for i, (image, label) in enumerate(
                zip(colour_images(images[order], rng), labels[order], strict=True)
            ):
                png = io.BytesIO()
                Image.fromarray(image, "RGB").save(png, format="PNG")
                archive.writestr(f"{split}/{CLASSES[int(label)]}/{i:05d}.png", png.getvalue())
    partial.replace(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.colour_fashion")
    parser.add_argument("out", type=Path)
    parser.add_argument("--train", type=int, default=10_000)
    parser.add_argument("--test", type=int, default=2_000)
    args = parser.parse_args()
    data_dir = os.environ.get("ATTNLAB_DATA_DIR")
    if not data_dir:
        raise SystemExit("error: set ATTNLAB_DATA_DIR to the folder holding fashion-mnist/")
    path = make(args.out, Path(data_dir) / "fashion-mnist", args.train, args.test)
    print(path)


if __name__ == "__main__":
    main()
