"""Scaled dot-product attention with swappable backends.

Every backend takes queries, keys and values shaped (B, H, L, D) and the same mask conventions,
so a model can switch between the fused kernel, the explicit softmax, FlexAttention and the
sub-quadratic approximations without touching anything else.

Conventions shared by all backends:

* ``mask`` is boolean (True = may attend) or additive float, broadcastable to (B, H, Lq, Lk).
* ``causal=True`` aligns the causal mask to the bottom right: query ``i`` sits at absolute
  position ``i + Lk - Lq``. With ``Lq == Lk`` this is the usual lower-triangular mask; with a
  KV cache (``Lq < Lk``) new queries see every cached key, which is what incremental decoding needs.
* Grouped-query attention: keys and values may have fewer heads than queries, as long as the
  query heads are a multiple of them.
* A query row whose keys are all masked out attends to nothing: its output and weights are zero.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "BACKENDS",
    "attention",
    "attention_weights",
    "causal_mask",
    "list_backends",
    "normalize_mask",
]

EXACT_BACKENDS = ("sdpa", "math", "flex")
APPROXIMATE_BACKENDS = ("local", "linear", "linformer")


def _flex_available() -> bool:
    try:
        from torch.nn.attention.flex_attention import flex_attention  # noqa: F401
    except Exception:  # pragma: no cover - depends on the torch build
        return False
    return True


def list_backends() -> list[str]:
    """Names accepted by ``attention(..., backend=...)`` and ``MultiHeadAttention``.

    ``"flex"`` is listed only when this torch build ships FlexAttention; ``"linformer"`` is listed
    but only ``MultiHeadAttention`` can run it, because it owns learned projections.
    """
    names = ["sdpa", "math"]
    if _flex_available():
        names.append("flex")
    names += ["local", "linear", "linformer"]
    return names


BACKENDS = tuple(list_backends())


# --------------------------------------------------------------------------------------------
# validation and masks
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# exact backends
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
    dropped = F.dropout(weights, p=dropout_p) if dropout_p > 0 else weights
    return torch.matmul(dropped, v), weights  # (B, H, Lq, D)


def _sdpa(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None,
    causal: bool,
    dropout_p: float,
    scale: float | None,
) -> Tensor:
    if causal and mask is None and q.shape[2] == k.shape[2]:
        return F.scaled_dot_product_attention(
            q, k, v, dropout_p=dropout_p, is_causal=True, scale=scale
        )
    mask = normalize_mask(mask, q, k, causal=causal)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=scale)
    if mask is not None:
        # Rows with no visible key come back as NaN from some kernels: make them zero, as the
        # other backends do.
        # Export-safe: no data-dependent branch.
        out = out.masked_fill(~_visible(mask).any(-1, keepdim=True), 0.0)
    return out


_COMPILED_FLEX: Any = None


def _flex_kernel(on_gpu: bool) -> Any:
    """FlexAttention, compiled on GPU (where its kernels live) and eager elsewhere."""
    global _COMPILED_FLEX
    from torch.nn.attention.flex_attention import flex_attention

    if not on_gpu:
        return flex_attention
    if _COMPILED_FLEX is None:
        _COMPILED_FLEX = torch.compile(flex_attention, dynamic=False)
    return _COMPILED_FLEX


def _flex(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale: float) -> Tensor:
    flex_attention = _flex_kernel(q.is_cuda)
    with warnings.catch_warnings():
        # Eager flex warns that it is slow; on CPU it is the reference path, not a fast one.
        warnings.filterwarnings("ignore", message=".*flex_attention.*")
        return _flex_call(flex_attention, q, k, v, mask, scale)


def _flex_call(
    flex_attention: Any, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale: float
) -> Tensor:
    if mask is None:
        out = flex_attention(q, k, v, scale=scale)
    else:
        bias = _to_additive(mask, q.dtype).expand(q.shape[0], q.shape[1], q.shape[2], k.shape[2])

        def score_mod(score: Tensor, b: Tensor, h: Tensor, qi: Tensor, ki: Tensor) -> Tensor:
            return score + bias[b, h, qi, ki]

        out = flex_attention(q, k, v, score_mod=score_mod, scale=scale)
    assert isinstance(out, Tensor)
    if mask is not None:
        out = out.masked_fill(~_visible(mask).any(-1, keepdim=True), 0.0)
    return out


def _visible(mask: Tensor) -> Tensor:
    return mask if mask.dtype == torch.bool else ~torch.isneginf(mask)


# --------------------------------------------------------------------------------------------
# local (sliding-window) attention, computed block by block in O(L * window) memory
# --------------------------------------------------------------------------------------------


def _local_layout(
    lq: int, lk: int, window: int, block: int, device: torch.device
) -> tuple[int, Tensor, Tensor, Tensor]:
    """Index tensors for the blocked layout of sliding-window attention.

    Returns (num_blocks, query positions (nb, Bq), key positions (nb, Bk), valid (nb, Bq, Bk)).
    Positions are absolute (bottom-right aligned); key positions may fall outside [0, Lk).
    """
    offset = lk - lq
    nb = -(-lq // block)
    span = block + 2 * window
    qpos = torch.arange(nb * block, device=device).view(nb, block) + offset  # (nb, Bq)
    kpos = (
        torch.arange(nb, device=device)[:, None] * block
        + offset
        - window
        + torch.arange(span, device=device)[None, :]
    )  # (nb, Bk)
    dist = qpos[:, :, None] - kpos[:, None, :]  # (nb, Bq, Bk)
    valid = (dist.abs() <= window) & (kpos[:, None, :] >= 0) & (kpos[:, None, :] < lk)
    return nb, qpos, kpos, valid


def _local(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None,
    causal: bool,
    dropout_p: float,
    scale: float,
    window: int,
    block_size: int | None = None,
    return_weights: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Each query sees the keys within ``window`` positions of it (and not after it if causal)."""
    if not isinstance(window, int) or window < 0:
        raise ValueError(f"local attention needs an integer window >= 0, got window={window!r}")
    b, h, lq, d = q.shape
    lk = k.shape[2]
    window = min(window, lk)
    block = block_size or max(16, min(window, 256))
    block = min(block, lq) if lq > 0 else 1
    nb, qpos, kpos, valid = _local_layout(lq, lk, window, block, q.device)
    if causal:
        valid = valid & (kpos[:, None, :] <= qpos[:, :, None])
    span = kpos.shape[1]
    pad_q = nb * block - lq
    qb = F.pad(q, (0, 0, 0, pad_q)).view(b, h, nb, block, d)  # (B, H, nb, Bq, D)
    # Keys padded so that block n's window starts at n * block in padded coordinates.
    left = window - (lk - lq)
    total = (nb - 1) * block + span
    kp = _pad_seq(k, left, total)  # (B, H, total, D)
    vp = _pad_seq(v, left, total)
    kb = kp.unfold(2, span, block)  # (B, H, nb, D, Bk), a view
    vb = vp.unfold(2, span, block)  # (B, H, nb, Dv, Bk)
    scores = torch.einsum("bhnqd,bhndk->bhnqk", qb, kb) * scale  # (B, H, nb, Bq, Bk)
    if mask is not None:
        rows = (qpos - (lk - lq)).clamp(max=lq - 1)[:, :, None]  # (nb, Bq, 1)
        cols = kpos.clamp(0, lk - 1)[:, None, :]  # (nb, 1, Bk)
        full = mask.expand(b, h, lq, lk)
        picked = full[:, :, rows, cols]  # (B, H, nb, Bq, Bk)
        if picked.dtype == torch.bool:
            valid = valid & picked
        else:
            scores = scores + picked
    scores = scores.masked_fill(~valid, float("-inf"))
    weights = _softmax(scores)  # (B, H, nb, Bq, Bk)
    dropped = F.dropout(weights, p=dropout_p) if dropout_p > 0 else weights
    out = torch.einsum("bhnqk,bhndk->bhnqd", dropped, vb)  # (B, H, nb, Bq, Dv)
    out = out.reshape(b, h, nb * block, -1)[:, :, :lq]
    dense = None
    if return_weights:
        # Scatter each block's window back to absolute key positions, shifted by `window` so
        # that out-of-range positions (whose weights are zero) land in a margin we cut off.
        width = lk + block + 2 * window + 1
        idx = (kpos + window)[:, None, :].expand(nb, block, span).reshape(nb * block, span)
        dense = q.new_zeros(b, h, nb * block, width)
        dense.scatter_add_(-1, idx.expand(b, h, -1, -1), weights.reshape(b, h, nb * block, span))
        dense = dense[:, :, :lq, window : window + lk]
    return out, dense


