"""The ViT benchmark spec (``benchmarks/vit.py``): its published runs are the shipped
``fashion_mnist`` config as it is (its own wall-clock budget) and timm's plain ViT of equal
parameter count by the same command; its tiny runs go through the runner and tabulate from their
run folders."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `benchmarks` is a folder of the checkout, not an installed package
    sys.path.insert(0, str(ROOT))

from attnlab_vit import ViTModule  # noqa: E402

from benchmarks.runner import Run, RunResult, execute  # noqa: E402
from benchmarks.vit import BENCHMARK  # noqa: E402


def test_full_runs_are_the_shipped_config_as_it_is_and_timm_of_equal_size() -> None:
    runs = {r.name: r for r in BENCHMARK.planned("full")}
    assert set(runs) == {"ours", "timm", "ours_local"}
    assert all(r.needs_data and r.budget == {} for r in runs.values())  # the config's budget
    assert BENCHMARK.default_threads == 2 and BENCHMARK.default_jobs == 1
    assert runs["ours"].command() == "attnlab vit fit --config fashion_mnist --seed_everything=42"
    assert runs["timm"].command() == (
        "attnlab vit fit --config fashion_mnist --model.backbone=timm "
        "--model.model=vit_pico_patch4_28 --seed_everything=42"
    )
    assert runs["ours_local"].command() == (
        "attnlab vit fit --config fashion_mnist --model.attention.backend=local "
        "--model.attention.window=4 --seed_everything=42"
    )
    # "Equal parameter count": the config's model and timm's preset within 2 %.
    ours = ViTModule(model="cct_2_3x3_28").model
    timm = ViTModule(model="vit_pico_patch4_28", backbone="timm").model
    sizes = [sum(p.numel() for p in m.parameters()) for m in (ours, timm)]
    assert abs(sizes[0] / sizes[1] - 1) < 0.02, sizes


def test_tiny_runs_tabulate_from_their_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ATTNLAB_DATA_DIR", raising=False)  # tiny runs use built-in data
    results = execute(BENCHMARK, scale="tiny", threads=1, runs_root=tmp_path)
    assert [r.status for r in results] == ["ok", "ok"], [r.log_tail for r in results]
    payload, body = BENCHMARK.tabulate(results)
    models = payload["models"]
    size = sum(p.numel() for p in ViTModule(model="vit_digits_8").parameters())
    for result in results:
        run_dir = result.run_dir
        written = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        model = models[result.run.labels["model"]]
        assert model["test_top1"] == pytest.approx(written["test"]["test/top1"], abs=5e-5)
        assert model["train_samples_per_cpu_s"] == written["train"]["samples_per_cpu_s"] > 0
        assert model["stopped_by"] == written["stopped_by"] == "cpu_budget"
        assert model["steps"] == written["train"]["steps"] > 0
        # The trained model's parameters, as the manifest counts them (timm's: the same size).
        manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
        assert model["num_parameters"] == manifest["num_trainable_parameters"] == size
        # One curve point per metrics.csv row, in step order, the last at the last step.
        rows = (run_dir / "metrics.csv").read_text(encoding="utf-8").strip().splitlines()
        curve = model["curve"]
        assert len(curve) == len(rows) - 1 >= 1
        assert curve[-1]["step"] == written["train"]["steps"]
        assert 0 < curve[0]["cpu_s"] <= curve[-1]["cpu_s"] <= written["train"]["cpu_s"]
        assert f"`{result.run.command()}`" in body
    assert "--model.backbone=timm" in results[1].run.command()
    assert payload["ratios"]["num_parameters"] == 1.0
    assert payload["ratios"]["test_top1"] == pytest.approx(
        models["ours"]["test_top1"] / models["timm"]["test_top1"], abs=1e-3
    )
    line = BENCHMARK.headline(payload)
    assert line.startswith("CCT (fashion_mnist config) test top-1 ") and "timm plain ViT" in line


def _result(name: str, top1: float, speed: float, manifest: dict[str, Any]) -> RunResult:
    run = Run(name=name, app="vit", configs=("fashion_mnist",), labels={"model": name, "data": "d"})
    metrics: dict[str, Any] = {
        "best": {"val/top1": 0.01},  # far from the test value, so a wrong field shows
        "test": {"test/top1": top1},
        "last": {"val/top1": 0.02},
        "train": {
            "samples_per_cpu_s": speed,
            "samples": 1000,
            "cpu_s": 10.0,
            "wall_s": 20.0,
            "steps": 8,
            "epochs": 2.0,
        },
        "stopped_by": "cpu_budget",
    }
    epochs = [
        {"epoch": 0.0, "step": 4.0, "val/top1": 0.5, "train_cpu_s": 5.0, "train_wall_s": 9.0},
        {"epoch": 1.0, "step": 8.0, "val/top1": 0.6, "train_cpu_s": 10.0, "train_wall_s": 20.0},
    ]
    return RunResult(run, Path(name), metrics, manifest, epochs, 0, "")


def test_tabulate_reads_the_test_metric_the_train_block_and_the_manifest() -> None:
    results = [
        _result(
            "ours", 0.76, 190.0, {"num_parameters": 1_610_260, "num_trainable_parameters": 805_130}
        ),
        _result("timm", 0.80, 200.0, {"num_parameters": 805_130}),  # an older manifest
    ]
    payload, body = BENCHMARK.tabulate(results)
    ours, timm = payload["models"]["ours"], payload["models"]["timm"]
    assert (ours["test_top1"], timm["test_top1"]) == (0.76, 0.80)
    assert ours["train_samples_per_s"] == 50.0  # samples / train wall seconds
    # Trainable parameters (an EMA copy doubles the total), else the total.
    assert (ours["num_parameters"], timm["num_parameters"]) == (805_130, 805_130)
    assert [p["wall_s"] for p in timm["curve"]] == [9.0, 20.0]
    assert [p["cpu_s"] for p in ours["curve"]] == [5.0, 10.0]
    assert [p["val_top1"] for p in ours["curve"]] == [0.5, 0.6]
    assert payload["ratios"]["test_top1"] == pytest.approx(0.95)
    assert payload["ratios"]["train_samples_per_cpu_s"] == pytest.approx(0.95)
    assert payload["ratios"]["num_parameters"] == 1.0
    assert "805,130" in body
    assert payload["goal"]["met"] is False and payload["goal"]["margin"] == pytest.approx(-0.04)
    assert "NOT met" in body
    assert BENCHMARK.headline(payload) == (
        "CCT (fashion_mnist config) test top-1 76.0 %, 190 train img/CPU-s; "
        "timm plain ViT, same parameters and budget: test top-1 80.0 %, 200 train img/CPU-s "
        "(goal: NOT met)"
    )


def test_the_goal_needs_both_the_accuracy_and_the_margin() -> None:
    def goal(ours: float, timm: float) -> bool | None:
        manifest = {"num_parameters": 10}
        results = [_result("ours", ours, 1.0, manifest), _result("timm", timm, 1.0, manifest)]
        return BENCHMARK.tabulate(results)[0]["goal"]["met"]

    assert goal(0.915, 0.86) is True
    assert goal(0.905, 0.80) is False  # under 91 %
    assert goal(0.92, 0.88) is False  # 4 points above timm
