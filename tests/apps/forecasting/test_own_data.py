"""A user's own CSV on the first try: common date formats, channels counted from the file, the
split named and printed (issue #23, "Series")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from attnlab_forecasting import app
from attnlab_forecasting.data import ForecastData, read_series_csv
from attnlab_forecasting.readers import MAX_SERIES_CSV_BYTES

from attnlab.cli import main

from .conftest import run_cli


def _write(path: Path, dates: list[str], columns: int, header: str = "date") -> Path:
    """A CSV of ``len(dates)`` rows: the given date cells and ``columns`` noisy sine columns."""
    rng = np.random.default_rng(0)
    t = np.arange(len(dates))
    names = [f"c{i}" for i in range(columns - 1)] + ["OT"]
    lines = [",".join([header, *names])]
    for i, date in enumerate(dates):
        values = np.sin(2 * np.pi * t[i] / 24 + np.arange(columns)) + 0.1 * rng.normal(size=columns)
        lines.append(",".join([date, *(f"{v:.4f}" for v in values)]))
    path.write_text("\n".join(lines) + "\n")
    return path


def _days(n: int, style: str) -> list[str]:
    """``n`` consecutive days from 1990-01-01 written in ``style``."""
    days = np.datetime64("1990-01-01") + np.arange(n)
    out = []
    for d in days.astype(object):
        out.append(
            {
                "exchange": f"{d.year}/{d.month}/{d.day} 0:00",  # the public exchange_rate.csv
                "day_first": f"{d.day:02d}/{d.month:02d}/{d.year}",
                "us": f"{d.month:02d}/{d.day:02d}/{d.year}",
                "dotted": f"{d.day:02d}.{d.month:02d}.{d.year} 00:00",
                "compact": f"{d.year}{d.month:02d}{d.day:02d}",
                "epoch": str(int((np.datetime64(d, "s") - np.datetime64(0, "s")).astype(int))),
            }[style]
        )
    return out


@pytest.mark.parametrize(
    ("style", "name"),
    [
        ("exchange", "year/month/day"),
        ("day_first", "day/month/year"),
        ("us", "month/day/year (US)"),
        ("dotted", "day.month.year"),
        ("compact", "ISO 8601"),  # 19900101 is ISO 8601's basic format
        ("epoch", "epoch seconds"),
    ],
)
def test_common_date_formats_are_read(tmp_path: Path, style: str, name: str) -> None:
    """40 days (so day and month cannot both be <= 12 everywhere) read to the same timestamps,
    and the format used is named."""
    series = read_series_csv(_write(tmp_path / "s.csv", _days(40, style), 2))
    expected = np.datetime64("1990-01-01T00:00:00") + np.arange(40) * np.timedelta64(1, "D")
    np.testing.assert_array_equal(series.timestamps, expected)
    assert series.date_format == name


def test_ambiguous_dates_ask_for_the_format(tmp_path: Path) -> None:
    """01/02/1990 .. 12/02/1990 read day-first and month-first alike: refused, not guessed;
    ``--data.date_format`` settles it."""
    dates = [f"{d:02d}/02/1990" for d in range(1, 13)]
    path = _write(tmp_path / "s.csv", dates, 2)
    with pytest.raises(ValueError, match=r"s\.csv: column 'date' reads both as .*date_format"):
        read_series_csv(path)
    series = read_series_csv(path, date_format="%d/%m/%Y")
    assert str(series.timestamps[1]) == "1990-02-02T00:00:00"
    assert "--data.date_format" in series.date_format


def test_date_format_reads_other_layouts(tmp_path: Path) -> None:
    dates = [f"{d:02d}-Jan-1990" for d in range(1, 21)]
    path = _write(tmp_path / "s.csv", dates, 2)
    with pytest.raises(ValueError, match=r"line 2, column 'date': '01-Jan-1990' is not a date"):
        read_series_csv(path)
    assert len(read_series_csv(path, date_format="%d-%b-%Y")) == 20


def test_a_csv_too_big_is_refused_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path / "big.csv", _days(40, "exchange"), 2)
    monkeypatch.setattr("attnlab_forecasting.readers.MAX_SERIES_CSV_BYTES", 100)
    with pytest.raises(ValueError, match=r"big\.csv: .* MiB, over the 0 MiB this reader takes"):
        read_series_csv(path)
    assert MAX_SERIES_CSV_BYTES >= 1 << 30  # the real limit stays above public benchmarks


def _hourly(n: int) -> list[str]:
    start = np.datetime64("2016-07-01T00:00:00")
    return [str(start + np.timedelta64(i, "h")).replace("T", " ") for i in range(n)]


def test_split_is_named_for_each_kind_of_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CSV named like an ETT file keeps ETT's split, any other CSV takes 70/10/20, and
    ``--data.split`` overrides both; the log names the split, its rows and windows."""
    n = 20 * 30 * 24 + 10  # 20 ETT months of hourly rows
    ett = _write(tmp_path / "ETTh1.csv", _hourly(n), 3)
    mine = _write(tmp_path / "mine.csv", _hourly(n), 3)

    dm = ForecastData(csv=str(ett), seq_len=24, horizon=12)
    dm.setup("fit")
    assert dm.split == "ett_hour" and dm.borders[0] == (0, 12 * 720)
    out = capsys.readouterr().out
    windows = 12 * 720 - 24 - 12 + 1
    assert "split ett_hour (ETT's 12/4/4 months" in out
    assert f"train {12 * 720} rows / {windows} windows" in out
    assert len(dm.train_set) == windows

    dm = ForecastData(csv=str(mine), seq_len=24, horizon=12)
    dm.setup("fit")
    assert dm.split == "ratio"
    assert "split ratio (70/10/20 % by time; the default for a CSV" in capsys.readouterr().out

    dm = ForecastData(csv=str(mine), seq_len=24, horizon=12, split="ett")
    dm.setup("fit")
    assert dm.split == "ett_hour"
    with pytest.raises(ValueError, match=r"unknown split 'months'; choose ett .* or ratio"):
        ForecastData(csv=str(mine), split="months")


