"""Attention over the item history for sample users: which past items the prediction used."""

from __future__ import annotations

from matplotlib.figure import Figure

from attnlab import FigureContext
from attnlab.figures import heatmap_grid

__all__ = ["draw"]


def draw(ctx: FigureContext) -> list[tuple[str, Figure]]:
    history = ctx.batch["history"]
    module = ctx.module
    kind = module.net.cfg.kind
    maps = list(ctx.maps)
    if not maps:
        return []
    panels, titles = [], []
    for b in range(history.shape[0]):
        n = int((history[b] > 0).sum())
        width = min(n, module.net.cfg.max_len - (kind == "bert4rec"))
        length = width + (kind == "bert4rec")  # BERT4Rec appends the [MASK] it predicts
        for layer, m in enumerate(maps):  # (B, H, L, L)
            panels.append(m[b, :, :length, :length].mean(0))  # (L, L) averaged over heads
            titles.append(f"user {b}, layer {layer} ({length} positions)")
    fig = heatmap_grid(
        panels,
        titles,
        cols=len(maps),
        suptitle=f"{kind}: attention over the history (rows: query position, cols: item)",
        xlabel="key position",
        ylabel="query position",
    )
    return [("history_attention", fig)]
