"""Attention figures: rollout heatmaps over sample images and the last layer's per-head maps."""

from __future__ import annotations

from typing import Any

import torch
from matplotlib.figure import Figure
from torch import Tensor

from attention_core import attention_rollout
from attnlab import FigureContext
from attnlab.figures import heatmap_grid, overlay_grid

__all__ = ["display_images", "draw", "token_maps"]


def display_images(module: Any, x: Tensor) -> list[Tensor]:
    """Undo the data normalization: (B, C, H, W) -> images in [0, 1], (H, W) or (H, W, 3)."""
    dm = getattr(getattr(module, "_trainer", None), "datamodule", None)
    mean, std = getattr(dm, "mean_std", ((0.5,), (0.5,)))
    c = x.shape[1]
    mean_t = torch.tensor(mean * (c // len(mean)), dtype=x.dtype, device=x.device)[:, None, None]
    std_t = torch.tensor(std * (c // len(std)), dtype=x.dtype, device=x.device)[:, None, None]
    imgs = (x * std_t + mean_t).clamp(0, 1).cpu()  # (B, C, H, W)
    return [img[0] if c == 1 else img.permute(1, 2, 0) for img in imgs]


def token_maps(attn: Tensor, prefix: int, grid: tuple[int, int]) -> Tensor:
    """(B, L, L) attention -> (B, gh, gw): what the class token reads, or with no class token
    the attention each image token receives on average."""
    if prefix:
        rows = attn[:, 0, prefix:]  # (B, N)
    else:
        rows = attn.mean(1)  # (B, N)
    return rows.reshape(attn.shape[0], *grid)  # (B, gh, gw)


def draw(ctx: FigureContext) -> list[tuple[str, Figure]]:
    module = ctx.module
    prefix_name = getattr(module, "attention_prefix", "")
    names = [n for n in ctx.maps.layers if n.startswith(prefix_name)]
    if not names:
        return []
    maps = [ctx.maps[n] for n in names]  # each (B, H, L, L)
    cfg = module.config  # type: ignore[attr-defined]
    grid = cfg.grid_size
    prefix = int(cfg.class_token)
    x = ctx.batch[0]
    labels = ctx.batch[1].tolist()
    preds = ctx.output.argmax(-1).tolist()
    class_names = getattr(module, "class_names", None) or []

    def name(i: int) -> str:
        return class_names[i] if i < len(class_names) else str(i)

    images = display_images(module, x)
    titles = [f"true {name(t)} / pred {name(p)}" for t, p in zip(labels, preds)]
    rollout = token_maps(attention_rollout(maps), prefix, grid)  # (B, gh, gw)
    figures = [
        (
            "attention_rollout",
            overlay_grid(images, list(rollout), titles, suptitle="attention rollout (all layers)"),
        )
    ]
    last = maps[-1][:1]  # (1, H, L, L): first sample
    heads = last.shape[1]
    per_head = [token_maps(last[:, h], prefix, grid)[0] for h in range(heads)]  # (gh, gw) each
    figures.append(
        (
            "last_layer_heads",
            overlay_grid(
                [images[0]] * heads,
                per_head,
                [f"head {h}" for h in range(heads)],
                suptitle=f"last layer, per head ({titles[0]})",
            ),
        )
    )
    figures.append(
        (
            "last_layer_matrices",
            heatmap_grid(
                [last[0, h] for h in range(heads)],
                [f"head {h}" for h in range(heads)],
                suptitle="last layer attention (query rows, key columns)",
                xlabel="key",
                ylabel="query",
            ),
        )
    )
    return figures
