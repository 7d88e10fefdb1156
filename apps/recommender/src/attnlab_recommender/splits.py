"""Train/validation/test splits of per-user item sequences.

Leave-one-out (last item test, second-to-last validation) or a global temporal split
(interactions after time quantiles). In both, training inputs hold only interactions before
validation, and validation inputs only interactions before the test targets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .readers import SequenceData

__all__ = ["Split", "leave_one_out", "temporal_split"]


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
