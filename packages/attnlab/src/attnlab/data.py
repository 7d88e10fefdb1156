"""``AttnlabDataModule``: what every app's DataModule shares (loaders, seeded splits, data root)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset

__all__ = ["AttnlabDataModule", "split_indices"]


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Shuffle ``range(n)`` with a fixed seed and cut a validation share off it."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = round(n * val_fraction)
    if val_fraction > 0 and n_val == 0 and n > 1:
        n_val = 1
    return sorted(order[n_val:]), sorted(order[:n_val])


class AttnlabDataModule(pl.LightningDataModule):
    """Loaders with a seeded shuffle (so `--trainer.deterministic true` repeats runs exactly).

    Subclasses set ``self.train_set``/``val_set``/``test_set``/``predict_set`` in ``setup`` and may
    pass a ``collate_fn``. ``has_test_split`` tells `fit` whether to test the best checkpoint.
    """

    def __init__(self, batch_size: int = 64, num_workers: int = 0, seed: int = 0):
        super().__init__()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.train_set: Dataset[Any] | None = None
        self.val_set: Dataset[Any] | None = None
        self.test_set: Dataset[Any] | None = None
        self.predict_set: Dataset[Any] | None = None
        self.collate_fn: Callable[[list[Any]], Any] | None = None

    @property
    def has_test_split(self) -> bool:
        return True

    def _loader(
        self, dataset: Dataset[Any] | None, stage: str, shuffle: bool = False
    ) -> DataLoader[Any]:
        if dataset is None:
            raise ValueError(f"{type(self).__name__} has no {stage} data; check its setup()")
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=self.collate_fn,
            generator=generator,
            persistent_workers=self.num_workers > 0,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader[Any]:
        return self._loader(self.train_set, "train", shuffle=True)

    def val_dataloader(self) -> DataLoader[Any]:
        return self._loader(self.val_set, "validation")

    def test_dataloader(self) -> DataLoader[Any]:
        return self._loader(self.test_set, "test")

    def predict_dataloader(self) -> DataLoader[Any]:
        return self._loader(self.predict_set, "predict")
