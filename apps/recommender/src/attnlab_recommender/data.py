"""Interaction data: readers, preprocessing, splits and the DataModule.

Readers return rows (user, item, timestamp, rating) or ordered per-user sequences:

* MovieLens 100K (``u.data``), 1M (``ratings.dat``) and 20M (``ratings.csv``);
* an interaction CSV/TSV with columns user, item, timestamp[, rating] (header optional);
* one user per line, ``user item1 item2 ...`` in chronological order (the S3-Rec/ICLRec layout).

Preprocessing: optional rating threshold, k-core filter, chronological order with a stable
tie-break (file order), and item ids remapped to 1..N (0 pads) in sorted order of the raw ids.
The raw ids travel with the checkpoint so predictions speak the data's language.

Splits: leave-one-out (last item test, second-to-last validation) or a global temporal split
(interactions after time quantiles). In both, training inputs hold only interactions before
validation, and validation inputs only interactions before the test targets.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from attnlab.data import AttnlabDataModule, csv_rows, not_utf8, read_text
from attnlab.datasets import DownloadError, data_root, fetch

from .synthetic import TasteDrift

__all__ = [
    "DATASETS",
    "RecDataModule",
    "SequenceData",
    "build_sequences",
    "leave_one_out",
    "pad",
    "read_history_file",
    "read_interaction_file",
    "read_movielens",
    "read_sequence_file",
    "temporal_split",
]

# dataset name -> folder under ATTNLAB_DATA_DIR (or --data.root) and the file read in it
DATASETS: dict[str, tuple[str, str]] = {
    "ml-100k": ("movielens-100k", "u.data"),
    "ml-1m": ("movielens-1m", "ratings.dat"),
    "ml-20m": ("movielens-20m", "ratings.csv"),
    "beauty": ("amazon-yelp-s3rec", "Beauty.txt"),
}
# GroupLens publishes MD5 sums only (files.grouplens.org/.../ml-*.zip.md5); no sha256 could be
# verified, so these zips are never downloaded unverified: the user fetches and checks them.
MOVIELENS_MD5 = {
    "ml-100k": "0e33842e24a9c977be4e0107933c0723",
    "ml-1m": "c4d9eecfca2ab87c1945afe126590906",
    "ml-20m": "cd245b17a1ae2cc31bb14903e1204af3",
}


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


def read_sequence_file(path: str | Path) -> tuple[list[str], list[list[str]]]:
    """``user item1 item2 ...`` per line; ids must be integers; returns users and raw sequences."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; check --data.root / --data.path")
    users: list[str] = []
    seqs: list[list[str]] = []
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8") as fh:
        try:
            lines = fh.readlines()
        except UnicodeDecodeError as exc:
            raise not_utf8(path, exc) from None
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
            raise ValueError(
                f"{path}:{lineno}: user {tokens[0]} already appeared on line {seen[tokens[0]]}; "
                "put each user's whole sequence on one line"
            )
        seen[tokens[0]] = lineno
        users.append(tokens[0])
        seqs.append(tokens[1:])
    if not users:
        raise ValueError(f"{path} holds no sequences")
    return users, seqs


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
    path: str | Path, delimiter: str | None = None, columns: Sequence[str] | None = None
) -> Rows:
    """Rows ``user, item, timestamp[, rating]`` from a CSV/TSV (``::`` for MovieLens 1M).

    A header naming the columns is used when present; otherwise ``columns`` gives the order.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; check --data.root / --data.path")
    if delimiter is None:
        delimiter = "\t" if path.suffix in (".tsv", ".data") else ","
    order = list(columns or ("user", "item", "timestamp", "rating"))
    users: list[str] = []
    items: list[str] = []
    times: list[float] = []
    ratings: list[float] = []
    has_rating: bool | None = None
    with open(path, encoding="utf-8", newline="") as fh:
        lines = (line.replace(delimiter, "\t") for line in fh) if len(delimiter) > 1 else fh
        reader = csv_rows(lines, path, delimiter="\t" if len(delimiter) > 1 else delimiter)
        for lineno, row in enumerate(reader, 1):
            if not row or all(not c.strip() for c in row):
                continue
            row = [c.strip() for c in row]
            if len(row) < 3:
                raise ValueError(
                    f"{path}:{lineno}: {len(row)} column(s); expected user, item, timestamp[, rating]"
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


def _looks_numeric(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def read_movielens(folder: str | Path) -> Rows:
    """MovieLens ratings from an unzipped 100K, 1M or 20M folder."""
    folder = Path(folder)
    if (folder / "u.data").is_file():
        return read_interaction_file(
            folder / "u.data", "\t", ("user", "item", "rating", "timestamp")
        )
    if (folder / "ratings.dat").is_file():
        return read_interaction_file(
            folder / "ratings.dat", "::", ("user", "item", "rating", "timestamp")
        )
    if (folder / "ratings.csv").is_file():
        return read_interaction_file(folder / "ratings.csv", ",")
    raise FileNotFoundError(
        f"{folder} holds none of u.data (ml-100k), ratings.dat (ml-1m), ratings.csv (ml-20m); "
        "point --data.root at an unzipped MovieLens folder"
    )


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


# ----------------------------------------------------------------------------------- splits


@dataclass
class Split:
    """Training sequences and (user, history, target) evaluation cases."""

    train: list[list[int]]
    val: list[tuple[int, list[int], int]]
    test: list[tuple[int, list[int], int]]
    info: dict[str, Any] = field(default_factory=dict)


def _check_short(data: SequenceData, minimum: int, drop: bool, why: str) -> list[int]:
    users = []
    for u, s in enumerate(data.sequences):
        if len(s) < minimum:
            if not drop:
                raise ValueError(
                    f"user {data.user_ids[u]} has {len(s)} interaction(s); {why} needs at least "
                    f"{minimum}. Filter with --data.k_core {minimum} or pass --data.drop_short_users "
                    "true to leave such users out (they are counted in the log)"
                )
            continue
        users.append(u)
    return users


def leave_one_out(data: SequenceData, drop_short_users: bool = False) -> Split:
    """Last item -> test, second-to-last -> validation, the rest -> training."""
    users = _check_short(data, 3, drop_short_users, "leave-one-out")
    train, val, test = [], [], []
    for u in users:
        s = data.sequences[u]
        train.append(s[:-2])
        val.append((u, s[:-2], s[-2]))
        test.append((u, s[:-1], s[-1]))
    return Split(train, val, test, {"dropped_short_users": len(data.sequences) - len(users)})


def temporal_split(
    data: SequenceData, val_fraction: float = 0.1, test_fraction: float = 0.1
) -> Split:
    """Global cut points in time: each user's first interaction after a cut is its target."""
    if data.timestamps is None:
        raise ValueError(
            "the temporal split needs timestamps; the sequence layout has none, use "
            "--data.split leave_one_out"
        )
    if not (val_fraction > 0 and test_fraction > 0 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"need 0 < val_fraction, test_fraction and a sum below 1; got {val_fraction}, {test_fraction}"
        )
    all_ts = np.concatenate([np.asarray(t) for t in data.timestamps])
    t_val = float(np.quantile(all_ts, 1 - val_fraction - test_fraction))
    t_test = float(np.quantile(all_ts, 1 - test_fraction))
    train, val, test = [], [], []
    for u, (s, ts) in enumerate(zip(data.sequences, data.timestamps)):
        ts_arr = np.asarray(ts)
        n_train = int((ts_arr < t_val).sum())
        n_before_test = int((ts_arr < t_test).sum())
        if n_train >= 2:
            train.append(s[:n_train])
        if n_train >= 1 and n_train < n_before_test:
            val.append((u, s[:n_train], s[n_train]))
        if n_before_test >= 1 and n_before_test < len(s):
            test.append((u, s[:n_before_test], s[n_before_test]))
    if not val or not test:
        raise ValueError(
            "the temporal split left no validation or test case; lower val_fraction/test_fraction "
            "or use --data.split leave_one_out"
        )
    return Split(train, val, test, {"t_val": t_val, "t_test": t_test})


