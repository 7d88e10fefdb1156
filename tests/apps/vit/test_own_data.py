"""Your own images, as people ship them: every accepted layout, stratified subsets, zip reads in
DataLoader workers, and one-line messages for a layout the app does not take."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from attnlab_vit.data import ImageData, scan_image_folder
from attnlab_vit.splits import stratified_subset

from attnlab.cli import main

from .conftest import make_image_folder, run_attnlab, zip_folder

CLASSES = ("cat", "dog", "owl")


def _split_folders(root: Path, test: str = "test", val: str | None = None) -> Path:
    make_image_folder(root / "train", per_class=6)
    make_image_folder(root / test, per_class=2)
    if val:
        make_image_folder(root / val, per_class=1)
    return root


def _layout_class_folders(tmp: Path) -> Path:
    return make_image_folder(tmp / "pets", per_class=6)


def _layout_class_folders_zip(tmp: Path) -> Path:
    return zip_folder(make_image_folder(tmp / "pets", per_class=6), tmp / "pets.zip")


def _layout_train_test(tmp: Path) -> Path:
    return _split_folders(tmp / "pets")


def _layout_train_test_zip(tmp: Path) -> Path:
    return zip_folder(_split_folders(tmp / "pets"), tmp / "pets.zip")


def _layout_imagefolder_train_val(tmp: Path) -> Path:
    """torchvision / ImageNet style: train/ and val/, val/ the held-out split."""
    return _split_folders(tmp / "pets", test="val")


def _layout_train_val_test(tmp: Path) -> Path:
    return _split_folders(tmp / "pets", val="valid")


def _layout_separate_zips(tmp: Path) -> Path:
    """train.zip holding train/CLASS/..., test.zip holding CLASS/... directly."""
    source = _split_folders(tmp / "src")
    (tmp / "pets").mkdir()
    zip_folder(source / "train", tmp / "pets" / "train.zip", wrap="train")
    zip_folder(source / "test", tmp / "pets" / "test.zip", wrap="")
    return tmp / "pets"


def _layout_train_zip_alone(tmp: Path) -> Path:
    source = _split_folders(tmp / "src")
    return zip_folder(source / "train", tmp / "train.zip", wrap="train")


# (layout builder, layout in the log, images per split given, (train, val, test) after setup)
LAYOUTS = [
    pytest.param(_layout_class_folders, "class folders", {"all": 18}, (13, 1, 4), id="class-folders"),
    pytest.param(_layout_class_folders_zip, "class folders", {"all": 18}, (13, 1, 4), id="class-folders-zip"),
    pytest.param(_layout_train_test, "split folders (train/ + test/)", {"train": 18, "test": 6}, (16, 2, 6), id="train-test"),
    pytest.param(_layout_train_test_zip, "split folders (train/ + test/)", {"train": 18, "test": 6}, (16, 2, 6), id="train-test-zip"),
    pytest.param(_layout_imagefolder_train_val, "split folders (train/ + val/)", {"train": 18, "val": 6}, (16, 2, 6), id="imagefolder-train-val"),
    pytest.param(_layout_train_val_test, "split folders (train/ + valid/ + test/)", {"train": 18, "val": 3, "test": 6}, (18, 3, 6), id="train-valid-test"),
    pytest.param(_layout_separate_zips, "one archive per split (train.zip + test.zip)", {"train": 18, "test": 6}, (16, 2, 6), id="train-zip-test-zip"),
    pytest.param(_layout_train_zip_alone, "split folders (train/)", {"train": 18}, (13, 1, 4), id="train-zip-alone"),
]  # fmt: skip


@pytest.mark.parametrize(("build", "layout", "given", "sizes"), LAYOUTS)
def test_every_layout_loads(
    tmp_path: Path,
    build: Callable[[Path], Path],
    layout: str,
    given: dict[str, int],
    sizes: tuple[int, int, int],
) -> None:
    root = build(tmp_path)
    scan = scan_image_folder(root)
    assert scan.layout == layout and scan.classes == list(CLASSES)
    assert {name: len(split.items) for name, split in scan.splits.items()} == given
    dm = ImageData(dataset="folder", root=str(root), val_fraction=0.1, test_fraction=0.2)
    dm.setup("fit")
    assert tuple(dm.state_summary().values()) == sizes
    for ds in (dm.train_set, dm.val_set, dm.test_set):
        x, y = ds[len(ds) - 1]  # type: ignore[arg-type, index]
        assert x.shape == (3, 16, 16) and 0 <= y < 3


def test_train_val_imagefolder_keeps_val_for_test(tmp_path: Path) -> None:
    """With train/ and val/ only, val/ is the held-out split (reported), never model selection."""
    root = _layout_imagefolder_train_val(tmp_path)
    dm = ImageData(dataset="folder", root=str(root), val_fraction=0.1)
    dm.setup("fit")
    names = {name for name, _ in dm.test_set.items}  # type: ignore[union-attr]
    assert names and all(name.startswith("val/") for name in names)
    assert all(name.startswith("train/") for name, _ in dm.val_set.items)  # type: ignore[union-attr]


def test_max_train_is_a_stratified_seeded_sample(tmp_path: Path) -> None:
    """Class-sorted files used to give the first classes only; now every class, in proportion."""
    root = make_image_folder(tmp_path / "ten", classes=tuple("abcdefghij"), per_class=8, size=8)
    dm = ImageData(dataset="folder", root=str(root), val_fraction=0.0, max_train=20, seed=1)
    dm.setup("fit")
    counts = Counter(y for _, y in dm.train_set.items)  # type: ignore[union-attr]
    full = ImageData(dataset="folder", root=str(root), val_fraction=0.0, seed=1)
    full.setup("fit")
    pool = Counter(y for _, y in full.train_set.items)  # type: ignore[union-attr]
    assert sum(counts.values()) == 20 and set(counts) == set(range(10))
    for c, n in pool.items():  # each class's share of the sample follows its share of the pool
        assert abs(counts[c] - 20 * n / pool.total()) < 1
    again = ImageData(dataset="folder", root=str(root), val_fraction=0.0, max_train=20, seed=1)
    again.setup("fit")
    assert again.train_set.items == dm.train_set.items  # type: ignore[union-attr]
    other = ImageData(dataset="folder", root=str(root), val_fraction=0.0, max_train=20, seed=2)
    other.setup("fit")
    assert other.train_set.items != dm.train_set.items  # type: ignore[union-attr]


def test_max_train_on_arrays_keeps_class_shares() -> None:
    dm = ImageData(max_train=100, seed=0)  # digits: 10 classes of ~130 training images
    dm.setup("fit")
    counts = torch.bincount(dm.train_set.labels, minlength=10)  # type: ignore[union-attr]
    assert counts.sum() == 100 and counts.min() >= 9 and counts.max() <= 11


def test_stratified_subset_follows_uneven_shares() -> None:
    labels = [0] * 60 + [1] * 30 + [2] * 10
    keep = stratified_subset(labels, 10, seed=0)
    assert Counter(labels[i] for i in keep) == {0: 6, 1: 3, 2: 1}
    assert keep == sorted(keep) and len(set(keep)) == 10


def test_zip_handle_is_per_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A forked worker that finds its parent's open zip handle opens its own."""
    scan = scan_image_folder(_layout_class_folders_zip(tmp_path))
    source = scan.splits["all"].source
    parent = source.archive()
    assert source.archive() is parent  # one handle per process, reused
    monkeypatch.setattr(os, "getpid", lambda: -12345)  # as seen from a forked child
    child = source.archive()
    assert child is not parent and parent.fp is not None  # the parent's handle is left alone


