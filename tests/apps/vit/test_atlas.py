"""`attnlab atlas` of a ViT run: class-token attention over the image patches, per layer and head."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="module")
def page(tiny_atlas: Any) -> tuple[Path, dict[str, Any]]:
    return tiny_atlas("vit")


def test_panels_overlay_the_patch_grid(page: tuple[Path, dict[str, Any]]) -> None:
    (run,) = page[1]["runs"]
    assert run["app"] == "vit" and len(run["panels"]) == 2
    for panel in run["panels"]:
        # digits: 8x8 images, 2x2 patches -> a 4x4 grid of cells covering the image once
        assert panel["kind"] == "overlay" and (panel["height"], panel["width"]) == (8, 8)
        assert len(panel["cells"]) == 16 and sum(c[2] * c[3] for c in panel["cells"]) == 64
        assert panel["image"].startswith("data:image/png;base64,")
        keys = [tuple(v["key"]) for v in panel["views"]]
        assert keys[0] == ("rollout", "mean") and ("layer 1", "head 0") in keys
        for view in panel["views"]:
            # the class token's row over the patches: all of it but what it keeps for itself
            assert len(view["w"]) == 16 and 0.0 < sum(view["w"]) <= 1.0 + 1e-3


def test_page_in_headless_chromium(
    page: tuple[Path, dict[str, Any]], headless_chromium: Any
) -> None:
    loaded = headless_chromium(page[0])
    assert loaded.console == [] and loaded.body["data-atlas-check"] == "ok"
    assert loaded.body["data-visible"] == loaded.body["data-switched"] == "2"
