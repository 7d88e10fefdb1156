"""Interaction file readers and preprocessing into per-user item sequences.

Readers return rows (user, item, timestamp, rating) or ordered per-user sequences:

* MovieLens 100K (``u.data``), 1M (``ratings.dat``) and 20M (``ratings.csv``);
* ``interactions``: user, item, timestamp[, rating] a line, separated by commas, tabs, ``::`` or
  spaces (header optional);
* ``pairs``: ``user item`` a line in time order (SASRec's own data files);
* ``sequences``: one user a line, ``user item1 item2 ...`` in chronological order (the
  S3-Rec/ICLRec layout);
* item histories for `predict` (JSON or ``history,item`` CSV), in the training data's raw ids.

``detect_layout`` tells the three file layouts apart from their first lines; a file that fits
none gets an error naming what was found and the layouts accepted (``LAYOUTS``).

Preprocessing: optional rating threshold, k-core filter, chronological order with a stable
tie-break (file order), and item ids remapped to 1..N (0 pads) in sorted order of the raw ids.
The raw ids travel with the checkpoint so predictions speak the data's language.

Every reader is bounded (``max_interactions``, ``MAX_LINE_CHARS``, ``MAX_HISTORY_BYTES``); none
decompresses: interaction files are plain text (MovieLens zips are unzipped by the user).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from attnlab.data import csv_rows, delimiter_hint, not_utf8, read_text

__all__ = [
    "DEFAULT_MAX_INTERACTIONS",
    "LAYOUTS",
    "MAX_HISTORY_BYTES",
    "MAX_HISTORY_JSON_BYTES",
    "MAX_LINE_CHARS",
    "Rows",
    "SequenceData",
    "build_sequences",
    "detect_layout",
    "read_history_file",
    "read_interaction_file",
    "read_movielens",
    "read_pair_file",
    "read_sequence_file",
    "sequences_to_data",
]


@dataclass
class SequenceData:
    """Per-user chronological item sequences with ids remapped to 1..N."""

    sequences: list[list[int]]
    user_ids: list[str]
    item_ids: list[str]  # raw id of internal item i is item_ids[i - 1]
    timestamps: list[list[int]] | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    def item_index(self) -> dict[str, int]:
        return {raw: i + 1 for i, raw in enumerate(self.item_ids)}


# ------------------------------------------------------------------------------------ readers

# An integer id as the files write it: ASCII digits with an optional minus. str.isdigit would also
# pass '²' or '١٢', which int() then rejects or reads as another number.
_INT_ID = re.compile(r"-?[0-9]+")
# Timestamps become int64 (seconds, or ms/ns since the epoch): beyond this they would wrap.
_MAX_TIMESTAMP = 9.2e18
# A `predict` history file is a handful of lists; json.loads holds ~10x the file in objects, so
# a larger file (JSON or CSV) is refused before it is read.
MAX_HISTORY_BYTES = 64 << 20
MAX_HISTORY_JSON_BYTES = MAX_HISTORY_BYTES  # the name it had when only JSON was checked
# Interactions a reader takes unless --data.max_interactions says otherwise: MovieLens-20M's
# 20,000,263 ratings and a quarter more; each takes about 400 bytes while read and ordered.
DEFAULT_MAX_INTERACTIONS = 25_000_000
# The longest line a reader takes (a sequence of a million items fits); a file without line
# breaks is refused at this length, not read whole into one string.
MAX_LINE_CHARS = 64 << 20

LAYOUTS = {
    "interactions": "`user item timestamp[ rating]` a line (commas, tabs, '::' or spaces; "
    "header optional)",
    "pairs": "`user item` a line, in time order (SASRec's format)",
    "sequences": "`user item1 item2 ...`, one user a line, in time order (S3-Rec's format)",
}


def _accepted() -> str:
    return "; ".join(f"{name}: {what}" for name, what in LAYOUTS.items())


def _too_many(path: Path, limit: int) -> ValueError:
    return ValueError(
        f"{path}: more than {limit:,} interactions, over --data.max_interactions {limit}; "
        "raise it to read a larger file (about 400 bytes of memory an interaction), or filter "
        "the file first"
    )


def _lines(fh: TextIO, path: Path) -> Iterator[str]:
    """The lines of ``fh``, none longer than ``MAX_LINE_CHARS`` (refused before it is whole)."""
    while True:
        line = fh.readline(MAX_LINE_CHARS + 1)
        if not line:
            return
        if len(line) > MAX_LINE_CHARS:
            raise ValueError(
                f"{path}: a line longer than {MAX_LINE_CHARS:,} characters; is it an "
                "interaction file (a short line an interaction, or one a user)?"
            )
        yield line


def _split_line(line: str, delimiter: str | None) -> list[str]:
    """Cells of one line; ``None`` splits on runs of whitespace."""
    return line.split() if delimiter is None else [c.strip() for c in line.split(delimiter)]


def _sniff_delimiter(line: str) -> str | None:
    for sep in ("::", "\t", ","):
        if sep in line:
            return sep
    return None


def detect_layout(path: str | Path, sample: int = 2000) -> tuple[str, str]:
    """Which of ``LAYOUTS`` a file is, from its first ``sample`` lines, and what was seen.

    Interactions and pairs have the same column count on every line and repeat users;
    sequences have one line a user (their lengths vary).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; check --data.path")
    rows: list[list[str]] = []
    delimiter: str | None = None
    with open(path, encoding="utf-8", newline="") as fh:
        try:
            for line in _lines(fh, path):
                if not line.strip():
                    continue
                if not rows:
                    delimiter = _sniff_delimiter(line)
                rows.append(_split_line(line.rstrip("\r\n"), delimiter))
                if len(rows) >= sample:
                    break
        except UnicodeDecodeError as exc:
            raise not_utf8(path, exc) from None
    if not rows:
        raise ValueError(f"{path} is empty; accepted layouts: {_accepted()}")
    header = not _looks_numeric(rows[0][-1]) and not _INT_ID.fullmatch(rows[0][0])
    body = rows[1:] if header and len(rows) > 1 else rows
    widths = sorted({len(r) for r in body})
    users = [r[0] for r in body]
    repeats = len(set(users)) < len(users)
    seen = (
        f"{len(body)} line(s) of {'/'.join(map(str, widths))} column(s)"
        f"{', users on several lines' if repeats else ', one line a user'}"
    )
    if widths == [2] and (repeats or header):
        return "pairs", seen
    if widths in ([3], [4]) and (repeats or header):
        return "interactions", seen
    if widths[0] >= 2 and not repeats and not header:
        return "sequences", seen
    raise ValueError(f"{path}: found {seen}, which fits no layout; accepted: {_accepted()}")


