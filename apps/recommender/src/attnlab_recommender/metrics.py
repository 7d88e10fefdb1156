"""Full-ranking metrics, vectorized over a batch of users.

Every item is ranked except the padding id and the items already in the user's history (the
target itself stays rankable even if it was seen before). Ties count against the model: the
rank of the target is the number of other candidates that score at least as high, so a model
that scores everything equally ranks last, never first.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "KS",
    "PROTOCOL",
    "exclude_history",
    "rank_metrics",
    "sampled_ranks",
    "target_ranks",
]

KS = (1, 5, 10, 20)
PROTOCOL = (
    "leave-one-out full ranking over all items; history items excluded; "
    "ties counted against the model"
)


def exclude_history(scores: Tensor, history: Tensor, target: Tensor | None = None) -> Tensor:
    """Scores (B, N + 1) with the padding column and every history item (B, L) set to -inf.

    The target keeps its score, so a repeated item can still be recommended.
    """
    out = scores.float().clone()
    out.scatter_(1, history, float("-inf"))
    out[:, 0] = float("-inf")
    if target is not None:
        rows = torch.arange(out.shape[0], device=out.device)
        out[rows, target] = scores[rows, target].float()
    return out


def target_ranks(scores: Tensor, target: Tensor) -> Tensor:
    """0-based pessimistic rank (B,) of ``target`` (B,) among the finite-scored candidates."""
    t = scores.gather(1, target[:, None])  # (B, 1)
    return (scores >= t).sum(1) - 1


def rank_metrics(ranks: Tensor, ks: tuple[int, ...] = KS) -> dict[str, Tensor]:
    """Per-user HR@k, NDCG@k and MRR (B,) from 0-based ranks (one relevant item per user)."""
    r = ranks.float()
    out: dict[str, Tensor] = {}
    for k in ks:
        hit = r < k
        out[f"hr@{k}"] = hit.float()
        out[f"ndcg@{k}"] = torch.where(hit, 1.0 / torch.log2(r + 2.0), torch.zeros_like(r))
    out["mrr"] = 1.0 / (r + 1.0)
    return out


def sampled_ranks(
    scores: Tensor,
    target: Tensor,
    history: Tensor,
    num_negatives: int = 100,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Rank of the target among ``num_negatives`` items drawn uniformly from the unseen ones.

    The older protocol of the SASRec paper; reported only beside full ranking.
    """
    b, n = scores.shape
    noise = torch.rand(b, n, generator=generator, device="cpu").to(scores.device)
    noise.scatter_(1, history, -1.0)
    noise[:, 0] = -1.0
    noise.scatter_(1, target[:, None], -1.0)
    k = min(num_negatives, n - 1)
    negatives = noise.topk(k, dim=1).indices  # (B, k) a uniform sample without replacement
    valid = noise.gather(1, negatives) >= 0
    t = scores.gather(1, target[:, None])
    return ((scores.gather(1, negatives) >= t) & valid).sum(1)
