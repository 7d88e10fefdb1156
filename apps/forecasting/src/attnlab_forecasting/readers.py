"""Reading a series CSV: a date column in one of the common formats, numeric value columns.

* ``read_series_csv``: the file checked cell by cell; every problem is a ``ValueError`` naming
  the file, line and column. The file's size is checked before it is read
  (``MAX_SERIES_CSV_BYTES``) and rows are kept as float64 arrays, about 8 bytes a cell.
* ``parse_dates``: ISO 8601, ``1990/1/1 0:00`` (year first), day-first, US month-first, dotted
  day-first, ``YYYYMMDD`` and epoch seconds are recognised; ``date_format`` (strptime codes)
  reads anything else. A file whose dates read both day-first and month-first is refused
  rather than guessed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from attnlab.data import csv_rows, delimiter_hint

__all__ = [
    "DATE_FORMATS",
    "FILLS",
    "MAX_SERIES_CSV_BYTES",
    "Series",
    "parse_dates",
    "read_series_csv",
]

FILLS = ("ffill", "linear", "zero")
_MISSING = {"", "nan", "na", "n/a", "null", "none"}
_FLOAT32_MAX = float(np.finfo(np.float32).max)  # the models see float32: beyond it is inf
# The largest public benchmark (traffic.csv) is 130 MiB; a file past this is refused before a row
# is read, with the limit named, instead of filling memory.
MAX_SERIES_CSV_BYTES = 1 << 30

# name shown in the log -> strptime formats tried in order (with and without seconds/minutes)
DATE_FORMATS: dict[str, tuple[str, ...]] = {
    "year/month/day": ("%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y/%m/%d"),
    "day/month/year": ("%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%d/%m/%Y"),
    "month/day/year (US)": ("%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y"),
    "day.month.year": ("%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M", "%d.%m.%Y"),
    "day-month-year": ("%d-%m-%Y %H:%M:%S", "%d-%m-%Y %H:%M", "%d-%m-%Y"),
    "YYYYMMDD": ("%Y%m%d",),
}
_EPOCH = re.compile(r"[0-9]{9,10}(\.[0-9]+)?")  # seconds since 1970: 1973-03 .. 2286-11


@dataclass
class Series:
    """A multivariate series: timestamps (T,) datetime64[s], values (T, C) float64, names."""

    timestamps: np.ndarray
    values: np.ndarray
    columns: list[str]
    source: str = "<memory>"
    noise_var: np.ndarray | None = None  # (C,), known only for generated series
    date_format: str = "ISO 8601"  # how the date column was read

    def __len__(self) -> int:
        return len(self.values)


# --------------------------------------------------------------------------------------------
# dates
# --------------------------------------------------------------------------------------------

DateParser = Callable[[str], datetime]


def _iso(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _epoch(text: str) -> datetime:
    if not _EPOCH.fullmatch(text):
        raise ValueError(text)
    return datetime.utcfromtimestamp(float(text))


def _strptime(formats: tuple[str, ...]) -> DateParser:
    def parse(text: str) -> datetime:
        for fmt in formats:
            try:
                return datetime.strptime(text, fmt)
            except ValueError:
                continue
        raise ValueError(text)

    return parse


def _candidates(date_format: str | None) -> dict[str, DateParser]:
    if date_format is not None:
        return {f"--data.date_format {date_format!r}": _strptime((date_format,))}
    parsers: dict[str, DateParser] = {"ISO 8601": _iso}
    parsers.update({name: _strptime(fmts) for name, fmts in DATE_FORMATS.items()})
    parsers["epoch seconds"] = _epoch
    return parsers


def parse_dates(
    texts: list[str], lines: list[int], path: Path, column: str, date_format: str | None = None
) -> tuple[np.ndarray, str]:
    """The date cells as datetime64[s] (T,) and the name of the format that read them all.

    Every candidate format is tried on every cell; the first that reads all of them wins. Two
    formats that read them all but disagree (01/02 as 1 February or 2 January) are an error
    that asks for ``--data.date_format``.
    """
    alive = _candidates(date_format)
    parsed: dict[str, list[datetime]] = {name: [] for name in alive}
    failed_at: dict[str, int] = {}
    for i, raw in enumerate(texts):
        text = raw.strip()
        for name in [n for n in alive if n not in failed_at]:
            try:
                parsed[name].append(alive[name](text).replace(tzinfo=None))
            except (ValueError, OverflowError, OSError):
                failed_at[name] = i
        if len(failed_at) == len(alive):
            break
    winners = [name for name in alive if name not in failed_at]
    if not winners:
        best = max(failed_at, key=lambda n: failed_at[n])  # the format that read the most rows
        i = failed_at[best]
        after = f" in the format of the rows before it ({best})" if i > 0 else ""
        raise ValueError(
            f"{path}: line {lines[i]}, column {column!r}: {texts[i]!r} is not a date/time"
            f"{after}; write ISO 8601 (e.g. 2016-07-01 00:00:00) or pass --data.date_format "
            "with its strptime codes (e.g. '%d/%m/%Y %H:%M')"
        )
    first = parsed[winners[0]]
    rivals = [n for n in winners[1:] if parsed[n] != first]
    if rivals:
        raise ValueError(
            f"{path}: column {column!r} reads both as {winners[0]} and as {rivals[0]} (e.g. "
            f"{texts[0]!r}); pass --data.date_format ('%d/%m/%Y' or '%m/%d/%Y', with "
            "' %H:%M' for times) to say which"
        )
    stamps = np.array(first, dtype="datetime64[s]")  # (T,)
    return stamps, winners[0]


# --------------------------------------------------------------------------------------------
# the CSV
# --------------------------------------------------------------------------------------------


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


def _cell_value(cell: str, path: Path, line: int, column: str) -> float:
    """One value cell as a float; NaN for a missing cell (the caller decides about gaps)."""
    if cell.lower() in _MISSING:
        return math.nan
    try:
        value = float(cell)
    except ValueError:
        raise ValueError(
            f"{path}: line {line}, column {column!r}: {cell!r} is not a number; fix or remove "
            "the cell"
        ) from None
    if not math.isfinite(value):
        raise ValueError(
            f"{path}: line {line}, column {column!r}: {cell!r} is not a finite number; fix the "
            "cell, or leave it empty and pass --data.fill"
        )
    if abs(value) > _FLOAT32_MAX:
        raise ValueError(
            f"{path}: line {line}, column {column!r}: {cell!r} is beyond the float32 range the "
            "models compute in; rescale the column"
        )
    return value


def _check_size(path: Path) -> None:
    size = path.stat().st_size
    if size > MAX_SERIES_CSV_BYTES:
        raise ValueError(
            f"{path}: {size / 2**20:.0f} MiB, over the {MAX_SERIES_CSV_BYTES >> 20} MiB this "
            "reader takes; keep the columns and rows you need (e.g. with --data.target and a "
            "shorter time range) in a smaller file"
        )


def read_series_csv(
    path: str | Path,
    *,
    date_column: str = "date",
    columns: list[str] | None = None,
    fill: str | None = None,
    date_format: str | None = None,
) -> Series:
    """Read a CSV with a date column and numeric value columns.

    Empty or NaN cells are an error unless ``fill`` is ``ffill``, ``linear`` or ``zero``;
    timestamps must be strictly increasing (no duplicates). The dates' format is recognised
    (see ``parse_dates``) or given as ``date_format``.
    """
    path = Path(path)
    if fill is not None and fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS} or None, got {fill!r}")
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; check the CSV path")
    _check_size(path)
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
        dates: list[str] = []
        lines: list[int] = []
        rows: list[np.ndarray] = []  # one (C,) float64 array a row
        gaps = []
        for line, row in enumerate(reader, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise ValueError(
                    f"{path}: line {line} has {len(row)} cells, the header has {len(header)}"
                )
            values = np.array([_cell_value(row[j].strip(), path, line, header[j]) for j in picks])
            if fill is None and np.isnan(values).any():
                gaps.extend((line, header[picks[k]]) for k in np.flatnonzero(np.isnan(values)))
            dates.append(row[t_col])
            lines.append(line)
            rows.append(values)
    if not rows:
        raise ValueError(f"{path} has a header but no data rows")
    if gaps:
        line, col = gaps[0]
        raise ValueError(
            f"{path}: line {line}, column {col!r} is empty or NaN ({len(gaps)} missing cells in "
            f"all); fill the gaps or pass --data.fill ffill|linear|zero"
        )
    ts, used = parse_dates(dates, lines, path, header[t_col], date_format)
    steps = np.diff(ts).astype(np.int64)
    if (steps <= 0).any():
        i = int(np.argmax(steps <= 0))
        kind = "duplicate" if steps[i] == 0 else "out-of-order"
        raise ValueError(
            f"{path}: line {lines[i + 1]} has a {kind} timestamp {ts[i + 1]} (line {lines[i]} "
            f"has {ts[i]}); sort the rows by time and remove duplicates"
        )
    arr = np.stack(rows)  # (T, C)
    if fill is not None:
        arr = _fill_gaps(arr, fill, path, names)
    return Series(ts, arr, names, source=str(path), date_format=used)
