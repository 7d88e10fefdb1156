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
from torch import Tensor, nn

from .registry import Backend, BackendOption, get_backend, list_backends, register_backend

__all__ = [
    "APPROXIMATE_BACKENDS",
    "EXACT_BACKENDS",
    "attention",
    "attention_weights",
    "causal_mask",
    "list_backends",
    "normalize_mask",
]


def _flex_available() -> bool:
    try:
        from torch.nn.attention.flex_attention import flex_attention  # noqa: F401
    except Exception:  # pragma: no cover - depends on the torch build
        return False
    return True


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
    global_tokens: int = 0,
) -> tuple[Tensor, Tensor | None]:
    """Each query sees the keys within ``window`` positions of it (and not after it if causal).

    With ``global_tokens=g`` the first ``g`` positions are global, as in Longformer: every query
    also sees keys ``[0, g)`` and the queries at positions ``[0, g)`` see every key. A class token
    that sits first then still reads the whole sequence. Memory stays O(L * (window + g)).
    """
    if not isinstance(window, int) or window < 0:
        raise ValueError(f"local attention needs an integer window >= 0, got window={window!r}")
    b, h, lq, d = q.shape
    lk = k.shape[2]
    window = min(window, lk)
    g = min(int(global_tokens), lk)
    block = block_size or max(16, min(window, 256))
    block = min(block, lq) if lq > 0 else 1
    nb, qpos, kpos, valid = _local_layout(lq, lk, window, block, q.device)
    if causal:
        valid = valid & (kpos[:, None, :] <= qpos[:, :, None])
    if g:
        valid = valid & (kpos[:, None, :] >= g)  # global keys are scored once, below
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
    rows = (qpos - (lk - lq)).clamp(0, max(lq - 1, 0))  # (nb, Bq) query row of each slot
    if mask is not None:
        cols = kpos.clamp(0, lk - 1)[:, None, :]  # (nb, 1, Bk)
        full = mask.expand(b, h, lq, lk)
        picked = full[:, :, rows[:, :, None], cols]  # (B, H, nb, Bq, Bk)
        if picked.dtype == torch.bool:
            valid = valid & picked
        else:
            scores = scores + picked
    scores = scores.masked_fill(~valid, float("-inf"))
    if g:
        # Scores of every query against the global keys, joined to its window in one softmax.
        gscores = torch.einsum("bhnqd,bhgd->bhnqg", qb, k[:, :, :g]) * scale  # (B, H, nb, Bq, g)
        gvalid = torch.ones(nb, block, g, dtype=torch.bool, device=q.device)
        if causal:
            gvalid = gvalid & (torch.arange(g, device=q.device)[None, None, :] <= qpos[:, :, None])
        if mask is not None:
            gpicked = mask.expand(b, h, lq, lk)[:, :, :, :g][:, :, rows]  # (B, H, nb, Bq, g)
            if gpicked.dtype == torch.bool:
                gvalid = gvalid & gpicked
            else:
                gscores = gscores + gpicked
        gscores = gscores.masked_fill(~gvalid, float("-inf"))
        joint = _softmax(torch.cat([gscores, scores], dim=-1))  # (B, H, nb, Bq, g + Bk)
        gweights, weights = joint.split([g, span], dim=-1)
    else:
        weights = _softmax(scores)  # (B, H, nb, Bq, Bk)
    dropped = F.dropout(weights, p=dropout_p) if dropout_p > 0 else weights
    out = torch.einsum("bhnqk,bhndk->bhnqd", dropped, vb)  # (B, H, nb, Bq, Dv)
    if g:
        gdropped = F.dropout(gweights, p=dropout_p) if dropout_p > 0 else gweights
        out = out + torch.einsum("bhnqg,bhgd->bhnqd", gdropped, v[:, :, :g])
    out = out.reshape(b, h, nb * block, -1)[:, :, :lq]
    # Queries at the global positions attend to every key (a few dense rows).
    ng = max(0, min(lq, g - (lk - lq))) if g else 0
    dense_rows = None
    if ng:
        gmask = None if mask is None else mask.expand(b, h, lq, lk)[:, :, :ng]
        if causal:
            cm = causal_mask(lq, lk, q.device)[:ng]  # (ng, Lk)
            gmask = cm if gmask is None else _combine(gmask, cm, q.dtype)
        grow_out, dense_rows = _math(q[:, :, :ng], k, v, gmask, dropout_p, scale)
        out = torch.cat([grow_out, out[:, :, ng:]], dim=2)
    dense = None
    if return_weights:
        # Scatter each block's window back to absolute key positions, shifted by `window` so
        # that out-of-range positions (whose weights are zero) land in a margin we cut off.
        width = lk + block + 2 * window + 1
        idx = (kpos + window)[:, None, :].expand(nb, block, span).reshape(nb * block, span)
        dense = q.new_zeros(b, h, nb * block, width)
        dense.scatter_add_(-1, idx.expand(b, h, -1, -1), weights.reshape(b, h, nb * block, span))
        dense = dense[:, :, :lq, window : window + lk]
        if g:
            gcols = gweights.reshape(b, h, nb * block, g)[:, :, :lq]  # (B, H, Lq, g)
            dense = torch.cat([dense[..., :g] + gcols, dense[..., g:]], dim=-1)
        if dense_rows is not None:
            dense = torch.cat([dense_rows, dense[:, :, ng:]], dim=2)
    return out, dense


