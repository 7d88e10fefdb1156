"""Every recommender reader that accumulates from a file is bounded (issue #18): at most
``--data.max_interactions`` interactions (the default takes MovieLens-20M), no line longer than
``MAX_LINE_CHARS``, a `predict` history file (JSON or CSV) of at most ``MAX_HISTORY_BYTES``; past a
bound, one line names the file and the option to change."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from attnlab_recommender import readers
from attnlab_recommender.readers import (
    DEFAULT_MAX_INTERACTIONS,
    MAX_HISTORY_BYTES,
    read_history_file,
    read_interaction_file,
    read_movielens,
    read_pair_file,
    read_sequence_file,
)

MOVIELENS_20M_RATINGS = 20_000_263

# Six interactions in each layout (three users, two items each).
LAYOUT_FILES: dict[str, tuple[str, str]] = {
    "interactions": ("six.csv", "user,item,timestamp\n" + "".join(
        f"{u},{10 + i},{100 * u + i}\n" for u in (1, 2, 3) for i in (0, 1))),
    "pairs": ("six.txt", "".join(f"{u} {10 + i}\n" for u in (1, 2, 3) for i in (0, 1))),
    "sequences": ("six.seq", "1 10 11\n2 10 11\n3 10 11\n"),
    "movielens": ("u.data", "".join(
        f"{u}\t{10 + i}\t4\t{100 * u + i}\n" for u in (1, 2, 3) for i in (0, 1))),
}  # fmt: skip


def _read(layout: str, path: Path, cap: int) -> Any:
    if layout == "interactions":
        return read_interaction_file(path, max_interactions=cap)
    if layout == "pairs":
        return read_pair_file(path, cap)
    if layout == "sequences":
        return read_sequence_file(path, cap)
    return read_movielens(path.parent, cap)


def test_the_default_cap_takes_movielens_20m() -> None:
    assert DEFAULT_MAX_INTERACTIONS > MOVIELENS_20M_RATINGS


@pytest.mark.parametrize("layout", sorted(LAYOUT_FILES))
def test_more_interactions_than_the_cap_is_one_line_naming_file_and_option(
    layout: str, tmp_path: Path
) -> None:
    name, text = LAYOUT_FILES[layout]
    path = tmp_path / name
    path.write_text(text)
    _read(layout, path, 6)  # exactly at the cap: read
    with pytest.raises(ValueError) as caught:
        _read(layout, path, 5)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: more than 5 interactions")
    assert "--data.max_interactions 5" in message


@pytest.mark.parametrize("layout", sorted(LAYOUT_FILES))
def test_a_file_without_line_breaks_is_refused_at_the_line_limit(
    layout: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file of one endless line stops at ``MAX_LINE_CHARS`` (64 Mi characters; 1,000 here)
    instead of being read whole into one string."""
    monkeypatch.setattr(readers, "MAX_LINE_CHARS", 1000)
    name, _ = LAYOUT_FILES[layout]
    path = tmp_path / name
    path.write_text("1 " + "10 " * 5000)
    with pytest.raises(ValueError, match="a line longer than 1,000 characters"):
        _read(layout, path, DEFAULT_MAX_INTERACTIONS)


def test_a_history_csv_too_big_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "hist.csv"
    with open(path, "wb") as fh:  # sparse: the size is what the reader checks first
        fh.truncate(MAX_HISTORY_BYTES + 1)
    with pytest.raises(ValueError, match=r"hist\.csv: 64 MiB, over the 64 MiB a history file"):
        read_history_file(path, {"10": 1})


def test_the_cap_through_the_command(tmp_path: Path, attnlab_command: Callable[..., Any]) -> None:
    """`recsys fit --data.max_interactions 5` on a file of six: exit 1, one `error:` line naming
    the file and the option, no checkpoint; a cap that is not a positive integer is refused."""
    name, text = LAYOUT_FILES["pairs"]
    path = tmp_path / name
    path.write_text(text)
    command = attnlab_command(tmp_path)
    base = ["recsys", "fit", "--config", "quick", "--data.path", str(path), "--run_dir"]
    for run, cap, expected in (
        ("capped", "5", f"error: {path}: more than 5 interactions, over --data.max_interactions 5"),
        ("zero", "0", "error: --data.max_interactions must be a positive integer, got 0"),
    ):
        proc: subprocess.CompletedProcess[str] = command(
            *base, str(tmp_path / run), "--data.max_interactions", cap, check=False
        )
        assert proc.returncode == 1, proc.stderr[-2000:]
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and errors[0].startswith(expected), proc.stderr[-2000:]
        assert not list(tmp_path.glob(f"{run}/**/*.ckpt"))
