"""`attnlab atlas RUN_DIR [RUN_DIR ...]`: one static page of attention, side by side across apps.

For every run folder given, the best checkpoint is loaded, the run's datamodule is rebuilt from
its ``config.yaml``, and a few validation samples go through ``figure_forward`` with attention
captured (``callbacks.forward_with_attention``, the path the training figures take). The app's
``atlas`` hook turns that capture into *panels*; this module writes them into a single HTML file
with inline CSS, JavaScript and data (images as ``data:`` URIs), so the page opens from disk with
no server and fetches nothing.

Panels are plain data, drawn on a ``<canvas>`` by the page's script:

* ``OverlayPanel``: an image with one weight per rectangular cell (image patches, the caption
  encoder's grid, spectrogram patches) drawn over it as a heat map;
* ``SeriesPanel``: line plots whose tokens are x-ranges (forecast input patches) or whole lines
  (iTransformer's variate tokens);
* ``TokensPanel``: a row of labelled tokens (an item history).

Each panel holds several *views* (one weight vector each) keyed by its selectors, usually
``("layer", "head")`` with ``rollout``, each layer's head mean and every head; the page shows one
``<select>`` per selector and redraws on change. After drawing, the page checks itself: every
figure visible and drawn, and a switch of the first selector changes the picture; it records the
outcome on ``<body data-atlas-check=...>`` (what the headless-browser test reads).
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "Line",
    "OverlayPanel",
    "Panel",
    "SeriesPanel",
    "TokensPanel",
    "View",
    "atlas_data",
    "atlas_main",
    "build_atlas",
    "check_run_folder",
    "grid_cells",
    "layer_head_views",
    "panel_json",
    "render_page",
    "run_section",
]

DEFAULT_SAMPLES = 3


# ---------------------------------------------------------------------------------------------
# panels: what an app's `atlas` hook returns
# ---------------------------------------------------------------------------------------------


@dataclass
class View:
    """One selectable map: its value for each of the panel's selectors, one weight per token."""

    key: tuple[str, ...]
    weights: Any  # (N,) tensor, array or list


@dataclass
class OverlayPanel:
    """An image (H, W) grey or (H, W, 3) RGB in [0, 1]; token i covers ``cells[i]`` =
    (top, left, height, width) in image pixels (cells may overlap: a pixel shows their mean)."""

    title: str
    image: Any
    cells: Sequence[tuple[int, int, int, int]]
    views: list[View]
    selectors: tuple[str, ...] = ("layer", "head")
    note: str = ""
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


# ---------------------------------------------------------------------------------------------
# run folder -> section
# ---------------------------------------------------------------------------------------------


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a run config (expected a mapping at the top)")
    return data


def _checkpoint(run_dir: Path) -> Path:
    for name in ("best.ckpt", "last.ckpt"):
        path = run_dir / "checkpoints" / name
        if path.is_file():
            return path
    raise ValueError(
        f"{run_dir} has no checkpoints/best.ckpt: pass a run folder that `attnlab <app> fit` "
        "finished (its --run_dir)"
    )


def _app_name(run_dir: Path, checkpoint: dict[str, Any]) -> str:
    name = (checkpoint.get("attnlab") or {}).get("app")
    if not name and (run_dir / "manifest.json").is_file():
        from .runs import read_json

        name = read_json(run_dir / "manifest.json").get("app")
    if not name:
        raise ValueError(
            f"{run_dir}: neither the checkpoint nor manifest.json names the app that trained it"
        )
    return str(name)


def _datamodule(app: Any, config_path: Path) -> Any:
    config = _read_yaml(config_path)
    data = config.get("data") or {}
    if isinstance(data, dict) and "init_args" in data:
        data = data.get("init_args") or {}
    if not isinstance(data, dict):
        raise ValueError(f"{config_path}: 'data' is not a mapping of datamodule arguments")
    try:
        return app.datamodule(**data)
    except TypeError as exc:
        raise ValueError(
            f"{config_path}: its data settings do not fit {app.datamodule.__name__} ({exc}); "
            "was the run written by another version of the app?"
        ) from None


