"""Attention over the item history for sample users: which past items the prediction used."""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure
from torch import Tensor

from attnlab import FigureContext
from attnlab.atlas import Panel, TokensPanel, layer_head_views
from attnlab.figures import heatmap_grid

from .model import last_window

__all__ = ["atlas", "draw"]


def draw(ctx: FigureContext) -> list[tuple[str, Figure]]:
    maps = list(ctx.maps)
    if not maps:  # a counting baseline has no attention to draw
        return []
    history = ctx.batch["history"]
    module = ctx.module
    kind = module.net.cfg.kind
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


def atlas(ctx: FigureContext) -> list[Panel]:
    """Per user: the items of the history the model saw, coloured by the attention of the
    position that predicts the next item (SASRec: the last item; BERT4Rec: the appended
    [MASK]); rollout, each layer's head mean and each head."""
    module: Any = ctx.module
    maps = list(ctx.maps)  # each (B, H, W, W)
    if not maps:  # a counting baseline has no attention to draw
        return []
    cfg = module.net.cfg
    bert = cfg.kind == "bert4rec"
    seq = last_window(ctx.batch["history"].cpu(), cfg.max_len - int(bert))  # (B, W) as the model
    item_ids = module.item_ids or []
    scores = ctx.output.float()  # (B, num_items + 1), column 0 = padding
    top = scores.argmax(-1).tolist()
    targets = ctx.batch["target"].tolist() if "target" in ctx.batch else [None] * len(top)

    def raw(i: int | None) -> str:
        if i is None:
            return "?"
        return str(item_ids[i - 1]) if 0 < i <= len(item_ids) else str(i)

    panels: list[Panel] = []
    for b in range(seq.shape[0]):
        n = int((seq[b] > 0).sum())
        if n == 0:
            continue
        tokens = [raw(int(i)) for i in seq[b, :n]] + (["[MASK]"] if bert else [])
        query = len(tokens) - 1  # the position whose output scores the next item

        def read(attn: Tensor, query: int = query, length: int = len(tokens)) -> Tensor:
            return attn[query, :length]  # (W, W) -> (length,)

        panels.append(
            TokensPanel(
                f"user {b}: next item {raw(targets[b])}, model's top item {raw(top[b])}",
                tokens,
                layer_head_views([m[b] for m in maps], read),
                note=f"{cfg.kind}: attention of position {query + 1} (it predicts the next item) "
                "over the history, oldest first; item ids as in the data",
            )
        )
    return panels