# --------------------------------------------------------------------------------- datasets


def pad(seqs: Sequence[Sequence[int]]) -> Tensor:
    """Right-pad with 0: list of sequences -> (B, Lmax) long."""
    width = max(1, max((len(s) for s in seqs), default=1))
    out = torch.zeros(len(seqs), width, dtype=torch.long)
    for i, s in enumerate(seqs):
        if len(s):
            out[i, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
    return out


class TrainSequences(Dataset[list[int]]):
    """Whole training sequences; the module cuts the window its model can take."""

    def __init__(self, seqs: list[list[int]]):
        self.seqs = [s for s in seqs if len(s) >= 2]

    def __len__(self) -> int:
        return len(self.seqs)

    def __getitem__(self, i: int) -> list[int]:
        return self.seqs[i]


class EvalCases(Dataset[tuple[int, list[int], int]]):
    def __init__(self, cases: list[tuple[int, list[int], int]]):
        self.cases = cases

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, i: int) -> tuple[int, list[int], int]:
        return self.cases[i]


def collate_train(batch: list[list[int]]) -> dict[str, Tensor]:
    return {"seq": pad(batch)}


def collate_eval(batch: list[tuple[int, list[int], int]]) -> dict[str, Tensor]:
    users, hist, target = zip(*batch)
    return {
        "user": torch.as_tensor(users, dtype=torch.long),
        "history": pad(hist),
        "target": torch.as_tensor(target, dtype=torch.long),
    }


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


