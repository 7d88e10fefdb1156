"""Whole-batch augmentation of in-memory images: the per-image pipeline's result, made at once."""

from __future__ import annotations

import itertools

import pytest
import torch
from attnlab_vit.augment import BatchAugment
from attnlab_vit.data import ImageData
from attnlab_vit.image_sets import ArrayImages
from torch.utils.data import DataLoader

MEAN, STD = (0.3,), (0.2,)


def _images(n: int = 16, channels: int = 1, side: int = 8) -> torch.Tensor:
    return torch.randint(0, 256, (n, channels, side, side), dtype=torch.uint8)


def test_without_randomness_it_equals_the_per_image_pipeline() -> None:
    dm = ImageData(dataset="digits")  # 8x8 grey: the eval pipeline is ToDtype + Normalize
    images = _images()
    per_image = torch.stack([dm.transform(train=False)(img) for img in images])
    mean, std = dm.mean_std
    assert torch.allclose(BatchAugment(mean, std)(images), per_image, atol=1e-6)


def test_every_image_is_one_of_its_own_crops_and_flips() -> None:
    torch.manual_seed(0)
    pad = 2
    images = _images(n=64, channels=3)
    out = BatchAugment(MEAN * 3, STD * 3, crop_padding=pad, hflip=True)(images)
    padded = torch.nn.functional.pad(images, (pad,) * 4)
    seen = set()
    for b in range(len(images)):
        # Recover the offset and flip from the output: exactly one candidate must match.
        matches = []
        for top, left, flip in itertools.product(range(2 * pad + 1), range(2 * pad + 1), (0, 1)):
            window = padded[b, :, top : top + 8, left : left + 8]
            window = window.flip(-1) if flip else window
            expected = (window.float() / 255 - MEAN[0]) / STD[0]
            if torch.allclose(out[b], expected, atol=1e-5):
                matches.append((top, left, flip))
        assert matches, f"image {b} is no crop or flip of its input"
        seen.update(matches)
    tops = {t for t, _, _ in seen}
    flips = {f for _, _, f in seen}
    assert tops == set(range(2 * pad + 1)) and flips == {0, 1}  # offsets and flips vary


def test_offsets_are_drawn_uniformly_and_repeat_with_the_seed() -> None:
    augment = BatchAugment(MEAN, STD, crop_padding=1)
    ones = torch.full((4000, 1, 4, 4), 255, dtype=torch.uint8)
    torch.manual_seed(3)
    first = augment(ones)
    torch.manual_seed(3)
    assert torch.equal(first, augment(ones))
    # A zero-padded row or column shows as a corner of the window: its position is the offset.
    raw = first * STD[0] + MEAN[0]  # back to [0, 1]
    top_zero = (raw[:, 0, 0, :] < 0.5).all(-1)  # offset row 0: the padding row on top
    bottom_zero = (raw[:, 0, -1, :] < 0.5).all(-1)
    share = torch.tensor([top_zero.float().mean(), bottom_zero.float().mean()])
    assert torch.allclose(share, torch.full((2,), 1 / 3), atol=0.03), share


def test_the_loader_fetches_a_batch_at_once_with_the_per_image_result() -> None:
    images, labels = _images(n=10), torch.arange(10)
    dm = ImageData(dataset="digits")
    mean, std = dm.mean_std
    per_image = ArrayImages(images, labels, dm.transform(train=False))
    batched = ArrayImages(images, labels, dm.transform(train=False), BatchAugment(mean, std))
    calls = []
    original = batched.batch_transform

    def counting(x: torch.Tensor) -> torch.Tensor:
        calls.append(len(x))
        return original(x)

    batched.batch_transform = counting  # type: ignore[assignment]
    (x_a, y_a), (x_b, y_b) = (
        next(iter(DataLoader(d, batch_size=10))) for d in (per_image, batched)
    )
    assert calls == [10]  # one call for the whole batch
    assert torch.equal(y_a, y_b) and torch.allclose(x_a, x_b, atol=1e-6)
    assert torch.allclose(batched[3][0], per_image[3][0], atol=1e-6)


def test_in_memory_sets_take_the_batch_path_unless_resized_or_randaugmented() -> None:
    dm = ImageData(dataset="digits", random_crop=1, hflip=True)
    dm.setup("fit")
    assert isinstance(dm.train_set, ArrayImages) and dm.train_set.batch_transform is not None
    assert dm.train_set.batch_transform.crop_padding == 1 and dm.train_set.batch_transform.hflip
    assert dm.val_set.batch_transform is not None and not dm.val_set.batch_transform.random
    for kwargs in ({"image_size": 16}, {"randaugment": "rand-m9-n2-mstd0.5"}):
        other = ImageData(dataset="digits", **kwargs)
        other.setup("fit")
        assert other.train_set.batch_transform is None, kwargs


def test_it_refuses_float_images() -> None:
    with pytest.raises(ValueError, match="uint8 images"):
        BatchAugment(MEAN, STD)(torch.zeros(2, 1, 4, 4))
