"""The datasets the image loaders index: images held in memory (``ArrayImages``, augmented per
image or a whole batch at a time), decoded from files or zip members on access (``FileImages``),
and the files to classify in `predict` (``PredictImages``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .augment import BatchAugment
from .readers import ImageSource, load_image


class ArrayImages(Dataset[tuple[Tensor, int]]):
    """uint8 images (N, C, H, W) held in memory, with a transform applied per sample, or, given
    ``batch_transform`` (``BatchAugment``), to each batch the loader asks for as a whole."""

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        transform: Callable[[Any], Tensor],
        batch_transform: BatchAugment | None = None,
    ):
        self.images, self.labels, self.transform = images, labels, transform
        self.batch_transform = batch_transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        if self.batch_transform is not None:
            return self.batch_transform(self.images[i : i + 1])[0], int(self.labels[i])
        return self.transform(self.images[i]), int(self.labels[i])

    def __getitems__(self, indices: list[int]) -> list[tuple[Tensor, int]]:
        """The DataLoader's batched fetch: one ``batch_transform`` call for the whole batch."""
        if self.batch_transform is None:
            return [self[i] for i in indices]
        index = torch.as_tensor(indices, dtype=torch.long)
        images = self.batch_transform(self.images[index])  # (B, C, H, W) float
        return list(zip(images.unbind(0), self.labels[index].tolist(), strict=True))


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
