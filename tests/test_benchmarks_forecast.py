"""The forecast benchmark's budget setting (the benchmark itself needs ETTh1 and an hour)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `benchmarks` is a folder of the checkout, not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks.forecast import DEFAULT_BUDGETS_S, _budgets  # noqa: E402

MODELS = ["patchtst", "itransformer", "dlinear", "dlinear_revin"]


def test_budget_defaults_one_number_and_per_model() -> None:
    assert _budgets("", MODELS) == {m: DEFAULT_BUDGETS_S[m] for m in MODELS}
    assert _budgets("60", MODELS) == dict.fromkeys(MODELS, 60.0)
    per_model = _budgets("patchtst=480, itransformer=240", MODELS)
    assert per_model == {**DEFAULT_BUDGETS_S, "patchtst": 480.0, "itransformer": 240.0}
    # a model named but not selected by ATTNLAB_BENCH_MODELS is not added
    assert _budgets("patchtst=480", ["dlinear"]) == {"dlinear": DEFAULT_BUDGETS_S["dlinear"]}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("patchtsx=3", "unknown model 'patchtsx'"),
        ("ten", "'ten' is not a positive number of seconds"),
        ("patchtst=", "'' is not a positive number of seconds"),
        ("dlinear=-5", "'-5' is not a positive number of seconds"),
        ("nan", "'nan' is not a positive number of seconds"),
    ],
)
def test_bad_budget_is_one_clear_error(spec: str, message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        _budgets(spec, MODELS)


def test_learning_rate_candidates_keep_the_lowest_validation_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A recipe with a list of learning rates trains once per rate and keeps the run with the
    lowest validation MSE (never the lowest test MSE); its times are the sums over the runs."""
    import benchmarks.forecast as bench

    val = {1e-3: 0.90, 5e-3: 0.80, 1e-2: None}  # None: a run stopped inside its first epoch
    test = {1e-3: 0.40, 5e-3: 0.45, 1e-2: 0.30}
    calls: list[float] = []

    def fake(name: str, horizon: int, root: Path, budget: float, lr: float, seed: int) -> dict:
        calls.append(lr)
        times = {"train_cpu_seconds": 10.0, "train_wall_seconds": 11.0, "total_seconds": 12.0}
        return {"model": name, "lr": lr, "best_val_mse": val[lr], "test_mse": test[lr], **times}

    monkeypatch.setattr(bench, "_run_lr", fake)
    monkeypatch.setitem(bench.RECIPES, "dlinear_revin", {**bench.RECIPES["dlinear_revin"]})
    bench.RECIPES["dlinear_revin"]["lr"] = [1e-3, 5e-3, 1e-2]
    result = bench.run_one("dlinear_revin", 96, Path("."), 5.0)
    assert calls == [1e-3, 5e-3, 1e-2]
    assert result["lr"] == 5e-3 and result["test_mse"] == 0.45
    assert result["train_cpu_seconds"] == 30.0 and result["total_seconds"] == 36.0
    assert [c["lr"] for c in result["lr_candidates"]] == [1e-3, 5e-3, 1e-2]
    # a single learning rate runs once, without candidates
    bench.RECIPES["dlinear_revin"]["lr"] = 1e-3
    assert "lr_candidates" not in bench.run_one("dlinear_revin", 96, Path("."), 5.0)
