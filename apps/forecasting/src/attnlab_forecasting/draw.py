"""Figures: forecasts against the truth (with the interval) and attention over input tokens."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from torch import Tensor

from attnlab import FigureContext
from attnlab.atlas import Line, Panel, SeriesPanel, layer_head_views
from attnlab.figures import heatmap_grid

__all__ = ["atlas", "draw", "forecast_figure", "per_step_figure"]


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


def _mean_received(attn: Tensor) -> Tensor:
    """(N, N) -> (N,): the attention each key token receives, averaged over the queries."""
    return attn.mean(0)


def atlas(ctx: FigureContext) -> list[Panel]:
    """Per validation window: the target channel's input beside the truth and the forecast, with
    the attention over the input tokens (PatchTST: patches as time ranges; the Transformer:
    time steps; iTransformer: whole variates, drawn as lines). Rollout, each layer's head mean
    and each head."""
    batch, module = ctx.batch, ctx.module
    model: Any = module.model  # type: ignore[attr-defined]
    names = [n for n in ctx.maps.layers if ".encoder." in n]  # self-attention over the input
    if not names:
        return []
    maps = [ctx.maps[n] for n in names]  # (B*, H, N, N)
    pred = ctx.output["pred"]  # (B, H, C_out) or (B, H, C_out, Q)
    if pred.dim() == 4:
        quantiles = getattr(module, "quantiles", None) or [0.5]
        pred = pred[..., quantiles.index(0.5) if 0.5 in quantiles else len(quantiles) // 2]
    x = batch["x"].detach().float().cpu()  # (B, L, C_in)
    b_size, length, c_in = x.shape
    channel = int(batch["out_index"][0][-1])  # the last output channel (the target)
    columns = list(getattr(ctx.datamodule, "in_columns", None) or [])
    cname = columns[channel] if channel < len(columns) else f"channel {channel}"
    kind = type(model).__name__
    panels: list[Panel] = []
    for b in range(b_size):
        lines = [
            Line("input", _np(x[b, :, channel]), -length, color="#666666"),
            Line("truth", _np(batch["y"][b, :, -1]), 0, color="#000000"),
            Line("forecast", _np(pred[b, :, -1]), 0, color="#d62728"),
        ]
        spans: list[tuple[float, float]] = []
        if kind == "iTransformer":  # tokens are the variates; show what the target's token reads
            rows = [m[b] for m in maps]
            z = x[b] - x[b].mean(0)
            z = z / z.std(0).clamp_min(1e-6)  # (L, C): each variate on its own scale
            lines = [
                Line(columns[c] if c < len(columns) else f"ch {c}", _np(z[:, c]), -length, c)
                for c in range(c_in)
            ]

            def read(attn: Tensor) -> Tensor:
                return attn[channel]  # (C, C) -> (C,)

            note = f"iTransformer: attention of the {cname} token over the variates (normalized)"
        elif kind == "PatchTST":
            rows = [m[b * c_in + channel] for m in maps]  # channel-independent: row b*C + c
            cfg = model.cfg
            spans = [
                (i * cfg.stride - length, min(i * cfg.stride + cfg.patch_len, length) - length)
                for i in range(model.num_patches)
            ]
            read = _mean_received
            note = (
                f"PatchTST: attention each input patch of {cname} receives (mean over query "
                f"patches); {model.num_patches} patches of {cfg.patch_len}, stride {cfg.stride}"
            )
        else:  # encoder self-attention over time steps
            rows = [m[b] for m in maps]
            n = rows[0].shape[-1]
            spans = [(t - length, t + 1 - length) for t in range(length - n, length)]
            read = _mean_received
            note = f"{kind}: attention each input time step receives (mean over queries)"
        panels.append(
            SeriesPanel(
                f"validation window {b}: {cname}",
                lines,
                layer_head_views(rows, read),
                spans=spans,
                note=note,
            )
        )
    return panels
