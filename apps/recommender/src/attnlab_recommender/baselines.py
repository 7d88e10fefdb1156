"""Non-neural baselines scored by the same full-ranking evaluation as the models."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["CoOccurrence", "Popularity"]


class Popularity:
    """Scores every item by how often it appears in the training sequences."""

    def __init__(self, num_items: int):
        self.counts = torch.zeros(num_items + 1)

    def fit(self, sequences: Sequence[Sequence[int]]) -> Popularity:
        flat = torch.tensor([i for s in sequences for i in s], dtype=torch.long)
        self.counts = torch.bincount(flat, minlength=self.counts.numel()).float()
        return self

    def __call__(self, history: Tensor) -> Tensor:
        return self.counts[None].expand(history.shape[0], -1)  # (B, N + 1)


class CoOccurrence:
    """Scores items by how often they directly followed the history's last item in training.

    Popularity breaks ties (scaled below one count), so users whose last item was never seen
    followed by anything still get a ranking.
    """

    def __init__(self, num_items: int):
        self.num_items = num_items
        self.pop = Popularity(num_items)
        self.matrix: Tensor | None = None

    def fit(self, sequences: Sequence[Sequence[int]]) -> CoOccurrence:
        self.pop.fit(sequences)
        src = [a for s in sequences for a in s[:-1]]
        dst = [b for s in sequences for b in s[1:]]
        n = self.num_items + 1
        idx = torch.tensor([src, dst], dtype=torch.long).reshape(2, -1)
        values = torch.ones(idx.shape[1])
        self.matrix = torch.sparse_coo_tensor(idx, values, (n, n), check_invariants=True).coalesce()
        return self

    def __call__(self, history: Tensor) -> Tensor:
        if self.matrix is None:
            raise ValueError("CoOccurrence.fit(train_sequences) must run before scoring")
        last = history.gather(1, ((history > 0).sum(1) - 1).clamp(min=0)[:, None])[:, 0]  # (B,)
        rows = self.matrix.index_select(0, last).to_dense()  # (B, N + 1)
        tie = self.pop.counts / (self.pop.counts.max() + 1.0)
        return rows + tie[None]
