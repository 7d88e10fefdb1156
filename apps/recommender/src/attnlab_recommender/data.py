"""Interaction data: the evaluation datasets and the DataModule.

The DataModule reads a dataset with ``readers.py`` (MovieLens, interaction CSV/TSV, S3-Rec
sequences, `predict` histories; filtering and id remapping), cuts it with ``splits.py``
(leave-one-out or temporal) and serves training sequences and full-ranking evaluation cases.
The public names of both modules are re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor
from torch.utils.data import Dataset

from attnlab.data import AttnlabDataModule, LengthBucketSampler
from attnlab.datasets import DownloadError, data_root, fetch

from .readers import (
    DEFAULT_MAX_INTERACTIONS,
    LAYOUTS,
    Rows,
    SequenceData,
    build_sequences,
    detect_layout,
    read_history_file,
    read_interaction_file,
    read_movielens,
    read_pair_file,
    read_sequence_file,
    sequences_to_data,
)
from .splits import Split, leave_one_out, temporal_split
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
    "read_pair_file",
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
# --data.dataset values that read the file at --data.path
FILE_LAYOUTS = ("auto", *LAYOUTS)
# GroupLens publishes MD5 sums only (files.grouplens.org/.../ml-*.zip.md5); no sha256 could be
# verified, so these zips are never downloaded unverified: the user fetches and checks them.
MOVIELENS_MD5 = {
    "ml-100k": "0e33842e24a9c977be4e0107933c0723",
    "ml-1m": "c4d9eecfca2ab87c1945afe126590906",
    "ml-20m": "cd245b17a1ae2cc31bb14903e1204af3",
}


@rank_zero_only
def _log(message: str) -> None:
    print(f"recsys: {message}", flush=True)


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


# ------------------------------------------------------------------------------ DataModule


class RecDataModule(AttnlabDataModule):
    """Item sequences -> training windows and full-ranking evaluation cases.

    Args:
        dataset: where the interactions come from (the last four read your file at
            --data.path):
            - synthetic = built-in taste-drift sessions (offline).
            - ml-100k, ml-1m, ml-20m = MovieLens folders under --data.root or $ATTNLAB_DATA_DIR.
            - beauty = S3-Rec's Beauty.txt under --data.root or $ATTNLAB_DATA_DIR.
            - pairs = `user item` a line in time order (SASRec).
            - interactions = `user item timestamp[ rating]` a line (commas, tabs, '::' or
              spaces; header optional).
            - sequences = `user item1 item2 ...` one user a line.
            - auto (also whenever --data.path is given with a named dataset, e.g. a config's)
              = one of these three, detected from the file's first lines and printed.
        path: your interaction file (see dataset).
        split: leave_one_out (last item tests, the one before validates) or temporal.
        min_rating: keep interactions rated at least this (interactions with a rating only).
        k_core: drop users and items with fewer interactions, repeatedly.
        predict_history: item histories for `predict` (JSON lists or `history,item` CSV).
        max_interactions: a file with more interactions is refused (the default takes
            MovieLens-20M; each costs about 400 bytes of memory while read).
        bucket_by_length: training batches of users with similar history lengths (a shuffled
            order, every user once an epoch) so batches are padded less: on Beauty a SASRec+
            step takes 125 ms instead of 200. The loss still weighs every position alike (it
            divides by the running mean of positions a batch, not the batch's own count).
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
        max_interactions: int = DEFAULT_MAX_INTERACTIONS,
        batch_size: int = 128,
        eval_batch_size: int = 256,
        num_workers: int = 0,
        seed: int = 0,
        bucket_by_length: bool = False,
    ):
        super().__init__(
            batch_size=batch_size,
            num_workers=num_workers,
            seed=seed,
            eval_batch_size=eval_batch_size,
        )
        known = ("synthetic", *FILE_LAYOUTS, *DATASETS)
        if dataset not in known:
            raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(known)}")
        if split not in ("leave_one_out", "temporal"):
            raise ValueError(f"unknown split {split!r}; choose leave_one_out or temporal")
        if isinstance(max_interactions, bool) or max_interactions < 1:
            raise ValueError(
                f"--data.max_interactions must be a positive integer, got {max_interactions!r}"
            )
        if path is not None and dataset not in FILE_LAYOUTS:
            # A file given with a config that names a dataset (`--config amazon --data.path
            # FILE`): read the file rather than ignore it; its layout is detected and printed.
            if dataset != "synthetic":
                _log(f"--data.path {path} given: reading it instead of the {dataset} dataset")
            dataset = "auto"
        self.dataset = dataset
        self.layout = dataset  # which reader; "auto" is settled when the file is read
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
        self.max_interactions = max_interactions
        self.bucket_by_length = bucket_by_length
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
        if self.dataset in FILE_LAYOUTS:
            if not self.path:
                raise ValueError(f"dataset {self.dataset!r} needs --data.path pointing at the file")
            file = Path(self.path)
            if self.layout == "auto":
                self.layout, seen = detect_layout(file)
                _log(f"{file.name}: {seen}: read as {self.layout} ({LAYOUTS[self.layout]})")
        else:
            folder = self._folder()
            file = folder / DATASETS[self.dataset][1]
            if not file.is_file() and self.dataset != "beauty":
                file = folder
        cap = self.max_interactions
        if self.layout in ("sequences", "beauty"):
            users, raw = read_sequence_file(file, cap)
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
        elif self.layout == "interactions":
            rows = read_interaction_file(file, max_interactions=cap)
            data = build_sequences(rows, self.min_rating, self.k_core)
        elif self.layout == "pairs":
            if self.min_rating is not None:
                raise ValueError("the pairs layout has no ratings; drop --data.min_rating")
            data = build_sequences(read_pair_file(file, cap), None, self.k_core)
        else:
            rows = read_movielens(file if file.is_dir() else file.parent, cap)
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
        # Longest histories first: each validation batch is padded only to its own width (the
        # metrics are means over users, so the order changes nothing else), which halves the
        # per-epoch validation on short-history data; the figures' first batch stays full-width.
        self.val_set = EvalCases(sorted(self.splits.val, key=lambda case: -len(case[1])))
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
        if not self.bucket_by_length:
            return self._loader(self.train_set, "train", shuffle=True)
        assert isinstance(self.train_set, TrainSequences)  # set in setup()
        lengths = [len(s) for s in self.train_set.seqs]
        order = LengthBucketSampler(lengths, self.batch_size, self._shuffle_generator())
        return self._loader(self.train_set, "train", sampler=order)

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