def read_sequence_file(
    path: str | Path, max_interactions: int = DEFAULT_MAX_INTERACTIONS
) -> tuple[list[str], list[list[str]]]:
    """``user item1 item2 ...`` per line; ids must be integers; returns users and raw sequences
    (at most ``max_interactions`` items in all)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; check --data.root / --data.path")
    users: list[str] = []
    seqs: list[list[str]] = []
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8") as fh:
        try:
            _read_sequences(_lines(fh, path), path, users, seqs, seen, max_interactions)
        except UnicodeDecodeError as exc:
            raise not_utf8(path, exc) from None
    if not users:
        raise ValueError(f"{path} holds no sequences")
    return users, seqs


def _read_sequences(
    lines: Iterator[str],
    path: Path,
    users: list[str],
    seqs: list[list[str]],
    seen: dict[str, int],
    max_interactions: int,
) -> None:
    total = 0
    for lineno, line in enumerate(lines, 1):
        tokens = line.split()
        if not tokens:
            continue
        for col, tok in enumerate(tokens, 1):
            if not _INT_ID.fullmatch(tok):
                raise ValueError(
                    f"{path}:{lineno}: column {col} is {tok!r}, not an integer id; the sequence "
                    "layout is `user item1 item2 ...` with integer ids"
                )
        if len(tokens) < 2:
            raise ValueError(
                f"{path}:{lineno}: user {tokens[0]} has no items; each line must be "
                "`user item1 item2 ...`"
            )
        if tokens[0] in seen:
            layout = "pairs" if len(tokens) == 2 else "interactions"
            raise ValueError(
                f"{path}:{lineno}: user {tokens[0]} already appeared on line {seen[tokens[0]]}; "
                "the sequences layout puts each user's whole sequence on one line. One "
                f"interaction a line is the {layout} layout: pass --data.dataset {layout} "
                "(or auto)"
            )
        total += len(tokens) - 1
        if total > max_interactions:
            raise _too_many(path, max_interactions)
        seen[tokens[0]] = lineno
        users.append(tokens[0])
        seqs.append(tokens[1:])


@dataclass
class Rows:
    """Interactions as parallel arrays; ``order`` is the row's position in the file."""

    user: np.ndarray
    item: np.ndarray
    timestamp: np.ndarray
    rating: np.ndarray | None

    def __len__(self) -> int:
        return len(self.user)


