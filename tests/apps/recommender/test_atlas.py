"""`attnlab atlas` of a SASRec run: the attention of the predicting position over the history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="module")
def page(tiny_atlas: Any) -> tuple[Path, dict[str, Any]]:
    return tiny_atlas("recsys", "--data.synthetic", '{"num_users": 200}')


def test_panels_show_the_item_history(page: tuple[Path, dict[str, Any]]) -> None:
    (run,) = page[1]["runs"]
    assert run["app"] == "recsys" and len(run["panels"]) == 2
    for panel in run["panels"]:
        assert panel["kind"] == "tokens" and 1 <= len(panel["tokens"]) <= 30  # max_len 30
        assert "next item" in panel["title"]
        for view in panel["views"]:
            # causal attention of the last item: a distribution over exactly these items
            assert len(view["w"]) == len(panel["tokens"])
            assert sum(view["w"]) == pytest.approx(1.0, abs=2e-3)


def test_page_in_headless_chromium(
    page: tuple[Path, dict[str, Any]], headless_chromium: Any
) -> None:
    loaded = headless_chromium(page[0])
    assert loaded.console == [] and loaded.body["data-atlas-check"] == "ok"
    assert loaded.body["data-visible"] == loaded.body["data-switched"] == "2"
