"""Caption data: generated digit scenes (the offline default), the datasets and the data module.

The caption files of real sets (Karpathy's JSON, Flickr8k's ``captions.txt``) are read in
``readers.py``; captions whose image file is absent are counted and reported, and the run goes
on without them only with ``--data.allow_missing_images true`` (the shared Flickr8k copy has
1,000 of 8,091 images).
"""

from __future__ import annotations

import glob
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from attnlab.data import AttnlabDataModule
from attnlab.datasets import data_root

from .curriculum import CurriculumSampler
from .readers import (
    SPLITS,
    ImageRecord,
    ReadResult,
    drop_missing,
    load_image,
    read_flickr8k_csv,
    read_karpathy,
)
from .vocab import Vocab

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CaptionData",
    "CaptionDataset",
    "ImageRecord",
    "ReadResult",
    "collate",
    "digit_scene",
    "load_image",
    "make_digit_scenes",
    "read_flickr8k_csv",
    "read_karpathy",
    "scene_caption",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_DIGITS = 4
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


# ---------------------------------------------------------------------------------- digit scenes


def scene_caption(boxes: list[tuple[int, int, int, int, int]]) -> list[str]:
    """Glyphs left to right, paired; each pair says "a X left of a Y" (the left one first) or
    "a X above a Y" (the upper one first) by its larger offset; a leftover glyph is "a X"."""
    glyphs = sorted(boxes, key=lambda b: (b[1], b[2]))
    words: list[str] = []
    for i in range(0, len(glyphs), 2):
        if words:
            words.append("and")
        pair = glyphs[i : i + 2]
        if len(pair) == 1:
            words += ["a", str(pair[0][0])]
            continue
        (da, ax, ay, *_), (db, bx, by, *_) = pair
        if abs(bx - ax) >= abs(by - ay):
            words += ["a", str(da), "left", "of", "a", str(db)]
        else:
            (upper, lower) = (da, db) if ay < by else (db, da)
            words += ["a", str(upper), "above", "a", str(lower)]
    return words


def digit_scene(
    rng: np.random.Generator,
    glyphs: np.ndarray,
    labels: np.ndarray,
    canvas: int = 64,
    scale: int = 2,
    max_digits: int = MAX_DIGITS,
) -> ImageRecord:
    """A canvas with 1 to ``max_digits`` non-overlapping upscaled digit glyphs at random positions."""
    size = 8 * scale
    image = np.zeros((canvas, canvas), dtype=np.float32)
    boxes: list[tuple[int, int, int, int, int]] = []
    for _ in range(int(rng.integers(1, max_digits + 1))):
        for _attempt in range(100):
            x, y = (int(v) for v in rng.integers(0, canvas - size + 1, size=2))
            if all(
                x + size + 2 <= b[1] or b[3] + 2 <= x or y + size + 2 <= b[2] or b[4] + 2 <= y
                for b in boxes
            ):
                break
        else:
            continue
        j = int(rng.integers(len(glyphs)))
        glyph = np.kron(glyphs[j], np.ones((scale, scale), dtype=np.float32))  # (size, size)
        image[y : y + size, x : x + size] = glyph
        boxes.append((int(labels[j]), x, y, x + size, y + size))
    return ImageRecord(name="", captions=[scene_caption(boxes)], image=image, boxes=boxes)


