"""Key/value cache for incremental decoding."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["KVCache"]


class KVCache:
    """Keys and values (B, Hkv, L, D) of the tokens seen so far, for one attention layer.

    ``MultiHeadAttention(x, kv_cache=cache)`` appends the keys and values of ``x`` and attends
    over everything cached, so feeding a sequence one token at a time gives the same outputs as
    one causal pass over the whole sequence.

    ``static=True`` is for cross-attention: the keys and values of the context are computed on the
    first call and reused afterwards. ``max_len`` preallocates storage so that appending does not
    reallocate at every step.
    """

    def __init__(self, max_len: int | None = None, *, static: bool = False):
        self.max_len = max_len
        self.static = static
        self._k: Tensor | None = None
        self._v: Tensor | None = None
        self.length = 0

    @property
    def keys(self) -> Tensor | None:
        return None if self._k is None else self._k[:, :, : self.length]

    @property
    def values(self) -> Tensor | None:
        return None if self._v is None else self._v[:, :, : self.length]

    def __len__(self) -> int:
        return self.length

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append k (B, Hkv, Lnew, D) and v (B, Hkv, Lnew, Dv); return all cached keys and values."""
        new = k.shape[2]
        if self._k is None or self._v is None:
            if self.max_len is None:
                self._k, self._v = k, v
            else:
                if new > self.max_len:
                    raise ValueError(f"{new} tokens exceed the cache's max_len={self.max_len}")
                self._k = k.new_zeros(k.shape[0], k.shape[1], self.max_len, k.shape[3])
                self._v = v.new_zeros(v.shape[0], v.shape[1], self.max_len, v.shape[3])
                self._k[:, :, :new] = k
                self._v[:, :, :new] = v
            self.length = new
        elif self.max_len is None:
            self._k = torch.cat([self._k, k], dim=2)
            self._v = torch.cat([self._v, v], dim=2)
            self.length += new
        else:
            if self.length + new > self.max_len:
                raise ValueError(
                    f"cache holds {self.length} tokens; {new} more exceed max_len={self.max_len}"
                )
            self._k[:, :, self.length : self.length + new] = k
            self._v[:, :, self.length : self.length + new] = v
            self.length += new
        keys, values = self.keys, self.values
        assert keys is not None and values is not None
        return keys, values

    def reorder(self, index: Tensor) -> None:
        """Select batch rows (beam search keeps the beams it extends)."""
        if self._k is not None and self._v is not None:
            self._k = self._k.index_select(0, index)
            self._v = self._v.index_select(0, index)

    def reset(self) -> None:
        self._k = self._v = None
        self.length = 0
