"""Series, splits, scaling and windows: the forecasting data as the literature defines it.

* ``read_series_csv``: a CSV with a date column and numeric value columns (the ETT layout),
  checked cell by cell; every problem is a ``ValueError`` naming the file, line and column.
* ``split_borders``: ETT by months (12/4/4), everything else 7:1:2 by time; validation and test
  start ``seq_len`` rows early so their first window has a full look-back.
* ``Scaler``: z-score with statistics of the training rows only.
* ``WindowDataset``: every window ``[s, s + L + H)`` of a split, none dropped.
* ``generate_series``: the offline default, a multivariate series whose noise variance is known.
* ``ForecastData``: the ``LightningDataModule`` tying these together.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from attnlab.data import AttnlabDataModule, csv_rows, delimiter_hint
from attnlab.datasets import data_root

from .registry import DATASETS, fetch_dataset

__all__ = [
    "FILLS",
    "TASKS",
    "ForecastData",
    "Scaler",
    "Series",
    "WindowDataset",
    "calendar_features",
    "future_timestamps",
    "generate_series",
    "read_series_csv",
    "split_borders",
]

TASKS = ("M", "S", "MS")
FILLS = ("ffill", "linear", "zero")
_MISSING = {"", "nan", "na", "n/a", "null", "none"}
_FLOAT32_MAX = float(np.finfo(np.float32).max)  # the models see float32: beyond it is inf


@dataclass
class Series:
    """A multivariate series: timestamps (T,) datetime64[s], values (T, C) float64, names."""

    timestamps: np.ndarray
    values: np.ndarray
    columns: list[str]
    source: str = "<memory>"
    noise_var: np.ndarray | None = None  # (C,), known only for generated series

    def __len__(self) -> int:
        return len(self.values)


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


def _parse_time(text: str, path: Path, line: int, column: str) -> np.datetime64:
    try:
        return np.datetime64(datetime.fromisoformat(text.strip()).replace(tzinfo=None), "s")
    except ValueError:
        raise ValueError(
            f"{path}: line {line}, column {column!r}: {text!r} is not a date/time; write "
            "timestamps as ISO 8601 (e.g. 2016-07-01 00:00:00)"
        ) from None


def _fill_gaps(values: np.ndarray, fill: str, path: Path, columns: list[str]) -> np.ndarray:
    out = values.copy()
    for c in range(out.shape[1]):
        col = out[:, c]
        bad = np.isnan(col)
        if not bad.any():
            continue
        if bad.all():
            raise ValueError(f"{path}: column {columns[c]!r} has no values at all; drop it")
        if fill == "zero":
            col[bad] = 0.0
            continue
        idx = np.arange(len(col))
        good = ~bad
        if fill == "linear":
            col[bad] = np.interp(idx[bad], idx[good], col[good])
        else:  # ffill; a gap at the very start takes the first value
            last = np.where(good, idx, 0)
            np.maximum.accumulate(last, out=last)
            first = idx[good][0]
            last[: first + 1] = first
            col[:] = col[last]
    return out


def read_series_csv(
    path: str | Path,
    *,
    date_column: str = "date",
    columns: list[str] | None = None,
    fill: str | None = None,
) -> Series:
    """Read a CSV with a date column and numeric value columns.

    Empty or NaN cells are an error unless ``fill`` is ``ffill``, ``linear`` or ``zero``;
    timestamps must be strictly increasing (no duplicates).
    """
    path = Path(path)
    if fill is not None and fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS} or None, got {fill!r}")
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; check the CSV path")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv_rows(fh, path)
        header = next(reader, None)
        if not header:
            raise ValueError(f"{path} is empty; expected a header like 'date,<value columns>'")
        header = [h.strip() for h in header]
        lower = [h.lower() for h in header]
        if date_column.lower() not in lower:
            raise ValueError(
                f"{path}: no date column {date_column!r} in the header {header}"
                f"{delimiter_hint(header)}; add one or pass --data.date_column with its name"
            )
        twice = next((h for i, h in enumerate(header) if h in header[:i]), None)
        if twice is not None:
            raise ValueError(
                f"{path}: column {twice!r} appears twice in the header {header}; rename one"
            )
        t_col = lower.index(date_column.lower())
        names = [h for i, h in enumerate(header) if i != t_col]
        if columns is not None:
            missing = [c for c in columns if c not in names]
            if missing:
                raise ValueError(f"{path}: columns {missing} are not in the header {header}")
            names = list(columns)
        if not names:
            raise ValueError(f"{path}: no value columns besides {header[t_col]!r}")
        picks = [header.index(n) for n in names]
        times: list[np.datetime64] = []
        rows: list[list[float]] = []
        gaps = []
        for line, row in enumerate(reader, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise ValueError(
                    f"{path}: line {line} has {len(row)} cells, the header has {len(header)}"
                )
            times.append(_parse_time(row[t_col], path, line, header[t_col]))
            values = []
            for j in picks:
                cell = row[j].strip()
                if cell.lower() in _MISSING:
                    if fill is None:
                        gaps.append((line, header[j]))
                    values.append(math.nan)
                    continue
                try:
                    value = float(cell)
                except ValueError:
                    raise ValueError(
                        f"{path}: line {line}, column {header[j]!r}: {cell!r} is not a number; "
                        "fix or remove the cell"
                    ) from None
                if not math.isfinite(value):
                    raise ValueError(
                        f"{path}: line {line}, column {header[j]!r}: {cell!r} is not a finite "
                        "number; fix the cell, or leave it empty and pass --data.fill"
                    )
                if abs(value) > _FLOAT32_MAX:
                    raise ValueError(
                        f"{path}: line {line}, column {header[j]!r}: {cell!r} is beyond the "
                        "float32 range the models compute in; rescale the column"
                    )
                values.append(value)
            rows.append(values)
    if not rows:
        raise ValueError(f"{path} has a header but no data rows")
    if gaps:
        line, col = gaps[0]
        raise ValueError(
            f"{path}: line {line}, column {col!r} is empty or NaN ({len(gaps)} missing cells in "
            f"all); fill the gaps or pass --data.fill ffill|linear|zero"
        )
    ts = np.array(times, dtype="datetime64[s]")
    steps = np.diff(ts).astype(np.int64)
    if (steps <= 0).any():
        i = int(np.argmax(steps <= 0))
        kind = "duplicate" if steps[i] == 0 else "out-of-order"
        raise ValueError(
            f"{path}: line {i + 3} has a {kind} timestamp {ts[i + 1]} (line {i + 2} has "
            f"{ts[i]}); sort the rows by time and remove duplicates"
        )
    arr = np.asarray(rows, dtype=np.float64)
    if fill is not None:
        arr = _fill_gaps(arr, fill, path, names)
    return Series(ts, arr, names, source=str(path))


# --------------------------------------------------------------------------------------------
# generated data
# --------------------------------------------------------------------------------------------


def generate_series(
    n_steps: int = 6000,
    channels: int = 5,
    noise_std: float = 0.3,
    seed: int = 0,
    start: str = "2020-01-01T00:00:00",
) -> Series:
    """Hourly series: daily and weekly seasonality, a trend, cross-channel lags and i.i.d.
    Gaussian noise of standard deviation ``noise_std``.

    Everything but the noise is a deterministic function of time, so the best possible forecast
    has an MSE equal to the noise variance: that is the floor a model can approach.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n_steps, dtype=np.float64)
    driver = (
        np.sin(2 * np.pi * t / 24)
        + 0.6 * np.sin(2 * np.pi * t / 168 + 0.5)
        + 0.3 * np.sin(4 * np.pi * t / 24 + 1.0)
    )
    signal = np.empty((n_steps, channels))
    for c in range(channels):
        lag = 3 * c  # channel c follows the driver c * 3 hours late
        lagged = np.concatenate([np.full(lag, driver[0]), driver[: n_steps - lag]])
        amp = 1.0 + 0.25 * c
        own = 0.4 * np.sin(2 * np.pi * t / 168 * (1 + c % 2) + c)
        trend = (0.5 + 0.2 * c) * t / n_steps
        signal[:, c] = amp * lagged + own + trend + 0.1 * c
    noise = rng.normal(0.0, noise_std, size=signal.shape)
    ts = np.datetime64(start, "s") + np.arange(n_steps) * np.timedelta64(3600, "s")
    return Series(
        ts,
        signal + noise,
        [f"ch{c}" for c in range(channels)],
        source="generated",
        noise_var=np.full(channels, noise_std**2),
    )


