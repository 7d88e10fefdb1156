"""Attention figures: rollout heatmaps over sample images and the last layer's per-head maps."""

from __future__ import annotations

from typing import Any

import torch
from matplotlib.figure import Figure
from torch import Tensor

from attention_core import attention_rollout
from attnlab import FigureContext
from attnlab.atlas import OverlayPanel, Panel, grid_cells, layer_head_views
from attnlab.figures import heatmap_grid, overlay_grid

__all__ = ["atlas", "display_images", "draw", "token_maps"]


def display_images(module: Any, x: Tensor, datamodule: Any = None) -> list[Tensor]:
    """Undo the data normalization: (B, C, H, W) -> images in [0, 1], (H, W) or (H, W, 3)."""
    dm = datamodule or getattr(getattr(module, "_trainer", None), "datamodule", None)
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


def atlas(ctx: FigureContext) -> list[Panel]:
    """Per sample: the image with the class token's attention over its patches (rollout, each
    layer's head mean, each head); without a class token, the attention patches receive."""
    module: Any = ctx.module
    names = [n for n in ctx.maps.layers if n.startswith(module.attention_prefix)]
    if not names:
        return []
    maps = [ctx.maps[n] for n in names]  # each (B, H, L, L)
    cfg = module.config
    grid, prefix = cfg.grid_size, int(cfg.class_token)
    images = display_images(module, ctx.batch[0], ctx.datamodule)
    labels, preds = ctx.batch[1].tolist(), ctx.output.argmax(-1).tolist()
    class_names = getattr(module, "class_names", None) or []

    def name(i: int) -> str:
        return class_names[i] if i < len(class_names) else str(i)

    def read(attn: Tensor) -> Tensor:  # (L, L) -> (gh * gw,)
        return token_maps(attn[None], prefix, grid).reshape(-1)

    reads = "the class token's attention" if prefix else "the attention each patch receives"
    panels: list[Panel] = []
    for b, image in enumerate(images):
        h, w = image.shape[:2]
        panels.append(
            OverlayPanel(
                f"true {name(labels[b])} / predicted {name(preds[b])}",
                image,
                grid_cells(h, w, grid),
                layer_head_views([m[b] for m in maps], read),
                note=f"{reads} over {grid[0]}x{grid[1]} patches",
            )
        )
    return panels
