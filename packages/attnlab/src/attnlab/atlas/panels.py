"""Panels: what an app's ``atlas`` hook returns, and the JSON the page's script draws from.

Panels are plain data, drawn on a ``<canvas>`` by the page's script:

* ``OverlayPanel``: an image with one weight per rectangular cell (image patches, the caption
  encoder's grid, spectrogram patches) drawn over it as a heat map;
* ``SeriesPanel``: line plots whose tokens are x-ranges (forecast input patches) or whole lines
  (iTransformer's variate tokens);
* ``TokensPanel``: a row of labelled tokens (an item history).

Each panel holds several *views* (one weight vector each) keyed by its selectors, usually
``("layer", "head")`` with ``rollout``, each layer's head mean and every head.

This module imports nothing from attnlab (only ``attention_core``, the bottom layer), so an app's
``draw.py`` can build panels without pulling in the command, the callbacks or the app registry.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import Tensor

__all__ = [
    "Line",
    "OverlayPanel",
    "Panel",
    "SeriesPanel",
    "TokensPanel",
    "View",
    "grid_cells",
    "layer_head_views",
    "panel_json",
]


@dataclass
class View:
    """One selectable map: its value for each of the panel's selectors, one weight per token."""

    key: tuple[str, ...]
    weights: Any  # (N,) tensor, array or list


@dataclass
class OverlayPanel:
    """An image (H, W) grey or (H, W, 3) RGB in [0, 1]; token i covers ``cells[i]`` =
    (top, left, height, width) in image pixels (cells may overlap: a pixel shows their mean).
    ``shown`` is the index of the view the page shows first."""

    title: str
    image: Any
    cells: Sequence[tuple[int, int, int, int]]
    views: list[View]
    selectors: tuple[str, ...] = ("layer", "head")
    note: str = ""
    shown: int = 0
    kind: str = field(default="overlay", init=False)

    def num_tokens(self) -> int:
        return len(self.cells)


@dataclass
class Line:
    """A polyline at x = x0, x0 + 1, ...; ``token`` is its index when the line itself is a token."""

    name: str
    values: Any
    x0: float = 0.0
    token: int | None = None
    color: str = ""


@dataclass
class SeriesPanel:
    """Lines; the tokens are the x-ranges ``spans`` [start, end) or, with no spans, the lines
    whose ``token`` is set."""

    title: str
    lines: list[Line]
    views: list[View]
    spans: Sequence[tuple[float, float]] = ()
    selectors: tuple[str, ...] = ("layer", "head")
    note: str = ""
    kind: str = field(default="series", init=False)

    def num_tokens(self) -> int:
        if self.spans:
            return len(self.spans)
        return sum(1 for line in self.lines if line.token is not None)


@dataclass
class TokensPanel:
    """Labelled tokens in a row (item ids of a history, words, variates)."""

    title: str
    tokens: Sequence[str]
    views: list[View]
    selectors: tuple[str, ...] = ("layer", "head")
    note: str = ""
    kind: str = field(default="tokens", init=False)

    def num_tokens(self) -> int:
        return len(self.tokens)


Panel = OverlayPanel | SeriesPanel | TokensPanel


def grid_cells(
    height: int, width: int, grid: tuple[int, int], *, flip_rows: bool = False
) -> list[tuple[int, int, int, int]]:
    """Cells of a (rows, cols) token grid stretched over an image, in row-major token order."""
    rows, cols = grid
    cells = []
    for r in range(rows):
        top, bottom = round(r * height / rows), round((r + 1) * height / rows)
        if flip_rows:
            top, bottom = height - bottom, height - top
        for c in range(cols):
            left, right = round(c * width / cols), round((c + 1) * width / cols)
            cells.append((top, left, bottom - top, right - left))
    return cells


def layer_head_views(
    layers: Sequence[Tensor],
    read: Callable[[Tensor], Tensor],
    *,
    rollout: bool = True,
    names: Sequence[str] | None = None,
) -> list[View]:
    """The usual views of one sample's self-attention: rollout, then per layer the head mean and
    every head. ``layers`` are (H, L, L) maps of one sample; ``read`` turns an (L, L) map into
    the (N,) weights the panel shows (the class token's row, the mean received, ...)."""
    from attention_core import attention_rollout

    views: list[View] = []
    if rollout and layers:
        rolled = attention_rollout([m[None].float() for m in layers])[0]  # (L, L)
        views.append(View(("rollout", "mean"), read(rolled)))
    for i, m in enumerate(layers):  # (H, L, L)
        layer = names[i] if names else f"layer {i + 1}"
        views.append(View((layer, "mean"), read(m.float().mean(0))))
        for h in range(m.shape[0]):
            views.append(View((layer, f"head {h}"), read(m[h].float())))
    return views


# ---------------------------------------------------------------------------------------------
# panels -> JSON
# ---------------------------------------------------------------------------------------------


def _floats(values: Any, digits: int = 4) -> list[float]:
    if isinstance(values, Tensor):
        values = values.detach().float().cpu().numpy()
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.isfinite(arr).all():
        arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
    return [round(float(v), digits) for v in arr]


def _png(image: Any) -> str:
    """(H, W) or (H, W, 3) in [0, 1] -> a PNG data URI."""
    from matplotlib import image as mpimg

    if isinstance(image, Tensor):
        image = image.detach().float().cpu().numpy()
    arr = np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0)
    buf = io.BytesIO()
    if arr.ndim == 2:
        mpimg.imsave(buf, arr, format="png", cmap="gray", vmin=0.0, vmax=1.0)
    else:
        mpimg.imsave(buf, arr, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def panel_json(panel: Panel, where: str = "panel") -> dict[str, Any]:
    """A panel as the page's script reads it; checks every view against the panel's tokens."""
    n = panel.num_tokens()
    if not panel.views:
        raise ValueError(f"{where} {panel.title!r} has no views")
    views = []
    for view in panel.views:
        weights = _floats(view.weights)
        if len(weights) != n:
            raise ValueError(
                f"{where} {panel.title!r}: view {'/'.join(view.key)} has {len(weights)} weights "
                f"for {n} tokens"
            )
        if len(view.key) != len(panel.selectors):
            raise ValueError(
                f"{where} {panel.title!r}: view key {view.key} does not match the selectors "
                f"{panel.selectors}"
            )
        views.append({"key": list(view.key), "w": weights})
    out: dict[str, Any] = {
        "kind": panel.kind,
        "title": panel.title,
        "note": panel.note,
        "selectors": list(panel.selectors),
        "views": views,
    }
    shown = int(getattr(panel, "shown", 0))
    if not 0 <= shown < len(views):
        raise ValueError(f"{where} {panel.title!r}: shown={shown} but {len(views)} views")
    out["shown"] = shown
    if isinstance(panel, OverlayPanel):
        image = panel.image
        shape = tuple(
            np.asarray(image.detach().cpu() if isinstance(image, Tensor) else image).shape
        )
        out.update(
            image=_png(image),
            height=int(shape[0]),
            width=int(shape[1]),
            cells=[list(map(int, c)) for c in panel.cells],
        )
    elif isinstance(panel, SeriesPanel):
        out["lines"] = [
            {
                "name": line.name,
                "x0": float(line.x0),
                "y": _floats(line.values),
                "token": line.token,
                "color": line.color,
            }
            for line in panel.lines
        ]
        out["spans"] = [[float(a), float(b)] for a, b in panel.spans]
    else:
        out["tokens"] = [str(t) for t in panel.tokens]
    return out
