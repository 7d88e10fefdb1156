"""What `attnlab` shows a first-time user (issue 23): `fit --help` lists each app's datasets one a
line, the plain progress lines count epochs from 0 like every file of the run, and vit with a
mistyped ATTNLAB_DATA_DIR stops naming it instead of downloading."""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from attnlab.callbacks import epoch_label
from attnlab.cli import main


def _dataset_names(app: str) -> list[str]:
    """Every ``--data.dataset`` value the app accepts, from its own code."""
    if app == "vit":
        from attnlab_vit.data import DATASETS

        return list(DATASETS)
    if app == "audio":
        from attnlab_audio.data import DATASETS as AUDIO_DATASETS

        return list(AUDIO_DATASETS)
    if app == "forecast":
        from attnlab_forecasting.registry import DATASETS as SERIES

        return ["synthetic", *SERIES]
    if app == "recsys":
        from attnlab_recommender.data import DATASETS as INTERACTIONS
        from attnlab_recommender.data import FILE_LAYOUTS

        return ["synthetic", *INTERACTIONS, *FILE_LAYOUTS]
    return ["digit_scenes", "flickr8k", "flickr30k", "coco"]  # caption: checked in __init__


# The head of a list item at the start of a line: "name:", "name = ", "name, name:" or
# "name (note) = ".
ITEM_HEAD = re.compile(r"^([\w-]+(?:, [\w-]+)*)(?=:|\s=\s|\s\()")


def _help_block(help_text: str, option: str) -> list[str]:
    """The lines of ``option``'s help in ``--help`` output (without the option line)."""
    lines = help_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"  {option} "))
    block = []
    for line in lines[start + 1 :]:
        if line.startswith("  --"):
            break
        block.append(line)
    return block


@pytest.mark.parametrize("app", ["vit", "caption", "forecast", "recsys", "audio"])
def test_fit_help_lists_each_dataset_at_the_start_of_its_own_line(
    app: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["attnlab"])  # the command sets sys.argv for LightningCLI
    with pytest.raises(SystemExit) as exit_info:
        main([app, "fit", "--help"])
    assert exit_info.value.code == 0
    block = _help_block(capsys.readouterr().out, "--data.dataset")
    indent = min(len(line) - len(line.lstrip()) for line in block if line.strip())
    heads: dict[str, str] = {}
    for line in block:
        match = ITEM_HEAD.match(line[indent:])
        if match and line[indent] != " ":  # an item's own line, not its indented continuation
            heads.update(dict.fromkeys(match.group(1).split(", "), line.strip()))
    missing = [name for name in _dataset_names(app) if name not in heads]
    assert not missing, f"{missing} not at the start of a line of their own:\n" + "\n".join(block)
    assert len(set(heads.values())) >= 2  # a line per dataset, or per group sharing one text


def _epoch_lines(log: str) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in re.findall(r"^epoch (\d+)/(\d+) step ", log, re.M)]


def test_plain_progress_counts_epochs_from_zero_like_the_run_files(attnlab, tmp_path: Path) -> None:
    proc = attnlab("toy", "fit", "--config", "quick", "--trainer.max_epochs", "2",
                   "--figure_every", "100", "--run_dir", "r")  # fmt: skip
    with open(tmp_path / "r" / "metrics.csv", newline="") as fh:
        csv_epochs = [int(float(row["epoch"])) for row in csv.DictReader(fh)]
    logged = _epoch_lines(proc.stdout)
    # The log, metrics.csv and Lightning's bar (Epoch 0/1 ... 1/1) count the same epochs.
    assert [epoch for epoch, _ in logged] == csv_epochs == [0, 1], proc.stdout
    assert {last for _, last in logged} == {1}
    best = json.loads((tmp_path / "r" / "metrics.json").read_text())["best_epoch"]
    assert best in csv_epochs


@pytest.mark.parametrize(
    ("max_epochs", "label"), [(10, "epoch 3/9"), (-1, "epoch 3"), (None, "epoch 3")]
)
def test_epoch_label_without_a_limit_has_no_last_epoch(max_epochs: int | None, label: str) -> None:
    trainer = SimpleNamespace(current_epoch=3, max_epochs=max_epochs)
    assert epoch_label(trainer) == label  # type: ignore[arg-type]


def test_vit_with_a_mistyped_data_dir_names_it_instead_of_downloading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """In process (the same `main` as the command): no second interpreter start."""
    typo = tmp_path / "dta"  # the data is in tmp_path / "data"
    cache = tmp_path / "cache"
    monkeypatch.setenv("ATTNLAB_DATA_DIR", str(typo))
    monkeypatch.setenv("ATTNLAB_DATA", str(cache))
    monkeypatch.delenv("ATTNLAB_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["attnlab"])
    code = main(["vit", "fit", "--config", "fashion_mnist", "--run_dir", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err == [
        f"error: fashion_mnist: ATTNLAB_DATA_DIR={typo} is not a folder (looked for "
        f"{typo / 'fashion-mnist'}); check its spelling; put the files in fashion-mnist/ there, "
        "or pass --data.root with their folder, or pass --data.download true to download "
        f"fashion_mnist into {cache / 'fashion_mnist'}"
    ]
    assert not cache.exists(), "something was downloaded"
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["status"].startswith("failed: FileNotFoundError")


@pytest.mark.parametrize("dataset", ["cifar10", "svhn"])
def test_vit_reads_a_named_folder_or_says_how_to_download(
    dataset: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder under ATTNLAB_DATA_DIR without this dataset, or a --data.root without its
    files: an error naming the paths, never a download into them."""
    from attnlab_vit.data import ImageData

    monkeypatch.setenv("ATTNLAB_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("ATTNLAB_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError) as missing:
        ImageData(dataset=dataset).setup("fit")
    assert f"ATTNLAB_DATA_DIR={tmp_path} has no {dataset}/ folder" in str(missing.value)
    assert "--data.download true" in str(missing.value)
    root = tmp_path / "mine"
    root.mkdir()
    with pytest.raises(
        FileNotFoundError, match=f"no {dataset} files in {root}.*--data.download true"
    ):
        ImageData(dataset=dataset, root=str(root)).setup("fit")
    assert not any(root.iterdir()) and not (tmp_path / "cache").exists()
