"""Positional encodings as small modules.

Two kinds, because they enter a model at two different places:

* Token-level encodings are added to the embeddings before the first block:
  ``SinusoidalPositionalEncoding``, ``LearnedPositionalEncoding``, ``SinCos2DPositionalEncoding``.
* Attention-level encodings act inside every attention layer and are passed to
  ``MultiHeadAttention(pos=...)`` or a block: ``RotaryEmbedding`` and ``RotaryEmbedding2D`` rotate
  queries and keys, ``ALiBi`` adds a distance bias to the scores. They share the small
  ``AttentionPosition`` interface so attention code never needs to know which one it has.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .dropout import Dropout

__all__ = [
    "ALiBi",
    "AttentionPosition",
    "LearnedPositionalEncoding",
    "RotaryEmbedding",
    "RotaryEmbedding2D",
    "SinCos2DPositionalEncoding",
    "SinusoidalPositionalEncoding",
    "alibi_slopes",
    "sincos_2d_table",
    "sinusoidal_table",
]


def sinusoidal_table(length: int, dim: int, base: float = 10000.0) -> Tensor:
    """The (length, dim) table of Vaswani et al.: sin on even channels, cos on odd ones."""
    if dim % 2 != 0:
        raise ValueError(f"sinusoidal encodings need an even dim, got dim={dim}")
    pos = torch.arange(length, dtype=torch.float64)[:, None]  # (L, 1)
    freq = torch.exp(-math.log(base) * torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    table = torch.zeros(length, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)
    return table.float()


def sincos_2d_table(dim: int, grid_size: tuple[int, int], base: float = 10000.0) -> Tensor:
    """(H * W, dim) fixed 2-D encoding: half the channels encode the row, half the column."""
    if dim % 4 != 0:
        raise ValueError(f"2-D sin-cos encodings need dim divisible by 4, got dim={dim}")
    gh, gw = grid_size
    rows = sinusoidal_table(gh, dim // 2, base)  # (H, dim/2)
    cols = sinusoidal_table(gw, dim // 2, base)  # (W, dim/2)
    grid = torch.cat(
        [
            rows[:, None, :].expand(gh, gw, dim // 2),
            cols[None, :, :].expand(gh, gw, dim // 2),
        ],
        dim=-1,
    )  # (H, W, dim)
    return grid.reshape(gh * gw, dim)


class SinusoidalPositionalEncoding(nn.Module):
    """Adds fixed sinusoids to (B, L, dim) embeddings; ``offset`` shifts positions for decoding."""

    table: Tensor

    def __init__(self, dim: int, max_len: int = 4096, base: float = 10000.0, dropout: float = 0.0):
        super().__init__()
        self.register_buffer("table", sinusoidal_table(max_len, dim, base), persistent=False)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        length = x.shape[1]
        if offset + length > self.table.shape[0]:
            raise ValueError(
                f"sequence of {length} tokens at offset {offset} exceeds max_len="
                f"{self.table.shape[0]}; build the encoding with a larger max_len"
            )
        return self.dropout(x + self.table[offset : offset + length].to(x.dtype))


class LearnedPositionalEncoding(nn.Module):
    """A learned (max_len, dim) table added to (B, L, dim) embeddings."""

    def __init__(self, dim: int, max_len: int, dropout: float = 0.0, init_std: float = 0.02):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(max_len, dim) * init_std)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        length = x.shape[1]
        if offset + length > self.weight.shape[0]:
            raise ValueError(
                f"sequence of {length} tokens at offset {offset} exceeds max_len="
                f"{self.weight.shape[0]}"
            )
        return self.dropout(x + self.weight[offset : offset + length])


class SinCos2DPositionalEncoding(nn.Module):
    """Fixed 2-D sin-cos encoding for a (H, W) grid of tokens, after ``num_prefix_tokens``."""

    table: Tensor

    def __init__(self, dim: int, grid_size: tuple[int, int], num_prefix_tokens: int = 0):
        super().__init__()
        self.num_prefix_tokens = num_prefix_tokens
        self.grid_size = (int(grid_size[0]), int(grid_size[1]))
        self.register_buffer("table", sincos_2d_table(dim, self.grid_size), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        n = self.num_prefix_tokens
        if x.shape[1] - n != self.table.shape[0]:
            raise ValueError(
                f"expected {n} prefix tokens + {self.table.shape[0]} grid tokens "
                f"{self.grid_size}, got {x.shape[1]} tokens"
            )
        return torch.cat([x[:, :n], x[:, n:] + self.table.to(x.dtype)], dim=1)


# --------------------------------------------------------------------------------------------
# attention-level encodings
# --------------------------------------------------------------------------------------------


class AttentionPosition(nn.Module):
    """Position information applied inside attention.

    ``rotate`` transforms queries (B, H, Lq, D) and keys (B, Hkv, Lk, D) given the absolute
    position of their first token; ``bias`` returns an additive (H, Lq, Lk) score bias or None.
    """

    def rotate(self, q: Tensor, k: Tensor, q_start: int, k_start: int) -> tuple[Tensor, Tensor]:
        return q, k

    def bias(self, lq: int, lk: int, q_start: int, device: torch.device) -> Tensor | None:
        return None


def _rotate_half(x: Tensor) -> Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat([-b, a], dim=-1)


def _rope_angles(positions: Tensor, dim: int, base: float) -> tuple[Tensor, Tensor]:
    inv_freq = base ** (
        -torch.arange(0, dim, 2, dtype=torch.float32, device=positions.device) / dim
    )
    angles = positions.float()[:, None] * inv_freq[None, :]  # (L, dim/2)
    angles = torch.cat([angles, angles], dim=-1)  # (L, dim), pairs (i, i + dim/2)
    return angles.cos(), angles.sin()


class RotaryEmbedding(AttentionPosition):
    """Rotary position embedding (RoPE, Su et al.) on the last ``rotary_dim`` channels.

    Each channel pair (i, i + D/2) is rotated by an angle proportional to the token position,
    so q . k depends only on the offset between the two positions and norms are unchanged.
    """

    def __init__(self, head_dim: int, base: float = 10000.0, rotary_dim: int | None = None):
        super().__init__()
        self.rotary_dim = rotary_dim or head_dim
        if self.rotary_dim % 2 != 0 or self.rotary_dim > head_dim:
            raise ValueError(
                f"rotary_dim must be even and <= head_dim={head_dim}, got {self.rotary_dim}"
            )
        self.base = base

    def rotate_tensor(self, x: Tensor, start: int) -> Tensor:
        """Rotate (B, H, L, D) as if its first token sat at position ``start``."""
        r = self.rotary_dim
        pos = torch.arange(start, start + x.shape[2], device=x.device)
        cos, sin = _rope_angles(pos, r, self.base)  # (L, r)
        head, tail = x[..., :r], x[..., r:]
        head = head * cos.to(x.dtype) + _rotate_half(head) * sin.to(x.dtype)
        return torch.cat([head, tail], dim=-1) if tail.shape[-1] else head

    def rotate(self, q: Tensor, k: Tensor, q_start: int, k_start: int) -> tuple[Tensor, Tensor]:
        return self.rotate_tensor(q, q_start), self.rotate_tensor(k, k_start)


class RotaryEmbedding2D(AttentionPosition):
    """2-D RoPE for a (H, W) token grid: half the channels rotate with the row, half the column.

    The first ``num_prefix_tokens`` tokens (a class token, say) are left unrotated.
    """

    cos: Tensor
    sin: Tensor

    def __init__(
        self,
        head_dim: int,
        grid_size: tuple[int, int],
        num_prefix_tokens: int = 0,
        base: float = 100.0,
    ):
        super().__init__()
        if head_dim % 4 != 0:
            raise ValueError(f"2-D RoPE needs head_dim divisible by 4, got {head_dim}")
        self.head_dim = head_dim
        self.grid_size = tuple(grid_size)
        self.num_prefix_tokens = num_prefix_tokens
        self.base = base
        gh, gw = self.grid_size
        rows = torch.arange(gh).repeat_interleave(gw)
        cols = torch.arange(gw).repeat(gh)
        cr, sr = _rope_angles(rows, head_dim // 2, base)
        cc, sc = _rope_angles(cols, head_dim // 2, base)
        self.register_buffer("cos", torch.cat([cr, cc], dim=-1), persistent=False)  # (N, D)
        self.register_buffer("sin", torch.cat([sr, sc], dim=-1), persistent=False)

    def rotate_tensor(self, x: Tensor) -> Tensor:
        n = self.num_prefix_tokens
        grid = x[:, :, n:]
        if grid.shape[2] != self.cos.shape[0]:
            raise ValueError(
                f"2-D RoPE built for {self.grid_size} grid tokens after {n} prefix tokens, "
                f"got {x.shape[2]} tokens"
            )
        half = self.head_dim // 2
        cos, sin = self.cos.to(x.dtype), self.sin.to(x.dtype)
        rows = torch.cat([_rotate_half(grid[..., :half]), _rotate_half(grid[..., half:])], dim=-1)
        return torch.cat([x[:, :, :n], grid * cos + rows * sin], dim=2)

    def rotate(self, q: Tensor, k: Tensor, q_start: int, k_start: int) -> tuple[Tensor, Tensor]:
        return self.rotate_tensor(q), self.rotate_tensor(k)


def alibi_slopes(num_heads: int) -> Tensor:
    """Head slopes of ALiBi (Press et al.): a geometric sequence, interleaved for non powers of 2."""

    def powers(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start**i for i in range(1, n + 1)]

    if math.log2(num_heads).is_integer():
        slopes = powers(num_heads)
    else:
        closest = 2 ** math.floor(math.log2(num_heads))
        slopes = powers(closest) + powers(2 * closest)[0::2][: num_heads - closest]
    return torch.tensor(slopes, dtype=torch.float32)


class ALiBi(AttentionPosition):
    """Attention with Linear Biases: score(i, j) -= slope_h * |pos_i - pos_j|.

    Under a causal mask this is the paper's ``slope * (j - i)``; without one it is the symmetric
    variant used for encoders.
    """

    slopes: Tensor

    def __init__(self, num_heads: int):
        super().__init__()
        self.register_buffer("slopes", alibi_slopes(num_heads), persistent=False)

    def bias(self, lq: int, lk: int, q_start: int, device: torch.device) -> Tensor:
        qpos = torch.arange(q_start, q_start + lq, device=device)[:, None]
        kpos = torch.arange(lk, device=device)[None, :]
        dist = (qpos - kpos).abs().float()  # (Lq, Lk)
        return -self.slopes.to(device)[:, None, None] * dist  # (H, Lq, Lk)