def _samples(dm: Any, n: int) -> Any:
    from .callbacks import take_samples

    dm.prepare_data()
    dm.setup("validate")
    for make in ("val_dataloader", "test_dataloader"):
        try:
            loader = getattr(dm, make)()
        except (ValueError, NotImplementedError, AttributeError):
            continue
        if loader is None:
            continue
        for batch in loader:
            return take_samples(batch, n)
    raise ValueError(f"{type(dm).__name__} has no validation or test samples to show")


def _headline(run_dir: Path) -> str:
    path = run_dir / "metrics.json"
    if not path.is_file():
        return ""
    from .runs import read_json

    head = read_json(path).get("headline") or {}
    value = head.get("value")
    if not isinstance(value, int | float):
        return ""
    return f"{head.get('metric')} = {value:.4g} ({head.get('from')})"


def check_run_folder(run_dir: Path) -> tuple[Path, Path]:
    """(config.yaml, checkpoint) of a run folder, or a one-line error saying what is missing."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(
            f"run folder {run_dir} does not exist; pass folders written by `attnlab <app> fit`"
        )
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise ValueError(
            f"{run_dir} has no config.yaml, so its data cannot be rebuilt: is it an attnlab "
            "run folder?"
        )
    return config_path, _checkpoint(run_dir)


def run_section(run_dir: Path, samples: int = DEFAULT_SAMPLES) -> dict[str, Any]:
    """Everything the page shows about one run: its app, checkpoint, headline and panels."""
    from .app import FigureContext, load_apps
    from .callbacks import forward_with_attention
    from .checkpoint import load_checkpoint
    from .module import AttnlabModule

    run_dir = Path(run_dir)
    config_path, ckpt_path = check_run_folder(run_dir)
    name = _app_name(run_dir, load_checkpoint(ckpt_path))
    apps = load_apps()
    if name not in apps:
        raise ValueError(
            f"{run_dir} was trained by app {name!r}, which is not installed "
            f"(installed: {', '.join(apps) or 'none'})"
        )
    app = apps[name]
    if app.atlas is None:
        raise ValueError(f"{run_dir}: app {name!r} has no atlas panels (its App sets no `atlas`)")
    if not issubclass(app.module, AttnlabModule):
        raise ValueError(f"app {name!r}: its module is not an AttnlabModule")
    module = app.module.from_checkpoint(ckpt_path)
    dm = _datamodule(app, config_path)
    batch = _samples(dm, samples)
    output, maps = forward_with_attention(module, batch, app.figure_layers)
    panels = list(app.atlas(FigureContext(module, batch, output, maps, "atlas", dm)))
    if not panels:
        raise ValueError(
            f"{run_dir}: app {name!r} drew no atlas panels (a model without attention layers?)"
        )
    where = f"{run_dir} ({name})"
    return {
        "app": name,
        "description": app.description,
        "run": str(run_dir),
        "name": run_dir.resolve().name,
        "checkpoint": ckpt_path.name,
        "headline": _headline(run_dir),
        "panels": [panel_json(p, where) for p in panels],
    }


# ---------------------------------------------------------------------------------------------
# the page
# ---------------------------------------------------------------------------------------------

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:1.2em auto;max-width:1500px;padding:0 1em;color:#222}
h1{font-size:1.45em;margin:.2em 0}h2{font-size:1.1em;margin:.2em 0}
.lead{color:#555;font-size:.9em;max-width:70em}
.run{border-top:2px solid #ddd;margin-top:1em;padding-top:.5em}
.meta{color:#666;font-size:.8em;margin:.1em 0 .5em}
.panels{display:flex;flex-wrap:wrap;gap:.8em;align-items:flex-start}
.panel{margin:0;padding:.5em;border:1px solid #e3e3e3;border-radius:6px;background:#fcfcfc}
.panel h3{font-size:.85em;margin:0 0 .3em;font-weight:600;max-width:440px}
.controls{font-size:.75em;margin-bottom:.3em;display:flex;gap:.6em;flex-wrap:wrap}
.controls select{font-size:1em}
.panel canvas{display:block}
.note{font-size:.72em;color:#555;margin:.3em 0 0;max-width:440px}
"""

