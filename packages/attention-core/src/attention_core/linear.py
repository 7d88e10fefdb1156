"""Linear (kernelized) attention: elu + 1 features or Performer's FAVOR+ random features.

Sub-quadratic attention through a feature map phi with phi(q) . phi(k) ~ exp(q . k), so the
(Lq, Lk) matrix is never formed. It lives apart from the exact backends because its features,
random projection and chunked causal state are a concern of their own; ``attention.py`` registers
it as the ``linear`` backend.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .masks import _key_padding_from_mask, causal_mask

__all__ = ["favor_projection", "linear_features"]


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
