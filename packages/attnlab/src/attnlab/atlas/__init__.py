"""`attnlab atlas RUN_DIR [RUN_DIR ...]`: one static page of attention, side by side across apps.

For every run folder given, the best checkpoint is loaded, the run's datamodule is rebuilt from
its ``config.yaml``, and a few validation samples go through ``figure_forward`` with attention
captured (``callbacks.forward_with_attention``, the path the training figures take). The app's
``atlas`` hook turns that capture into *panels*; the page is a single HTML file with inline CSS,
JavaScript and data (images as ``data:`` URIs), so it opens from disk with no server and fetches
nothing.

One module per concern:

* ``panels``: the panel dataclasses an app's ``atlas`` hook returns (``OverlayPanel``,
  ``SeriesPanel``, ``TokensPanel``, their ``View``s) and their JSON; it imports nothing from the
  Lightning layer, so an app's ``draw.py`` can import it freely;
* ``page``: the HTML page, its style and its script (the packaged ``atlas.js``), and
  ``atlas_data`` to read the data back out of a page;
* ``build``: run folders in, page out, and the ``attnlab atlas`` command.
"""

from __future__ import annotations

from .build import atlas_main, build_atlas, check_run_folder, run_section
from .page import atlas_data, render_page
from .panels import (
    Line,
    OverlayPanel,
    Panel,
    SeriesPanel,
    TokensPanel,
    View,
    grid_cells,
    layer_head_views,
    panel_json,
)

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
