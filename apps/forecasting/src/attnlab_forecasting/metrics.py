"""Forecast errors accumulated over a whole split, so every window weighs the same.

Lightning's per-batch averaging would weigh a short last batch like a full one; summing errors
and counts and dividing once at the end gives the exact mean over all scored windows.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["ErrorSums", "pinball_loss"]


def pinball_loss(pred: Tensor, target: Tensor, quantiles: Tensor) -> Tensor:
    """Mean quantile (pinball) loss; pred (..., Q), target (...), quantiles (Q,)."""
    diff = target.unsqueeze(-1) - pred  # (..., Q)
    return torch.maximum(quantiles * diff, (quantiles - 1) * diff).mean()


class ErrorSums:
    """Sums of squared and absolute errors over windows, per forecast step and channel."""

    def __init__(self) -> None:
        self.sq: Tensor | None = None  # (H, C) normalized scale
        self.ab: Tensor | None = None  # (H, C) normalized scale
        self.ab_orig: Tensor | None = None  # (H, C) original scale
        self.covered: Tensor | None = None  # (H, C) truth inside the interval
        self.windows = 0

    def update(
        self,
        pred: Tensor,
        target: Tensor,
        std: Tensor | None = None,
        interval: tuple[Tensor, Tensor] | None = None,
    ) -> None:
        """pred, target (B, H, C) on the normalized scale; ``std`` (C,) maps errors back to the
        original scale (a z-score's error scales by the std alone)."""
        err = (pred - target).double()
        sq, ab = err.pow(2).sum(0), err.abs().sum(0)  # (H, C)
        ab_orig = ab * std.double() if std is not None else ab
        cov = None
        if interval is not None:
            lo, hi = interval
            cov = ((target >= lo) & (target <= hi)).double().sum(0)
        if self.sq is None:
            self.sq, self.ab, self.ab_orig, self.covered = sq, ab, ab_orig, cov
        else:
            assert self.ab is not None and self.ab_orig is not None
            self.sq, self.ab, self.ab_orig = self.sq + sq, self.ab + ab, self.ab_orig + ab_orig
            if cov is not None and self.covered is not None:
                self.covered = self.covered + cov
        self.windows += pred.shape[0]

    def reduce_across_processes(self) -> None:
        """Under DDP each process scores its own share of the windows: sum every process's sums
        into each, so the metrics cover the whole split. No-op on one process."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        for name in ("sq", "ab", "ab_orig", "covered"):
            value = getattr(self, name)
            if value is not None:
                dist.all_reduce(value)  # sum, in place
        count = torch.tensor([float(self.windows)], dtype=torch.float64)
        dist.all_reduce(count)
        self.windows = int(count.item())

    def mse(self) -> float:
        assert self.sq is not None
        return float(self.sq.sum() / (self.windows * self.sq.numel()))

    def mae(self) -> float:
        assert self.ab is not None
        return float(self.ab.sum() / (self.windows * self.ab.numel()))

    def mae_original(self) -> float:
        assert self.ab_orig is not None
        return float(self.ab_orig.sum() / (self.windows * self.ab_orig.numel()))

    def mase(self, scale: Tensor) -> float:
        """Mean over channels of MAE (original scale) / the training set's seasonal-naive MAE."""
        assert self.ab_orig is not None
        per_channel = self.ab_orig.sum(0) / (self.windows * self.ab_orig.shape[0])  # (C,)
        return float((per_channel / scale.double()).mean())

    def coverage(self) -> float | None:
        if self.covered is None:
            return None
        return float(self.covered.sum() / (self.windows * self.covered.numel()))

    def mse_per_step(self) -> Tensor:
        assert self.sq is not None
        return self.sq.mean(1) / self.windows  # (H,)

    def mae_per_step(self) -> Tensor:
        assert self.ab is not None
        return self.ab.mean(1) / self.windows  # (H,)
