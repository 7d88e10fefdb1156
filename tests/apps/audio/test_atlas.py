"""`attnlab atlas` of an AST run: class-token attention over spectrogram patches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="module")
def page(tiny_atlas: Any) -> tuple[Path, dict[str, Any]]:
    return tiny_atlas("audio", "--data.n_synthetic", "96")


def test_panels_overlay_the_spectrogram_patches(page: tuple[Path, dict[str, Any]]) -> None:
    (run,) = page[1]["runs"]
    assert run["app"] == "audio" and len(run["panels"]) == 2
    for panel in run["panels"]:
        # quick config: 48 mel bands x 32 frames, patches of 8 with stride 6 -> 7 x 5 patches
        assert panel["kind"] == "overlay" and (panel["height"], panel["width"]) == (48, 32)
        assert len(panel["cells"]) == 35
        tops = sorted({c[0] for c in panel["cells"]})
        lefts = sorted({c[1] for c in panel["cells"]})
        assert tops == [48 - (6 * f + 8) for f in reversed(range(7))] and lefts == [
            0,
            6,
            12,
            18,
            24,
        ]
        assert panel["cells"][0] == [40, 0, 8, 8]  # the lowest band is drawn at the bottom
        for view in panel["views"]:
            assert len(view["w"]) == 35 and 0.0 < sum(view["w"]) <= 1.0 + 1e-3


def test_page_in_headless_chromium(
    page: tuple[Path, dict[str, Any]], headless_chromium: Any
) -> None:
    loaded = headless_chromium(page[0])
    assert loaded.console == [] and loaded.body["data-atlas-check"] == "ok"
    assert loaded.body["data-visible"] == loaded.body["data-switched"] == "2"