def make_digit_scenes(
    n: int, split: str, seed: int, canvas: int = 64, max_digits: int = MAX_DIGITS
) -> list[ImageRecord]:
    """``n`` scenes of ``split``; each split draws its glyphs from its own third of sklearn's digits."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))
    parts = {"train": order[:1200], "val": order[1200:1500], "test": order[1500:]}
    idx = parts[split]
    glyphs = (digits.images[idx] / 16.0).astype(np.float32)  # (M, 8, 8) in [0, 1]
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    records = []
    for i in range(n):
        rec = digit_scene(rng, glyphs, digits.target[idx], canvas, max(1, canvas // 32), max_digits)
        rec.name = f"{split}_{i:05d}"
        records.append(rec)
    return records


# ---------------------------------------------------------------------------------- datasets


class CaptionDataset(Dataset[dict[str, Any]]):
    """Normalized image, one training caption (random among the references), all references."""

    def __init__(
        self,
        records: list[ImageRecord],
        image_size: int,
        normalize: tuple[tuple[float, ...], tuple[float, ...]] = (IMAGENET_MEAN, IMAGENET_STD),
        train: bool = False,
        cache: bool = True,
    ):
        self.records = records
        self.image_size = image_size
        self.mean = torch.tensor(normalize[0])[:, None, None]
        self.std = torch.tensor(normalize[1])[:, None, None]
        self.train = train
        self.cache = cache
        self._cache: dict[int, Tensor] = {}

    def __len__(self) -> int:
        return len(self.records)

    def _pixels(self, i: int) -> Tensor:
        """(3, H, W) float in [0, 1]."""
        rec = self.records[i]
        if rec.image is not None:
            return torch.from_numpy(rec.image)[None].expand(3, -1, -1)
        if i in self._cache:
            raw = self._cache[i]
        else:
            assert rec.path is not None
            raw = load_image(rec.path, self.image_size)
            if self.cache:
                self._cache[i] = raw
        return raw.float() / 255.0

    def __getitem__(self, i: int) -> dict[str, Any]:
        rec = self.records[i]
        image = (self._pixels(i) - self.mean) / self.std
        pick = (
            int(torch.randint(len(rec.captions), ()).item())
            if self.train and len(rec.captions) > 1
            else 0
        )
        boxes = torch.full((MAX_DIGITS, 5), -1, dtype=torch.long)
        if rec.boxes:
            boxes[: len(rec.boxes)] = torch.tensor(rec.boxes[:MAX_DIGITS])
        return {
            "image": image,
            "caption": " ".join(rec.captions[pick]),
            "references": "\n".join(" ".join(c) for c in rec.captions),
            "boxes": boxes,
            "name": rec.name,
        }


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Tensors stacked; text stays a list of strings (one per image, references joined by
    newlines) so the batch can be sliced sample-wise like any other."""
    return {
        "image": torch.stack([it["image"] for it in items]),  # (B, 3, H, W)
        "caption": [it["caption"] for it in items],
        "references": [it["references"] for it in items],
        "boxes": torch.stack([it["boxes"] for it in items]),  # (B, 4, 5)
        "name": [it["name"] for it in items],
    }


def predict_records(spec: str) -> list[ImageRecord]:
    """Image files from a file, a folder or a glob pattern."""
    path = Path(spec).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    elif path.is_file():
        files = [path]
    else:
        files = sorted(Path(p) for p in glob.glob(str(path)))
    if not files:
        raise FileNotFoundError(f"no image files match --data.predict_images {spec}")
    return [ImageRecord(p.name, [[]], p) for p in files]


# ---------------------------------------------------------------------------------- datamodule


