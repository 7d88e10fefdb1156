"""The audio benchmark spec (``benchmarks/audio.py``): its published runs are the shipped FSDD
configs at the same budget, and its tiny runs go through the runner and tabulate from their run
folders."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `benchmarks` is a folder of the checkout, not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks.audio import BENCHMARK, BUDGET_CPU_S, LOCAL_WINDOW  # noqa: E402
from benchmarks.runner import Run, RunResult, execute  # noqa: E402


def test_full_runs_are_the_shipped_configs_at_one_budget() -> None:
    runs = {r.name: r for r in BENCHMARK.planned("full")}
    assert set(runs) == {"fsdd-ast", "fsdd-cnn", "fsdd-ast-local"}
    assert all(r.needs_data and r.budget == {"cpu_s": BUDGET_CPU_S} for r in runs.values())
    assert runs["fsdd-ast"].configs == ("fsdd",) and runs["fsdd-cnn"].configs == ("fsdd_cnn",)
    local = runs["fsdd-ast-local"].command()
    assert local.startswith("attnlab audio fit --config fsdd ")
    assert f"--model.attention.backend=local --model.attention.window={LOCAL_WINDOW}" in local
    assert "--budget.cpu_s=300" in runs["fsdd-ast"].command()


def test_tiny_runs_tabulate_from_their_folders(tmp_path: Path) -> None:
    results = execute(BENCHMARK, scale="tiny", threads=1, runs_root=tmp_path)
    assert [r.status for r in results] == ["ok", "ok"], [r.log_tail for r in results]
    payload, body = BENCHMARK.tabulate(results)
    rows = {row["model"]: row for row in payload["rows"]}
    for result in results:
        written = json.loads((result.run_dir / "metrics.json").read_text(encoding="utf-8"))
        row = rows[result.run.labels["model"]]
        assert row["test_acc"] == written["test"]["test/acc"]
        assert row["val_acc"] == written["best"]["val/acc"]
        assert row["samples_per_cpu_s"] == written["train"]["samples_per_cpu_s"] > 0
        assert row["stopped_by"] == written["stopped_by"] == "cpu_budget"
        assert f"`{result.run.command()}`" in body
    assert payload["goal"]["value"] == rows["ast"]["test_acc"]
    assert payload["local_goal"]["value"] is None  # no local run at this scale
    line = BENCHMARK.headline(payload)
    assert line.startswith("quick test accuracy: ast ") and "cnn" in line


def _result(name: str, attention: str | None, model: str, test: float, val: float) -> RunResult:
    run = Run(name=name, app="audio", configs=("fsdd",), labels={
        "dataset": "fsdd", "model": model, "attention": attention})  # fmt: skip
    metrics: dict[str, Any] = {
        "best": {"val/acc": val},
        "test": {"test/acc": test},
        "train": {"samples_per_cpu_s": 100.0, "cpu_s": 300.0, "steps": 10, "epochs": 1.0},
        "stopped_by": "cpu_budget",
    }
    return RunResult(run, Path(name), metrics, {}, [], 0, "")


@pytest.mark.parametrize("local_acc,met", [(0.965, True), (0.95, False)])
def test_local_gap_is_measured_against_the_sdpa_test_accuracy(local_acc: float, met: bool) -> None:
    """Test accuracies, not validation ones (those are set far apart here to tell them apart)."""
    results = [
        _result("fsdd-ast", "sdpa", "ast", test=0.98, val=0.5),
        _result("fsdd-cnn", None, "cnn", test=0.99, val=0.5),
        _result("fsdd-ast-local", "local (window 6)", "ast", test=local_acc, val=0.9),
    ]
    payload, _ = BENCHMARK.tabulate(results)
    assert payload["dataset"] == "FSDD" and payload["goal"]["met"] is True
    assert payload["local_goal"]["value"] == pytest.approx(100 * (0.98 - local_acc))
    assert payload["local_goal"]["met"] is met
    line = BENCHMARK.headline(payload)
    assert "ast 98.0 %" in line and "cnn 99.0 %" in line and f"{100 * local_acc:.1f} %" in line
