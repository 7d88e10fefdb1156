"""Non-neural baselines, models of the app like SASRec and BERT4Rec (``--model.model popularity``
or ``cooccurrence``): counted from the training sequences, scored by the same full-ranking
evaluation.

Each is an ``nn.Module`` whose counts are buffers, so it is checkpointed, reloaded and moved
between devices like any model; ``fit(train_sequences)`` counts, ``forward(history)`` scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["BASELINES", "CoOccurrence", "Popularity"]


class _Counts(nn.Module):
    """Buffers whose size depends on the data (sparse counts): on load they take the size of
    the checkpoint's tensors instead of failing the strict shape check."""

    _sized_by_data: tuple[str, ...] = ()

    def size_like(self, state_dict: dict[str, Any], prefix: str = "") -> None:
        """Give the data-sized buffers the shapes they have in ``state_dict`` (under
        ``prefix``), so that shape checks and a strict load pass."""
        for name in self._sized_by_data:
            saved = state_dict.get(prefix + name)
            if isinstance(saved, Tensor):
                setattr(self, name, torch.empty_like(saved, device=getattr(self, name).device))

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        self.size_like(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class Popularity(_Counts):
    """Scores every item by how often it appears in the training sequences."""

    counts: Tensor

    def __init__(self, num_items: int):
        super().__init__()
        self.num_items = num_items
        self.register_buffer("counts", torch.zeros(num_items + 1))

    @property
    def fitted(self) -> bool:
        return bool(self.counts.sum() > 0)

    def fit(self, sequences: Sequence[Sequence[int]]) -> Popularity:
        flat = torch.tensor([i for s in sequences for i in s], dtype=torch.long)
        counts = torch.bincount(flat, minlength=self.num_items + 1).float()
        self.counts = counts.to(self.counts.device)
        return self

    def forward(self, history: Tensor) -> Tensor:
        """Scores (B, N + 1) for histories (B, L): the same for everyone."""
        return self.counts[None].expand(history.shape[0], -1)


class CoOccurrence(_Counts):
    """Scores items by how often they directly followed the history's last item in training.

    Popularity breaks ties (scaled below one count), so users whose last item was never seen
    followed by anything still get a ranking. The (N + 1, N + 1) transition counts are kept
    sparse: ``indices`` (2, nnz) and ``values`` (nnz,).
    """

    indices: Tensor
    values: Tensor
    _sized_by_data = ("indices", "values")

    def __init__(self, num_items: int):
        super().__init__()
        self.num_items = num_items
        self.pop = Popularity(num_items)
        self.register_buffer("indices", torch.zeros(2, 0, dtype=torch.long))
        self.register_buffer("values", torch.zeros(0))

    @property
    def fitted(self) -> bool:
        return self.pop.fitted

    def fit(self, sequences: Sequence[Sequence[int]]) -> CoOccurrence:
        self.pop.fit(sequences)
        src = [a for s in sequences for a in s[:-1]]
        dst = [b for s in sequences for b in s[1:]]
        n = self.num_items + 1
        idx = torch.tensor([src, dst], dtype=torch.long).reshape(2, -1)  # (2, transitions)
        ones = torch.ones(idx.shape[1])
        matrix = torch.sparse_coo_tensor(idx, ones, (n, n), check_invariants=True).coalesce()
        self.indices = matrix.indices().to(self.indices.device)
        self.values = matrix.values().to(self.values.device)
        return self

    def forward(self, history: Tensor) -> Tensor:
        """Scores (B, N + 1): transitions from each right-padded history's (B, L) last item."""
        n = self.num_items + 1
        matrix = torch.sparse_coo_tensor(
            self.indices, self.values, (n, n), is_coalesced=True, check_invariants=True
        )
        last = history.gather(1, ((history > 0).sum(1) - 1).clamp(min=0)[:, None])[:, 0]  # (B,)
        rows = matrix.index_select(0, last).to_dense()  # (B, N + 1)
        tie = self.pop.counts / (self.pop.counts.max() + 1.0)
        return rows + tie[None]


BASELINES: dict[str, type[Popularity] | type[CoOccurrence]] = {
    "popularity": Popularity,
    "cooccurrence": CoOccurrence,
}
