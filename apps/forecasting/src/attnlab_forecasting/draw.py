"""Figures: forecasts against the truth (with the interval) and attention over input tokens."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from attnlab import FigureContext
from attnlab.figures import heatmap_grid

__all__ = ["draw", "forecast_figure", "per_step_figure"]


def _np(t: Any) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def forecast_figure(
    history: np.ndarray,
    truth: np.ndarray,
    pred: np.ndarray,
    interval: tuple[np.ndarray, np.ndarray] | None = None,
    titles: list[str] | None = None,
) -> Figure:
    """One panel per sample: history (N, L), truth and forecast (N, H), optional band (N, H)."""
    n = len(history)
    cols = min(2, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.0 * cols, 2.6 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        length, horizon = history.shape[1], truth.shape[1]
        past = np.arange(-length, 0)
        future = np.arange(horizon)
        ax.plot(past, history[i], color="0.4", lw=0.8, label="history")
        ax.plot(future, truth[i], color="k", lw=0.9, label="truth")
        ax.plot(future, pred[i], color="tab:red", lw=1.0, label="forecast")
        if interval is not None:
            ax.fill_between(
                future, interval[0][i], interval[1][i], color="tab:red", alpha=0.2, label="interval"
            )
        ax.axvline(0, color="0.7", lw=0.6)
        if titles:
            ax.set_title(titles[i], fontsize=8)
        ax.tick_params(labelsize=6)
    axes.flat[0].legend(fontsize=6, loc="upper left")
    fig.tight_layout()
    return fig


def per_step_figure(mse: list[float], mae: list[float]) -> Figure:
    """Test error against the forecast step: how fast the forecast degrades."""
    fig, ax = plt.subplots(figsize=(4.5, 2.8))
    steps = np.arange(1, len(mse) + 1)
    ax.plot(steps, mse, label="MSE")
    ax.plot(steps, mae, label="MAE")
    ax.set_xlabel("forecast step", fontsize=8)
    ax.set_ylabel("error (normalized scale)", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def draw(ctx: FigureContext) -> list[tuple[str, Figure]]:
    batch, module = ctx.batch, ctx.module
    pred = ctx.output["pred"]  # (B, H, C_out) or (B, H, C_out, Q)
    quantiles = getattr(module, "quantiles", None)
    interval = None
    if pred.dim() == 4:
        interval = (_np(pred[..., 0, -1]), _np(pred[..., -1, -1]))
        pred = pred[..., (quantiles or [0.5]).index(0.5)]
    out_index = batch["out_index"][0]
    channel = int(out_index[-1])  # the last output channel (the target for S and MS)
    history = _np(batch["x"][:, :, channel])  # (N, L)
    truth = _np(batch["y"][:, :, -1])  # (N, H)
    titles = [f"validation window {i}, channel {channel}" for i in range(len(history))]
    figures = [("forecast", forecast_figure(history, truth, _np(pred[:, :, -1]), interval, titles))]
    if len(ctx.maps):
        last = ctx.maps[-1]  # (B*, heads, N, N): patches (PatchTST), variates (iTransformer)
        name = ctx.maps.layers[-1]
        figures.append(
            (
                "attention",
                heatmap_grid(
                    [last[0, h] for h in range(last.shape[1])],
                    [f"head {h}" for h in range(last.shape[1])],
                    suptitle=f"{name}: first window, first channel; query token (rows) -> key",
                    xlabel="key token",
                    ylabel="query token",
                ),
            )
        )
    per_step = getattr(module, "per_step", None)
    if per_step:
        figures.append(("error_per_step", per_step_figure(per_step["mse"], per_step["mae"])))
    return figures
