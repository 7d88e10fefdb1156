"""The atlas page: one HTML file with inline CSS, JavaScript and data (images as ``data:`` URIs),
so it opens from disk with no server and fetches nothing.

The page's script (``atlas.js`` beside this module, shipped as package data) shows one
``<select>`` per selector of each panel and redraws on change. After drawing, the page checks
itself: every figure visible and drawn, and a switch of the first selector changes the picture;
it records the outcome on ``<body data-atlas-check=...>`` (what the headless-browser test reads).
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from importlib.resources import files
from typing import Any

__all__ = ["STYLE", "atlas_data", "render_page"]

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


@cache
def _script() -> str:
    """The page's script, read once from the packaged ``atlas.js``."""
    return files("attnlab.atlas").joinpath("atlas.js").read_text(encoding="utf-8")


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
    parts.append(f"<script>\n{_script()}</script></body></html>")
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
