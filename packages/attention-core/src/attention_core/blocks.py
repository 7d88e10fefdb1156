"""Transformer building blocks: pre-norm encoder and decoder blocks and their stacks.

Parameter names follow timm's ``Block`` and ``Mlp`` (``norm1``, ``attn``, ``ls1``, ``norm2``,
``mlp.fc1``, ``mlp.fc2``), so timm checkpoints map one to one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from .config import AttentionConfig
from .dropout import Dropout
from .kv_cache import KVCache
from .mha import MultiHeadAttention
from .positional import AttentionPosition

__all__ = [
    "DropPath",
    "LayerScale",
    "Mlp",
    "TransformerDecoder",
    "TransformerDecoderBlock",
    "TransformerEncoder",
    "TransformerEncoderBlock",
    "drop_path",
]


class Mlp(nn.Module):
    """Two linear layers with an activation: dim -> hidden -> out."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        out_features: int | None = None,
        act_layer: Callable[[], nn.Module] = nn.GELU,
        bias: bool = True,
        drop: float = 0.0,
    ):
        super().__init__()
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
        self.act = act_layer()
        self.drop1 = Dropout(drop)
        self.norm = nn.Identity()
        self.fc2 = nn.Linear(hidden_features, out_features, bias=bias)
        self.drop2 = Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop2(self.fc2(self.norm(self.drop1(self.act(self.fc1(x))))))


def drop_path(x: Tensor, drop_prob: float, training: bool) -> Tensor:
    """Stochastic depth: drop the whole residual branch for a random subset of samples."""
    if drop_prob == 0.0 or not training:
        return x
    keep = 1.0 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)  # (B, 1, ..., 1): one draw per sample
    return x * x.new_empty(shape).bernoulli_(keep) / keep


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016) as a module, wrapped around a residual branch.

    In training, each sample's branch output is zeroed with probability ``drop_prob`` and the
    kept ones are scaled by ``1 / (1 - drop_prob)``, so the expected output is unchanged; in
    eval mode it is the identity. Deep ViTs use it to regularise and to train their later
    blocks as if the network were shallower (``drop_path_rate`` grows with depth).
    """

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class LayerScale(nn.Module):
    """Per-channel learned scale of a residual branch (CaiT), started small."""

    def __init__(self, dim: int, init_values: float = 1e-5):
        super().__init__()
        self.gamma = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


def _scale_or_identity(dim: int, init_values: float | None) -> nn.Module:
    return LayerScale(dim, init_values) if init_values else nn.Identity()


def _drop_or_identity(p: float) -> nn.Module:
    return DropPath(p) if p > 0 else nn.Identity()


class TransformerEncoderBlock(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        *,
        qkv_bias: bool = True,
        qk_norm: bool = False,
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
        init_values: float | None = None,
        drop_path: float = 0.0,
        act_layer: Callable[[], nn.Module] = nn.GELU,
        norm_layer: Callable[[int], nn.Module] = nn.LayerNorm,
        num_kv_heads: int | None = None,
        backend: str = "auto",
        pos: AttentionPosition | None = None,
        attn: nn.Module | None = None,
        attention: AttentionConfig | None = None,
        **backend_kwargs: Any,
    ):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = attn or MultiHeadAttention(
            dim,
            num_heads,
            num_kv_heads=num_kv_heads,
            qkv_bias=qkv_bias,
            qk_norm=qk_norm,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            backend=backend,
            pos=pos,
            attention=attention,
            **backend_kwargs,
        )
        self.ls1 = _scale_or_identity(dim, init_values)
        self.drop_path1 = _drop_or_identity(drop_path)
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=proj_drop)
        self.ls2 = _scale_or_identity(dim, init_values)
        self.drop_path2 = _drop_or_identity(drop_path)

    def forward(
        self,
        x: Tensor,
        *,
        mask: Tensor | None = None,
        causal: bool = False,
        kv_cache: KVCache | None = None,
    ) -> Tensor:
        """x (B, L, dim) -> (B, L, dim)."""
        a = self.attn(self.norm1(x), mask=mask, causal=causal, kv_cache=kv_cache)
        x = x + self.drop_path1(self.ls1(a))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


class TransformerDecoderBlock(nn.Module):
    """Pre-norm decoder block: masked self-attention, cross-attention to memory, then an MLP."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        *,
        memory_dim: int | None = None,
        qkv_bias: bool = True,
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
        init_values: float | None = None,
        drop_path: float = 0.0,
        act_layer: Callable[[], nn.Module] = nn.GELU,
        norm_layer: Callable[[int], nn.Module] = nn.LayerNorm,
        num_kv_heads: int | None = None,
        backend: str = "auto",
        pos: AttentionPosition | None = None,
        attention: AttentionConfig | None = None,
        cross_attention: AttentionConfig | None = None,
        **backend_kwargs: Any,
    ):
        super().__init__()
        common: dict[str, Any] = dict(
            qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop, num_kv_heads=num_kv_heads
        )
        self.norm1 = norm_layer(dim)
        if attention is not None:
            attention.check(where="decoder self-attention", causal=True, kv_cache=True)
        self.self_attn = MultiHeadAttention(
            dim,
            num_heads,
            backend=backend,
            pos=pos,
            attention=attention,
            **common,
            **backend_kwargs,
        )
        self.ls1 = _scale_or_identity(dim, init_values)
        self.drop_path1 = _drop_or_identity(drop_path)
        self.norm2 = norm_layer(dim)
        # Cross-attention has its own setting (default: the exact fused kernel): memories (image
        # grids, encoder outputs) are short, and a window over them has no meaning.
        self.cross_attn = MultiHeadAttention(
            dim, num_heads, kdim=memory_dim, vdim=memory_dim, attention=cross_attention, **common
        )
        self.ls2 = _scale_or_identity(dim, init_values)
        self.drop_path2 = _drop_or_identity(drop_path)
        self.norm3 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=proj_drop)
        self.ls3 = _scale_or_identity(dim, init_values)
        self.drop_path3 = _drop_or_identity(drop_path)

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        *,
        mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        causal: bool = True,
        kv_cache: tuple[KVCache, KVCache] | None = None,
    ) -> Tensor:
        """x (B, L, dim), memory (B, M, memory_dim) -> (B, L, dim).

        ``kv_cache`` is (self-attention cache, static cross-attention cache).
        """
        self_cache, cross_cache = kv_cache if kv_cache is not None else (None, None)
        a = self.self_attn(self.norm1(x), mask=mask, causal=causal, kv_cache=self_cache)
        x = x + self.drop_path1(self.ls1(a))
        c = self.cross_attn(self.norm2(x), memory, mask=memory_mask, kv_cache=cross_cache)
        x = x + self.drop_path2(self.ls2(c))
        return x + self.drop_path3(self.ls3(self.mlp(self.norm3(x))))


