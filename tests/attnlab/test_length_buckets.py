"""LengthBucketSampler: every sample once an epoch, batches of similar length, seeded."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from attnlab.data import LengthBucketSampler


def _lengths(n: int = 1000, seed: int = 0) -> list[int]:
    # heavy-tailed like item histories: most short, a few long
    g = torch.Generator().manual_seed(seed)
    return ((torch.rand(n, generator=g) ** 4 * 200).long() + 1).tolist()


def test_every_sample_once_and_the_partial_batch_last() -> None:
    lengths = _lengths(1000)
    sampler = LengthBucketSampler(lengths, 64, torch.Generator().manual_seed(0), pool_batches=4)
    batches = sampler.batches()
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(1000)) and len(sampler) == 1000
    assert [len(b) for b in batches[:-1]] == [64] * 15 and len(batches[-1]) == 1000 - 15 * 64
    # the loader's chunks are exactly these batches
    loader = DataLoader(list(range(1000)), batch_size=64, sampler=sampler)
    sampler.generator.manual_seed(0)
    assert [b.tolist() for b in loader] == batches


def test_batches_are_padded_far_less_than_random_ones() -> None:
    lengths = torch.tensor(_lengths(4000))
    g = torch.Generator().manual_seed(1)
    bucketed = LengthBucketSampler(lengths.tolist(), 128, g).batches()
    random = torch.randperm(4000, generator=g).split(128)
    width = lambda batches: sum(int(lengths[torch.as_tensor(b)].max()) for b in batches)  # noqa: E731
    assert width(bucketed) < 0.3 * width(random)


def test_the_order_is_shuffled_and_repeats_with_the_seed() -> None:
    lengths = _lengths(2000)
    first = LengthBucketSampler(lengths, 32, torch.Generator().manual_seed(5)).batches()
    again = LengthBucketSampler(lengths, 32, torch.Generator().manual_seed(5)).batches()
    assert first == again
    sampler = LengthBucketSampler(lengths, 32, torch.Generator().manual_seed(5))
    epoch1, epoch2 = sampler.batches(), sampler.batches()
    assert epoch1 == first and epoch2 != epoch1  # the next epoch draws a new order
    # batch order is not sorted by length (the batches are shuffled, not served short to long)
    widths = [max(lengths[i] for i in b) for b in first[:-1]]
    assert widths != sorted(widths)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="at least one sample"):
        LengthBucketSampler([], 4, torch.Generator())
    with pytest.raises(ValueError, match="batch_size and pool_batches"):
        LengthBucketSampler([1, 2], 0, torch.Generator())
