"""A user's own interaction file on the first try: SASRec's `user item` pairs, `user item
timestamp[ rating]` and `user item item ...`, told apart or named when wrong (issue #23,
"Interactions")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from attnlab_recommender.data import RecDataModule
from attnlab_recommender.readers import (
    MAX_HISTORY_JSON_BYTES,
    detect_layout,
    read_history_file,
    read_sequence_file,
)

from attnlab.cli import main

# Three users' histories in time order, written in each layout below.
HISTORIES = {"1": ["10", "11", "12", "13"], "2": ["11", "12", "14"], "3": ["10", "14", "13", "12"]}


def _interleaved() -> list[tuple[str, str]]:
    """(user, item) in global time order: users take turns, as in a real log."""
    rows, step = [], 0
    while any(step < len(h) for h in HISTORIES.values()):
        rows += [(u, h[step]) for u, h in HISTORIES.items() if step < len(h)]
        step += 1
    return rows


def write_layout(tmp_path: Path, layout: str) -> Path:
    rows = _interleaved()
    if layout == "pairs":  # SASRec's data/<name>.txt
        text = "".join(f"{u} {i}\n" for u, i in rows)
    elif layout == "pairs_tab_header":
        text = "user_id\titem_id\n" + "".join(f"{u}\t{i}\n" for u, i in rows)
    elif (
        layout == "timestamps_spaces"
    ):  # user item timestamp rating, timestamps in the future order
        text = "".join(f"{u} {i} {1000 + t} 4\n" for t, (u, i) in enumerate(rows))
    elif layout == "timestamps_csv":
        text = "user,item,timestamp\n" + "".join(f"{u},{i},{t}\n" for t, (u, i) in enumerate(rows))
    else:  # sequences
        text = "".join(f"{u} {' '.join(items)}\n" for u, items in HISTORIES.items())
    path = tmp_path / f"{layout}.txt"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("layout", "detected", "explicit"),
    [
        ("pairs", "pairs", "pairs"),
        ("pairs_tab_header", "pairs", "pairs"),
        ("timestamps_spaces", "interactions", "interactions"),
        ("timestamps_csv", "interactions", "interactions"),
        ("sequences", "sequences", "sequences"),
    ],
)
def test_every_layout_reads_the_same_histories(
    tmp_path: Path, layout: str, detected: str, explicit: str
) -> None:
    """Given by name or detected, each layout yields the same per-user sequences."""
    path = write_layout(tmp_path, layout)
    assert detect_layout(path)[0] == detected
    for dataset in (explicit, "auto"):
        data = RecDataModule(dataset=dataset, path=str(path)).load()
        raw = {
            u: [data.item_ids[i - 1] for i in seq] for u, seq in zip(data.user_ids, data.sequences)
        }
        assert raw == HISTORIES, dataset


@pytest.mark.parametrize("dataset", ["synthetic", "beauty", "ml-100k"])
def test_a_path_with_a_named_dataset_reads_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dataset: str
) -> None:
    """`--config amazon --data.path FILE` (the config names beauty) trains on FILE."""
    path = write_layout(tmp_path, "pairs")
    data = RecDataModule(dataset=dataset, path=str(path)).load()
    assert data.num_items == 5
    out = capsys.readouterr().out
    assert "pairs.txt: 11 line(s) of 2 column(s), users on several lines: read as pairs" in out
    assert (f"reading it instead of the {dataset} dataset" in out) == (dataset != "synthetic")


def test_a_wrong_layout_names_what_it_found_and_what_is_accepted(tmp_path: Path) -> None:
    pairs = write_layout(tmp_path, "pairs")
    with pytest.raises(ValueError, match=r"pairs\.txt:4: user 1 already appeared on line 1.*"
                       r"--data\.dataset pairs"):  # fmt: skip
        read_sequence_file(pairs)
    with pytest.raises(ValueError, match=r"2 column\(s\); expected user, item, timestamp.*pairs"):
        RecDataModule(dataset="interactions", path=str(pairs)).load()
    sequences = write_layout(tmp_path, "sequences")
    with pytest.raises(
        ValueError, match=r"sequences\.txt:1: found 5 column\(s\) .*pairs reads `user item`.*"
        r"interactions: .*sequences: "
    ):  # fmt: skip
        RecDataModule(dataset="pairs", path=str(sequences)).load()
    odd = tmp_path / "odd.txt"
    odd.write_text("1 10 11 12 13\n1 10\n")
    with pytest.raises(ValueError, match=r"odd\.txt: found 2 line\(s\) of 2/5 column\(s\), users "
                       r"on several lines, which fits no layout; accepted: interactions"):  # fmt: skip
        detect_layout(odd)


def test_a_history_json_too_big_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "hist.json"
    with open(path, "wb") as fh:  # sparse: the size is what the reader checks first
        fh.truncate(MAX_HISTORY_JSON_BYTES + 1)
    with pytest.raises(ValueError, match=r"hist\.json: 64 MiB, over the 64 MiB a history file"):
        read_history_file(path, {"10": 1})


def test_help_lists_the_datasets(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["recsys", "fit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for entry in ("synthetic = built-in", "ml-100k, ml-1m, ml-20m", "pairs = `user item`",
                  "interactions = `user item timestamp[ rating]`", "sequences = `user item1",
                  "auto (also whenever --data.path"):  # fmt: skip
        assert entry in text, entry


def test_sasrec_pairs_train_through_the_command(tmp_path: Path) -> None:
    """The user's view: `fit --config quick --data.path FILE` on a SASRec file trains on it."""
    path = write_layout(tmp_path, "pairs")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "attnlab.cli", "recsys", "fit", "--config", "quick",
         "--data.path", str(path), "--trainer.max_epochs", "1", "--run_dir", "run"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "read as pairs (`user item` a line, in time order (SASRec's format))" in proc.stdout
    assert (tmp_path / "run" / "metrics.json").is_file()
