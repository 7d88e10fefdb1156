"""Shape checks, masks and the explicit softmax shared by every attention path.

The exact backends (``attention.py``), sliding-window attention (``local.py``) and the kernelized
and projected approximations (``linear.py``, linformer) all check their inputs, fold ``causal``
into the mask and read it the same way; those pieces live here, below all of them, so that no
backend imports another. The conventions (shapes, mask polarity, causal alignment) are stated
once, at the top of ``attention.py``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .dropout import dropout

__all__ = ["causal_mask", "normalize_mask"]


def _check_qkv(q: Tensor, k: Tensor, v: Tensor) -> None:
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            "attention expects q, k, v shaped (B, H, L, D); got "
            f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"query and key head dims differ: q {tuple(q.shape)} has D={q.shape[-1]}, "
            f"k {tuple(k.shape)} has D={k.shape[-1]}; project them to the same head dim"
        )
    if k.shape[:3] != v.shape[:3]:
        raise ValueError(
            f"keys and values must share (B, H, Lk): k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if q.shape[0] != k.shape[0]:
        raise ValueError(f"batch sizes differ: q {tuple(q.shape)}, k {tuple(k.shape)}")
    if q.shape[1] % k.shape[1] != 0:
        raise ValueError(
            f"query heads ({q.shape[1]}) must be a multiple of key/value heads ({k.shape[1]}): "
            f"q {tuple(q.shape)}, k {tuple(k.shape)}"
        )


def _expand_kv_heads(q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """Repeat key/value heads for grouped-query attention."""
    groups = q.shape[1] // k.shape[1]
    if groups == 1:
        return k, v
    # (B, Hkv, Lk, D) -> (B, Hkv * groups, Lk, D), each kv head shared by `groups` query heads
    return k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)


def causal_mask(lq: int, lk: int, device: torch.device | None = None) -> Tensor:
    """Boolean (Lq, Lk) mask, True where query ``i`` (at position ``i + lk - lq``) may see key ``j``."""
    offset = lk - lq
    rows = torch.arange(lq, device=device)[:, None] + offset
    cols = torch.arange(lk, device=device)[None, :]
    return cols <= rows


def normalize_mask(
    mask: Tensor | None, q: Tensor, k: Tensor, *, causal: bool = False
) -> Tensor | None:
    """Check ``mask`` against (B, H, Lq, Lk) and fold ``causal`` into it.

    Returns None (no mask), a bool mask or an additive float mask in q's dtype, broadcastable to
    (B, H, Lq, Lk).
    """
    b, h, lq, lk = q.shape[0], q.shape[1], q.shape[2], k.shape[2]
    if mask is not None:
        if mask.dim() > 4:
            raise ValueError(
                f"mask {tuple(mask.shape)} has more than 4 dims; expected broadcastable to "
                f"(B, H, Lq, Lk) = {(b, h, lq, lk)}"
            )
        try:
            shape = torch.broadcast_shapes(mask.shape, (b, h, lq, lk))
        except RuntimeError:
            shape = None
        if shape != (b, h, lq, lk):
            raise ValueError(
                f"mask of shape {tuple(mask.shape)} does not broadcast to (B, H, Lq, Lk) = "
                f"{(b, h, lq, lk)}; a key-padding mask is (B, 1, 1, Lk)"
            )
        if mask.dtype != torch.bool:
            if not mask.is_floating_point():
                raise ValueError(f"mask must be bool or float, got dtype {mask.dtype}")
            mask = mask.to(q.dtype)
    if causal:
        cm = causal_mask(lq, lk, q.device)
        if mask is None:
            mask = cm
        elif mask.dtype == torch.bool:
            mask = mask & cm
        else:
            mask = mask.masked_fill(~cm, float("-inf"))
    return mask


def _to_additive(mask: Tensor, dtype: torch.dtype) -> Tensor:
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(
            ~mask, float("-inf")
        )
    return mask


def _visible(mask: Tensor) -> Tensor:
    return mask if mask.dtype == torch.bool else ~torch.isneginf(mask)


def _softmax(scores: Tensor, masked: bool = True) -> Tensor:
    """Softmax that gives zero weights (not NaN) to rows with every key masked out.

    Dead rows go through softmax as zeros: a NaN there would come back as a NaN gradient. The
    fix-up is unconditional (no ``if dead.any()``), so the graph has no data-dependent branch and
    stays exportable with torch.export and ONNX.
    """
    if not masked:
        return torch.softmax(scores, dim=-1)
    dead = torch.isneginf(scores).all(dim=-1, keepdim=True)
    weights = torch.softmax(scores.masked_fill(dead, 0.0), dim=-1)
    return weights.masked_fill(dead, 0.0)


def _scale(q: Tensor, scale: float | None) -> float:
    return scale if scale is not None else 1.0 / math.sqrt(q.shape[-1])


def _key_padding_from_mask(mask: Tensor, q: Tensor, k: Tensor, backend: str) -> Tensor:
    """Reduce a mask to a key-padding mask (B or 1, H or 1, 1, Lk), refusing anything else."""
    vis = _visible(mask)
    if vis.shape[-2] != 1:
        raise ValueError(
            f"{backend} attention supports only key-padding masks shaped (B, 1, 1, Lk); got a mask "
            f"of shape {tuple(mask.shape)} for q {tuple(q.shape)}, k {tuple(k.shape)}"
        )
    if mask.dtype != torch.bool and bool(((mask != 0) & ~torch.isneginf(mask)).any()):
        raise ValueError(
            f"{backend} attention cannot apply an additive bias; only 0/-inf float masks are allowed"
        )
    while vis.dim() < 4:
        vis = vis.unsqueeze(0)
    return vis


# --------------------------------------------------------------------------------------------
# the explicit softmax: the math backend, and the dense fallback of every other path
# --------------------------------------------------------------------------------------------


def _math_scores(q: Tensor, k: Tensor, mask: Tensor | None, scale: float) -> Tensor:
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale  # (B, H, Lq, Lk)
    if mask is not None:
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask
    return scores


def _math(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None,
    dropout_p: float,
    scale: float,
) -> tuple[Tensor, Tensor]:
    weights = _softmax(_math_scores(q, k, mask, scale), masked=mask is not None)  # (B, H, Lq, Lk)
    dropped = dropout(weights, dropout_p) if dropout_p > 0 else weights
    return torch.matmul(dropped, v), weights  # (B, H, Lq, D)
