"""Attention figures: rollout drawn over each sample's log-mel spectrogram, and the last layer's
per-head class-token maps. Low frequencies are at the bottom, time runs left to right."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor

from attention_core import attention_rollout
from attnlab import FigureContext
from attnlab.atlas import OverlayPanel, Panel, layer_head_views
from attnlab.figures import heatmap_grid, overlay_grid

from .model import PatchSize, as_pair

__all__ = ["atlas", "draw", "patch_map_to_pixels"]


def patch_map_to_pixels(
    weights: Tensor,
    grid: tuple[int, int],
    size: tuple[int, int],
    patch: PatchSize,
    stride: PatchSize,
) -> Tensor:
    """Per-patch weights (B, gf*gt) -> (B, F, T) over the spectrogram: each pixel gets the mean
    weight of the overlapping patches that cover it (0 where none does). ``patch``/``stride``:
    an int (square) or a (frequency, time) pair."""
    b = weights.shape[0]
    kernel = as_pair(patch, "patch_size")
    step = as_pair(stride, "patch_stride")
    cols = weights.reshape(b, 1, -1).expand(b, kernel[0] * kernel[1], -1)  # (B, pf*pt, N)
    summed = F.fold(cols, size, kernel_size=kernel, stride=step)  # (B, 1, F, T)
    ones = torch.ones_like(cols[:1])  # (1, pf*pt, N)
    cover = F.fold(ones, size, kernel_size=kernel, stride=step)  # (1, 1, F, T)
    return (summed / cover.clamp_min(1.0))[:, 0]  # (B, F, T)


def draw(ctx: FigureContext) -> list[tuple[str, Figure]]:
    module: Any = ctx.module
    model = module.model
    if not hasattr(model, "grid_size"):  # the CNN baseline has no attention to draw
        return []
    maps = list(ctx.maps)  # each (B, H, 1+N, 1+N)
    if not maps:
        return []
    cfg = model.cfg
    x = ctx.batch[0].detach().cpu()  # (B, 1, F, T) dB
    size = (x.shape[-2], x.shape[-1])
    specs = [s[0].flip(0) for s in x]  # (F, T), low frequencies at the bottom
    labels = ctx.batch[1].tolist()
    preds = ctx.output.argmax(-1).tolist()
    titles = [
        f"true {module.class_name(t)} / pred {module.class_name(p)}" for t, p in zip(labels, preds)
    ]

    def to_pixels(cls_row: Tensor) -> list[Tensor]:
        px = patch_map_to_pixels(
            cls_row.cpu().float(), model.grid_size, size, cfg.patch_size, cfg.patch_stride
        )
        return [m.flip(0) for m in px]  # (F, T) each, flipped like the spectrograms

    rollout = attention_rollout(maps)[:, 0, 1:]  # (B, N): what the class token gathers
    figures = [
        (
            "attention_rollout",
            overlay_grid(
                specs,
                to_pixels(rollout),
                titles,
                suptitle="attention rollout over the log-mel spectrogram",
            ),
        )
    ]
    last = maps[-1][:1]  # (1, H, 1+N, 1+N): first sample
    heads = last.shape[1]
    per_head = [to_pixels(last[:, h, 0, 1:])[0] for h in range(heads)]
    figures.append(
        (
            "last_layer_heads",
            overlay_grid(
                [specs[0]] * heads, per_head, [f"head {h}" for h in range(heads)],
                suptitle=f"last layer, class token per head ({titles[0]})",
            ),
        )
    )  # fmt: skip
    figures.append(
        (
            "last_layer_matrices",
            heatmap_grid(
                [last[0, h] for h in range(heads)], [f"head {h}" for h in range(heads)],
                suptitle="last layer attention (query rows, key columns; token 0 = class)",
                xlabel="key", ylabel="query",
            ),
        )
    )  # fmt: skip
    return figures


def atlas(ctx: FigureContext) -> list[Panel]:
    """Per sample: the log-mel spectrogram (low frequencies at the bottom) with the class token's
    attention over its overlapping patches; rollout, each layer's head mean and each head."""
    module: Any = ctx.module
    model = module.model
    maps = list(ctx.maps)  # each (B, H, 1+N, 1+N)
    if not hasattr(model, "grid_size") or not maps:  # the CNN baseline has no attention
        return []
    cfg = model.cfg
    x = ctx.batch[0].detach().cpu().float()  # (B, 1, F, T) dB
    n_freq, n_time = x.shape[-2], x.shape[-1]
    gf, gt = model.grid_size
    pf, pt = as_pair(cfg.patch_size, "patch_size")
    sf, st = as_pair(cfg.patch_stride, "patch_stride")
    # Patches are frequency-major (the patch embedding's flatten order); flipped rows put low
    # frequencies at the bottom of the picture.
    cells = [
        (n_freq - (f * sf + pf), t * st, pf, pt) for f in range(gf) for t in range(gt)
    ]  # (top, left, height, width)
    labels, preds = ctx.batch[1].tolist(), ctx.output.argmax(-1).tolist()

    def read(attn: Tensor) -> Tensor:  # (1+N, 1+N) -> (N,): what the class token gathers
        return attn[0, 1:]

    panels: list[Panel] = []
    for b in range(x.shape[0]):
        spec = x[b, 0].flip(0)  # (F, T)
        image = (spec - spec.min()) / (spec.max() - spec.min()).clamp_min(1e-6)
        panels.append(
            OverlayPanel(
                f"true {module.class_name(labels[b])} / predicted {module.class_name(preds[b])}",
                image,
                cells,
                layer_head_views([m[b] for m in maps], read),
                note=f"log-mel {n_freq} bands x {n_time} frames; {gf}x{gt} patches of {pf}x{pt}, "
                f"stride {sf}x{st} (a pixel shows the mean of the patches covering it)",
            )
        )
    return panels
