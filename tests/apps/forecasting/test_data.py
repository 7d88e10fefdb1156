"""The data protocol: window counts, train-only scaling, splits, and clear errors on bad CSVs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from attnlab_forecasting.data import (
    ForecastData,
    Scaler,
    WindowDataset,
    calendar_features,
    future_timestamps,
    generate_series,
    read_series_csv,
    split_borders,
)
from attnlab_forecasting.registry import DATASETS, fetch_dataset

from attnlab.datasets import DownloadError


def _hours(n: int) -> list[str]:
    start = np.datetime64("2021-03-01T00:00:00")
    return [str(start + np.timedelta64(i, "h")).replace("T", " ") for i in range(n)]


# ------------------------------------------------------------------ windows and splits


@pytest.mark.parametrize(("n", "seq_len", "pred_len"), [(50, 10, 5), (31, 20, 11), (200, 96, 24)])
def test_every_window_is_scored(n: int, seq_len: int, pred_len: int) -> None:
    ds = WindowDataset(np.zeros((n, 2)), np.zeros((n, 4)), seq_len, pred_len, [0, 1])
    assert len(ds) == n - seq_len - pred_len + 1
    loader = torch.utils.data.DataLoader(ds, batch_size=7)  # an uneven last batch
    assert sum(len(b["x"]) for b in loader) == n - seq_len - pred_len + 1
    last = ds[len(ds) - 1]
    assert last["x"].shape == (seq_len, 2) and last["y"].shape == (pred_len, 2)
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_window_contents_follow_each_other() -> None:
    values = np.arange(40, dtype=float)[:, None]
    ds = WindowDataset(values, np.zeros((40, 4)), 8, 3, [0])
    item = ds[5]
    assert item["x"][:, 0].tolist() == list(range(5, 13))
    assert item["y"][:, 0].tolist() == [13, 14, 15]


def test_ett_split_matches_the_literature() -> None:
    borders = split_borders(17420, 336, "ett_hour")
    assert borders == [(0, 8640), (8640 - 336, 11520), (11520 - 336, 14400)]
    minute = split_borders(69680, 96, "ett_minute")
    assert minute[0] == (0, 4 * 8640) and minute[2][1] == 4 * 14400


def test_ratio_split_is_7_1_2_by_time() -> None:
    (tr, va, te) = split_borders(966, 36, "ratio")
    assert tr == (0, 676) and va == (676 - 36, 676 + 97) and te == (966 - 193 - 36, 966)


def test_datamodule_test_window_count(series_csv: Path) -> None:
    dm = ForecastData(csv=str(series_csv), seq_len=48, horizon=24, batch_size=16)
    dm.setup("fit")
    start, end = dm.borders[2]
    assert len(dm.test_set) == (end - start) - 48 - 24 + 1
    windows = sum(len(b["y"]) for b in dm.test_dataloader())
    assert windows == (end - start) - 48 - 24 + 1
    assert dm.test_dataloader().drop_last is False


def test_scaler_uses_training_rows_only(series_csv: Path, tmp_path: Path) -> None:
    dm = ForecastData(csv=str(series_csv), seq_len=48, horizon=24)
    dm.setup("fit")
    train_end = dm.borders[0][1]
    lines = series_csv.read_text().splitlines()
    # change one value in the test rows (and one in validation): the scaler must not move
    for row in (train_end + 50, len(lines) - 5):
        cells = lines[row].split(",")
        cells[1] = "12345.0"
        lines[row] = ",".join(cells)
    changed = tmp_path / "changed.csv"
    changed.write_text("\n".join(lines) + "\n")
    dm2 = ForecastData(csv=str(changed), seq_len=48, horizon=24)
    dm2.setup("fit")
    assert dm.scaler is not None and dm2.scaler is not None
    np.testing.assert_array_equal(dm.scaler.mean, dm2.scaler.mean)
    np.testing.assert_array_equal(dm.scaler.std, dm2.scaler.std)
    # and a change inside the training rows does move it (the check can fail)
    cells = lines[10].split(",")
    cells[1] = "12345.0"
    lines[10] = ",".join(cells)
    changed.write_text("\n".join(lines) + "\n")
    dm3 = ForecastData(csv=str(changed), seq_len=48, horizon=24)
    dm3.setup("fit")
    assert dm3.scaler is not None and dm3.scaler.mean[0] != dm.scaler.mean[0]


def test_scaler_round_trip() -> None:
    values = np.random.default_rng(0).normal(3, 2, size=(100, 3))
    scaler = Scaler.fit(values)
    z = scaler.transform(values)
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(scaler.inverse(z), values)


def test_tasks_select_channels(series_csv: Path) -> None:
    for task, n_in, n_out in (("M", 3, 3), ("S", 1, 1), ("MS", 3, 1)):
        dm = ForecastData(csv=str(series_csv), seq_len=48, horizon=24, task=task, target="OT")
        dm.setup("fit")
        item = dm.train_set[0]
        assert item["x"].shape == (48, n_in) and item["y"].shape == (24, n_out)
        assert dm.out_columns == (["a", "b", "OT"] if task == "M" else ["OT"])
    ms = ForecastData(csv=str(series_csv), seq_len=48, horizon=24, task="MS", target="OT")
    ms.setup("fit")
    item = ms.train_set[3]
    torch.testing.assert_close(item["y"][:, 0], ms.train_set[3 + 48]["x"][:24, 2])


def test_generated_series_has_the_stated_noise() -> None:
    s = generate_series(20000, 3, noise_std=0.5, seed=3)
    clean = generate_series(20000, 3, noise_std=0.0, seed=3)
    residual = s.values - clean.values
    assert abs(residual.var() - 0.25) < 0.01
    assert s.noise_var is not None and np.allclose(s.noise_var, 0.25)


def test_noise_floor_is_reported_on_the_normalized_scale() -> None:
    dm = ForecastData(n_steps=3000, channels=2, noise_std=0.3, seq_len=96, horizon=24)
    dm.setup("fit")
    assert dm.scaler is not None and dm.noise_floor is not None
    assert dm.noise_floor == pytest.approx(float(np.mean(0.09 / dm.scaler.std**2)))


def test_calendar_features_and_future_timestamps() -> None:
    ts = np.array(["2024-01-01T00:00:00", "2024-01-01T01:00:00"], dtype="datetime64[s]")
    feats = calendar_features(ts)
    assert feats.shape == (2, 4)
    assert feats[0, 0] == -0.5 and feats[0, 1] == -0.5  # midnight, a Monday
    nxt = future_timestamps(ts, 3)
    assert [str(t) for t in nxt] == [
        "2024-01-01T02:00:00",
        "2024-01-01T03:00:00",
        "2024-01-01T04:00:00",
    ]


# ------------------------------------------------------------------ bad input


def test_no_date_column(write_csv: Callable[..., Path]) -> None:
    path = write_csv([["time", "a"], ["2021-01-01", 1]])
    with pytest.raises(ValueError, match=r"series\.csv: no date column 'date'"):
        read_series_csv(path)


def test_non_numeric_cell_names_line_and_column(write_csv: Callable[..., Path]) -> None:
    h = _hours(3)
    path = write_csv([["date", "a", "b"], [h[0], 1, 2], [h[1], 1, "abc"], [h[2], 1, 2]])
    with pytest.raises(ValueError, match=r"line 3, column 'b': 'abc' is not a number"):
        read_series_csv(path)


def test_nan_gap_is_an_error_unless_filled(write_csv: Callable[..., Path]) -> None:
    h = _hours(4)
    path = write_csv([["date", "a"], [h[0], 1.0], [h[1], ""], [h[2], "NaN"], [h[3], 4.0]])
    with pytest.raises(ValueError, match=r"line 3, column 'a' is empty or NaN \(2 missing"):
        read_series_csv(path)
    assert read_series_csv(path, fill="ffill").values[:, 0].tolist() == [1, 1, 1, 4]
    assert read_series_csv(path, fill="linear").values[:, 0].tolist() == [1, 2, 3, 4]
    assert read_series_csv(path, fill="zero").values[:, 0].tolist() == [1, 0, 0, 4]


def test_series_shorter_than_window(write_csv: Callable[..., Path]) -> None:
    h = _hours(30)
    path = write_csv([["date", "a"], *([t, i] for i, t in enumerate(h))])
    dm = ForecastData(csv=str(path), seq_len=24, horizon=12)
    with pytest.raises(
        ValueError,
        match=r"series\.csv: the series has 30 rows, fewer than seq_len \+ horizon = 36",
    ):
        dm.setup("fit")


@pytest.mark.parametrize(("order", "kind"), [([0, 2, 1], "out-of-order"), ([0, 1, 1], "duplicate")])
def test_unsorted_or_duplicate_timestamps(
    write_csv: Callable[..., Path], order: list[int], kind: str
) -> None:
    h = _hours(3)
    path = write_csv([["date", "a"], *([h[i], 1.0] for i in order)])
    with pytest.raises(ValueError, match=rf"line 4 has a {kind} timestamp"):
        read_series_csv(path)


def test_bad_date_and_ragged_rows(write_csv: Callable[..., Path]) -> None:
    path = write_csv([["date", "a"], ["yesterday", 1.0]])
    with pytest.raises(ValueError, match=r"line 2, column 'date': 'yesterday' is not a date"):
        read_series_csv(path)
    path = write_csv([["date", "a"], ["2021-01-01", 1.0, 3]], name="ragged.csv")
    with pytest.raises(ValueError, match=r"ragged\.csv: line 2 has 3 cells"):
        read_series_csv(path)


def test_missing_file_and_unknown_target(tmp_path: Path, series_csv: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.csv does not exist"):
        read_series_csv(tmp_path / "nope.csv")
    dm = ForecastData(csv=str(series_csv), task="S", target="missing", seq_len=48, horizon=24)
    with pytest.raises(ValueError, match=r"target column 'missing' is not among"):
        dm.setup("fit")


def test_real_dataset_missing_names_the_fix(tmp_path: Path) -> None:
    dm = ForecastData(dataset="etth1", root=str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"ETTh1\.csv not found.*--data\.root"):
        dm.setup("fit")


# ------------------------------------------------------------------ registry


def test_registry_covers_the_literature_datasets() -> None:
    assert set(DATASETS) == {
        "etth1",
        "etth2",
        "ettm1",
        "ettm2",
        "weather",
        "electricity",
        "exchange",
        "ili",
        "traffic",
    }
    for info in DATASETS.values():
        assert info.url.startswith("https://")
        assert info.sha256 is None or len(info.sha256) == 64


def test_unverified_dataset_refuses_to_download(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"'ettm1' has no verified sha256"):
        fetch_dataset("ettm1", tmp_path)


def test_registry_checksums_match_the_manifest() -> None:
    from attnlab.datasets import load_manifest

    manifest = load_manifest()
    for info in DATASETS.values():
        if info.manifest:
            assert manifest[info.manifest].files[0].sha256 == info.sha256


# ------------------------------------------------------------------ real data


@pytest.mark.data
def test_etth1_protocol(etth1_root: Path) -> None:
    dm = ForecastData(dataset="etth1", root=str(etth1_root), seq_len=336, horizon=96)
    dm.setup("fit")
    assert len(dm.test_set) == 2785  # docs/anchors.md: all 2,785 test windows at L=336, H=96
    assert len(dm.test_set) == (14400 - (11520 - 336)) - 336 - 96 + 1
    assert dm.scaler is not None
    values = read_series_csv(etth1_root / "ETTh1.csv").values
    np.testing.assert_allclose(dm.scaler.mean, values[:8640].mean(0))


@pytest.mark.data
def test_ili_protocol(ili_root: Path) -> None:
    dm = ForecastData(dataset="ili", root=str(ili_root), seq_len=36, horizon=24)
    dm.setup("fit")
    assert dm.borders[2] == (966 - 193 - 36, 966)
    assert len(dm.test_set) == 193 + 36 - 36 - 24 + 1