def _drop_path_rates(rate: float, depth: int) -> list[float]:
    """Stochastic depth rising linearly from 0 at the first block to ``rate`` at the last."""
    if depth == 1:
        return [rate]
    return [rate * i / (depth - 1) for i in range(depth)]


class TransformerEncoder(nn.Module):
    """A stack of ``TransformerEncoderBlock`` followed by a final norm.

    ``block_kwargs`` reach every block (``backend``, ``window``, ``pos``, ``init_values``, ...).
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        *,
        drop_path_rate: float = 0.0,
        final_norm: bool = True,
        norm_layer: Callable[[int], nn.Module] = nn.LayerNorm,
        **block_kwargs: Any,
    ):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        rates = _drop_path_rates(drop_path_rate, depth)
        self.blocks = nn.ModuleList(
            TransformerEncoderBlock(
                dim, num_heads, mlp_ratio, drop_path=r, norm_layer=norm_layer, **block_kwargs
            )
            for r in rates
        )
        self.norm = norm_layer(dim) if final_norm else nn.Identity()

    def new_cache(self, max_len: int | None = None) -> list[KVCache]:
        return [KVCache(max_len) for _ in self.blocks]

    def forward(
        self,
        x: Tensor,
        *,
        mask: Tensor | None = None,
        causal: bool = False,
        kv_cache: list[KVCache] | None = None,
    ) -> Tensor:
        """x (B, L, dim) -> (B, L, dim)."""
        for i, block in enumerate(self.blocks):
            cache = kv_cache[i] if kv_cache is not None else None
            x = block(x, mask=mask, causal=causal, kv_cache=cache)
        return self.norm(x)


class TransformerDecoder(nn.Module):
    """A stack of ``TransformerDecoderBlock`` followed by a final norm."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        *,
        drop_path_rate: float = 0.0,
        final_norm: bool = True,
        norm_layer: Callable[[int], nn.Module] = nn.LayerNorm,
        **block_kwargs: Any,
    ):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        rates = _drop_path_rates(drop_path_rate, depth)
        self.blocks = nn.ModuleList(
            TransformerDecoderBlock(
                dim, num_heads, mlp_ratio, drop_path=r, norm_layer=norm_layer, **block_kwargs
            )
            for r in rates
        )
        self.norm = norm_layer(dim) if final_norm else nn.Identity()

    def new_cache(self, max_len: int | None = None) -> list[tuple[KVCache, KVCache]]:
        """One (self, cross) cache pair per block for incremental decoding."""
        return [(KVCache(max_len), KVCache(static=True)) for _ in self.blocks]

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        *,
        mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        causal: bool = True,
        kv_cache: list[tuple[KVCache, KVCache]] | None = None,
    ) -> Tensor:
        """x (B, L, dim), memory (B, M, memory_dim) -> (B, L, dim)."""
        for i, block in enumerate(self.blocks):
            cache = kv_cache[i] if kv_cache is not None else None
            x = block(x, memory, mask=mask, memory_mask=memory_mask, causal=causal, kv_cache=cache)
        return self.norm(x)
