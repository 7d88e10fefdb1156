import itertools
import json
from pathlib import Path

import pytest
import torch
from attnlab_recommender.data import (
    RecDataModule,
    build_sequences,
    leave_one_out,
    read_history_file,
    read_interaction_file,
    read_sequence_file,
    sequences_to_data,
    temporal_split,
)


def test_sequence_file_and_id_remapping_round_trip(seq_file: Path) -> None:
    users, raw = read_sequence_file(seq_file)
    data = sequences_to_data(users, raw)
    assert data.item_ids == ["10", "11", "12", "13", "14", "15", "16"]
    assert min(min(s) for s in data.sequences) == 1  # 0 stays the padding id
    back = [[data.item_ids[i - 1] for i in s] for s in data.sequences]
    assert back == raw


def test_interactions_chronological_with_stable_ties(csv_file: Path) -> None:
    data = build_sequences(read_interaction_file(csv_file))
    u1 = data.sequences[data.user_ids.index("u1")]
    # c and d share timestamp 30: file order (c first) decides
    assert [data.item_ids[i - 1] for i in u1] == ["a", "b", "c", "d"]
    assert data.timestamps is not None and data.timestamps[0] == [10, 20, 30, 30]


def test_rating_threshold_and_k_core(csv_file: Path) -> None:
    rows = read_interaction_file(csv_file)
    data = build_sequences(rows, min_rating=4)
    assert sum(map(len, data.sequences)) == 8
    core = build_sequences(rows, min_rating=4, k_core=2)
    # c and d keep one rating >= 4 each and go; a and b remain with all three users
    assert core.item_ids == ["a", "b"] and core.user_ids == ["u1", "u2", "u3"]
    assert all(len(s) == 2 for s in core.sequences)
    with pytest.raises(ValueError, match="no interactions left"):
        build_sequences(rows, min_rating=4, k_core=3)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("1 10 11\n2 10 x3\n", r"seqs.txt:2: column 3 is 'x3', not an integer"),
        ("1 10 11\n2\n", r"seqs.txt:2: user 2 has no items"),
        ("1 10 11\n1 12 13\n", r"seqs.txt:2: user 1 already appeared on line 1"),
        ("\n\n", r"holds no sequences"),
    ],
)
def test_malformed_sequence_files(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "seqs.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        read_sequence_file(path)


def test_malformed_interaction_rows(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("user,item,timestamp\nu1,a,1\nu1,b,yesterday\n")
    with pytest.raises(ValueError, match=r"bad.csv:3: column 3 \(timestamp\) is 'yesterday'"):
        read_interaction_file(path)
    path.write_text("u1,a\n")
    with pytest.raises(ValueError, match=r"bad.csv:1: 2 column"):
        read_interaction_file(path)


def test_user_with_one_interaction_is_an_error_not_a_silent_drop(tmp_path: Path) -> None:
    path = tmp_path / "seqs.txt"
    path.write_text("1 10 11 12\n2 10\n")
    data = sequences_to_data(*read_sequence_file(path))
    with pytest.raises(ValueError, match="user 2 has 1 interaction"):
        leave_one_out(data)
    split = leave_one_out(data, drop_short_users=True)
    assert split.info["dropped_short_users"] == 1 and len(split.test) == 1


def test_leave_one_out_never_shows_test_items(seq_file: Path) -> None:
    data = sequences_to_data(*read_sequence_file(seq_file))
    split = leave_one_out(data)
    for (u, val_hist, val_target), (u2, test_hist, test_target), train in zip(
        split.val, split.test, split.train
    ):
        seq = data.sequences[u]
        assert u == u2 and test_target == seq[-1] and val_target == seq[-2]
        # positions, not values: the test interaction is the last one and appears in no input
        assert len(train) == len(seq) - 2 and train == seq[:-2]
        assert val_hist == seq[:-2] and test_hist == seq[:-1]


def test_temporal_split_has_no_leak(tmp_path: Path) -> None:
    rows = ["user,item,timestamp"]
    for u in range(30):
        for t in range(10):
            rows.append(f"u{u},i{(u + t) % 17},{t * 100 + u}")
    path = tmp_path / "inter.csv"
    path.write_text("\n".join(rows) + "\n")
    data = build_sequences(read_interaction_file(path))
    split = temporal_split(data, 0.2, 0.2)
    t_val, t_test = split.info["t_val"], split.info["t_test"]
    times = {u: ts for u, ts in enumerate(data.timestamps or [])}
    for seq in split.train:  # training inputs: all before the validation cut
        u = next(i for i, s in enumerate(data.sequences) if s[: len(seq)] == seq)
        assert max(times[u][: len(seq)]) < t_val
    for u, hist, _ in split.val:
        assert max(times[u][: len(hist)]) < t_val
        assert times[u][len(hist)] >= t_val
    for u, hist, _ in split.test:
        assert max(times[u][: len(hist)]) < t_test <= times[u][len(hist)]
    with pytest.raises(ValueError, match="needs timestamps"):
        temporal_split(sequences_to_data(["1"], [["1", "2", "3"]]))


def test_history_file_json_and_csv(tmp_path: Path) -> None:
    index = {"10": 1, "11": 2, "12": 3}
    j = tmp_path / "h.json"
    j.write_text(json.dumps({"alice": ["10", "12"], "bob": [11]}))
    assert read_history_file(j, index) == (["alice", "bob"], [[1, 3], [2]])
    c = tmp_path / "h.csv"
    c.write_text("history,item\nx,12\nx,10\ny,11\n")
    assert read_history_file(c, index) == (["x", "y"], [[3, 1], [2]])


def test_history_file_errors(tmp_path: Path) -> None:
    index = {"10": 1}
    p = tmp_path / "h.json"
    p.write_text(json.dumps({"a": ["10", "99"]}))
    with pytest.raises(ValueError, match=r"h.json: history 'a' position 1: unknown item id '99'"):
        read_history_file(p, index)
    p.write_text(json.dumps({"a": []}))
    with pytest.raises(ValueError, match="history 'a' is empty"):
        read_history_file(p, index)
    c = tmp_path / "h.csv"
    c.write_text("x,10\nx,77\n")
    with pytest.raises(ValueError, match=r"h.csv: line 2: unknown item id '77'"):
        read_history_file(c, index)


def test_datamodule_batches(seq_file: Path) -> None:
    dm = RecDataModule(dataset="sequences", path=str(seq_file), batch_size=2)
    dm.setup("fit")
    seq = next(iter(dm.train_dataloader()))["seq"]
    assert seq.dtype == torch.long and seq.shape[0] == 2
    batch = next(iter(dm.val_dataloader()))
    assert set(batch) == {"user", "history", "target"} and batch["history"].shape[0] == 5
    with pytest.raises(ValueError, match="unknown dataset"):
        RecDataModule(dataset="netflix")


def test_bucketed_batches_cover_every_user_once_and_pad_less(tmp_path: Path) -> None:
    # 400 users: most with 3-5 items, every tenth with 60; batches of 16
    lines = [
        f"{u} " + " ".join(str(1 + (u + k) % 90) for k in range(60 if u % 10 == 0 else 3 + u % 3))
        for u in range(400)
    ]
    path = tmp_path / "skewed.txt"
    path.write_text("\n".join(lines) + "\n")

    def epoch(bucket: bool) -> list[torch.Tensor]:
        dm = RecDataModule(
            dataset="sequences", path=str(path), batch_size=16, bucket_by_length=bucket
        )
        dm.setup("fit")
        return [b["seq"] for b in dm.train_dataloader()]

    plain, bucketed = epoch(False), epoch(True)
    rows = lambda batches: sorted(tuple(r[r > 0].tolist()) for b in batches for r in b)  # noqa: E731
    assert rows(bucketed) == rows(plain)  # the same training sequences, each once
    cells = lambda batches: sum(b.numel() for b in batches)  # noqa: E731
    assert cells(bucketed) < 0.35 * cells(plain)


def test_validation_serves_longest_histories_first(seq_file: Path) -> None:
    dm = RecDataModule(dataset="sequences", path=str(seq_file), batch_size=2, eval_batch_size=2)
    dm.setup("fit")
    widths = [int((h > 0).sum(1).max()) for h in (b["history"] for b in dm.val_dataloader())]
    assert widths == sorted(widths, reverse=True) and widths[0] > widths[-1]
    served = sorted(int(u) for b in dm.val_dataloader() for u in b["user"])
    assert served == sorted(u for u, _, _ in dm.splits.val)  # every case, once


def test_movielens_without_data_explains_missing_checksum(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATTNLAB_DATA_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="no sha256 could be verified"):
        RecDataModule(dataset="ml-1m").load()


@pytest.mark.data
def test_real_movielens_100k(real_data) -> None:
    folder = real_data("movielens-100k")
    dm = RecDataModule(dataset="ml-100k", root=str(folder))
    data = dm.load()
    assert len(data.sequences) == 943 and data.num_items == 1682
    assert sum(map(len, data.sequences)) == 100_000
    assert all(a <= b for ts in data.timestamps or [] for a, b in itertools.pairwise(ts))


@pytest.mark.data
def test_real_beauty(real_data) -> None:
    folder = real_data("amazon-yelp-s3rec")
    data = RecDataModule(dataset="beauty", root=str(folder)).load()
    assert (len(data.sequences), data.num_items) == (22_363, 12_101)
    assert sum(map(len, data.sequences)) == 198_502
