"""``benchmarks/forecast.py`` as a spec of runs: the published runs are the shipped configs at
every horizon, and the tiny runs go through the runner and tabulate from their run folders."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `benchmarks` is a folder of the checkout, not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks.forecast import (  # noqa: E402
    BENCHMARK,
    HORIZONS,
    ILI_HORIZONS,
    ILI_MODELS,
    REVIN_LRS,
    TARGETS,
    _goal,
)
from benchmarks.runner import execute  # noqa: E402


def test_full_runs_are_the_shipped_configs_at_every_horizon() -> None:
    runs = BENCHMARK.planned("full")
    etth1 = [r for r in runs if r.labels["data"] == "ETTh1"]
    ili = [r for r in runs if r.labels["data"] == "ILI"]
    assert len(etth1) == len(HORIZONS) * (5 + len(REVIN_LRS))
    assert len(ili) == len(ILI_HORIZONS) * (len(ILI_MODELS) - 1 + len(REVIN_LRS))
    assert all(r.needs_data and r.app == "forecast" for r in runs)
    by_name = {r.name: r for r in runs}
    # The attention model's row is exactly what a user types: the config and the horizon.
    patch = by_name["patchtst-h336"]
    assert patch.command() == (
        "attnlab forecast fit --config etth1 --data.horizon=336 --seed_everything=2021"
    )
    assert patch.budget == {}
    # ILI: the same config, only the data changed.
    assert by_name["ili-patchtst-h48"].command() == (
        "attnlab forecast fit --config etth1 --data.dataset=ili --data.seq_len=104 "
        "--data.horizon=48 --seed_everything=2021"
    )
    assert "--model.period=52" in by_name["ili-seasonal_naive-h24"].overrides  # weekly rows
    assert "--model.period=52" not in by_name["seasonal_naive-h96"].overrides
    assert by_name["itransformer-h96"].configs[0] == "etth1_itransformer"
    revin = [
        r for r in etth1 if r.labels["model"] == "dlinear_revin" and r.labels["horizon"] == 720
    ]
    lrs = sorted(a for r in revin for a in r.overrides if a.startswith("--model.lr="))
    assert lrs == ["--model.lr=0.001", "--model.lr=0.005"]
    assert all("--model.revin=true" in r.overrides for r in revin)
    naive = by_name["seasonal_naive-h96"]
    assert naive.budget == {} and "--model.model=seasonal_naive" in naive.overrides
    assert "attnlab forecast fit --config etth1_dlinear --config cpu" in naive.command()


def test_the_goal_needs_every_horizon_below_its_target() -> None:
    rows = [
        {"data": "ETTh1", "model": "patchtst", "horizon": h, "test_mse": t - 0.001}
        for h, t in TARGETS.items()
    ]
    assert _goal(rows)["all_met"]
    rows[2]["test_mse"] = TARGETS[336]  # level is not below
    goal = _goal(rows)
    assert not goal["all_met"] and goal["met"] == {
        "96": True,
        "192": True,
        "336": False,
        "720": True,
    }
    # A baseline below the targets does not meet the attention model's goal.
    baseline = [{**row, "model": "dlinear_revin", "test_mse": 0.1} for row in rows]
    assert not _goal(baseline)["all_met"]


def test_tiny_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATTNLAB_DATA_DIR", raising=False)
    results = execute(BENCHMARK, scale="tiny", threads=1, runs_root=tmp_path)
    assert [r.status for r in results] == ["ok"] * 3, [r.log_tail for r in results]
    payload, markdown = BENCHMARK.tabulate(results)
    json.dumps(payload)  # plain data
    rows = {row["model"]: row for row in payload["rows"]}
    assert list(rows) == ["patchtst", "dlinear", "last_value"]
    for model, r in zip(rows, results):
        row, test = rows[model], r.metrics["test"]
        # The numbers are the run folder's test metrics of the best checkpoint, not validation.
        assert row["test_mse"] == test["test/mse"] and row["test_mae"] == test["test/mae"]
        assert row["test_mse"] != r.metrics["best"]["val/mse"]
        assert row["test_windows"] == test["test/windows"] > 0
        assert (row["seq_len"], row["horizon"]) == (168, 96)
        assert row["command"] == r.run.command() and row["command"] in markdown
    assert rows["patchtst"]["budget_cpu_s"] == 3 and rows["patchtst"]["stopped_by"] == "cpu_budget"
    assert rows["patchtst"]["lr"] == 0.002 and rows["last_value"]["lr"] is None
    assert rows["patchtst"]["steps"] > 0
    # The last value of a noisy seasonal series is a poor forecast next to a trained model.
    assert rows["last_value"]["test_mse"] > rows["dlinear"]["test_mse"]
    best = payload["best_per_horizon"]["synthetic"]["96"]
    assert best["test_mse"] == min(row["test_mse"] for row in rows.values())
    assert best["model"] in BENCHMARK.headline(payload)
