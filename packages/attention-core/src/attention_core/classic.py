"""Attention of one query over a set of keys, as used by RNN encoder-decoders.

Masks: ``key_mask`` (B, N) is True where a key is real and may be attended to, the convention of
every mask in ``attention_core``. ``key_padding_mask`` is accepted with torch's meaning for that
name (``torch.nn.MultiheadAttention``: True where a key is padding), so code written against
torch does not silently attend to its padding.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["AdditiveAttention", "DotProductAttention"]


def _check(query: Tensor, keys: Tensor, query_dim: int, key_dim: int, mask: Tensor | None) -> None:
    if query.dim() != 2 or keys.dim() != 3:
        raise ValueError(
            f"expected query (B, {query_dim}) and keys (B, N, {key_dim}); got query "
            f"{tuple(query.shape)}, keys {tuple(keys.shape)}"
        )
    if query.shape[-1] != query_dim or keys.shape[-1] != key_dim:
        raise ValueError(
            f"expected query (B, {query_dim}) and keys (B, N, {key_dim}); got query "
            f"{tuple(query.shape)}, keys {tuple(keys.shape)}"
        )
    if query.shape[0] != keys.shape[0]:
        raise ValueError(
            f"batch sizes differ: query {tuple(query.shape)}, keys {tuple(keys.shape)}"
        )
    if mask is not None and tuple(mask.shape) != tuple(keys.shape[:2]):
        raise ValueError(
            f"key_mask must be (B, N) = {tuple(keys.shape[:2])}, got {tuple(mask.shape)}"
        )


def _key_mask(key_mask: Tensor | None, key_padding_mask: Tensor | None) -> Tensor | None:
    """One (B, N) mask, True = attend, from either convention."""
    if key_padding_mask is None:
        return key_mask
    if key_mask is not None:
        raise ValueError(
            "give key_mask (True = attend) or key_padding_mask (True = padding, as in torch), "
            "not both"
        )
    return ~key_padding_mask.bool()


def _masked_softmax(scores: Tensor, key_mask: Tensor | None) -> Tensor:
    """Softmax over N of (B, N) scores; key_mask is True where a key is real."""
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return torch.nan_to_num(weights, nan=0.0)


class AdditiveAttention(nn.Module):
    """Bahdanau attention: score(q, k) = w^T tanh(W_q q + W_k k).

    ``forward(query (B, Dq), keys (B, N, Dk))`` returns the context (B, Dk) and weights (B, N).
    ``project_keys`` lets a decoder compute W_k k once per sequence instead of once per step.
    """

    def __init__(self, query_dim: int, key_dim: int, hidden_dim: int):
        super().__init__()
        self.query_dim, self.key_dim = query_dim, key_dim
        self.query_proj = nn.Linear(query_dim, hidden_dim, bias=False)
        self.key_proj = nn.Linear(key_dim, hidden_dim)
        self.score = nn.Linear(hidden_dim, 1, bias=False)

    def project_keys(self, keys: Tensor) -> Tensor:
        return self.key_proj(keys)  # (B, N, hidden)

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        key_mask: Tensor | None = None,
        projected_keys: Tensor | None = None,
        *,
        key_padding_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        key_mask = _key_mask(key_mask, key_padding_mask)
        _check(query, keys, self.query_dim, self.key_dim, key_mask)
        pk = self.project_keys(keys) if projected_keys is None else projected_keys
        hidden = torch.tanh(pk + self.query_proj(query)[:, None, :])  # (B, N, hidden)
        weights = _masked_softmax(self.score(hidden).squeeze(-1), key_mask)  # (B, N)
        context = torch.bmm(weights[:, None, :], keys).squeeze(1)  # (B, Dk)
        return context, weights


class DotProductAttention(nn.Module):
    """Luong attention: score = q . k ("dot", needs equal dims) or q^T W k ("general")."""

    def __init__(self, query_dim: int, key_dim: int, mode: str = "general"):
        super().__init__()
        if mode not in ("general", "dot"):
            raise ValueError(f"mode must be 'general' or 'dot', got {mode!r}")
        if mode == "dot" and query_dim != key_dim:
            raise ValueError(
                f"mode='dot' needs query_dim == key_dim, got {query_dim} and {key_dim}; "
                "use mode='general'"
            )
        self.query_dim, self.key_dim, self.mode = query_dim, key_dim, mode
        self.weight = nn.Linear(query_dim, key_dim, bias=False) if mode == "general" else None

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        key_mask: Tensor | None = None,
        *,
        key_padding_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        key_mask = _key_mask(key_mask, key_padding_mask)
        _check(query, keys, self.query_dim, self.key_dim, key_mask)
        q = self.weight(query) if self.weight is not None else query  # (B, Dk)
        scores = torch.bmm(keys, q[:, :, None]).squeeze(-1)  # (B, N)
        weights = _masked_softmax(scores, key_mask)
        context = torch.bmm(weights[:, None, :], keys).squeeze(1)  # (B, Dk)
        return context, weights