SCRIPT = r"""
(function () {
  "use strict";
  const DATA = JSON.parse(document.getElementById("atlas-data").textContent);
  const problems = [];
  window.addEventListener("error", function (e) { problems.push("script error: " + e.message); });
  const figures = [];

  function jet(t) {
    const r = Math.min(1, Math.max(0, 1.5 - Math.abs(4 * t - 3)));
    const g = Math.min(1, Math.max(0, 1.5 - Math.abs(4 * t - 2)));
    const b = Math.min(1, Math.max(0, 1.5 - Math.abs(4 * t - 1)));
    return [Math.round(255 * r), Math.round(255 * g), Math.round(255 * b)];
  }
  // Like the training figures (imshow), a map is scaled from its minimum to its maximum.
  function scaler(w) {
    let lo = Infinity, hi = -Infinity;
    for (const v of w) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    return function (v) { return hi > lo ? (v - lo) / (hi - lo) : 1; };
  }
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function drawOverlay(fig, weights) {
    const p = fig.panel, ctx = fig.canvas.getContext("2d");
    const W = fig.canvas.width, H = fig.canvas.height;
    ctx.imageSmoothingEnabled = false;
    ctx.clearRect(0, 0, W, H);
    ctx.drawImage(fig.image, 0, 0, W, H);
    const sum = new Float32Array(p.width * p.height), cover = new Float32Array(p.width * p.height);
    p.cells.forEach(function (c, i) {
      for (let y = Math.max(0, c[0]); y < Math.min(p.height, c[0] + c[2]); y++)
        for (let x = Math.max(0, c[1]); x < Math.min(p.width, c[1] + c[3]); x++) {
          sum[y * p.width + x] += weights[i]; cover[y * p.width + x] += 1;
        }
    });
    const covered = [];
    for (let i = 0; i < sum.length; i++) if (cover[i]) { sum[i] /= cover[i]; covered.push(sum[i]); }
    const t = scaler(covered);
    const heat = document.createElement("canvas");
    heat.width = p.width; heat.height = p.height;
    const hctx = heat.getContext("2d"), img = hctx.createImageData(p.width, p.height);
    for (let i = 0; i < sum.length; i++) {
      const v = t(sum[i]), c = jet(v);
      img.data[4 * i] = c[0]; img.data[4 * i + 1] = c[1]; img.data[4 * i + 2] = c[2];
      img.data[4 * i + 3] = cover[i] ? Math.round(50 + 150 * v) : 0;
    }
    hctx.putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(heat, 0, 0, W, H);
  }

  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];

  function drawSeries(fig, weights) {
    const p = fig.panel, ctx = fig.canvas.getContext("2d");
    const W = fig.canvas.width, H = fig.canvas.height, pad = 24;
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, H);
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    p.lines.forEach(function (l) {
      x0 = Math.min(x0, l.x0); x1 = Math.max(x1, l.x0 + l.y.length - 1);
      l.y.forEach(function (v) { y0 = Math.min(y0, v); y1 = Math.max(y1, v); });
    });
    p.spans.forEach(function (s) { x0 = Math.min(x0, s[0]); x1 = Math.max(x1, s[1]); });
    if (!(y1 > y0)) { y0 -= 1; y1 += 1; }
    const X = function (x) { return pad + (x - x0) / Math.max(1e-9, x1 - x0) * (W - 2 * pad); };
    const Y = function (y) { return H - pad - (y - y0) / (y1 - y0) * (H - 2 * pad); };
    const t = scaler(weights);
    p.spans.forEach(function (s, i) {
      ctx.fillStyle = "rgba(230,60,30," + (0.05 + 0.7 * t(weights[i])).toFixed(3) + ")";
      ctx.fillRect(X(s[0]), pad / 2, Math.max(1, X(s[1]) - X(s[0])), H - 1.5 * pad);
    });
    ctx.strokeStyle = "#bbb"; ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(X(0), pad / 2); ctx.lineTo(X(0), H - pad); ctx.stroke();
    let legendY = 12;
    p.lines.forEach(function (l, i) {
      const color = l.color || PALETTE[i % PALETTE.length];
      const w = l.token === null || l.token === undefined ? null : t(weights[l.token]);
      ctx.globalAlpha = w === null ? 1 : 0.2 + 0.8 * w;
      ctx.strokeStyle = color; ctx.lineWidth = w === null ? 1.2 : 0.8 + 2.5 * w;
      ctx.beginPath();
      l.y.forEach(function (v, k) { const x = X(l.x0 + k), y = Y(v); if (k) ctx.lineTo(x, y); else ctx.moveTo(x, y); });
      ctx.stroke();
      ctx.globalAlpha = 1; ctx.fillStyle = color; ctx.font = "10px sans-serif";
      const label = w === null ? l.name : l.name + " " + weights[l.token].toFixed(3);
      ctx.fillText(label, W - pad - ctx.measureText(label).width, legendY); legendY += 11;
    });
    ctx.fillStyle = "#555"; ctx.font = "10px sans-serif";
    ctx.fillText(String(Math.round(x0)), X(x0), H - 8);
    ctx.fillText("0", X(0) - 3, H - 8);
    ctx.fillText(String(Math.round(x1)), X(x1) - 14, H - 8);
  }

  function drawTokens(fig, weights) {
    const p = fig.panel, ctx = fig.canvas.getContext("2d");
    const W = fig.canvas.width, H = fig.canvas.height;
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, H);
    const t = scaler(weights), cw = fig.cellW, ch = 34, per = fig.perRow;
    ctx.font = "10px sans-serif"; ctx.textAlign = "center";
    p.tokens.forEach(function (label, i) {
      const x = (i % per) * cw, y = Math.floor(i / per) * (ch + 4) + 2, v = t(weights[i]);
      ctx.fillStyle = "rgba(" + jet(v).join(",") + "," + (0.15 + 0.7 * v).toFixed(3) + ")";
      ctx.fillRect(x + 1, y, cw - 2, ch);
      ctx.fillStyle = "#000";
      ctx.fillText(label.length > 9 ? label.slice(0, 8) + "\u2026" : label, x + cw / 2, y + 14);
      ctx.fillText(weights[i].toFixed(3), x + cw / 2, y + 28);
    });
    ctx.textAlign = "start";
  }

  const DRAW = { overlay: drawOverlay, series: drawSeries, tokens: drawTokens };

  function currentView(fig) {
    const want = fig.selects.map(function (s) { return s.value; });
    return fig.panel.views.find(function (v) { return v.key.every(function (k, i) { return k === want[i]; }); });
  }

  function redraw(fig) {
    const view = currentView(fig);
    DRAW[fig.panel.kind](fig, view.w);
    fig.element.setAttribute("data-view", view.key.join(" / "));
  }

  function onSelect(fig, axis) {
    // Keep the choices on earlier selectors; on later ones keep what exists, else the first.
    const want = fig.selects.map(function (s) { return s.value; });
    const candidates = fig.panel.views.filter(function (v) {
      return v.key.slice(0, axis + 1).every(function (k, i) { return k === want[i]; });
    });
    const view =
      candidates.find(function (v) { return v.key.every(function (k, i) { return k === want[i]; }); }) ||
      candidates.find(function (v) { return v.key.slice(axis + 1).every(function (k) { return k === "mean"; }); }) ||
      candidates[0];
    for (let i = axis + 1; i < fig.selects.length; i++) fillOptions(fig, i, view.key);
    fig.selects.forEach(function (s, i) { s.value = view.key[i]; });
    redraw(fig);
  }

  function fillOptions(fig, axis, key) {
    const select = fig.selects[axis], seen = [];
    fig.panel.views.forEach(function (v) {
      if (v.key.slice(0, axis).every(function (k, i) { return k === key[i]; }) && seen.indexOf(v.key[axis]) < 0)
        seen.push(v.key[axis]);
    });
    select.innerHTML = "";
    seen.forEach(function (value) { select.appendChild(el("option", { value: value }, value)); });
  }

  function build(panel, container, r, i) {
    const figure = el("figure", { class: "panel", id: "r" + r + "p" + i, "data-kind": panel.kind });
    figure.appendChild(el("h3", {}, panel.title));
    const controls = el("div", { class: "controls" });
    figure.appendChild(controls);
    const canvas = el("canvas", { class: "figure" });
    canvas.getContext("2d", { willReadFrequently: true });  // the self-check reads pixels back
    const fig = { panel: panel, element: figure, canvas: canvas, selects: [] };
    if (panel.kind === "overlay") {
      const scale = Math.max(1, Math.floor(220 / Math.max(panel.width, panel.height)));
      const s = Math.max(scale, 220 / Math.max(panel.width, panel.height));
      canvas.width = Math.round(panel.width * s); canvas.height = Math.round(panel.height * s);
    } else if (panel.kind === "series") {
      canvas.width = 440; canvas.height = 190;
    } else {
      fig.cellW = 54; fig.perRow = Math.max(1, Math.min(panel.tokens.length, 8));
      canvas.width = fig.cellW * fig.perRow;
      canvas.height = Math.ceil(panel.tokens.length / fig.perRow) * 38 + 4;
    }
    figure.appendChild(canvas);
    if (panel.note) figure.appendChild(el("p", { class: "note" }, panel.note));
    panel.selectors.forEach(function (name, axis) {
      const label = el("label", {}, name + " ");
      const select = el("select", { "data-axis": String(axis) });
      label.appendChild(select); controls.appendChild(label);
      fig.selects.push(select);
      select.addEventListener("change", function () { onSelect(fig, axis); });
    });
    const first = panel.views[0].key;
    panel.selectors.forEach(function (_, axis) { fillOptions(fig, axis, first); });
    fig.selects.forEach(function (s, i) { s.value = first[i]; });
    container.appendChild(figure);
    figures.push(fig);
    return fig;
  }

  function loadImage(src) {
    return new Promise(function (resolve, reject) {
      const img = new Image();
      img.onload = function () { resolve(img); };
      img.onerror = function () { reject(new Error("an embedded image failed to load")); };
      img.src = src;
    });
  }

  function signature(canvas) {
    const d = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let h = 0, opaque = 0, distinct = false;
    for (let i = 0; i < d.length; i += 4) {
      h = (h * 31 + d[i] * 3 + d[i + 1] * 5 + d[i + 2] * 7 + d[i + 3]) % 2147483647;
      if (d[i + 3]) opaque++;
      if (!distinct && (d[i] !== d[0] || d[i + 1] !== d[1] || d[i + 2] !== d[2])) distinct = true;
    }
    return { hash: h, drawn: opaque > 0 && distinct };
  }

  function selfCheck() {
    let visible = 0, switched = 0, selectable = 0;
    figures.forEach(function (fig) {
      const id = fig.element.id, rect = fig.canvas.getBoundingClientRect();
      const before = signature(fig.canvas);
      if (rect.width > 0 && rect.height > 0 && before.drawn) visible++;
      else problems.push(id + " is not visible or not drawn");
      if (fig.panel.views.length < 2) return;
      selectable++;
      const select = fig.selects[0], original = fig.selects.map(function (s) { return s.value; });
      const other = Array.from(select.options).find(function (o) { return o.value !== select.value; });
      const s0 = other ? select : fig.selects[fig.selects.length - 1];
      const alt = other || Array.from(s0.options).find(function (o) { return o.value !== s0.value; });
      if (!alt) { problems.push(id + ": no other view to select"); return; }
      const viewBefore = fig.element.getAttribute("data-view");
      s0.value = alt.value;
      s0.dispatchEvent(new Event("change"));
      const after = signature(fig.canvas);
      if (fig.element.getAttribute("data-view") !== viewBefore && after.drawn && after.hash !== before.hash) switched++;
      else problems.push(id + ": selecting " + alt.value + " did not redraw");
      original.forEach(function (value, i) { fig.selects[i].value = value; onSelect(fig, i); });
    });
    document.querySelectorAll("img").forEach(function (img) {
      if (!(img.naturalWidth > 0)) problems.push("an image did not load");
    });
    const body = document.body;
    body.setAttribute("data-figures", String(figures.length));
    body.setAttribute("data-visible", String(visible));
    body.setAttribute("data-selectable", String(selectable));
    body.setAttribute("data-switched", String(switched));
    body.setAttribute("data-atlas-check", problems.length ? "fail: " + problems.join("; ") : "ok");
  }

  async function main() {
    const jobs = [];
    DATA.runs.forEach(function (run, r) {
      const container = document.querySelector("#run" + r + " .panels");
      run.panels.forEach(function (panel, i) {
        const fig = build(panel, container, r, i);
        if (panel.kind === "overlay") jobs.push(loadImage(panel.image).then(function (img) { fig.image = img; }));
      });
    });
    await Promise.all(jobs);
    figures.forEach(redraw);
    selfCheck();
  }
  main().catch(function (e) {
    problems.push("atlas failed: " + e.message);
    document.body.setAttribute("data-atlas-check", "fail: " + problems.join("; "));
  });
})();
"""


