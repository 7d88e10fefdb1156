"""The built-in offline dataset: sessions from a hidden taste-drift process over item clusters.

Items fall into ``num_clusters`` disjoint clusters with Zipf popularity inside each. A user's
taste is a cluster; after each interaction it stays (``p_stay``), drifts to the next cluster
(``p_drift``) or jumps to a random one. The next item is drawn from the chosen cluster among
the items the user has not seen yet, in proportion to popularity. The last item reveals the
current cluster, so the exact next-item distribution given a history is known: ``oracle_scores``.
Its NDCG is the ceiling a model can reach on this data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["TasteDrift"]


@dataclass
class TasteDrift:
    num_users: int = 1500
    num_clusters: int = 12
    items_per_cluster: int = 30
    min_len: int = 8
    max_len: int = 24
    p_stay: float = 0.6
    p_drift: float = 0.3
    zipf: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_len >= self.items_per_cluster:
            raise ValueError(
                f"max_len={self.max_len} must be below items_per_cluster={self.items_per_cluster}, "
                "so that a cluster never runs out of unseen items"
            )
        if not 3 <= self.min_len <= self.max_len:
            raise ValueError(f"need 3 <= min_len <= max_len, got {self.min_len}, {self.max_len}")
        if self.p_stay + self.p_drift > 1:
            raise ValueError("p_stay + p_drift must be at most 1")
        m = self.items_per_cluster
        within = 1.0 / np.arange(1, m + 1) ** self.zipf
        self.weights = np.concatenate([[0.0], np.tile(within, self.num_clusters)])  # (N + 1,)
        self.cluster = np.concatenate([[-1], np.repeat(np.arange(self.num_clusters), m)])

    @property
    def num_items(self) -> int:
        return self.num_clusters * self.items_per_cluster

    def transition(self) -> np.ndarray:
        """P(next cluster | current cluster), (C, C)."""
        c = self.num_clusters
        p_jump = (1.0 - self.p_stay - self.p_drift) / c
        t = np.full((c, c), p_jump)
        t[np.arange(c), np.arange(c)] += self.p_stay
        t[np.arange(c), (np.arange(c) + 1) % c] += self.p_drift
        return t

    def generate(self) -> list[list[int]]:
        rng = np.random.default_rng(self.seed)
        cum = np.cumsum(self.transition(), axis=1)
        m = self.items_per_cluster
        sequences = []
        for _ in range(self.num_users):
            length = int(rng.integers(self.min_len, self.max_len + 1))
            cluster = int(rng.integers(self.num_clusters))
            seen: set[int] = set()
            seq = []
            for step in range(length):
                if step:
                    cdf_c = cum[cluster]
                    cluster = min(
                        int(np.searchsorted(cdf_c, rng.random() * cdf_c[-1], "right")),
                        self.num_clusters - 1,
                    )
                ids = np.arange(cluster * m + 1, cluster * m + m + 1)
                w = self.weights[ids] * np.fromiter((i not in seen for i in ids.tolist()), bool, m)
                cdf = np.cumsum(w)
                item = int(
                    ids[min(int(np.searchsorted(cdf, rng.random() * cdf[-1], "right")), m - 1)]
                )
                seen.add(item)
                seq.append(item)
            sequences.append(seq)
        return sequences

    def oracle_scores(self, history: Tensor) -> Tensor:
        """Exact P(next item | right-padded history (B, L)), (B, N + 1); seen items get 0."""
        b = history.shape[0]
        n = self.num_items + 1
        w = torch.as_tensor(self.weights, dtype=torch.float64)
        cl = torch.as_tensor(self.cluster.clip(min=0), dtype=torch.long)
        seen = torch.zeros(b, n, dtype=torch.bool).scatter_(1, history.cpu(), True)
        seen[:, 0] = True
        unseen_w = w[None] * ~seen  # (B, N + 1)
        mass = torch.zeros(b, self.num_clusters, dtype=torch.float64)
        mass.scatter_add_(1, cl[None].expand(b, -1), unseen_w)  # (B, C) unseen weight per cluster
        last = history.gather(1, ((history > 0).sum(1) - 1).clamp(min=0)[:, None])[:, 0].cpu()
        p_cluster = torch.as_tensor(self.transition())[cl[last]]  # (B, C)
        probs = p_cluster.gather(1, cl[None].expand(b, -1)) * unseen_w
        probs = probs / mass.gather(1, cl[None].expand(b, -1)).clamp(min=1e-12)
        return probs.float()