def _combine(mask: Tensor, allowed: Tensor, dtype: torch.dtype) -> Tensor:
    """A bool or additive mask restricted to where the bool ``allowed`` is True."""
    if mask.dtype == torch.bool:
        return mask & allowed
    return mask.to(dtype).masked_fill(~allowed, float("-inf"))


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
    """Orthogonal Gaussian random features (num_features, head_dim), as in Performer.

    The default, 4 x head_dim, is where the error against exact attention stops falling fast on
    moderate scores (the measured table is in the package README): more features cost linearly.
    """
    m = num_features or 4 * head_dim
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


# --------------------------------------------------------------------------------------------
# the built-in backends, registered in attention_core.registry
# --------------------------------------------------------------------------------------------


def _math_backend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None,
    causal: bool,
    dropout_p: float,
    scale: float,
    return_weights: bool,
    module: nn.Module | None,
) -> tuple[Tensor, Tensor | None]:
    full = normalize_mask(mask, q, k, causal=causal)
    out, weights = _math(q, k, v, full, dropout_p, scale)
    return out, weights if return_weights else None


def _sdpa_backend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None,
    causal: bool,
    dropout_p: float,
    scale: float,
    return_weights: bool,
    module: nn.Module | None,
) -> tuple[Tensor, Tensor | None]:
    if return_weights:  # the fused kernel never forms the weights: the explicit softmax does
        return _math_backend(
            q,
            k,
            v,
            mask=mask,
            causal=causal,
            dropout_p=dropout_p,
            scale=scale,
            return_weights=True,
            module=module,
        )
    return _sdpa(q, k, v, mask, causal, dropout_p, scale), None


_FLEX_FALLBACK_WARNED = False


def _flex_backend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None,
    causal: bool,
    dropout_p: float,
    scale: float,
    return_weights: bool,
    module: nn.Module | None,
) -> tuple[Tensor, Tensor | None]:
    global _FLEX_FALLBACK_WARNED
    full = normalize_mask(mask, q, k, causal=causal)
    needs_grad = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
    if return_weights or dropout_p > 0 or (q.device.type == "cpu" and needs_grad):
        # FlexAttention has no dropout and no CPU backward; the explicit softmax is the same
        # exact attention and has both. Said once, so nobody times "flex" and measures math.
        if not return_weights and not _FLEX_FALLBACK_WARNED:
            _FLEX_FALLBACK_WARNED = True
            why = "dropout" if dropout_p > 0 else "backward pass on the CPU"
            warnings.warn(
                f"backend 'flex' ran the math backend: FlexAttention has no {why}; it runs "
                "FlexAttention for inference on the CPU and everywhere on a GPU",
                stacklevel=4,
            )
        out, weights = _math(q, k, v, full, dropout_p, scale)
        return out, weights if return_weights else None
    return _flex(q, k, v, full, scale), None


def _local_backend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None,
    causal: bool,
    dropout_p: float,
    scale: float,
    return_weights: bool,
    module: nn.Module | None,
    window: int,
    block_size: int | None = None,
    global_tokens: int = 0,
) -> tuple[Tensor, Tensor | None]:
    return _local(
        q,
        k,
        v,
        mask,
        causal,
        dropout_p,
        scale,
        window,
        block_size,
        return_weights=return_weights,
        global_tokens=global_tokens,
    )


def _init_linear(module: nn.Module, options: dict[str, Any]) -> list[str]:
    """Performer's random features live on the module, fixed (a buffer), so runs repeat."""
    if options.get("feature_map") != "favor":
        return []
    head_dim = int(module.head_dim)
    module.register_buffer(
        "favor_features", favor_projection(head_dim, options.get("num_features"))
    )
    return ["favor_features"]


def _linear_backend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None,
    causal: bool,
    dropout_p: float,
    scale: float,
    return_weights: bool,
    module: nn.Module | None,
    feature_map: str = "elu",
    num_features: int | None = None,
    chunk_size: int = 128,
    projection: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    if feature_map == "favor" and projection is None:
        if module is not None and hasattr(module, "favor_features"):
            projection = module.favor_features
        else:
            projection = favor_projection(q.shape[-1], num_features, device=q.device, dtype=q.dtype)
    return _linear(
        q,
        k,
        v,
        mask,
        causal,
        scale,
        feature_map=feature_map,
        projection=projection,
        chunk_size=chunk_size,
        return_weights=return_weights,
    )


