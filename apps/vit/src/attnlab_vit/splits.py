"""Seeded train/validation/test splits of an image set, by index.

A set without a test split has a test share carved first (seed ``seed + 1``), then validation is
carved from the rest (seed ``seed``), so the test images never steer model selection and the
same seed always gives the same split. ``max_train`` caps the training share after the cut, so
validation and test do not depend on it.
"""

from __future__ import annotations

from typing import TypeVar

from attnlab.data import split_indices

__all__ = ["carve_test", "carve_val", "split_items"]

T = TypeVar("T")


def carve_test(n: int, test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(kept, test) indices of ``range(n)``; seeded apart from the validation cut."""
    return split_indices(n, test_fraction, seed + 1)


def carve_val(
    n: int, val_fraction: float, seed: int, max_train: int | None = None
) -> tuple[list[int], list[int]]:
    """(train, validation) indices of ``range(n)``, the training share capped at ``max_train``."""
    train_idx, val_idx = split_indices(n, val_fraction, seed)
    return (train_idx[:max_train] if max_train else train_idx), val_idx


def split_items(
    splits: dict[str, list[T]],
    val_fraction: float,
    test_fraction: float,
    seed: int,
    max_train: int | None = None,
) -> tuple[list[T], list[T], list[T]]:
    """Train, validation and test items from ``{"train", "test"}`` or ``{"all"}`` (a folder scan)."""
    if "test" in splits:
        pool, test_items = splits["train"], splits["test"]
    else:
        rest, test_idx = carve_test(len(splits["all"]), test_fraction, seed)
        pool = [splits["all"][i] for i in rest]
        test_items = [splits["all"][i] for i in test_idx]
    train_idx, val_idx = carve_val(len(pool), val_fraction, seed, max_train)
    return [pool[i] for i in train_idx], [pool[i] for i in val_idx], test_items