# --------------------------------------------------------------------------------------------
# splits, scaling, windows
# --------------------------------------------------------------------------------------------


def split_borders(n: int, seq_len: int, scheme: str) -> list[tuple[int, int]]:
    """Row ranges [start, end) of train, val and test; val and test include the look-back.

    ``ett_hour``/``ett_minute``: 12/4/4 months of 30 days (8640 hourly rows per 12 months);
    ``ratio``: 70/10/20 % by time.
    """
    if scheme in ("ett_hour", "ett_minute"):
        month = 30 * 24 * (4 if scheme == "ett_minute" else 1)
        ends = (12 * month, 16 * month, 20 * month)
        if n < ends[2]:
            raise ValueError(
                f"the {scheme} split needs {ends[2]} rows (20 months), the series has {n}; use "
                "--data.split ratio for shorter series"
            )
        borders = [(0, ends[0]), (ends[0] - seq_len, ends[1]), (ends[1] - seq_len, ends[2])]
    elif scheme == "ratio":
        n_train, n_test = int(n * 0.7), int(n * 0.2)
        n_val = n - n_train - n_test
        borders = [(0, n_train), (n_train - seq_len, n_train + n_val), (n - n_test - seq_len, n)]
    else:
        raise ValueError(f"unknown split {scheme!r}; choose ett_hour, ett_minute or ratio")
    if min(b[0] for b in borders) < 0:
        raise ValueError(f"seq_len={seq_len} is longer than the training rows ({borders[0][1]})")
    return borders


