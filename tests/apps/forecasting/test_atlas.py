"""`attnlab atlas` of a PatchTST run: attention over input patches beside the series."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .test_cli import TINY


@pytest.fixture(scope="module")
def page(tiny_atlas: Any) -> tuple[Path, dict[str, Any]]:
    return tiny_atlas("forecast", *TINY)


def test_panels_show_patches_beside_the_series(page: tuple[Path, dict[str, Any]]) -> None:
    (run,) = page[1]["runs"]
    assert run["app"] == "forecast" and len(run["panels"]) == 2
    for panel in run["panels"]:
        assert panel["kind"] == "series"
        lines = {line["name"]: line for line in panel["lines"]}
        assert set(lines) == {"input", "truth", "forecast"}
        assert (lines["input"]["x0"], len(lines["input"]["y"])) == (-48.0, 48)
        assert (lines["forecast"]["x0"], len(lines["forecast"]["y"])) == (0.0, 12)
        # seq_len 48, patches of 16 with stride 8 (end padded by one stride): 6 patches
        assert panel["spans"][0] == [-48.0, -32.0] and panel["spans"][-1] == [-8.0, 0.0]
        assert len(panel["spans"]) == 6
        for view in panel["views"]:
            assert len(view["w"]) == 6 and sum(view["w"]) == pytest.approx(1.0, abs=2e-3)


def test_page_in_headless_chromium(
    page: tuple[Path, dict[str, Any]], headless_chromium: Any
) -> None:
    loaded = headless_chromium(page[0])
    assert loaded.console == [] and loaded.body["data-atlas-check"] == "ok"
    assert loaded.body["data-visible"] == loaded.body["data-switched"] == "2"
