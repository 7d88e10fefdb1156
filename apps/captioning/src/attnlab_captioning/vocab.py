"""Caption normalization and the word-level vocabulary (stored in checkpoints as plain data)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["BOS", "EOS", "PAD", "SPECIALS", "UNK", "Vocab", "normalize_caption"]

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
_NON_WORD = re.compile(r"[^a-z0-9]+")


def normalize_caption(text: str, max_words: int | None = None) -> list[str]:
    """Lowercase, punctuation to spaces, split on whitespace, cut to ``max_words`` words."""
    words = _NON_WORD.sub(" ", text.lower()).split()
    return words[:max_words] if max_words else words


class Vocab:
    """Words with ids: ``<pad>`` 0, ``<bos>`` 1, ``<eos>`` 2, ``<unk>`` 3, then by frequency."""

    pad_id, bos_id, eos_id, unk_id = 0, 1, 2, 3

    def __init__(self, words: Sequence[str], min_count: int = 1):
        clash = [w for w in words if w in SPECIALS]
        if clash:
            raise ValueError(f"vocabulary words {clash} clash with the special tokens {SPECIALS}")
        self.itos: list[str] = [*SPECIALS, *words]
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.min_count = min_count

    @classmethod
    def build(
        cls, captions: Iterable[Sequence[str]], min_count: int = 1, source: str = "captions"
    ) -> Vocab:
        """Words seen at least ``min_count`` times, most frequent first (ties alphabetical)."""
        counts: Counter[str] = Counter()
        n = 0
        for tokens in captions:
            counts.update(tokens)
            n += 1
        words = sorted(
            (w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w)
        )
        if not words:
            raise ValueError(
                f"empty vocabulary: no word in the {n} training captions of {source} occurs at "
                f"least min_count={min_count} times; lower --data.min_count or check the captions"
            )
        return cls(words, min_count)

    def __len__(self) -> int:
        return len(self.itos)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos

    def __hash__(self) -> int:
        return hash(tuple(self.itos))

    def encode(self, tokens: Sequence[str], max_len: int | None = None) -> list[int]:
        """``<bos> w1 .. wn <eos>`` as ids (unknown words -> ``<unk>``), words cut to max_len."""
        words = list(tokens)[:max_len] if max_len else list(tokens)
        return [self.bos_id, *(self.stoi.get(w, self.unk_id) for w in words), self.eos_id]

    def encode_batch(self, captions: Sequence[Sequence[str]], max_len: int | None = None) -> Tensor:
        """(B, T) ids padded with ``<pad>``; T = longest caption + 2."""
        ids = [self.encode(c, max_len) for c in captions]
        out = torch.full((len(ids), max(len(x) for x in ids)), self.pad_id, dtype=torch.long)
        for i, seq in enumerate(ids):
            out[i, : len(seq)] = torch.tensor(seq)
        return out

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Words up to the first ``<eos>``; ``<bos>`` and ``<pad>`` dropped."""
        words = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i in (self.pad_id, self.bos_id):
                continue
            words.append(self.itos[i] if 0 <= i < len(self.itos) else UNK)
        return words

    def to_dict(self) -> dict[str, Any]:
        return {"words": self.itos[len(SPECIALS) :], "min_count": self.min_count}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Vocab:
        return cls(list(data["words"]), int(data.get("min_count", 1)))
