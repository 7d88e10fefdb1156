"""Digit scenes and the caption readers on generated fixtures (both layouts), bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from attnlab_captioning.data import (
    CaptionData,
    collate,
    make_digit_scenes,
    read_flickr8k_csv,
    read_karpathy,
    scene_caption,
)


def test_scene_caption_grammar() -> None:
    # (digit, x0, y0, x1, y1)
    assert scene_caption([(3, 0, 0, 16, 16)]) == ["a", "3"]
    assert scene_caption([(7, 40, 2, 56, 18), (3, 0, 0, 16, 16)]) == [
        "a",
        "3",
        "left",
        "of",
        "a",
        "7",
    ]
    # vertical offset larger: the upper one first
    assert scene_caption([(5, 2, 0, 18, 16), (2, 0, 40, 16, 56)]) == ["a", "5", "above", "a", "2"]
    assert scene_caption([(2, 4, 40, 20, 56), (5, 0, 0, 16, 16)]) == ["a", "5", "above", "a", "2"]
    four = [(1, 0, 0, 16, 16), (2, 20, 0, 36, 16), (3, 40, 0, 56, 16), (4, 44, 40, 60, 56)]
    assert " ".join(scene_caption(four)) == "a 1 left of a 2 and a 3 above a 4"
    assert " ".join(scene_caption(four[:3])) == "a 1 left of a 2 and a 3"


def test_quick_config_fits_the_longest_scene_caption() -> None:
    """A caption longer than ``max_len`` is cut in training and can never be generated whole."""
    import yaml

    config = Path(__file__).parents[3] / "apps" / "captioning" / "configs" / "quick.yaml"
    max_len = yaml.safe_load(config.read_text(encoding="utf-8"))["model"]["max_len"]
    row = [(d, 20 * d, 0, 20 * d + 16, 16) for d in range(4)]  # four glyphs side by side
    assert len(scene_caption(row)) == 13  # "a 0 left of a 1 and a 2 left of a 3"
    assert max_len >= 13
    longest = max(len(s.captions[0]) for s in make_digit_scenes(300, "train", seed=0))
    assert longest == 13


def test_digit_scenes_boxes_hold_their_glyphs_and_repeat() -> None:
    scenes = make_digit_scenes(30, "train", seed=0)
    again = make_digit_scenes(30, "train", seed=0)
    for s, t in zip(scenes, again):
        assert np.array_equal(s.image, t.image) and s.boxes == t.boxes
    for s in scenes:
        assert 1 <= len(s.boxes) <= 4
        assert s.captions == [scene_caption(s.boxes)]
        mask = np.zeros_like(s.image, dtype=bool)
        for _, x0, y0, x1, y1 in s.boxes:
            assert not mask[y0:y1, x0:x1].any()  # no overlap
            mask[y0:y1, x0:x1] = True
        assert s.image[~mask].max() == 0.0  # ink only inside boxes
    assert make_digit_scenes(5, "val", 0)[0].image.shape == (64, 64)


def test_flickr8k_csv_layout(flickr_csv_root: Path) -> None:
    result = read_flickr8k_csv(flickr_csv_root)
    assert [len(result.splits[s]) for s in ("train", "val", "test")] == [6, 2, 2]
    rec = result.splits["train"][0]
    assert len(rec.captions) == 3
    assert rec.captions[0] == [
        "a",
        "dog",
        "runs",
        "on",
        "the",
        "grass",
        "quickly",
    ]  # comma and ! gone
    assert rec.path == flickr_csv_root / "images" / "0000_img.jpg"


def test_karpathy_layout(karpathy_root: Path) -> None:
    result = read_karpathy(karpathy_root / "dataset_flickr8k.json", karpathy_root / "images")
    assert [len(result.splits[s]) for s in ("train", "val", "test")] == [
        3,
        1,
        1,
    ]  # restval -> train
    assert result.splits["train"][2].path == karpathy_root / "images" / "sub" / "k2.png"
    dm = CaptionData(dataset="flickr8k", root=str(karpathy_root), image_size=32, batch_size=2)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 32, 32)
    assert dm.vocab is not None and "dog" in dm.vocab.stoi


def test_datamodule_on_csv_layout(flickr_csv_root: Path) -> None:
    dm = CaptionData(dataset="flickr8k", root=str(flickr_csv_root), image_size=32, batch_size=4)
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    assert batch["image"].shape == (2, 3, 32, 32)
    assert all(len(r.split("\n")) == 3 for r in batch["references"])
    assert torch.isfinite(batch["image"]).all()


def test_caption_file_missing_a_column(flickr_csv_root: Path) -> None:
    path = flickr_csv_root / "captions.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(["image,text", *lines[1:]]) + "\n")
    with pytest.raises(
        ValueError, match=r"captions.txt, line 1: the header has no 'caption' column"
    ):
        read_flickr8k_csv(flickr_csv_root)


def test_listed_image_absent_needs_the_flag(
    flickr_csv_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (flickr_csv_root / "images" / "0001_img.jpg").unlink()
    dm = CaptionData(dataset="flickr8k", root=str(flickr_csv_root), image_size=32)
    with pytest.raises(
        FileNotFoundError, match=r"3 of 30 captions \(1 images\).*allow_missing_images true"
    ):
        dm.setup("fit")
    dm = CaptionData(
        dataset="flickr8k", root=str(flickr_csv_root), image_size=32, allow_missing_images=True
    )
    dm.setup("fit")
    assert "dropped 3 of 30 captions" in capsys.readouterr().out
    assert dm.read_stats["dropped_captions"] == 3 and dm.read_stats["train_images"] == 5


def test_empty_vocabulary_from_data(flickr_csv_root: Path) -> None:
    dm = CaptionData(dataset="flickr8k", root=str(flickr_csv_root), image_size=32, min_count=1000)
    with pytest.raises(ValueError, match="empty vocabulary"):
        dm.setup("fit")


def test_unreadable_image(flickr_csv_root: Path) -> None:
    (flickr_csv_root / "images" / "0000_img.jpg").write_bytes(b"not a jpeg at all")
    dm = CaptionData(dataset="flickr8k", root=str(flickr_csv_root), image_size=32)
    dm.setup("fit")
    with pytest.raises(ValueError, match=r"0000_img.jpg: cannot read the image"):
        dm.train_set[0]


def test_no_real_data_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ATTNLAB_DATA_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match=r"--data\.root or set ATTNLAB_DATA_DIR"):
        CaptionData(dataset="flickr8k").setup("fit")


def test_collate_keeps_text_sliceable() -> None:
    dm = CaptionData(n_train=4, n_val=4, n_test=4)
    dm.setup("fit")
    batch = collate([dm.val_set[i] for i in range(3)])
    assert batch["boxes"].shape == (3, 4, 5) and len(batch["caption"]) == 3
    assert all(isinstance(c, str) for c in batch["references"])


@pytest.mark.data
def test_real_flickr8k_subset(flickr8k_real: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(FileNotFoundError, match=r"35045 of 40000 captions \(7009 images\)"):
        CaptionData(dataset="flickr8k", root=str(flickr8k_real)).setup("fit")
    dm = CaptionData(
        dataset="flickr8k", root=str(flickr8k_real), allow_missing_images=True, cache_images=False
    )
    dm.setup("fit")
    stats = dm.read_stats
    assert stats["total_captions"] == 40000  # the 8,000 listed images; 91 belong to no split
    assert (stats["train_images"], stats["val_images"], stats["test_images"]) == (753, 113, 125)
    assert stats["dropped_captions"] == 40000 - 5 * (753 + 113 + 125)
    assert "dropped" in capsys.readouterr().out
    item = dm.test_set[0]
    assert item["image"].shape == (3, 64, 64) and len(item["references"].split("\n")) == 5
