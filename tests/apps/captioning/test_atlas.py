"""`attnlab atlas` of a captioning run: each generated word's attention over the image grid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from attnlab_captioning import app

from .test_cli import SMALL

QUICK_SIZE = yaml.safe_load((app.config_dir / "quick.yaml").read_text())["data"]["image_size"]


@pytest.fixture(scope="module")
def page(tiny_atlas: Any) -> tuple[Path, dict[str, Any]]:
    return tiny_atlas("caption", *SMALL)


def test_panels_show_one_view_per_word(page: tuple[Path, dict[str, Any]]) -> None:
    (run,) = page[1]["runs"]
    assert run["app"] == "caption" and len(run["panels"]) == 2
    for panel in run["panels"]:
        assert panel["kind"] == "overlay" and panel["selectors"] == ["word"]
        assert (panel["height"], panel["width"]) == (QUICK_SIZE, QUICK_SIZE)
        words = panel["title"].split() if panel["title"] != "(empty caption)" else []
        keys = [v["key"][0] for v in panel["views"]]
        expected = [f"{t + 1}: {w}" for t, w in enumerate([*words, "<eos>"])]
        assert keys == expected[: len(keys)] and len(keys) >= min(len(expected), 12)
        cells = len(panel["cells"])
        for view in panel["views"]:
            # Show-Attend-Tell's soft attention: a distribution over the grid
            assert len(view["w"]) == cells and sum(view["w"]) == pytest.approx(1.0, abs=2e-3)
        # the page opens on the word whose attention is most concentrated
        peaks = [max(view["w"]) for view in panel["views"]]
        assert panel["shown"] == peaks.index(max(peaks))


def test_page_in_headless_chromium(
    page: tuple[Path, dict[str, Any]], headless_chromium: Any
) -> None:
    loaded = headless_chromium(page[0])
    assert loaded.console == [] and loaded.body["data-atlas-check"] == "ok"
    assert loaded.body["data-visible"] == loaded.body["data-switched"] == "2"
