"""Word-by-word attention figures: each generated word over the image with its attention map.

Hard attention (``lstm_hard_attention``) reads one location per word: its map is one-hot, drawn
as a box around that grid cell, so the figure shows exactly where each word was read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from attnlab import FigureContext
from attnlab.atlas import OverlayPanel, Panel, View, grid_cells

__all__ = ["atlas", "denormalize", "draw", "word_attention_figure"]

MAX_WORDS = 12


def denormalize(
    pixels: Tensor, mean: Sequence[float] | None, std: Sequence[float] | None
) -> np.ndarray:
    """(3, H, W) normalized tensor -> (H, W, 3) array in [0, 1] for display."""
    img = pixels.detach().float().cpu().numpy().transpose(1, 2, 0)
    if mean is not None and std is not None:
        img = img * np.asarray(std)[None, None] + np.asarray(mean)[None, None]
    return np.clip(img, 0.0, 1.0)


def word_attention_figure(
    samples: Sequence[tuple[np.ndarray, Sequence[str], Tensor | None, tuple[int, int], str]],
    hard: bool = False,
) -> Figure:
    """One row per sample: the image, then one panel per generated word (and ``<eos>``) with the
    attention map of the step that produced it stretched over the image (``hard``: a box around
    the one location read)."""
    cols = 1 + min(MAX_WORDS, max(len(words) + 1 for _, words, _, _, _ in samples))
    fig, axes = plt.subplots(
        len(samples), cols, figsize=(1.6 * cols, 1.8 * len(samples)), squeeze=False
    )
    for row, (image, words, attention, grid, title) in enumerate(samples):
        h, w = image.shape[:2]
        for ax in axes[row]:
            ax.axis("off")
        axes[row, 0].imshow(image, extent=(0, w, h, 0))
        axes[row, 0].set_title(title[:40], fontsize=6)
        if attention is None:
            continue
        labels = [*words, "<eos>"][: cols - 1]
        for t, word in enumerate(labels):
            if t >= attention.shape[0]:
                break
            ax = axes[row, t + 1]
            heat = attention[t].detach().float().cpu().numpy().reshape(grid)  # (gh, gw)
            ax.imshow(image, extent=(0, w, h, 0))
            if hard:
                row_i, col_i = np.unravel_index(int(heat.argmax()), heat.shape)
                cell_h, cell_w = h / grid[0], w / grid[1]
                box = (col_i * cell_w, row_i * cell_h)
                ax.add_patch(Rectangle(box, cell_w, cell_h, fill=False, color="yellow", lw=2))
            else:
                ax.imshow(
                    heat, cmap="jet", alpha=0.5, extent=(0, w, h, 0), interpolation="bilinear"
                )
            ax.set_title(word, fontsize=8)
    fig.tight_layout()
    return fig


def draw(ctx: FigureContext) -> list[tuple[str, Figure]]:
    """The figure the attnlab layer saves every few epochs (``figures/caption_attention_*.png``)."""
    out: dict[str, Any] = ctx.output
    images = ctx.batch["image"]
    samples = [
        (
            denormalize(images[i], out["mean"], out["std"]),
            out["words"][i],
            None if out["attention"] is None else out["attention"][i],
            out["grid"],
            " ".join(out["words"][i]),
        )
        for i in range(min(4, images.shape[0]))
    ]
    return [("caption_attention", word_attention_figure(samples, hard=bool(out.get("hard"))))]


def atlas(ctx: FigureContext) -> list[Panel]:
    """Per image: the generated caption, and for each word the attention over the encoder's grid
    at the step that produced it (the selector picks the word). The Transformer decoder's map is
    its last cross-attention layer averaged over heads, as decoding records it; hard attention's
    is the one location read (one-hot)."""
    out: dict[str, Any] = ctx.output
    if out["attention"] is None:  # the pooled baseline attends to nothing
        return []
    images = ctx.batch["image"]
    grid = tuple(out["grid"])
    panels: list[Panel] = []
    for b in range(images.shape[0]):
        image = denormalize(images[b], out["mean"], out["std"])  # (H, W, 3)
        attention = out["attention"][b]  # (T, N)
        words = [*out["words"][b], "<eos>"][: attention.shape[0]]
        views = [View((f"{t + 1}: {word}",), attention[t]) for t, word in enumerate(words)]
        if not views:
            continue
        # Shown first: the word whose attention is most concentrated (on digit scenes, a digit
        # on its glyph), not the caption's first word, which usually looks everywhere.
        peaks = attention[: len(views)].max(dim=-1).values  # (T,)
        panels.append(
            OverlayPanel(
                " ".join(out["words"][b]) or "(empty caption)",
                image,
                grid_cells(image.shape[0], image.shape[1], (int(grid[0]), int(grid[1]))),
                views,
                selectors=("word",),
                shown=int(peaks.argmax()),
                note=(
                    f"the location of the {grid[0]}x{grid[1]} encoder grid each word was read "
                    "from (hard attention: the most likely one, greedy decoding)"
                    if out.get("hard")
                    else f"attention over the {grid[0]}x{grid[1]} encoder grid when each word "
                    "was generated (greedy decoding)"
                ),
            )
        )
    return panels
