"""Fixtures for the recommender tests: tiny data files written to tmp_path, real-data skips."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest


def _real_data(folder: str) -> Path:
    root = os.environ.get("ATTNLAB_DATA_DIR")
    if not root or not (Path(root) / folder).is_dir():
        pytest.skip(f"needs ATTNLAB_DATA_DIR with {folder}/")
    return Path(root) / folder


@pytest.fixture
def real_data() -> Callable[[str], Path]:
    """real_data(folder): the dataset folder under ATTNLAB_DATA_DIR, or skip the test."""
    return _real_data


@pytest.fixture
def seq_file(tmp_path: Path) -> Path:
    """Five users in the S3-Rec layout (raw item ids 10..16)."""
    path = tmp_path / "seqs.txt"
    path.write_text("1 10 11 12 13\n2 11 12 14\n3 15 10 11 12 16\n4 13 14 15\n\n5 10 16 12\n")
    return path


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    """Interactions with a header, shuffled rows and a timestamp tie (file order breaks it)."""
    path = tmp_path / "inter.csv"
    path.write_text(
        "user,item,timestamp,rating\n"
        "u1,b,20,5\nu1,a,10,4\nu1,c,30,1\nu1,d,30,5\n"
        "u2,a,5,5\nu2,c,6,3\nu2,b,7,4\n"
        "u3,d,1,2\nu3,a,2,5\nu3,b,3,5\nu3,c,4,5\n"
    )
    return path
