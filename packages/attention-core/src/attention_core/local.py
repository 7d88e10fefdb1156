"""Local (sliding-window) attention, computed block by block in O(L * window) memory.

Each query sees the keys within ``window`` positions of it, plus optional global tokens
(Longformer). It lives apart from the exact backends because its blocked layout, padding and
scatter back to dense weights are a concern of their own; ``attention.py`` registers it as the
``local`` backend.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .dropout import dropout
from .masks import _math, _softmax, causal_mask


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
    dropped = dropout(weights, dropout_p) if dropout_p > 0 else weights
    out = torch.einsum("bhnqk,bhndk->bhnqd", dropped, vb)  # (B, H, nb, Bq, Dv)
    if g:
        gdropped = dropout(gweights, dropout_p) if dropout_p > 0 else gweights
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
