"""A training order that starts with the easy scenes (Bengio et al., 2009, "Curriculum learning").

A captioner trained from scratch on digit scenes first has to learn what a digit looks like and,
at the same time, where to look for the next one. With up to four glyphs per scene neither signal
helps the other at first: the attention is uniform, so the context mixes every glyph, and the
encoder gets no clean example of any digit; the loss sits on a plateau for about 1,000 steps.
Scenes with one glyph break that loop (the context *is* the glyph), and adding scenes with more
glyphs a few epochs at a time lets the attention learn to move between them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

__all__ = ["CurriculumSampler"]


class CurriculumSampler(Sampler[int]):
    """Each epoch, ``len(levels)`` indices drawn from the samples whose level is at most the
    epoch's ceiling; after ``epochs`` epochs, a plain permutation of all of them.

    ``levels[i]`` is sample i's difficulty (a digit scene's glyph count). The ceiling rises
    evenly from the easiest level to the hardest over ``epochs`` epochs (levels 1..4 over 12
    epochs: 1 for epochs 0-2, 2 for 3-5, 3 for 6-8, everything from epoch 9), so every epoch has
    the same number of steps and the learning-rate schedule is unchanged. Lightning calls
    ``set_epoch`` before each epoch (a resumed run continues where it was); without it, each
    ``iter`` counts as one epoch. ``generator`` is the data module's shuffling generator, whose
    state goes into checkpoints.
    """

    def __init__(self, levels: Sequence[int], epochs: int, generator: torch.Generator):
        if epochs < 0:
            raise ValueError(f"curriculum epochs must be >= 0, got {epochs}")
        if not levels:
            raise ValueError("a curriculum needs at least one sample")
        self.levels = torch.as_tensor(list(levels))  # (N,)
        self.epochs = epochs
        self.generator = generator
        self.epoch = 0
        self._epoch_set = False

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._epoch_set = True

    def ceiling(self, epoch: int) -> int:
        """The hardest level the epoch trains on."""
        low, high = int(self.levels.min()), int(self.levels.max())
        if epoch >= self.epochs:
            return high
        steps = high - low + 1  # levels to walk through, each for epochs / steps epochs
        return min(high, low + epoch * steps // self.epochs)

    def __len__(self) -> int:
        return len(self.levels)

    def __iter__(self) -> Iterator[int]:
        epoch = self.epoch
        if not self._epoch_set:
            self.epoch += 1  # no set_epoch from the loop: count the passes ourselves
        self._epoch_set = False
        n = len(self.levels)
        if epoch >= self.epochs:
            yield from torch.randperm(n, generator=self.generator).tolist()
            return
        eligible = torch.nonzero(self.levels <= self.ceiling(epoch)).flatten()  # (M,)
        picks = torch.randint(len(eligible), (n,), generator=self.generator)  # with replacement
        yield from eligible[picks].tolist()