def render_page(sections: Sequence[dict[str, Any]], title: str = "attnlab attention atlas") -> str:
    """The whole page as one string: markup, style, script and data inline."""
    data = json.dumps({"runs": list(sections)}, separators=(",", ":"), allow_nan=False)
    data = data.replace("</", "<\\/")  # a title holding "</script>" must not end the data block
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<p class='lead'>What each model attends to on a few validation samples. Every panel has "
        "a layer and head selector: <b>rollout</b> multiplies the head-averaged attention of all "
        "layers (with the residual path), <b>mean</b> averages one layer's heads. Red is where "
        "the weight goes; each map is scaled from its own minimum to its maximum (numbers on "
        "items and variates are the weights themselves). Generated "
        f"{html.escape(datetime.now().strftime('%Y-%m-%d %H:%M'))} by <code>attnlab atlas</code>."
        "</p>",
    ]
    for r, section in enumerate(sections):
        meta = " · ".join(
            html.escape(str(x))
            for x in (section["run"], section["checkpoint"], section["headline"])
            if x
        )
        parts.append(
            f"<section class='run' id='run{r}' data-app='{html.escape(section['app'])}'>"
            f"<h2>{html.escape(section['app'])}: {html.escape(section['description'])}</h2>"
            f"<p class='meta'>{meta}</p><div class='panels'></div></section>"
        )
    parts.append(f"<script type='application/json' id='atlas-data'>{data}</script>")
    parts.append(f"<script>{SCRIPT}</script></body></html>")
    return "\n".join(parts)


