"""End to end through the real `attnlab forecast` command: fit, predict, export, errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from .conftest import run_cli

TINY = [
    "--data.seq_len",
    "48",
    "--data.horizon",
    "12",
    "--model.dim",
    "16",
    "--model.depth",
    "1",
    "--model.num_heads",
    "2",
    "--data.n_steps",
    "1500",
    "--trainer.max_epochs",
    "1",
    "--trainer.limit_train_batches",
    "5",
]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny fit of the quick config (1 epoch, 5 batches), test and figures included."""
    cwd = tmp_path_factory.mktemp("fit")
    proc = run_cli(
        "forecast",
        "fit",
        "--config",
        "quick",
        *TINY,
        "--figure_every",
        "1",
        "--run_dir",
        "run",
        cwd=cwd,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "noise floor" in proc.stdout
    return cwd / "run"


def test_fit_writes_the_run_folder(fitted: Path) -> None:
    metrics = json.loads((fitted / "metrics.json").read_text())
    assert metrics["headline"]["metric"] == "test/mse"
    test = metrics["test"]
    assert test["test/mse"] > test["test/noise_floor"] > 0
    assert {"test/mae", "test/mae_orig", "test/mase"} <= set(test)
    assert (fitted / "checkpoints" / "best.ckpt").is_file()
    assert (fitted / "test_error_per_step.csv").is_file()
    assert (fitted / "figures" / "test_error_per_step.png").is_file()
    figures = {p.stem for p in (fitted / "figures").glob("*.png")}
    assert "forecast_final" in figures and "attention_final" in figures


def test_predict_writes_a_forecast_csv(fitted: Path, series_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "forecast.csv"
    five = tmp_path / "five.csv"
    rows = list(csv.reader(series_csv.open()))
    with five.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["date", "ch0", "ch1", "ch2", "ch3", "ch4"])
        for row in rows[1:]:
            writer.writerow([row[0], *row[1:], row[1], row[2]])
    proc = run_cli(
        "forecast",
        "predict",
        "--config",
        "quick",
        *TINY,
        "--data.predict_csv",
        str(five),
        "--data.predict_out",
        str(out),
        "--ckpt_path",
        str(fitted / "checkpoints" / "best.ckpt"),
        "--run_dir",
        str(tmp_path / "p2"),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    got = list(csv.reader(out.open()))
    assert got[0] == ["date", "ch0", "ch1", "ch2", "ch3", "ch4"]
    assert len(got) == 13
    last = rows[-1][0]
    assert got[1][0] > last  # continues after the history at its hourly step
    assert got[1][0][11:13] == f"{(int(last[11:13]) + 1) % 24:02d}"


def test_export_through_the_command(fitted: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.pt2"
    proc = run_cli(
        "forecast",
        "export",
        "--ckpt",
        str(fitted / "checkpoints" / "best.ckpt"),
        "--format",
        "torch-export",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert out.is_file() and "max abs difference" in proc.stdout


def test_bad_csv_is_one_error_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("when,a\n2021-01-01,1\n")
    proc = run_cli(
        "forecast",
        "fit",
        "--config",
        "debug",
        "--data.csv",
        str(bad),
        "--run_dir",
        "r",
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    assert "error:" in proc.stderr and "bad.csv: no date column 'date'" in proc.stderr
    assert "Traceback" not in proc.stderr
