"""Series, splits, scaling and windows: the forecasting data as the literature defines it.

* ``read_series_csv`` (``readers.py``): a CSV with a date column in a common format and
  numeric value columns, checked cell by cell.
* ``split_borders``: ETT by months (12/4/4), everything else 7:1:2 by time; validation and test
  start ``seq_len`` rows early so their first window has a full look-back. ``resolve_split``
  says which applies to a file, and the DataModule prints it with rows and windows per part.
* ``Scaler``: z-score with statistics of the training rows only.
* ``WindowDataset``: every window ``[s, s + L + H)`` of a split, none dropped.
* ``generate_series``: the offline default, a multivariate series whose noise variance is known.
* ``ForecastData``: the ``LightningDataModule`` tying these together.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor
from torch.utils.data import Dataset

from attnlab.data import AttnlabDataModule
from attnlab.datasets import data_root
from attnlab.paths import data_root_hint
from attnlab.runs import atomic_write_csv

from .readers import FILLS, Series, read_series_csv
from .registry import DATASETS, DatasetInfo, fetch_dataset

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
    "resolve_split",
    "split_borders",
]

TASKS = ("M", "S", "MS")


@rank_zero_only
def _log(message: str) -> None:
    print(f"forecast: {message}", flush=True)


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


SPLITS = {
    "ett_hour": "ETT's 12/4/4 months of hourly rows",
    "ett_minute": "ETT's 12/4/4 months of 15-minute rows",
    "ratio": "70/10/20 % by time",
}


def resolve_split(
    split: str | None, dataset: DatasetInfo | None, path: Path | None, timestamps: np.ndarray
) -> tuple[str, str]:
    """The split scheme for a series and why it applies, e.g. ``("ratio", "the default for a
    CSV")``.

    ``split``: ``ett`` (hourly or 15-minute months, by the series' step), ``ett_hour``,
    ``ett_minute``, ``ratio`` or None: the registry dataset's own split, also for a
    ``--data.csv`` whose file name is a registry file (ETTh1.csv keeps ETT's split), else
    ``ratio``.
    """
    if split is None:
        if dataset is not None:
            return dataset.split, f"the standard split of {dataset.name}"
        known = next(
            (d for d in DATASETS.values() if path is not None and path.name == d.file), None
        )
        if known is not None:
            hint = "" if known.split == "ratio" else "; --data.split ratio for 70/10/20"
            return known.split, f"the standard split of {known.file}{hint}"
        if path is None:
            return "ratio", "the default"
        return "ratio", "the default for a CSV; --data.split ett for ETT's months"
    if split == "ett":
        steps = np.diff(timestamps.astype("datetime64[s]")).astype(np.int64)
        step = int(np.median(steps)) if len(steps) else 0
        if step not in (3600, 900):
            raise ValueError(
                f"--data.split ett needs hourly or 15-minute rows, the series steps by {step} s; "
                "use --data.split ratio"
            )
        return ("ett_hour" if step == 3600 else "ett_minute"), "--data.split ett"
    if split not in SPLITS:
        raise ValueError(
            f"unknown split {split!r}; choose ett (ETT's 12/4/4 months) or ratio (70/10/20 %)"
        )
    return split, f"--data.split {split}"


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
                f"a split of {len(values)} rows is shorter than seq_len + horizon = "
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

    The split, its rows and windows per part and the date format read are printed when the
    data is set up; the model's ``channels``, and its input and output lengths when the model
    does not set them, come from the data.

    Args:
        dataset: the series. Your own file: --data.csv FILE; the others are read from
            --data.root or $ATTNLAB_DATA_DIR/<folder>:
            - synthetic = a generated seasonal series with known noise (offline).
            - etth1, etth2, ettm1, ettm2 = ETT (ett/ETTh1.csv ...).
            - weather, electricity, exchange, traffic, ili = the Autoformer collection.
        csv: your own CSV: a date column (--data.date_column) and one numeric column a
            series; it replaces --data.dataset.
        date_format: strptime codes for dates the reader does not recognise (it reads ISO
            8601, 1990/1/1 0:00, day-first 31/12/2020, US 12/31/2020, 31.12.2020, 20201231
            and epoch seconds).
        split: ett (ETT's 12/4/4 months) or ratio (70/10/20 % by time); default: the
            dataset's own split, ett for a CSV named like an ETT file, else ratio.
        seq_len: input steps a window shows the model (L).
        horizon: steps to forecast (H); 96, 192, 336 and 720 in the long-horizon papers.
        pred_len: the former name of ``horizon`` (warns).
        task: M = all columns to all, S = target to target, MS = all columns to target.
        fill: ffill, linear or zero to fill empty cells (default: an empty cell is an error).
        channels: columns of the synthetic series (a CSV has as many as it has).
        predict_csv: the history `predict` forecasts from; written to predict_out.
    """

    def __init__(
        self,
        dataset: str = "synthetic",
        root: str | None = None,
        csv: str | None = None,
        download: bool = False,
        seq_len: int = 96,
        horizon: int = 96,
        pred_len: int | None = None,
        task: str = "M",
        target: str = "OT",
        split: str | None = None,
        date_column: str = "date",
        date_format: str | None = None,
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
        if pred_len is not None:
            warnings.warn(
                "--data.pred_len is deprecated, use --data.horizon", FutureWarning, stacklevel=2
            )
            horizon = pred_len
        if seq_len < 1 or horizon < 1:
            raise ValueError(
                f"seq_len and horizon must be at least 1 step, got {seq_len} and {horizon}"
            )
        # ``pred_len`` stays the name inside (the models' and the literature's).
        self.seq_len, self.horizon, self.pred_len = seq_len, horizon, horizon
        self.task, self.target = task, target
        self.date_column, self.date_format, self.fill = date_column, date_format, fill
        self.n_steps, self.channels, self.noise_std = n_steps, channels, noise_std
        self.predict_csv, self.predict_out = predict_csv, predict_out
        self.info = DATASETS.get(dataset)
        if split is not None and split != "ett" and split not in SPLITS:
            raise ValueError(
                f"unknown split {split!r}; choose ett (ETT's 12/4/4 months) or ratio (70/10/20 %)"
            )
        self.split_choice = split  # as given; ``split`` is the scheme once the series is read
        self.split = split if split in SPLITS else None
        self.season = self.info.season if self.info else 24
        self.series: Series | None = None
        self.source_path: Path | None = None  # the CSV read, once read
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
        where = (
            f"{folder / self.info.file} not found"
            if folder is not None
            else data_root_hint(self.info.subdir, self.info.file)
        )
        raise FileNotFoundError(
            f"{where} (dataset {self.dataset!r}); pass --data.root with the folder holding "
            f"{self.info.file}, set ATTNLAB_DATA_DIR to a folder with "
            f"{self.info.subdir}/{self.info.file}, add --data.download true, or give your own "
            "file with --data.csv"
        )

    def load_series(self) -> Series:
        if self.csv is None and self.dataset == "synthetic":
            return generate_series(self.n_steps, self.channels, self.noise_std, seed=self.seed)
        path = self.source_path = self._csv_path()
        series = self._read(path)
        _log(
            f"read {path.name}: {len(series)} rows x {len(series.columns)} columns, dates as "
            f"{series.date_format}"
        )
        return series

    def _read(self, path: str | Path) -> Series:
        return read_series_csv(
            path, date_column=self.date_column, fill=self.fill, date_format=self.date_format
        )

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
                f"horizon = {need}; use a shorter input or horizon"
            )
        path = self.source_path
        info = self.info if self.csv is None else None
        self.split, why = resolve_split(self.split_choice, info, path, series.timestamps)
        self.borders = split_borders(len(series), self.seq_len, self.split)
        _log(self.describe_split(why))
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

    def describe_split(self, why: str) -> str:
        """One line: the split's name and, per part, its own rows and its windows."""
        assert self.split is not None
        window = self.seq_len + self.pred_len
        parts = []
        for name, (start, end), own_start in zip(
            ("train", "val", "test"), self.borders, (0, *(b[1] for b in self.borders[:2]))
        ):
            windows = max(0, end - start - window + 1)
            parts.append(f"{name} {end - own_start} rows / {windows} windows")
        return f"split {self.split} ({SPLITS[self.split]}; {why}): " + ", ".join(parts)

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
        series = self._read(self.predict_csv)
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
        lines = [
            [str(ts.astype("datetime64[s]")).replace("T", " "), *(f"{v:.6g}" for v in row)]
            for ts, row in zip(self.predict_timestamps, rows)
        ]
        atomic_write_csv(path, header, lines)  # never through a link planted at the name
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