# ------------------------------------------------------------------------------ DataModule


class RecDataModule(AttnlabDataModule):
    """Item sequences -> training windows and full-ranking evaluation cases.

    ``dataset``: ``synthetic`` (built-in, offline), ``ml-100k``/``ml-1m``/``ml-20m``, ``beauty``
    (folders under ``--data.root`` or ``$ATTNLAB_DATA_DIR``), ``interactions`` (a CSV/TSV at
    ``path``) or ``sequences`` (an S3-Rec style file at ``path``).
    """

    def __init__(
        self,
        dataset: str = "synthetic",
        root: str | None = None,
        path: str | None = None,
        min_rating: float | None = None,
        k_core: int = 0,
        split: str = "leave_one_out",
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        drop_short_users: bool = False,
        synthetic: dict[str, Any] | None = None,
        predict_history: str | None = None,
        predict_users: list[str] | None = None,
        batch_size: int = 128,
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
        known = ("synthetic", "interactions", "sequences", *DATASETS)
        if dataset not in known:
            raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(known)}")
        if split not in ("leave_one_out", "temporal"):
            raise ValueError(f"unknown split {split!r}; choose leave_one_out or temporal")
        self.dataset = dataset
        self.root = root
        self.path = path
        self.min_rating = min_rating
        self.k_core = k_core
        self.split_name = split
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.drop_short_users = drop_short_users
        self.synthetic_kwargs = dict(synthetic or {})
        self.predict_history = predict_history
        self.predict_users = predict_users
        self.data: SequenceData | None = None
        self.splits: Split | None = None
        self.generator: TasteDrift | None = None
        self.predict_names: list[str] = []

    # ------------------------------------------------------------------ loading
    def load(self) -> SequenceData:
        """Read and preprocess the configured dataset (cached)."""
        if self.data is not None:
            return self.data
        if self.dataset == "synthetic":
            self.generator = TasteDrift(seed=self.seed, **self.synthetic_kwargs)
            seqs = self.generator.generate()
            n = self.generator.num_items
            self.data = SequenceData(
                seqs, [str(u) for u in range(len(seqs))], [str(i) for i in range(1, n + 1)]
            )
            return self.data
        if self.dataset in ("interactions", "sequences"):
            if not self.path:
                raise ValueError(f"dataset {self.dataset!r} needs --data.path pointing at the file")
            file = Path(self.path)
        else:
            folder = self._folder()
            file = folder / DATASETS[self.dataset][1]
            if not file.is_file() and self.dataset != "beauty":
                file = folder
        if self.dataset in ("sequences", "beauty"):
            users, raw = read_sequence_file(file)
            if self.min_rating is not None:
                raise ValueError("the sequence layout has no ratings; drop --data.min_rating")
            if self.k_core > 1:
                rows = Rows(
                    user=np.asarray([u for u, s in zip(users, raw) for _ in s], dtype=object),
                    item=np.asarray([i for s in raw for i in s], dtype=object),
                    timestamp=np.asarray([t for s in raw for t in range(len(s))], dtype=np.float64),
                    rating=None,
                )
                data = build_sequences(rows, None, self.k_core)
                data.timestamps = None
            else:
                data = sequences_to_data(users, raw)
        elif self.dataset == "interactions":
            data = build_sequences(read_interaction_file(file), self.min_rating, self.k_core)
        else:
            rows = read_movielens(file if file.is_dir() else file.parent)
            data = build_sequences(rows, self.min_rating, self.k_core)
        self.data = data
        return data

    def _folder(self) -> Path:
        subdir = DATASETS[self.dataset][0]
        folder = data_root(self.root, subdir)
        if folder is not None:
            return folder
        if self.dataset == "beauty":
            try:
                return fetch("beauty")
            except DownloadError as exc:
                raise FileNotFoundError(str(exc)) from None
        raise FileNotFoundError(
            f"{self.dataset} not found: pass --data.root or set ATTNLAB_DATA_DIR to a folder holding "
            f"{subdir}/. attnlab does not download {self.dataset}.zip: GroupLens publishes only an MD5 "
            f"({MOVIELENS_MD5[self.dataset]}) and no sha256 could be verified, so fetch it from "
            "https://grouplens.org/datasets/movielens/, check the MD5, unzip and point --data.root at it"
        )

    @property
    def num_items(self) -> int:
        return self.load().num_items

    @property
    def item_ids(self) -> list[str]:
        return self.load().item_ids

    def setup(self, stage: str | None = None) -> None:
        data = self.load()
        if self.splits is None:
            if self.split_name == "leave_one_out":
                self.splits = leave_one_out(data, self.drop_short_users)
            else:
                self.splits = temporal_split(data, self.val_fraction, self.test_fraction)
            dropped = self.splits.info.get("dropped_short_users")
            if dropped:
                print(f"recsys: left out {dropped} user(s) with fewer than 3 interactions")
        self.collate_fn = None
        self.train_set = TrainSequences(self.splits.train)
        self.val_set = EvalCases(self.splits.val)
        self.test_set = EvalCases(self.splits.test)
        if stage == "predict":
            self.predict_set = self._predict_cases()

    def _predict_cases(self) -> EvalCases:
        data = self.load()
        if self.predict_history:
            names, hists = read_history_file(self.predict_history, data.item_index())
            self.predict_names = names
            return EvalCases([(-1, h, 0) for h in hists])
        index = {u: i for i, u in enumerate(data.user_ids)}
        wanted = self.predict_users or data.user_ids
        cases = []
        for raw in wanted:
            if str(raw) not in index:
                raise ValueError(
                    f"unknown user {raw!r} in --data.predict_users; it is not in the data"
                )
            u = index[str(raw)]
            cases.append((u, data.sequences[u], 0))
        self.predict_names = [str(u) for u in wanted]
        return EvalCases(cases)

    def train_dataloader(self) -> Any:
        self.collate_fn = collate_train
        return self._loader(self.train_set, "train", shuffle=True)

    def _eval_loader(self, dataset: Any, stage: str) -> Any:
        self.collate_fn = collate_eval
        return self._loader(dataset, stage)  # eval_batch_size: AttnlabDataModule's

    def val_dataloader(self) -> Any:
        return self._eval_loader(self.val_set, "validation")

    def test_dataloader(self) -> Any:
        return self._eval_loader(self.test_set, "test")

    def predict_dataloader(self) -> Any:
        return self._eval_loader(self.predict_set, "predict")

    def oracle_scores(self, history: Tensor) -> Tensor | None:
        """The exact next-item distribution where it is known (synthetic data), else None."""
        return None if self.generator is None else self.generator.oracle_scores(history)