def test_zip_read_by_two_workers(tmp_path: Path) -> None:
    """A valid zip read by 2 DataLoader workers after the main process read it (for the image
    size): every batch decodes, and the same as in one process ("Bad CRC-32" before)."""
    folder = make_image_folder(tmp_path / "pets", per_class=20, size=48)
    archive = tmp_path / "pets.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*.png")):
            zf.write(path, f"pets/{path.relative_to(folder)}")
    batches = {}
    for workers in (0, 2):
        dm = ImageData(
            dataset="folder", root=str(archive), val_fraction=0.0, test_fraction=0.5,
            batch_size=4, num_workers=workers,
        )  # fmt: skip
        dm.setup("fit")
        assert dm.size == 48  # the main process has opened the zip before the workers start
        loader = dm.test_dataloader()
        batches[workers] = torch.cat([x for x, _ in loader] + [x for x, _ in loader])
    torch.testing.assert_close(batches[2], batches[0])


def test_wrong_layouts_name_what_was_found(tmp_path: Path) -> None:
    loose = make_image_folder(tmp_path / "loose", classes=("x",), per_class=3) / "x"
    with pytest.raises(ValueError, match=r"holds no class folders \(found: 3 image\(s\) directly"):
        scan_image_folder(loose)
    only_test = tmp_path / "only_test"
    make_image_folder(only_test / "test")
    make_image_folder(only_test / "val")
    with pytest.raises(ValueError, match=r"found: test/, val/ but no train/\); accepted layouts"):
        scan_image_folder(only_test)
    zips = tmp_path / "zips"
    zips.mkdir()
    zip_folder(make_image_folder(tmp_path / "t"), zips / "test.zip")
    with pytest.raises(ValueError, match=r"found: test\.zip but no train\.zip"):
        scan_image_folder(zips)
    shutil.rmtree(tmp_path / "t")


