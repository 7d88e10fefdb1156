"""The caption benchmark writes no machine-specific path into its (committed) results."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `benchmarks` is a folder of the checkout, not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks.caption import _portable  # noqa: E402


def test_reader_source_is_written_relative_to_the_data_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATTNLAB_DATA_DIR", str(tmp_path))
    stats = {"source": str(tmp_path / "flickr8k" / "captions.txt"), "dropped_captions": 3}
    assert _portable(stats) == {
        "source": "$ATTNLAB_DATA_DIR/flickr8k/captions.txt",
        "dropped_captions": 3,
    }
    outside = _portable({"source": "/somewhere/else/dataset_coco.json"})
    assert outside["source"] == "$ATTNLAB_DATA_DIR/dataset_coco.json"
    assert _portable({"dataset": "digit_scenes"}) == {"dataset": "digit_scenes"}
