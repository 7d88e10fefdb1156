"""Multi-head attention with a swappable backend."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import attention_weights, run_backend
from .config import AttentionConfig
from .dropout import Dropout
from .kv_cache import KVCache
from .positional import AttentionPosition
from .registry import Backend, get_backend

__all__ = ["MultiHeadAttention", "set_backend"]


class MultiHeadAttention(nn.Module):
    """Self- and cross-attention with grouped-query heads, positions and a KV cache.

    With ``kdim`` and ``vdim`` equal to ``dim`` the projections are one fused ``qkv`` linear
    and the output one ``proj`` linear, named as in timm's ``Attention``, so timm ViT weights
    load strictly. Cross-attention slices the same ``qkv`` weight (queries from ``x``, keys and
    values from ``context``); with other ``kdim``/``vdim`` separate ``q_proj``, ``k_proj`` and
    ``v_proj`` are used.

    ``backend`` is any of ``list_backends()`` or "auto"; its options come as keyword arguments
    (``window`` for local, ``feature_map`` for linear, ``seq_len`` for linformer; see
    ``backend_table()``). Or pass ``attention=AttentionConfig(...)``, the setting every app takes;
    its ``pos`` is the model's business (it builds the position and passes ``pos=``).
    """

    _attention_sink: list[Tensor] | None

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        num_kv_heads: int | None = None,
        kdim: int | None = None,
        vdim: int | None = None,
        qkv_bias: bool = True,
        qk_norm: bool = False,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        backend: str = "auto",
        pos: AttentionPosition | None = None,
        norm_layer: type[nn.Module] = nn.LayerNorm,
        attention: AttentionConfig | None = None,
        seq_len: int | None = None,
        **backend_kwargs: Any,
    ):
        super().__init__()
        if attention is not None:
            if backend != "auto" or backend_kwargs:
                raise ValueError(
                    "give the attention either as attention=AttentionConfig(...) or as "
                    f"backend=/options, not both (got backend={backend!r}, {backend_kwargs})"
                )
            backend, backend_kwargs = attention.backend, attention.backend_options(seq_len=seq_len)
        elif seq_len is not None:
            backend_kwargs["seq_len"] = seq_len
        if num_heads <= 0 or dim % num_heads != 0:
            raise ValueError(
                f"num_heads={num_heads} must divide dim={dim}; pick a head count that does"
            )
        num_kv_heads = num_kv_heads or num_heads
        if num_heads % num_kv_heads != 0:
            raise ValueError(
                f"num_kv_heads={num_kv_heads} must divide num_heads={num_heads} (grouped-query "
                "attention shares each key/value head among a whole group of query heads)"
            )
        self.dim = dim
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = dim // num_heads
        kv_dim = self.head_dim * num_kv_heads
        self.kv_dim = kv_dim
        self.fused = (kdim is None or kdim == dim) and (vdim is None or vdim == dim)
        if self.fused:
            self.qkv = nn.Linear(dim, dim + 2 * kv_dim, bias=qkv_bias)
        else:
            self.q_proj = nn.Linear(dim, dim, bias=qkv_bias)
            self.k_proj = nn.Linear(kdim or dim, kv_dim, bias=qkv_bias)
            self.v_proj = nn.Linear(vdim or dim, kv_dim, bias=qkv_bias)
        self.q_norm = norm_layer(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = norm_layer(self.head_dim) if qk_norm else nn.Identity()
        self.attn_drop = Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = Dropout(proj_drop)
        self.pos = pos
        self._attention_sink = None
        self.backend = "auto"
        self.backend_kwargs: dict[str, Any] = {}
        self._backend_state: list[str] = []
        self.configure_backend(backend, **backend_kwargs)

    # ------------------------------------------------------------------ backend
    def configure_backend(self, backend: str, **backend_kwargs: Any) -> None:
        """Switch the attention backend (parameters or buffers that backend keeps are made here,
        those of the previous one removed)."""
        spec = get_backend(backend)
        options = spec.resolve_options(backend_kwargs)
        for name in self._backend_state:
            if hasattr(self, name):
                delattr(self, name)
        self._backend_state = spec.init_module(self, options) if spec.init_module else []
        self.backend = backend
        self.backend_kwargs = dict(backend_kwargs)
        self._spec: Backend = spec
        self._options = options

    # ------------------------------------------------------------------ projections
    def _project(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """Queries (B, Lq, dim), keys and values (B, Lk, kv_dim)."""
        if self.fused:
            if context is None:
                q, k, v = self.qkv(x).split([self.dim, self.kv_dim, self.kv_dim], dim=-1)
                return q, k, v
            # One split (backward: one cat) rather than two slices (backward: two zero-filled
            # full-size gradients and an add) of the shared weight and bias.
            sizes = [self.dim, 2 * self.kv_dim]
            w_q, w_kv = self.qkv.weight.split(sizes)
            b_q, b_kv = (None, None) if self.qkv.bias is None else self.qkv.bias.split(sizes)
            q = F.linear(x, w_q, b_q)
            kv = F.linear(context, w_kv, b_kv)
            k, v = kv.split([self.kv_dim, self.kv_dim], dim=-1)
            return q, k, v
        src = x if context is None else context
        return self.q_proj(x), self.k_proj(src), self.v_proj(src)

    def _split_heads(self, t: Tensor, heads: int) -> Tensor:
        b, length, _ = t.shape
        return t.view(b, length, heads, self.head_dim).transpose(1, 2)  # (B, H, L, Dh)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        causal: bool = False,
        kv_cache: KVCache | None = None,
    ) -> Tensor:
        """x (B, Lq, dim), context (B, Lk, kdim) for cross-attention -> (B, Lq, dim).

        ``mask`` is bool (True = may attend) or additive, broadcastable to (B, H, Lq, Lk); a
        key-padding mask is (B, 1, 1, Lk). With ``kv_cache`` the keys of ``x`` are appended to
        the cache (self-attention) or the context's keys are computed once (cross-attention).
        """
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"expected x shaped (B, L, {self.dim}), got {tuple(x.shape)}")
        cross = context is not None
        if cross and context is not None and context.shape[0] != x.shape[0]:
            raise ValueError(
                f"x {tuple(x.shape)} and context {tuple(context.shape)} have different batch sizes"
            )
        reuse = cross and kv_cache is not None and kv_cache.static and len(kv_cache) > 0
        if reuse:
            q = self.q_norm(self._split_heads(self._project_q(x), self.num_heads))
            k_all, v_all = kv_cache.keys, kv_cache.values  # type: ignore[union-attr]
            assert k_all is not None and v_all is not None
            past = 0
        else:
            q_, k_, v_ = self._project(x, context)
            q = self.q_norm(self._split_heads(q_, self.num_heads))  # (B, H, Lq, Dh)
            k = self.k_norm(self._split_heads(k_, self.num_kv_heads))  # (B, Hkv, Lk, Dh)
            v = self._split_heads(v_, self.num_kv_heads)
            past = 0 if (cross or kv_cache is None) else len(kv_cache)
            if self.pos is not None and not cross:
                q, k = self.pos.rotate(q, k, past, past)
            if kv_cache is not None:
                k_all, v_all = kv_cache.update(k, v)
            else:
                k_all, v_all = k, v
        lq, lk = q.shape[2], k_all.shape[2]
        if self.pos is not None and not cross:
            bias = self.pos.bias(lq, lk, lk - lq, q.device)
            if bias is not None:
                mask = _add_bias(mask, bias.to(q.dtype), q)

        spec = self._spec
        if kv_cache is not None and not spec.kv_cache:
            raise ValueError(
                f"backend {self.backend!r} does not support a KV cache; decode with sdpa, math, "
                "local or linear"
            )
        if self._attention_sink is not None:
            with torch.no_grad():
                kv_heads_k = k_all.repeat_interleave(self.num_heads // self.num_kv_heads, dim=1)
                w = attention_weights(
                    q,
                    kv_heads_k,
                    mask=mask,
                    causal=causal,
                    backend=self.backend,
                    module=self,
                    **self._options,
                )
            self._attention_sink.append(w.detach())
        out = run_backend(
            spec,
            q,
            k_all,
            v_all,
            self._options,
            mask=mask,
            causal=causal,
            dropout_p=self.attn_drop.p if self.training else 0.0,
            module=self,
        )
        assert isinstance(out, Tensor)
        out = out.transpose(1, 2).reshape(x.shape[0], lq, self.dim)  # (B, Lq, dim)
        return self.proj_drop(self.proj(out))

    def _project_q(self, x: Tensor) -> Tensor:
        if self.fused:
            w, b = self.qkv.weight, self.qkv.bias
            return F.linear(x, w[: self.dim], None if b is None else b[: self.dim])
        return self.q_proj(x)


def _add_bias(mask: Tensor | None, bias: Tensor, q: Tensor) -> Tensor:
    """Combine an optional bool/additive mask with an additive (H, Lq, Lk) bias."""
    if mask is None:
        return bias
    if mask.dtype == torch.bool:
        return torch.where(mask, bias, torch.full_like(bias, float("-inf")))
    return mask.to(q.dtype) + bias


def set_backend(model: nn.Module, backend: str, **backend_kwargs: Any) -> int:
    """Switch every ``MultiHeadAttention`` in ``model`` to ``backend``; returns how many."""
    count = 0
    for module in model.modules():
        if isinstance(module, MultiHeadAttention):
            module.configure_backend(backend, **backend_kwargs)
            count += 1
    return count