class CaptionData(AttnlabDataModule):
    """Images with captions for `attnlab caption`.

    ``dataset``: ``digit_scenes`` (generated, offline), or ``flickr8k``/``flickr30k``/``coco``
    read from ``root`` (``--data.root`` or ``$ATTNLAB_DATA_DIR/<dataset>``) in Karpathy's layout
    (``dataset_<name>.json``) or, for Flickr8k, the ``captions.txt`` layout.

    Args:
        dataset: where the captions come from (your own captions: either layout of the second
            item, with any of its names):
            - digit_scenes = generated digit pictures with captions (offline).
            - flickr8k, flickr30k, coco = a folder (--data.root or $ATTNLAB_DATA_DIR/<dataset>)
              holding dataset_<dataset>.json (Karpathy's layout: images with filename, split,
              sentences) and the images under --data.image_dir; flickr8k also reads
              captions.txt (`image,caption` lines) with Flickr_8k.{train,dev,test}Images.txt.
        root: the folder holding the caption file and the image folder.
        image_dir: the image folder inside root (default images).
        allow_missing_images: drop captions whose image file is missing instead of stopping.
        max_digits: digit scenes hold 1 to max_digits glyphs (at most 4).
        curriculum_epochs: digit scenes: train the first epochs on the scenes with fewest
            glyphs, adding scenes with one more glyph every curriculum_epochs / max_digits
            epochs (0: no curriculum; other datasets ignore it). See curriculum.py for why.
        predict_images: a glob of images to caption with `predict`.
    """

    def __init__(
        self,
        dataset: str = "digit_scenes",
        root: str | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        eval_batch_size: int | None = None,
        image_size: int = 64,
        max_caption_len: int = 20,
        min_count: int = 1,
        allow_missing_images: bool = False,
        image_dir: str = "images",
        n_train: int = 2000,
        n_val: int = 200,
        n_test: int = 200,
        max_digits: int = MAX_DIGITS,
        curriculum_epochs: int = 0,
        limit_images: int | None = None,
        cache_images: bool = True,
        predict_images: str | None = None,
    ):
        super().__init__(
            batch_size=batch_size,
            num_workers=num_workers,
            seed=seed,
            eval_batch_size=eval_batch_size,
        )
        if dataset not in ("digit_scenes", "flickr8k", "flickr30k", "coco"):
            raise ValueError(
                f"unknown --data.dataset {dataset!r}; choose digit_scenes, flickr8k, flickr30k or coco"
            )
        self.dataset = dataset
        self.root = root
        self.image_size = image_size
        self.max_caption_len = max_caption_len
        self.min_count = min_count
        self.allow_missing_images = allow_missing_images
        self.image_dir = image_dir
        self.n_train, self.n_val, self.n_test = n_train, n_val, n_test
        if not 1 <= max_digits <= MAX_DIGITS:
            raise ValueError(f"--data.max_digits must be 1..{MAX_DIGITS}, got {max_digits}")
        self.max_digits = max_digits
        if curriculum_epochs < 0:
            raise ValueError(f"--data.curriculum_epochs must be >= 0, got {curriculum_epochs}")
        if curriculum_epochs and dataset != "digit_scenes":
            # The quick config's curriculum with your own captions (--data.dataset flickr8k):
            # there are no glyph counts to order by, so every epoch sees every image.
            warnings.warn(
                f"--data.curriculum_epochs orders digit scenes by glyph count; {dataset} has no "
                "such levels, so it is ignored",
                UserWarning,
                stacklevel=2,
            )
            curriculum_epochs = 0
        self.curriculum_epochs = curriculum_epochs
        self.limit_images = limit_images
        self.cache_images = cache_images
        self.predict_images = predict_images
        self.collate_fn = collate
        self.vocab: Vocab | None = None
        self.read_stats: dict[str, Any] = {}
        self._records: dict[str, list[ImageRecord]] | None = None

    @property
    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        if self.dataset == "digit_scenes":
            return (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
        return IMAGENET_MEAN, IMAGENET_STD

    def read(self) -> dict[str, list[ImageRecord]]:
        """Records per split (read once)."""
        if self._records is not None:
            return self._records
        if self.dataset == "digit_scenes":
            records = {
                "train": make_digit_scenes(
                    self.n_train, "train", self.seed, self.image_size, self.max_digits
                ),
                "val": make_digit_scenes(
                    self.n_val, "val", self.seed, self.image_size, self.max_digits
                ),
                "test": make_digit_scenes(
                    self.n_test, "test", self.seed, self.image_size, self.max_digits
                ),
            }
            self.read_stats = {"dataset": "digit_scenes"}
        else:
            root = data_root(self.root, self.dataset)
            if root is None:
                raise FileNotFoundError(
                    f"no {self.dataset} data: pass --data.root or set ATTNLAB_DATA_DIR to a folder "
                    f"holding {self.dataset}/"
                )
            karpathy = root / f"dataset_{self.dataset}.json"
            if karpathy.is_file():
                result = read_karpathy(karpathy, root / self.image_dir, self.max_caption_len)
            elif (root / "captions.txt").is_file() and self.dataset == "flickr8k":
                result = read_flickr8k_csv(root, self.image_dir, self.max_caption_len)
            else:
                raise FileNotFoundError(
                    f"{root}: found neither {karpathy.name} (Karpathy's layout) nor captions.txt "
                    "(Flickr8k's layout)"
                )
            result = drop_missing(result, self.allow_missing_images)
            records = result.splits
            if self.limit_images:
                records = {s: r[: self.limit_images] for s, r in records.items()}
            self.read_stats = {
                "dataset": self.dataset,
                "source": result.source,
                "dropped_captions": result.dropped_captions,
                "dropped_images": result.dropped_images,
                "total_captions": result.total_captions,
                **{f"{s}_images": len(r) for s, r in records.items()},
            }
            for split in SPLITS:
                if not records.get(split):
                    raise ValueError(
                        f"{result.source}: no {split} images left after reading; check the split lists and images"
                    )
        self._records = records
        return records

    def build_vocab(self) -> Vocab:
        train = self.read()["train"]
        self.vocab = Vocab.build(
            (c for r in train for c in r.captions), self.min_count, self.dataset
        )
        return self.vocab

    def setup(self, stage: str | None = None) -> None:
        norm = self.normalization
        if stage == "predict":
            if not self.predict_images:
                raise ValueError("predict needs --data.predict_images FILE|FOLDER|GLOB")
            self.predict_set = CaptionDataset(
                predict_records(self.predict_images), self.image_size, norm, cache=False
            )
            return
        records = self.read()
        if self.vocab is None:
            self.build_vocab()
        self.train_set = CaptionDataset(
            records["train"], self.image_size, norm, True, self.cache_images
        )
        self.val_set = CaptionDataset(
            records["val"], self.image_size, norm, False, self.cache_images
        )
        self.test_set = CaptionDataset(
            records["test"], self.image_size, norm, False, self.cache_images
        )

    def train_dataloader(self) -> Any:
        if not self.curriculum_epochs:
            return super().train_dataloader()
        assert isinstance(self.train_set, CaptionDataset)
        levels = [len(rec.boxes) for rec in self.train_set.records]  # glyphs per scene
        sampler = CurriculumSampler(levels, self.curriculum_epochs, self._shuffle_generator())
        return self._loader(self.train_set, "train", sampler=sampler)