class Scaler:
    """Z-score per channel with the mean and std of the training rows (never val or test)."""

    def __init__(self, mean: np.ndarray, std: np.ndarray):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.where(np.asarray(std, dtype=np.float64) > 1e-12, std, 1.0)

    @classmethod
    def fit(cls, train_values: np.ndarray) -> Scaler:
        return cls(train_values.mean(0), train_values.std(0))

    def transform(self, values: np.ndarray) -> np.ndarray:
        return (values - self.mean) / self.std

    def inverse(self, values: Tensor | np.ndarray) -> Any:
        if isinstance(values, Tensor):
            mean = torch.as_tensor(self.mean, dtype=values.dtype, device=values.device)
            std = torch.as_tensor(self.std, dtype=values.dtype, device=values.device)
            return values * std + mean
        return values * self.std + self.mean


def calendar_features(timestamps: np.ndarray) -> np.ndarray:
    """Hour of day, day of week, day of month, day of year, each scaled to [-0.5, 0.5]; (T, 4)."""
    ts = timestamps.astype("datetime64[s]")
    days = ts.astype("datetime64[D]")
    hour = (ts - days).astype(np.int64) // 3600
    weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    mday = (days - days.astype("datetime64[M]")).astype(np.int64)
    yday = (days - days.astype("datetime64[Y]")).astype(np.int64)
    return np.stack(
        [hour / 23.0 - 0.5, weekday / 6.0 - 0.5, mday / 30.0 - 0.5, yday / 365.0 - 0.5], axis=1
    ).astype(np.float32)


def future_timestamps(timestamps: np.ndarray, horizon: int) -> np.ndarray:
    """The next ``horizon`` timestamps at the series' step (the most common spacing)."""
    if len(timestamps) < 2:
        raise ValueError("need at least two timestamps to infer the frequency")
    steps = np.diff(timestamps.astype("datetime64[s]")).astype(np.int64)
    values, counts = np.unique(steps, return_counts=True)
    step = np.timedelta64(int(values[np.argmax(counts)]), "s")
    return timestamps[-1].astype("datetime64[s]") + step * np.arange(1, horizon + 1)


class WindowDataset(Dataset[dict[str, Tensor]]):
    """Every window of a split: inputs ``x`` (L, C_in), targets ``y`` (H, C_out), calendar
    ``marks`` (L + H, 4). There are ``len(rows) - L - H + 1`` windows; none is dropped."""

    def __init__(
        self,
        values: np.ndarray,
        marks: np.ndarray,
        seq_len: int,
        pred_len: int,
        out_index: list[int],
        rows: tuple[int, int] = (0, -1),
    ):
        self.values = torch.as_tensor(values, dtype=torch.float32)
        self.marks = torch.as_tensor(marks, dtype=torch.float32)
        self.seq_len, self.pred_len = seq_len, pred_len
        self.out_index = torch.as_tensor(out_index, dtype=torch.long)
        self.all_out = len(out_index) == values.shape[1]
        self.rows = rows
        self.count = len(values) - seq_len - pred_len + 1
        if self.count < 1:
            raise ValueError(
                f"a split of {len(values)} rows is shorter than seq_len + pred_len = "
                f"{seq_len} + {pred_len}; shorten them or give a longer series"
            )

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        if not 0 <= i < self.count:
            raise IndexError(i)
        mid, end = i + self.seq_len, i + self.seq_len + self.pred_len
        y = self.values[mid:end]
        return {
            "x": self.values[i:mid],  # (L, C_in)
            "y": y if self.all_out else y.index_select(1, self.out_index),  # (H, C_out)
            "marks": self.marks[i:end],  # (L + H, 4)
            "out_index": self.out_index,
        }