_HEADER_NAMES = {
    "user": ("user", "user_id", "userid", "uid"),
    "item": ("item", "item_id", "itemid", "movieid", "movie_id", "iid"),
    "timestamp": ("timestamp", "time", "ts", "datetime"),
    "rating": ("rating", "score"),
}


def _number(
    value: str, path: Path, lineno: int, col: int, what: str, limit: float = math.inf
) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(
            f"{path}:{lineno}: column {col} ({what}) is {value!r}, not a number"
        ) from None
    if not math.isfinite(number) or abs(number) > limit:
        raise ValueError(
            f"{path}:{lineno}: column {col} ({what}) is {value!r}, not a finite number"
            + (f" within +-{limit:.2g}" if math.isfinite(limit) else "")
            + "; fix or remove the row"
        )
    return number


def read_interaction_file(
    path: str | Path,
    delimiter: str | None = None,
    columns: Sequence[str] | None = None,
    max_interactions: int = DEFAULT_MAX_INTERACTIONS,
) -> Rows:
    """Rows ``user, item, timestamp[, rating]`` from a CSV/TSV (``::`` for MovieLens 1M, runs
    of spaces for a plain text file). Without ``delimiter``: by the suffix (.csv, .tsv), else
    sniffed from the first line.

    A header naming the columns is used when present; otherwise ``columns`` gives the order.
    More than ``max_interactions`` rows is an error naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; check --data.root / --data.path")
    if delimiter is None:
        delimiter = {".tsv": "\t", ".data": "\t", ".csv": ","}.get(path.suffix)
        delimiter = delimiter or _first_line_delimiter(path)
    order = list(columns or ("user", "item", "timestamp", "rating"))
    users: list[str] = []
    items: list[str] = []
    times: list[float] = []
    ratings: list[float] = []
    has_rating: bool | None = None
    with open(path, encoding="utf-8", newline="") as fh:
        bounded = _lines(fh, path)
        lines: Iterable[str] = bounded
        if delimiter == " ":  # runs of spaces: read as tabs
            lines = ("\t".join(line.split()) + "\n" for line in bounded)
        elif len(delimiter) > 1:  # csv takes one character: '::' becomes a tab
            lines = (line.replace(delimiter, "\t") for line in bounded)
        reader = csv_rows(lines, path, delimiter="\t" if lines is not bounded else delimiter)
        for lineno, row in enumerate(reader, 1):
            if not row or all(not c.strip() for c in row):
                continue
            row = [c.strip() for c in row]
            if len(row) < 3:
                hint = (
                    "; `user item` a line is the pairs layout: pass --data.dataset pairs"
                    if len(row) == 2
                    else delimiter_hint(row, delimiter)
                )
                raise ValueError(
                    f"{path}:{lineno}: {len(row)} column(s); expected user, item, timestamp[, "
                    f"rating]{hint}"
                )
            if lineno == 1 and not _looks_numeric(row[2] if len(row) > 2 else ""):
                names = [c.lower() for c in row]
                order = []
                for name in names:
                    key = next((k for k, v in _HEADER_NAMES.items() if name in v), name)
                    order.append(key)
                missing = {"user", "item", "timestamp"} - set(order)
                if missing:
                    raise ValueError(
                        f"{path}:1: header {row} lacks column(s) {sorted(missing)}; expected "
                        "user, item, timestamp[, rating]"
                    )
                continue
            if len(row) > len(order):
                raise ValueError(
                    f"{path}:{lineno}: {len(row)} columns but the layout has {len(order)} "
                    f"({', '.join(order)})"
                )
            rec = dict(zip(order, row))
            if "timestamp" not in rec:
                raise ValueError(
                    f"{path}:{lineno}: {len(row)} columns, no timestamp (the layout is "
                    f"{', '.join(order)})"
                )
            if not rec.get("user") or not rec.get("item"):
                raise ValueError(f"{path}:{lineno}: empty user or item id")
            if len(users) == max_interactions:
                raise _too_many(path, max_interactions)
            users.append(rec["user"])
            items.append(rec["item"])
            column = order.index("timestamp") + 1
            times.append(
                _number(rec["timestamp"], path, lineno, column, "timestamp", _MAX_TIMESTAMP)
            )
            row_has_rating = "rating" in rec
            if has_rating is None:
                has_rating = row_has_rating
            if row_has_rating:
                ratings.append(
                    _number(rec["rating"], path, lineno, order.index("rating") + 1, "rating")
                )
    if not users:
        raise ValueError(f"{path} holds no interactions")
    return Rows(
        user=np.asarray(users, dtype=object),
        item=np.asarray(items, dtype=object),
        timestamp=np.asarray(times, dtype=np.float64),
        rating=np.asarray(ratings, dtype=np.float64)
        if has_rating and len(ratings) == len(users)
        else None,
    )


def _first_line_delimiter(path: Path) -> str:
    """``,`` (also for an empty file), a tab, ``::`` or `` `` (runs of spaces), by the first
    line."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        first = next((line for line in _lines(fh, path) if line.strip()), "")
    return _sniff_delimiter(first) or (" " if len(first.split()) > 1 else ",")