def test_channels_come_from_the_data(tmp_path: Path) -> None:
    """No --model.channels: the model is built for the file's 8 columns (saved in its
    hyper-parameters); a value that disagrees is one error naming both."""
    path = _write(tmp_path / "s.csv", _days(400, "exchange"), 8)
    data = ["--data.csv", str(path), "--data.seq_len", "24", "--data.horizon", "12"]
    model = ["--model.dim", "8"]
    module, dm = app.build(["quick"], [*data, *model])
    assert module.hparams.channels == 8 == dm.num_channels
    batch = next(iter(dm.train_dataloader()))
    assert module(batch["x"]).shape == (len(batch["x"]), 12, 8)  # (B, H, C)
    assert module.scaler_mean.shape == (8,)
    with pytest.raises(ValueError, match=r"channels: model 5 vs data 8.*drop --model.channels"):
        app.build(["quick"], [*data, *model, "--model.channels", "5"])


def test_exchange_style_csv_trains_through_the_command(tmp_path: Path) -> None:
    """The user's view: `fit --data.csv` on a file dated like exchange_rate.csv, no channels
    given, prints the date format and the split with rows and windows per part."""
    path = _write(tmp_path / "exchange_rate.csv", _days(300, "exchange"), 4)
    proc = run_cli(
        "forecast",
        "fit",
        "--config",
        "quick",
        "--data.csv",
        str(path),
        *("--data.seq_len", "24", "--data.horizon", "6"),
        *("--model.dim", "8", "--model.depth", "1", "--model.num_heads", "2"),
        *("--model.patch_len", "8", "--model.stride", "8"),
        *("--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2"),
        *("--run_dir", "run"),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "read exchange_rate.csv: 300 rows x 4 columns, dates as year/month/day" in proc.stdout
    # exchange_rate.csv is the registry's exchange file: its own split (ratio) applies
    n_train, n_test = int(300 * 0.7), int(300 * 0.2)
    assert "split ratio (70/10/20 % by time; the standard split of exchange_rate.csv" in proc.stdout
    assert f"train {n_train} rows / {n_train - 30 + 1} windows" in proc.stdout
    assert f"test {n_test} rows / {n_test + 24 - 30 + 1} windows" in proc.stdout


def test_help_lists_the_datasets(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["forecast", "fit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for entry in ("synthetic = a generated seasonal series", "etth1, etth2, ettm1, ettm2 = ETT",
                  "weather, electricity, exchange, traffic, ili", "Your own file: --data.csv FILE",
                  "--data.date_format", "ett (ETT's 12/4/4 months) or ratio (70/10/20 % by time)"):  # fmt: skip
        assert entry in text, entry


def test_a_mistyped_data_dir_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a literal `<root>`: the variable's value and the file looked for."""
    monkeypatch.setenv("ATTNLAB_DATA_DIR", str(tmp_path / "dat"))
    dm = ForecastData(dataset="etth1")
    with pytest.raises(FileNotFoundError, match=r"ATTNLAB_DATA_DIR=.*dat is not a folder \(looked "
                       r"for .*dat/ett/ETTh1\.csv\).*--data\.csv"):  # fmt: skip
        dm.setup("fit")