# --------------------------------------------------------------------------------------------
# the DataModule
# --------------------------------------------------------------------------------------------


class ForecastData(AttnlabDataModule):
    """Windows of a multivariate series, split by time and z-scored with train statistics.

    ``dataset`` is ``synthetic`` (generated, offline) or a registry name (``etth1``, ``ili``,
    ...) read from ``root`` / ``$ATTNLAB_DATA_DIR/<folder>``; ``csv`` reads any CSV instead.
    ``task``: ``M`` all channels to all, ``S`` target to target, ``MS`` all to target.
    ``predict_csv`` is the history for `predict`; the forecast is written to ``predict_out``.
    """

    def __init__(
        self,
        dataset: str = "synthetic",
        root: str | None = None,
        csv: str | None = None,
        download: bool = False,
        seq_len: int = 96,
        pred_len: int = 96,
        task: str = "M",
        target: str = "OT",
        split: str | None = None,
        date_column: str = "date",
        fill: str | None = None,
        n_steps: int = 6000,
        channels: int = 5,
        noise_std: float = 0.3,
        predict_csv: str | None = None,
        predict_out: str | None = None,
        batch_size: int = 32,
        eval_batch_size: int = 256,
        num_workers: int = 0,
        seed: int = 0,
    ):
        super().__init__(
            batch_size=batch_size,
            num_workers=num_workers,
            seed=seed,
            eval_batch_size=eval_batch_size,
        )
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        if dataset != "synthetic" and dataset not in DATASETS and csv is None:
            raise ValueError(
                f"unknown dataset {dataset!r}; choose synthetic, {', '.join(DATASETS)} or pass "
                "--data.csv with a file"
            )
        self.dataset, self.root, self.csv, self.download = dataset, root, csv, download
        self.seq_len, self.pred_len = seq_len, pred_len
        self.task, self.target = task, target
        self.date_column, self.fill = date_column, fill
        self.n_steps, self.channels, self.noise_std = n_steps, channels, noise_std
        self.predict_csv, self.predict_out = predict_csv, predict_out
        self.info = DATASETS.get(dataset)
        self.split = split or (self.info.split if self.info and csv is None else "ratio")
        self.season = self.info.season if self.info else 24
        self.series: Series | None = None
        self.scaler: Scaler | None = None
        self.borders: list[tuple[int, int]] = []
        self.in_columns: list[str] = []
        self.out_columns: list[str] = []
        self.out_index: list[int] = []
        self.mase_scale: np.ndarray | None = None
        self.noise_floor: float | None = None
        self.predict_timestamps: np.ndarray | None = None

    # -------------------------------------------------------------- loading
    def _csv_path(self) -> Path:
        if self.csv is not None:
            return Path(self.csv).expanduser()
        assert self.info is not None
        folder = data_root(self.root, self.info.subdir)
        if folder is not None and (folder / self.info.file).is_file():
            return folder / self.info.file
        if self.download:
            return fetch_dataset(self.dataset)
        where = folder / self.info.file if folder is not None else f"<root>/{self.info.file}"
        raise FileNotFoundError(
            f"{where} not found for dataset {self.dataset!r}; pass --data.root with the folder "
            f"holding {self.info.file}, set ATTNLAB_DATA_DIR to a folder with "
            f"{self.info.subdir}/{self.info.file}, or add --data.download true"
        )

    def load_series(self) -> Series:
        if self.csv is None and self.dataset == "synthetic":
            return generate_series(self.n_steps, self.channels, self.noise_std, seed=self.seed)
        return read_series_csv(self._csv_path(), date_column=self.date_column, fill=self.fill)

    def _select(self, series: Series) -> None:
        """Input and output channels for the task."""
        cols = series.columns
        if self.task == "M":
            self.in_columns, self.out_columns = list(cols), list(cols)
            return
        target = self.target if self.target in cols else None
        if target is None:
            if self.csv is None and self.dataset == "synthetic":
                target = cols[-1]
            else:
                raise ValueError(
                    f"{series.source}: target column {self.target!r} is not among {cols}; pass "
                    "--data.target with one of them"
                )
        self.out_columns = [target]
        self.in_columns = list(cols) if self.task == "MS" else [target]

    @property
    def num_channels(self) -> int:
        """Input channels the model sees (known after ``setup``)."""
        return len(self.in_columns)

    def prepare(self) -> None:
        """Read the series, split it and fit the scaler on the training rows (idempotent)."""
        if self.series is not None:
            return
        series = self.load_series()
        self._select(series)
        idx = [series.columns.index(c) for c in self.in_columns]
        series = Series(
            series.timestamps,
            series.values[:, idx],
            list(self.in_columns),
            series.source,
            None if series.noise_var is None else series.noise_var[idx],
        )
        need = self.seq_len + self.pred_len
        if len(series) < need:
            raise ValueError(
                f"{series.source}: the series has {len(series)} rows, fewer than seq_len + "
                f"pred_len = {need}; use a shorter input or horizon"
            )
        self.borders = split_borders(len(series), self.seq_len, self.split)
        train_end = self.borders[0][1]
        self.scaler = Scaler.fit(series.values[:train_end])
        self.out_index = [self.in_columns.index(c) for c in self.out_columns]
        train_out = series.values[:train_end, self.out_index]
        lag = self.season if train_end > self.season * 2 else 1
        scale = np.abs(train_out[lag:] - train_out[:-lag]).mean(0)
        self.mase_scale = np.where(scale > 1e-12, scale, 1.0)
        if series.noise_var is not None:
            floor = series.noise_var[self.out_index] / self.scaler.std[self.out_index] ** 2
            self.noise_floor = float(floor.mean())
        self.series = series

    def _windows(self, rows: tuple[int, int]) -> WindowDataset:
        assert self.series is not None and self.scaler is not None
        start, end = rows
        values = self.scaler.transform(self.series.values[start:end])
        marks = calendar_features(self.series.timestamps[start:end])
        return WindowDataset(values, marks, self.seq_len, self.pred_len, self.out_index, rows)

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict":
            self._setup_predict()
            return
        self.prepare()
        train, val, test = self.borders
        self.train_set = self._windows(train)
        self.val_set = self._windows(val)
        self.test_set = self._windows(test)

    # -------------------------------------------------------------- predict
    def _setup_predict(self) -> None:
        """The last ``seq_len`` rows of ``predict_csv`` on the original scale: the module
        applies the scaler it was trained with."""
        if self.predict_csv is None:
            raise ValueError("predict needs --data.predict_csv with the history to forecast from")
        series = read_series_csv(self.predict_csv, date_column=self.date_column, fill=self.fill)
        self._select(series)
        if len(series) < self.seq_len:
            raise ValueError(
                f"{self.predict_csv}: {len(series)} rows, but the model needs seq_len="
                f"{self.seq_len} rows of history"
            )
        idx = [series.columns.index(c) for c in self.in_columns]
        self.out_index = [self.in_columns.index(c) for c in self.out_columns]
        values = series.values[-self.seq_len :, idx]
        future = future_timestamps(series.timestamps, self.pred_len)
        stamps = np.concatenate([series.timestamps[-self.seq_len :], future])
        self.predict_timestamps = future
        self.predict_set = _PredictSet(values, calendar_features(stamps), self.out_index)

    def write_forecast(self, forecast: np.ndarray, path: Path, quantiles: list[float]) -> Path:
        """Write (H, C_out) or (H, C_out, Q) as CSV rows with the future timestamps."""
        assert self.predict_timestamps is not None
        header = [self.date_column]
        if forecast.ndim == 2:
            header += self.out_columns
            rows = forecast
        else:
            header += [f"{c}_q{q:g}" for c in self.out_columns for q in quantiles]
            rows = forecast.reshape(forecast.shape[0], -1)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            for ts, row in zip(self.predict_timestamps, rows):
                stamp = str(ts.astype("datetime64[s]")).replace("T", " ")
                writer.writerow([stamp, *(f"{v:.6g}" for v in row)])
        tmp.replace(path)
        return path


class _PredictSet(Dataset[dict[str, Tensor]]):
    def __init__(self, values: np.ndarray, marks: np.ndarray, out_index: list[int]):
        self.x = torch.as_tensor(values, dtype=torch.float32)
        self.marks = torch.as_tensor(marks, dtype=torch.float32)
        self.out_index = torch.as_tensor(out_index, dtype=torch.long)

    def __len__(self) -> int:
        return 1

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"x": self.x, "marks": self.marks, "out_index": self.out_index}