def test_wrong_layout_through_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the user sees: one error line naming the folder, what it holds, and the layouts."""
    loose = make_image_folder(tmp_path / "loose", classes=("x",), per_class=3) / "x"
    args = ["vit", "fit", "--config", "quick", "--config", "debug", "--data.dataset", "folder"]
    code = main([*args, "--data.root", str(loose), "--run_dir", str(tmp_path / "run")])
    out = capsys.readouterr()
    errors = [line for line in (out.out + out.err).splitlines() if line.startswith("error:")]
    assert code == 1 and len(errors) == 1
    assert str(loose) in errors[0] and "3 image(s) directly" in errors[0]
    assert "train.zip beside test.zip" in errors[0] and "CLASS/IMAGE" in errors[0]


def test_separate_zips_with_workers_through_the_command(tmp_path: Path) -> None:
    """The README's quick look on train.zip + test.zip: a stratified --data.max_train and 2
    zip-reading workers, end to end through `attnlab vit fit` (one batch each, the debug
    preset); the log names the layout and the class counts used."""
    root = _layout_separate_zips(tmp_path)
    proc = run_attnlab(
        "vit", "fit", "--config", "cpu", "--config", "debug", "--run_dir", "run",
        "--model.model", "vit_tiny_patch4_32", "--model.num_classes", "3",
        "--data.dataset", "folder", "--data.root", str(root), "--data.image_size", "32",
        "--data.max_train", "6", "--data.num_workers", "2", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert "one archive per split (train.zip + test.zip), 3 classes" in log
    assert (
        "6 of 16 training images, a seeded sample stratified by class: cat 2, dog 2, owl 2" in log
    )


def test_help_lists_every_dataset(capsys: pytest.CaptureFixture[str]) -> None:
    """`attnlab vit fit --help` says, under --data.dataset, what each source reads."""
    from attnlab_vit.data import DATASETS

    with contextlib.suppress(SystemExit):  # argparse may exit after printing help
        main(["vit", "fit", "--help"])
    text = capsys.readouterr().out
    start = text.index("\n  --data.dataset DATASET")
    described = " ".join(text[start : text.index("--data.root ROOT", start)].split())
    for name in DATASETS:
        assert re.search(rf"(?<![\w/-]){name}[:,]", described), name
    assert "train.zip + test.zip" in described and "cifar-10-batches-bin" in described


def test_a_class_named_like_a_split_is_a_class(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "vehicles", classes=("bus", "car", "train"), per_class=2)
    scan = scan_image_folder(root)
    assert scan.layout == "class folders" and scan.classes == ["bus", "car", "train"]
