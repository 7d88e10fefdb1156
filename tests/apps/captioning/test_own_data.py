"""Your own caption files: sizes checked before a caption file is parsed, and `--help` lists
the datasets and their layouts (issues #18 and #23)."""

from __future__ import annotations

from pathlib import Path

import pytest
from attnlab_captioning.data import CaptionData
from attnlab_captioning.readers import MAX_CAPTION_JSON_BYTES, MAX_CAPTION_TEXT_BYTES

from attnlab.cli import main


def _sparse(path: Path, size: int, start: bytes) -> Path:
    """A file of ``size`` bytes that starts with ``start`` and uses no disk for the rest."""
    with open(path, "wb") as fh:
        fh.write(start)
        fh.truncate(size)
    return path


@pytest.mark.parametrize(
    ("name", "limit", "start"),
    [
        ("dataset_flickr8k.json", MAX_CAPTION_JSON_BYTES, b'{"images": ['),
        ("captions.txt", MAX_CAPTION_TEXT_BYTES, b"image,caption\n"),
    ],
)
def test_a_caption_file_over_the_limit_is_refused_before_parsing(
    tmp_path: Path, name: str, limit: int, start: bytes
) -> None:
    """Parsed, a caption file takes several times its size: one line naming the file instead."""
    root = tmp_path / "flickr8k"
    root.mkdir()
    _sparse(root / name, limit + 1, start)
    dm = CaptionData(dataset="flickr8k", root=str(root))
    with pytest.raises(ValueError, match=rf"{name}: {limit >> 20} MiB, over the {limit >> 20} MiB"):
        dm.read()


def test_help_lists_the_datasets(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["caption", "fit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for entry in ("digit_scenes = generated", "flickr8k, flickr30k, coco = a folder",
                  "dataset_<dataset>.json (Karpathy's layout", "captions.txt (`image,caption`"):  # fmt: skip
        assert entry in text, entry