def read_pair_file(path: str | Path, max_interactions: int = DEFAULT_MAX_INTERACTIONS) -> Rows:
    """SASRec's layout: ``user item`` a line (spaces, tabs or commas), each user's lines in
    time order; the line number is the timestamp. A header ``user item`` is allowed; more than
    ``max_interactions`` lines is an error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; check --data.path")
    users: list[str] = []
    items: list[str] = []
    delimiter: str | None = None
    with open(path, encoding="utf-8") as fh:
        try:
            for lineno, line in enumerate(_lines(fh, path), 1):
                if not line.strip():
                    continue
                if not users and delimiter is None:
                    delimiter = _sniff_delimiter(line)
                cells = _split_line(line.rstrip("\r\n"), delimiter)
                if not users and [c.lower() for c in cells[:2]] in (
                    [u, i] for u in _HEADER_NAMES["user"] for i in _HEADER_NAMES["item"]
                ):
                    continue
                if len(cells) != 2 or not all(cells):
                    raise ValueError(
                        f"{path}:{lineno}: found {len(cells)} column(s) ({line.strip()[:40]!r}) "
                        f"where --data.dataset pairs reads `user item`; pass the layout of the "
                        f"file (or auto): {_accepted()}"
                    )
                if len(users) == max_interactions:
                    raise _too_many(path, max_interactions)
                users.append(cells[0])
                items.append(cells[1])
        except UnicodeDecodeError as exc:
            raise not_utf8(path, exc) from None
    if not users:
        raise ValueError(f"{path} holds no interactions")
    return Rows(
        user=np.asarray(users, dtype=object),
        item=np.asarray(items, dtype=object),
        timestamp=np.arange(len(users), dtype=np.float64),  # file order is time order
        rating=None,
    )


def _looks_numeric(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def read_movielens(folder: str | Path, max_interactions: int = DEFAULT_MAX_INTERACTIONS) -> Rows:
    """MovieLens ratings from an unzipped 100K, 1M or 20M folder."""
    folder = Path(folder)
    order = ("user", "item", "rating", "timestamp")
    if (folder / "u.data").is_file():
        return read_interaction_file(folder / "u.data", "\t", order, max_interactions)
    if (folder / "ratings.dat").is_file():
        return read_interaction_file(folder / "ratings.dat", "::", order, max_interactions)
    if (folder / "ratings.csv").is_file():
        return read_interaction_file(folder / "ratings.csv", ",", None, max_interactions)
    raise FileNotFoundError(
        f"{folder} holds none of u.data (ml-100k), ratings.dat (ml-1m), ratings.csv (ml-20m); "
        "point --data.root at an unzipped MovieLens folder"
    )


def read_history_file(
    path: str | Path, item_index: dict[str, int]
) -> tuple[list[str], list[list[int]]]:
    """Arbitrary item histories for `predict`, in raw item ids.

    JSON: a list of lists, or an object {name: [items]}. CSV/TSV: rows ``history_name,item`` in
    chronological order (a header ``history,item`` is allowed).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; check --data.predict_history")
    named: list[tuple[str, list[str], list[str]]] = []  # name, raw items, where each came from
    if path.stat().st_size > MAX_HISTORY_BYTES:
        raise ValueError(
            f"{path}: {path.stat().st_size >> 20} MiB, over the {MAX_HISTORY_BYTES >> 20} MiB "
            "a history file may hold; split it into smaller files"
        )
    if path.suffix == ".json":
        try:
            obj = json.loads(read_text(path))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        except RecursionError:
            raise ValueError(f"{path}: not valid JSON (nested too deeply)") from None
        pairs = (
            obj.items()
            if isinstance(obj, dict)
            else enumerate(obj)
            if isinstance(obj, list)
            else None
        )
        if pairs is None:
            raise ValueError(f"{path}: expected a list of item lists or an object of item lists")
        for name, items in pairs:
            if not isinstance(items, list):
                raise ValueError(f"{path}: history {name!r} is not a list of item ids")
            named.append(
                (
                    str(name),
                    [str(i) for i in items],
                    [f"history {name!r} position {p}" for p in range(len(items))],
                )
            )
    else:
        delimiter = "\t" if path.suffix == ".tsv" else ","
        groups: dict[str, tuple[list[str], list[str]]] = {}
        with open(path, encoding="utf-8", newline="") as fh:
            for lineno, row in enumerate(csv_rows(fh, path, delimiter=delimiter), 1):
                if not row or all(not c.strip() for c in row):
                    continue
                if lineno == 1 and [c.strip().lower() for c in row[:2]] == ["history", "item"]:
                    continue
                if len(row) != 2:
                    raise ValueError(
                        f"{path}:{lineno}: expected `history,item`, got {len(row)} column(s)"
                    )
                g = groups.setdefault(row[0].strip(), ([], []))
                g[0].append(row[1].strip())
                g[1].append(f"line {lineno}")
        named = [(name, items, where) for name, (items, where) in groups.items()]
    if not named:
        raise ValueError(f"{path} holds no history; give at least one item per history")
    names, histories = [], []
    for name, items, where in named:
        if not items:
            raise ValueError(
                f"{path}: history {name!r} is empty; a recommendation needs at least one item"
            )
        ids = []
        for raw, loc in zip(items, where):
            if raw not in item_index:
                raise ValueError(
                    f"{path}: {loc}: unknown item id {raw!r} (not in the training data's "
                    f"{len(item_index)} items); remove it or retrain with it"
                )
            ids.append(item_index[raw])
        names.append(name)
        histories.append(ids)
    return names, histories


