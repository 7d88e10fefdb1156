"""Caption normalization and the vocabulary."""

from __future__ import annotations

import pytest
import torch
from attnlab_captioning.vocab import Vocab, normalize_caption


def test_normalize_lowercases_strips_punctuation_and_cuts() -> None:
    assert normalize_caption("A dog, running!  Fast.") == ["a", "dog", "running", "fast"]
    assert normalize_caption("A B C D", max_words=2) == ["a", "b"]


def test_build_counts_min_count_and_orders_by_frequency() -> None:
    v = Vocab.build([["a", "dog"], ["a", "cat"], ["a", "dog", "z"]], min_count=2)
    assert v.itos == ["<pad>", "<bos>", "<eos>", "<unk>", "a", "dog"]
    assert v.encode(["a", "cat"]) == [1, 4, 3, 2]  # cat is below min_count -> <unk>
    assert v.decode([4, 5, 2, 4]) == ["a", "dog"]  # stops at <eos>


def test_empty_vocabulary_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"empty vocabulary.*min_count=5"):
        Vocab.build([["a"], ["b"]], min_count=5)


def test_encode_batch_pads_and_round_trips_through_plain_data() -> None:
    v = Vocab(["x", "y"])
    batch = v.encode_batch([["x"], ["x", "y", "y"]])
    assert batch.tolist() == [[1, 4, 2, 0, 0], [1, 4, 5, 5, 2]]
    again = Vocab.from_dict(v.to_dict())
    assert again == v and isinstance(v.to_dict()["words"], list)
    assert batch.dtype == torch.long
