"""Fixtures for the forecasting tests: small CSV writers, real-data locations, the CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from attnlab_forecasting.data import generate_series


def real_data(subdir: str, file: str) -> Path:
    """The file under $ATTNLAB_DATA_DIR/<subdir>, or skip the test when it is not there."""
    root = os.environ.get("ATTNLAB_DATA_DIR")
    if not root or not (Path(root) / subdir / file).is_file():
        pytest.skip(f"needs $ATTNLAB_DATA_DIR/{subdir}/{file}")
    return Path(root) / subdir


@pytest.fixture
def etth1_root() -> Path:
    return real_data("ett", "ETTh1.csv")


@pytest.fixture
def ili_root() -> Path:
    return real_data("ili", "national_illness.csv")


@pytest.fixture
def write_csv(tmp_path: Path) -> Callable[..., Path]:
    """Write rows (a header list, then cell lists) to a CSV in tmp_path."""

    def write(rows: list[list[object]], name: str = "series.csv") -> Path:
        path = tmp_path / name
        path.write_text("\n".join(",".join(str(c) for c in row) for row in rows) + "\n")
        return path

    return write


@pytest.fixture
def series_csv(tmp_path: Path) -> Path:
    """A generated 3-channel hourly series of 1,200 rows as a CSV with a target column OT."""
    s = generate_series(1200, 3, 0.1, seed=1)
    lines = ["date,a,b,OT"]
    for t, row in zip(s.timestamps, s.values):
        lines.append(str(t).replace("T", " ") + "," + ",".join(f"{v:.5f}" for v in row))
    path = tmp_path / "series.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("ATTNLAB_DEBUG", None)
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "attnlab.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def rng_values(n: int, c: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, c))