# ------------------------------------------------------------------------------ preprocessing


def _sorted_ids(values: np.ndarray) -> list[str]:
    uniq = sorted(set(values.tolist()))
    if all(_INT_ID.fullmatch(str(v)) for v in uniq):
        return sorted((str(v) for v in uniq), key=int)
    return [str(v) for v in uniq]


def build_sequences(rows: Rows, min_rating: float | None = None, k_core: int = 0) -> SequenceData:
    """Filter, order chronologically (ties keep file order) and remap ids."""
    n_raw = len(rows)
    keep = np.ones(n_raw, dtype=bool)
    if min_rating is not None:
        if rows.rating is None:
            raise ValueError("min_rating is set but the data has no rating column; drop min_rating")
        keep &= rows.rating >= min_rating
    user, item, ts = rows.user[keep], rows.item[keep], rows.timestamp[keep]
    file_order = np.nonzero(keep)[0]
    if k_core > 1:
        while True:
            _, u_inv, u_cnt = np.unique(user, return_inverse=True, return_counts=True)
            _, i_inv, i_cnt = np.unique(item, return_inverse=True, return_counts=True)
            ok = (u_cnt[u_inv] >= k_core) & (i_cnt[i_inv] >= k_core)
            if ok.all():
                break
            user, item, ts, file_order = user[ok], item[ok], ts[ok], file_order[ok]
    if len(user) == 0:
        raise ValueError(
            f"no interactions left after filtering (min_rating={min_rating}, k_core={k_core}); "
            "relax the filters"
        )
    user_ids = _sorted_ids(user)
    item_ids = _sorted_ids(item)
    u_index = {raw: i for i, raw in enumerate(user_ids)}
    i_index = {raw: i + 1 for i, raw in enumerate(item_ids)}
    u_code = np.fromiter((u_index[str(u)] for u in user), dtype=np.int64, count=len(user))
    i_code = np.fromiter((i_index[str(i)] for i in item), dtype=np.int64, count=len(item))
    order = np.lexsort((file_order, ts, u_code))  # by user, then time, then file position
    u_code, i_code, ts = u_code[order], i_code[order], ts[order]
    bounds = np.flatnonzero(np.diff(u_code)) + 1
    sequences = [s.tolist() for s in np.split(i_code, bounds)]
    timestamps = [s.astype(np.int64).tolist() for s in np.split(ts, bounds)]
    return SequenceData(
        sequences,
        user_ids,
        item_ids,
        timestamps,
        stats={"raw_interactions": n_raw, "interactions": len(i_code)},
    )


def sequences_to_data(users: list[str], raw: list[list[str]]) -> SequenceData:
    """Remap already ordered raw sequences (the S3-Rec layout)."""
    item_ids = _sorted_ids(np.asarray([i for s in raw for i in s], dtype=object))
    index = {raw_id: i + 1 for i, raw_id in enumerate(item_ids)}
    seqs = [[index[i] for i in s] for s in raw]
    return SequenceData(seqs, list(users), item_ids, None, {"interactions": sum(map(len, seqs))})