def _pad_seq(x: Tensor, left: int, total: int) -> Tensor:
    """Pad (or trim) dim 2 of x with ``left`` zeros in front so that it is ``total`` long."""
    if left < 0:
        x = x[:, :, -left:]
        left = 0
    right = total - left - x.shape[2]
    if right < 0:
        x = x[:, :, : x.shape[2] + right]
        right = 0
    return F.pad(x, (0, 0, left, right))


# --------------------------------------------------------------------------------------------
# linear (kernelized) attention
# --------------------------------------------------------------------------------------------


def favor_projection(
    head_dim: int,
    num_features: int | None = None,
    *,
    seed: int = 0,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Orthogonal Gaussian random features (num_features, head_dim), as in Performer."""
    m = num_features or max(head_dim, 2 * head_dim)
    gen = torch.Generator().manual_seed(seed)
    blocks = []
    for _ in range(-(-m // head_dim)):
        g = torch.randn(head_dim, head_dim, generator=gen, dtype=torch.float64)
        qmat, r = torch.linalg.qr(g)
        # Fix the column signs (Q diag(sign(diag R))) so that Q is Haar-distributed: raw
        # Householder QR biases every direction, and the kernel estimate then never converges.
        qmat = qmat * torch.sign(torch.diagonal(r))[None, :]
        blocks.append(qmat.T)
    w = torch.cat(blocks)[:m]
    norms = torch.randn(m, head_dim, generator=gen, dtype=torch.float64).norm(dim=1)
    return (w * norms[:, None]).to(device=device, dtype=dtype)


def linear_features(
    x: Tensor,
    feature_map: str,
    *,
    is_query: bool,
    scale: float,
    projection: Tensor | None = None,
) -> Tensor:
    """Positive features phi(x) with phi(q) . phi(k) ~ a similarity kernel, shape (..., L, F)."""
    if feature_map == "elu":
        return F.elu(x) + 1.0
    if feature_map == "favor":
        if projection is None:
            projection = favor_projection(x.shape[-1], device=x.device, dtype=x.dtype)
        x = x * math.sqrt(scale)  # exp(s q.k) = exp((sqrt(s) q).(sqrt(s) k))
        proj = torch.matmul(x, projection.to(x.dtype).T)  # (..., L, F)
        sq = 0.5 * (x * x).sum(-1, keepdim=True)  # (..., L, 1)
        # Subtracting a constant cancels between numerator and normalizer; it only keeps exp
        # in range. Queries may use a per-row constant, keys one shared by all keys.
        if is_query:
            stab = proj.amax(-1, keepdim=True).detach()
        else:
            stab = proj.amax(dim=(-1, -2), keepdim=True).detach()
        return torch.exp(proj - sq - stab) / math.sqrt(projection.shape[0]) + 1e-6
    raise ValueError(f"unknown feature_map {feature_map!r}; choose 'elu' or 'favor'")


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


def _linear(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None,
    causal: bool,
    scale: float,
    feature_map: str = "elu",
    projection: Tensor | None = None,
    chunk_size: int = 128,
    return_weights: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Kernelized attention: out_i = phi(q_i) S / phi(q_i) z, with S = sum_j phi(k_j) v_j^T.

    Causal attention runs chunk by chunk: exact quadratic attention inside a chunk and a running
    (F, D) state across chunks, so memory is O(L * chunk + L/chunk * F * D), never O(L^2).
    """
    lq, lk = q.shape[2], k.shape[2]
    fq = linear_features(q, feature_map, is_query=True, scale=scale, projection=projection)
    fk = linear_features(k, feature_map, is_query=False, scale=scale, projection=projection)
    if mask is not None:
        keep = _key_padding_from_mask(mask, q, k, "linear")  # (B|1, H|1, 1, Lk)
        fk = fk * keep.transpose(-1, -2).to(fk.dtype)  # zero the features of padded keys
    if return_weights:
        raw = torch.matmul(fq, fk.transpose(-1, -2))  # (B, H, Lq, Lk)
        if causal:
            raw = raw * causal_mask(lq, lk, q.device).to(raw.dtype)
        weights = raw / raw.sum(-1, keepdim=True).clamp_min(1e-12)
        return torch.matmul(weights, v), weights
    if not causal:
        state = torch.matmul(fk.transpose(-1, -2), v)  # (B, H, F, Dv)
        norm = fk.sum(-2)  # (B, H, F)
        num = torch.matmul(fq, state)  # (B, H, Lq, Dv)
        den = torch.matmul(fq, norm.unsqueeze(-1))  # (B, H, Lq, 1)
        return num / den.clamp_min(1e-12), None
    if lq != lk:
        # Decoding against a longer history: prefix state of the keys before the queries.
        past = lk - lq
        out_past_state = torch.matmul(fk[:, :, :past].transpose(-1, -2), v[:, :, :past])
        past_norm = fk[:, :, :past].sum(-2)
        fk, v = fk[:, :, past:], v[:, :, past:]
    else:
        out_past_state = None
        past_norm = None
    b, h, n, f = fq.shape
    dv = v.shape[-1]
    c = min(chunk_size, n)
    nc = -(-n // c)
    pad = nc * c - n
    fqc = F.pad(fq, (0, 0, 0, pad)).view(b, h, nc, c, f)  # (B, H, nc, C, F)
    fkc = F.pad(fk, (0, 0, 0, pad)).view(b, h, nc, c, f)
    vc = F.pad(v, (0, 0, 0, pad)).view(b, h, nc, c, dv)
    chunk_state = torch.matmul(fkc.transpose(-1, -2), vc)  # (B, H, nc, F, Dv)
    chunk_norm = fkc.sum(-2)  # (B, H, nc, F)
    # exclusive prefix over chunks: the state every chunk starts from
    prev_state = torch.cumsum(chunk_state, dim=2) - chunk_state
    prev_norm = torch.cumsum(chunk_norm, dim=2) - chunk_norm
    if out_past_state is not None and past_norm is not None:
        prev_state = prev_state + out_past_state[:, :, None]
        prev_norm = prev_norm + past_norm[:, :, None]
    tri = torch.ones(c, c, dtype=torch.bool, device=q.device).tril()
    intra = torch.matmul(fqc, fkc.transpose(-1, -2)).masked_fill(~tri, 0.0)  # (B, H, nc, C, C)
    num = torch.matmul(intra, vc) + torch.matmul(fqc, prev_state)  # (B, H, nc, C, Dv)
    den = intra.sum(-1, keepdim=True) + torch.matmul(fqc, prev_norm.unsqueeze(-1))
    out = (num / den.clamp_min(1e-12)).reshape(b, h, nc * c, dv)[:, :, :n]
    return out, None


# --------------------------------------------------------------------------------------------
# the public entry points
# --------------------------------------------------------------------------------------------


def _check_backend(backend: str) -> str:
    if backend == "auto":
        return "sdpa"
    if backend not in list_backends():
        raise ValueError(f"unknown attention backend {backend!r}; choose one of {list_backends()}")
    return backend


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None = None,
    causal: bool = False,
    dropout_p: float = 0.0,
    scale: float | None = None,
    backend: str = "auto",
    return_weights: bool = False,
    **backend_kwargs: Any,
) -> Tensor | tuple[Tensor, Tensor]:
    """Attention of q (B, H, Lq, D) over k (B, Hkv, Lk, D) and v (B, Hkv, Lk, Dv).

    Returns the output (B, H, Lq, Dv), or (output, weights (B, H, Lq, Lk)) with
    ``return_weights=True``; exact backends then run the explicit softmax, approximate ones
    return the weights they effectively applied.

    Backend options: ``local`` takes ``window`` (keys on each side, required) and ``block_size``;
    ``linear`` takes ``feature_map`` ("elu" or "favor"), ``projection`` (favor's random
    features, (F, D)) and ``chunk_size`` (causal chunking).
    """
    backend = _check_backend(backend)
    _check_qkv(q, k, v)
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}")
    allowed: dict[str, set[str]] = {
        "local": {"window", "block_size"},
        "linear": {"feature_map", "projection", "chunk_size"},
    }
    extra = set(backend_kwargs) - allowed.get(backend, set())
    if extra:
        raise ValueError(f"backend {backend!r} does not take options {sorted(extra)}")
    if backend == "linformer":
        raise ValueError(
            "backend 'linformer' learns projections of K and V, so it lives in a module: use "
            "MultiHeadAttention(dim, num_heads, backend='linformer', seq_len=...)"
        )
    k, v = _expand_kv_heads(q, k, v)
    s = _scale(q, scale)

    if backend == "local":
        if "window" not in backend_kwargs:
            raise ValueError("backend 'local' needs window=<keys on each side>")
        mask = normalize_mask(mask, q, k)
        out_l, w_l = _local(
            q, k, v, mask, causal, dropout_p, s, return_weights=return_weights, **backend_kwargs
        )
        return (out_l, w_l) if return_weights and w_l is not None else out_l
    if backend == "linear":
        if dropout_p > 0:
            raise ValueError(
                "linear attention has no attention matrix to drop out; use dropout_p=0"
            )
        mask = normalize_mask(mask, q, k)
        out_n, w_n = _linear(
            q, k, v, mask, causal, s, return_weights=return_weights, **backend_kwargs
        )
        return (out_n, w_n) if return_weights and w_n is not None else out_n

    if return_weights or backend == "math":
        full = normalize_mask(mask, q, k, causal=causal)
        out, weights = _math(q, k, v, full, dropout_p, s)
        return (out, weights) if return_weights else out
    if backend == "flex":
        full = normalize_mask(mask, q, k, causal=causal)
        needs_grad = torch.is_grad_enabled() and (
            q.requires_grad or k.requires_grad or v.requires_grad
        )
        if dropout_p > 0 or (q.device.type == "cpu" and needs_grad):
            # FlexAttention has no dropout and no CPU backward; the explicit softmax is the same
            # exact attention and has both.
            return _math(q, k, v, full, dropout_p, s)[0]
        return _flex(q, k, v, full, s)
    if mask is not None:
        mask = normalize_mask(mask, q, k)
    return _sdpa(q, k, v, mask, causal, dropout_p, scale)


def attention_weights(
    q: Tensor,
    k: Tensor,
    *,
    mask: Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
    backend: str = "auto",
    **backend_kwargs: Any,
) -> Tensor:
    """The (B, H, Lq, Lk) attention probabilities the given backend applies, without dropout.

    For the exact backends this is softmax(q k^T * scale + mask); for ``local`` the same inside
    the window; for ``linear`` the normalized kernel phi(q) phi(k)^T. Used to draw attention maps
    of models that run a fused kernel.
    """
    v = q.new_zeros(k.shape[0], k.shape[1], k.shape[2], 1)
    result = attention(
        q,
        k,
        v,
        mask=mask,
        causal=causal,
        scale=scale,
        backend="math" if backend in EXACT_BACKENDS or backend == "auto" else backend,
        return_weights=True,
        **backend_kwargs,
    )
    assert isinstance(result, tuple)
    return result[1]
