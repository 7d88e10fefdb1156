"""Saving figures into the run folder and TensorBoard, and the plots apps share.

Matplotlib runs on the Agg backend: figures are files, never windows.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from .runs import atomic_write_bytes

__all__ = [
    "confusion_matrix_figure",
    "curves_figure",
    "figure_dir",
    "heatmap_grid",
    "overlay_grid",
    "save_figure",
]


def figure_dir(trainer: Any) -> Path:
    return Path(trainer.default_root_dir) / "figures"


def save_figure(trainer: Any, name: str, fig: Figure, step: int = 0) -> Path:
    """Write ``figures/<name>.png`` and log the image to TensorBoard when it is a logger."""
    path = figure_dir(trainer) / f"{name}.png"
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    for logger in getattr(trainer, "loggers", []) or []:
        experiment = getattr(logger, "experiment", None)
        if experiment is not None and hasattr(experiment, "add_figure"):
            experiment.add_figure(f"figures/{name}", fig, global_step=step, close=False)
    plt.close(fig)
    return path


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def heatmap_grid(
    maps: Sequence[Any],
    titles: Sequence[str] | None = None,
    *,
    cols: int = 4,
    cmap: str = "viridis",
    suptitle: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
) -> Figure:
    """A grid of 2-D heatmaps (attention matrices, per-head maps)."""
    n = len(maps)
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.4 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        ax.imshow(_as_numpy(maps[i]), cmap=cmap, aspect="auto", interpolation="nearest")
        if titles:
            ax.set_title(titles[i], fontsize=8)
        ax.tick_params(labelsize=6)
        if xlabel:
            ax.set_xlabel(xlabel, fontsize=7)
        if ylabel:
            ax.set_ylabel(ylabel, fontsize=7)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


def overlay_grid(
    images: Sequence[Any],
    heatmaps: Sequence[Any],
    titles: Sequence[str] | None = None,
    *,
    cols: int = 4,
    alpha: float = 0.5,
    suptitle: str | None = None,
) -> Figure:
    """Images (H, W) or (H, W, 3) with a low-resolution heatmap stretched over each."""
    n = len(images)
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.4 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        img = _as_numpy(images[i])
        h, w = img.shape[:2]
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, extent=(0, w, h, 0))
        ax.imshow(
            _as_numpy(heatmaps[i]),
            cmap="jet",
            alpha=alpha,
            extent=(0, w, h, 0),
            interpolation="bilinear",
        )
        if titles:
            ax.set_title(titles[i], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


def confusion_matrix_figure(matrix: Any, class_names: Sequence[str] | None = None) -> Figure:
    """Row-normalized confusion matrix (rows: true class, columns: predicted)."""
    m = _as_numpy(matrix).astype(float)
    norm = m / np.clip(m.sum(1, keepdims=True), 1, None)
    k = m.shape[0]
    size = min(12.0, 2.0 + 0.45 * k)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    names = list(class_names) if class_names else [str(i) for i in range(k)]
    ax.set_xticks(range(k), names, rotation=90, fontsize=7)
    ax.set_yticks(range(k), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if m[i, j]:
                    ax.text(
                        j,
                        i,
                        str(int(m[i, j])),
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if norm[i, j] > 0.5 else "black",
                    )
    fig.tight_layout()
    return fig


def curves_figure(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> Figure:
    """Metric curves against epoch from metrics.csv rows; one panel per metric family."""
    families: dict[str, list[str]] = {}
    for key in keys:
        families.setdefault(key.split("/")[-1], []).append(key)
    n = max(1, len(families))
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 2.8), squeeze=False)
    for ax, (family, members) in zip(axes.flat, families.items()):
        for key in members:
            pts = [(float(r["epoch"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker="o", markersize=2, label=key)
        ax.set_title(family, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.legend(fontsize=7)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig
