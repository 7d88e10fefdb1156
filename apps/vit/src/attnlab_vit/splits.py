"""Seeded train/validation/test splits of an image set, by index, and stratified subsets.

A set without a test split has a test share carved first (seed ``seed + 1``), then validation is
carved from the rest (seed ``seed``), so the test images never steer model selection and the
same seed always gives the same split. ``max_train`` then keeps a seeded random sample of the
training share (seed ``seed + 2``) whose class counts follow the full share's, so validation and
test do not depend on it and a small subset still holds every class.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from typing import TypeVar

import torch

from attnlab.data import split_indices

__all__ = [
    "carve_test",
    "carve_val",
    "class_counts",
    "split_items",
    "split_roles",
    "stratified_subset",
]

T = TypeVar("T")


def carve_test(n: int, test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(kept, test) indices of ``range(n)``; seeded apart from the validation cut."""
    return split_indices(n, test_fraction, seed + 1)


def carve_val(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, validation) indices of ``range(n)``."""
    return split_indices(n, val_fraction, seed)


def stratified_subset(labels: Sequence[int], size: int, seed: int) -> list[int]:
    """Sorted positions of a seeded random sample of ``size`` labels, each class's share of the
    sample as close to its share of ``labels`` as whole numbers allow (largest remainder; ties
    drawn at random, so no class is favoured by its index)."""
    if size >= len(labels):
        return list(range(len(labels)))
    by_class: dict[int, list[int]] = {}
    for position, label in enumerate(labels):
        by_class.setdefault(int(label), []).append(position)
    generator = torch.Generator().manual_seed(seed)
    quota = {c: size * len(members) / len(labels) for c, members in by_class.items()}
    take = {c: int(q) for c, q in quota.items()}
    tie_break = dict(zip(sorted(by_class), torch.rand(len(by_class), generator=generator).tolist()))
    by_remainder = sorted(by_class, key=lambda c: (take[c] - quota[c], tie_break[c]))
    for c in by_remainder[: size - sum(take.values())]:
        take[c] += 1
    keep: list[int] = []
    for c in sorted(by_class):
        order = torch.randperm(len(by_class[c]), generator=generator)[: take[c]].tolist()
        keep += [by_class[c][i] for i in order]
    return sorted(keep)


def class_counts(labels: Sequence[int], class_names: Sequence[str]) -> str:
    """``"cat 4, dog 4, owl 3"`` (classes with no image included), for the log."""
    counts = Counter(int(label) for label in labels)
    names = list(class_names) or [str(c) for c in range(max(counts, default=-1) + 1)]
    return ", ".join(f"{name} {counts.get(c, 0)}" for c, name in enumerate(names))


def split_roles(names: Collection[str]) -> dict[str, str | None]:
    """The given split that serves as test and as validation (None: carved from train). ``test``
    is the test split; ``val`` is validation beside ``test``, and the test split without it
    (torchvision's ``train/`` + ``val/``: the held-out split is reported, never selected on)."""
    test = "test" if "test" in names else "val" if "val" in names else None
    return {"test": test, "val": "val" if "val" in names and test == "test" else None}


def split_items(
    splits: dict[str, list[tuple[str, int]]],
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> tuple[list[tuple[str, int]], list[tuple[str, int]], list[tuple[str, int]]]:
    """Train, validation and test ``(file, class)`` items of a folder scan: ``"all"`` (or
    ``"train"`` alone) has test and validation carved; given splits serve as ``split_roles``."""
    roles = split_roles(splits)
    pool = splits.get("train", splits.get("all", []))
    if roles["test"]:
        test_items = splits[roles["test"]]
    else:
        rest, test_idx = carve_test(len(pool), test_fraction, seed)
        pool, test_items = [pool[i] for i in rest], [pool[i] for i in test_idx]
    if roles["val"]:
        return pool, splits[roles["val"]], test_items
    train_idx, val_idx = carve_val(len(pool), val_fraction, seed)
    return [pool[i] for i in train_idx], [pool[i] for i in val_idx], test_items