def atlas_data(page: str) -> dict[str, Any]:
    """The data block of a page ``render_page`` wrote: {"runs": [section, ...]}."""
    start_tag = "<script type='application/json' id='atlas-data'>"
    start = page.find(start_tag)
    end = page.find("</script>", start)
    if start < 0 or end < 0:
        raise ValueError("not an attnlab atlas page (no atlas-data block)")
    data: dict[str, Any] = json.loads(page[start + len(start_tag) : end])  # "<\\/" is JSON
    return data


def build_atlas(
    run_dirs: Sequence[str | Path],
    out: str | Path = "atlas.html",
    *,
    samples: int = DEFAULT_SAMPLES,
    force: bool = False,
) -> Path:
    """Write the atlas of ``run_dirs`` to ``out``; every run is read before anything is written."""
    out = Path(out)
    if out.exists() and not force:
        raise FileExistsError(
            f"{out} already exists; pass --force to replace it or choose another --out"
        )
    if out.exists() and out.is_dir():
        raise IsADirectoryError(f"{out} is a folder; --out needs a file name like atlas.html")
    if not run_dirs:
        raise ValueError("give at least one run folder")
    if samples < 1:
        raise ValueError(f"--samples must be at least 1, got {samples}")
    for run_dir in run_dirs:  # every folder checked before any model is loaded
        check_run_folder(Path(run_dir))
    torch.manual_seed(0)
    sections = [run_section(Path(d), samples) for d in run_dirs]
    from .runs import atomic_write_text

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, render_page(sections))
    return out


def atlas_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="attnlab atlas",
        description="one static HTML page of attention maps, side by side, for trained runs",
    )
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders of fit")
    parser.add_argument("--out", default="atlas.html", help="output file (default ./atlas.html)")
    parser.add_argument(
        "--samples",
        type=int,
        default=DEFAULT_SAMPLES,
        help=f"validation samples per run (default {DEFAULT_SAMPLES})",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing --out file")
    args = parser.parse_args(argv)
    path = build_atlas(args.run_dirs, args.out, samples=args.samples, force=args.force)
    size = path.stat().st_size
    print(f"atlas: {path} ({len(args.run_dirs)} run(s), {math.ceil(size / 1024)} KiB)")
    return 0