def _init_linformer(module: nn.Module, options: dict[str, Any]) -> list[str]:
    """E and F of Wang et al. (2020): (proj_dim, seq_len), shared by all heads."""
    seq_len = int(options["seq_len"])
    proj_dim = int(options.get("proj_dim") or min(64, seq_len))
    module.linformer_e = nn.Parameter(torch.randn(proj_dim, seq_len) / seq_len**0.5)
    module.linformer_f = nn.Parameter(torch.randn(proj_dim, seq_len) / seq_len**0.5)
    return ["linformer_e", "linformer_f"]


def _linformer_backend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None,
    causal: bool,
    dropout_p: float,
    scale: float,
    return_weights: bool,
    module: nn.Module | None,
    seq_len: int,
    proj_dim: int | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Project K and V (B, H, Lk, D) along the sequence to (B, H, proj_dim, D), then exact
    attention over the projections."""
    assert module is not None  # learned backends only run inside a module
    lk = k.shape[2]
    e_all, f_all = module.linformer_e, module.linformer_f
    if lk > e_all.shape[1]:
        raise ValueError(
            f"linformer was built for seq_len={e_all.shape[1]} but got {lk} keys; "
            "rebuild it with a larger seq_len"
        )
    if mask is not None:
        keep = _key_padding_from_mask(mask, q, k, "linformer")  # (B|1, H|1, 1, Lk)
        keep = keep.transpose(-1, -2).to(k.dtype)  # (B|1, H|1, Lk, 1)
        k, v = k * keep, v * keep
    e = e_all[:, :lk].to(k.dtype)
    f = f_all[:, :lk].to(v.dtype)
    k = torch.einsum("pl,bhld->bhpd", e, k)  # (B, H, proj_dim, D)
    v = torch.einsum("pl,bhld->bhpd", f, v)
    if return_weights:
        out, weights = _math(q, k, v, None, dropout_p, scale)  # weights over the projections
        return out, weights
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, scale=scale), None


def _register_builtins() -> None:
    opt = BackendOption
    register_backend(
        Backend(
            "sdpa",
            _sdpa_backend,
            doc="torch's fused scaled_dot_product_attention (flash / memory-efficient / math kernels)",
        ),
        replace=True,
    )
    register_backend(
        Backend("math", _math_backend, doc="the explicit softmax(q k^T * scale + mask) v"),
        replace=True,
    )
    register_backend(
        Backend(
            "flex",
            _flex_backend,
            doc="FlexAttention; on the CPU it runs the math backend for training and dropout "
            "(warned once)",
            export=False,
            available=_flex_available,
        ),
        replace=True,
    )
    register_backend(
        Backend(
            "local",
            _local_backend,
            doc="sliding window, O(L * window) memory; global_tokens first positions see and are "
            "seen by all (Longformer)",
            options=(
                opt("window", int, required=True, minimum=0, doc="keys on each side"),
                opt(
                    "block_size",
                    int,
                    None,
                    doc="queries per block (memory/speed trade-off)",
                    minimum=1,
                ),
                opt("global_tokens", int, 0, doc="first positions attending globally", minimum=0),
            ),
            exact=False,
        ),
        replace=True,
    )
    register_backend(
        Backend(
            "linear",
            _linear_backend,
            doc="kernelized attention (elu + 1, or Performer FAVOR+ random features); causal "
            "runs chunk by chunk",
            options=(
                opt("feature_map", str, "elu", choices=("elu", "favor"), doc="feature map"),
                opt(
                    "num_features",
                    int,
                    None,
                    minimum=1,
                    doc="FAVOR+ random features (default 4 x head_dim)",
                ),
                opt("chunk_size", int, 128, minimum=1, doc="causal chunk length"),
                opt("projection", Tensor, None, doc="fixed FAVOR+ features (F, D), functional use"),
            ),
            exact=False,
            masks="key_padding",
            dropout=False,
            init_module=_init_linear,
        ),
        replace=True,
    )
    register_backend(
        Backend(
            "linformer",
            _linformer_backend,
            doc="learned projections of K and V along the sequence (Wang et al. 2020); "
            "module only, not causal",
            options=(
                opt(
                    "seq_len",
                    int,
                    required=True,
                    minimum=1,
                    from_model=True,
                    doc="longest input length",
                ),
                opt(
                    "proj_dim",
                    int,
                    None,
                    minimum=1,
                    doc="projected length (default min(64, seq_len))",
                ),
            ),
            exact=False,
            causal=False,
            masks="key_padding",
            kv_cache=False,
            learned=True,
            init_module=_init_linformer,
        ),
        replace=True,
    )


_register_builtins()

EXACT_BACKENDS = ("sdpa", "math", "flex")
APPROXIMATE_BACKENDS = ("local", "linear", "linformer")


# --------------------------------------------------------------------------------------------
# the public entry points
# --------------------------------------------------------------------------------------------


def check_supported(
    spec: Backend, *, causal: bool, dropout_p: float, mask: Tensor | None = None
) -> None:
    """One clear error when a call asks a backend for something it cannot do."""
    if causal and not spec.causal:
        raise ValueError(
            f"{spec.name} cannot be causal: it mixes every position of K and V, so future "
            "tokens would leak; use backend 'sdpa', 'local' or 'linear'"
        )
    if dropout_p > 0 and not spec.dropout:
        raise ValueError(
            f"{spec.name} attention has no attention matrix to drop out; use dropout_p=0"
        )
    if mask is not None and spec.masks == "none":
        raise ValueError(f"backend {spec.name!r} takes no mask")


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
    module: nn.Module | None = None,
    **backend_kwargs: Any,
) -> Tensor | tuple[Tensor, Tensor]:
    """Attention of q (B, H, Lq, D) over k (B, Hkv, Lk, D) and v (B, Hkv, Lk, Dv).

    Returns the output (B, H, Lq, Dv), or (output, weights (B, H, Lq, Lk)) with
    ``return_weights=True``; exact backends then run the explicit softmax, approximate ones
    return the weights they effectively applied.

    ``backend`` is any name in ``list_backends()`` ("auto" = "sdpa"); its options come as keyword
    arguments (``local``: ``window``, ``block_size``, ``global_tokens``; ``linear``:
    ``feature_map``, ``num_features``, ``chunk_size``, ``projection``); ``backend_table()`` lists
    them all. ``module`` is the layer calling (backends with learned parameters need it).
    """
    spec = get_backend(backend)
    _check_qkv(q, k, v)
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}")
    if spec.learned and module is None:
        raise ValueError(
            f"backend {spec.name!r} learns parameters, so it lives in a module: use "
            f"MultiHeadAttention(dim, num_heads, backend={spec.name!r}, ...)"
        )
    options = spec.resolve_options(backend_kwargs)
    return run_backend(
        spec,
        q,
        k,
        v,
        options,
        mask=mask,
        causal=causal,
        dropout_p=dropout_p,
        scale=scale,
        return_weights=return_weights,
        module=module,
    )


def run_backend(
    spec: Backend,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    options: dict[str, Any],
    *,
    mask: Tensor | None = None,
    causal: bool = False,
    dropout_p: float = 0.0,
    scale: float | None = None,
    return_weights: bool = False,
    module: nn.Module | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """``attention`` for a backend whose options are already checked (``resolve_options``):
    what ``MultiHeadAttention`` calls on every forward, without re-validating its options."""
    check_supported(spec, causal=causal, dropout_p=dropout_p, mask=mask)
    k, v = _expand_kv_heads(q, k, v)
    s = _scale(q, scale)
    mask = normalize_mask(mask, q, k)
    if spec.masks == "key_padding" and mask is not None:
        _key_padding_from_mask(mask, q, k, spec.name)
    out, weights = spec.fn(
        q,
        k,
        v,
        mask=mask,
        causal=causal,
        dropout_p=dropout_p,
        scale=s,
        return_weights=return_weights,
        module=module,
        **options,
    )
    if return_weights:
        if weights is None:
            raise ValueError(f"backend {spec.name!r} cannot return its attention weights")
        return out, weights
    return out


def attention_weights(
    q: Tensor,
    k: Tensor,
    *,
    mask: Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
    backend: str = "auto",
    module: nn.Module | None = None,
    **backend_kwargs: Any,
) -> Tensor:
    """The (B, H, Lq, Lk) attention probabilities the given backend applies, without dropout.

    For the exact backends this is softmax(q k^T * scale + mask); for ``local`` the same inside
    the window (and over the global tokens); for ``linear`` the normalized kernel
    phi(q) phi(k)^T; for ``linformer`` the weights over its projected keys. Used to draw
    attention maps of models that run a fused kernel.
    """
    spec = get_backend(backend)
    v = q.new_zeros(k.shape[0], k.shape[1], k.shape[2], 1)
    result = attention(
        q,
        k,
        v,
        mask=mask,
        causal=causal,
        scale=scale,
        backend="math" if spec.exact else backend,
        return_weights=True,
        module=module,
        **({} if spec.exact else backend_kwargs),
    )
    assert isinstance(result, tuple)
    return result[1]
