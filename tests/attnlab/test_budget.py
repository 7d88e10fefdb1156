"""Budgets (``attnlab.budget``), the learning-rate schedule over a budget, and the ``train``
block every fit records: in process with a fake clock, and through the real command."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning.pytorch as pl
import pytest
import torch

import attnlab.budget as budget_module
from attnlab.budget import Budget, batch_samples
from attnlab.checkpoint import load_checkpoint
from attnlab.module import warmup_cosine


class FakeClock:
    """A clock that advances ``tick`` seconds each time it is read."""

    def __init__(self, tick: float):
        self.tick = tick
        self.now = 0.0

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


class Record(pl.Callback):
    """Steps at which validation ended during fit, and the LR at every batch end."""

    def __init__(self) -> None:
        self.val_steps: list[int] = []
        self.lrs: list[float] = []

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.val_steps.append(trainer.global_step)

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def _trainer(tmp_path: Path, callbacks: list[Any], **kwargs: Any) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(tmp_path),
        callbacks=callbacks,
        **kwargs,
    )


# ---------------------------------------------------------------------- in process
def test_budget_stops_mid_epoch_after_validation(
    toy: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With 1 fake CPU second per clock read, a 5.5 s budget ends at the 5th batch end (the
    first epoch has 8); validation still runs on those weights, and the schedule has reached
    its end."""
    monkeypatch.setattr(budget_module, "cpu_clock", FakeClock(1.0))
    budget, record = Budget(cpu_s=5.5), Record()
    module = toy.ToyModule(warmup_fraction=0.0)
    trainer = _trainer(tmp_path, [budget, record], max_epochs=-1)
    trainer.fit(module, datamodule=toy.ToyData())
    # the clock is read at the start and twice more before batch 1 ends: used 2, 3, 4, 5 s
    # after batches 1..4, 6 s after batch 5
    assert trainer.global_step == 5
    assert record.val_steps == [5], "validation runs when the budget stops the run mid-epoch"
    assert budget.stopped_by == "cpu_budget"
    summary = budget.summary()
    assert summary["steps"] == 5 and summary["samples"] == 5 * 32
    assert summary["epochs"] == pytest.approx(5 / 8)
    assert summary["samples_per_cpu_s"] == pytest.approx(160 / summary["cpu_s"], rel=1e-3)
    # The LR follows the budget (no step count bounds the run): falling at every step, the
    # last one set at 5 of 5.5 s, near the end of the cosine
    lrs = record.lrs
    assert all(b < a for a, b in itertools.pairwise(lrs)), lrs
    expected = module.hparams.lr * warmup_cosine(5 / 5.5 * 10_000, 10_000, 0, 0.01)
    assert lrs[-1] == pytest.approx(expected)


def test_both_limits_whichever_comes_first(
    toy: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(budget_module, "wall_clock", FakeClock(0.001))
    budget = Budget(wall_s=1000.0)
    trainer = _trainer(tmp_path, [budget], max_epochs=2)
    trainer.fit(toy.ToyModule(), datamodule=toy.ToyData())
    assert trainer.global_step == 16 and budget.stopped_by == "max_epochs"
    assert budget.summary()["epochs"] == 2.0

    monkeypatch.setattr(budget_module, "wall_clock", FakeClock(1.0))
    budget = Budget(wall_s=2.5, cpu_s=1e6)
    trainer = _trainer(tmp_path, [budget], max_epochs=2)
    trainer.fit(toy.ToyModule(), datamodule=toy.ToyData())
    assert trainer.global_step == 2 and budget.stopped_by == "wall_budget"

    trainer = _trainer(tmp_path, [budget := Budget()], max_steps=3)
    trainer.fit(toy.ToyModule(), datamodule=toy.ToyData())
    assert budget.stopped_by == "max_steps" and budget.summary()["steps"] == 3


def test_budget_state_continues_after_a_resume(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = SimpleNamespace(now=10.0)
    monkeypatch.setattr(budget_module, "cpu_clock", lambda: clock.now)
    first = Budget(cpu_s=100.0)
    first.on_train_start(SimpleNamespace(), SimpleNamespace())
    clock.now = 13.0
    state = first.state_dict()  # what goes into the checkpoint
    assert state["cpu_s"] == 3.0
    resumed = Budget(cpu_s=100.0)  # a new process
    resumed.load_state_dict(state)
    clock.now = 1.0
    assert resumed.used()[0] == 3.0
    module = SimpleNamespace()
    resumed.on_train_start(SimpleNamespace(), module)
    assert module.budget_fraction == pytest.approx(0.03)
    clock.now = 3.0
    assert resumed.used()[0] == 5.0  # 3 s before the resume, 2 s after


@pytest.mark.parametrize("value", [0, -1.0, float("inf"), float("nan")])
def test_budget_must_be_positive(value: float) -> None:
    with pytest.raises(ValueError, match=r"--budget\.cpu_s must be a positive number of seconds"):
        Budget(cpu_s=value)


def test_batch_samples_is_the_leading_dim_of_the_first_tensor() -> None:
    x = torch.zeros(7, 3)
    assert batch_samples((x, torch.zeros(2))) == 7
    assert batch_samples({"ids": [torch.zeros(5, 2)], "y": x}) == 5
    assert batch_samples(["a", "b"]) == 0


def test_lr_multiplier_over_steps_and_over_a_budget(toy: Any) -> None:
    module = toy.ToyModule(warmup_fraction=0.1)
    module._trainer = SimpleNamespace(estimated_stepping_batches=100)
    steps = module.lr_multiplier(0.1, 0.01)
    # no budget: exactly the step schedule
    assert [steps(s) for s in range(100)] == [warmup_cosine(s, 100, 10, 0.01) for s in range(100)]
    module.budget_fraction = 0.9  # 90% of the budget used at step 20: the budget leads
    assert steps(20) == warmup_cosine(90, 100, 10, 0.01)
    module.budget_fraction = 0.05  # the steps lead
    assert steps(50) == warmup_cosine(50, 100, 10, 0.01)

    module._trainer = SimpleNamespace(estimated_stepping_batches=math.inf)  # only the budget
    module.budget_fraction = None
    by_budget = module.lr_multiplier(0.1, 0.01)
    assert by_budget(0) < 0.01  # warming up
    module.budget_fraction = 0.1
    assert by_budget(7) == pytest.approx(1.0, abs=1e-3)
    module.budget_fraction = 1.0
    assert by_budget(123) == pytest.approx(0.01)


# ---------------------------------------------------------------------- through the command
def test_budget_from_a_config_ends_the_run_and_is_recorded(attnlab, tmp_path: Path) -> None:
    """A config's ``budget:`` block: the quick config's 3 epochs no longer bound the run, the
    budget does; manifest.json and metrics.json record it, and the best checkpoint is tested."""
    (tmp_path / "budget.yaml").write_text("budget:\n  cpu_s: 2.0\n")
    out = attnlab(
        "toy", "fit", "--config", "quick", "--config", "budget.yaml", "--print_config"
    ).stdout
    assert "budget:\n  cpu_s: 2.0\n  wall_s: null" in out
    attnlab("toy", "fit", "--config", "quick", "--config", "budget.yaml",
            "--data.n_train", "2048", "--figure_every", "100", "--run_dir", "r")  # fmt: skip
    run = tmp_path / "r"
    metrics = json.loads((run / "metrics.json").read_text())
    manifest = json.loads((run / "manifest.json").read_text())
    for record in (metrics, manifest):
        assert record["budget"] == {"cpu_s": 2.0, "wall_s": None}
        assert record["stopped_by"] == "cpu_budget"
        train = record["train"]
        assert set(train) == {"cpu_s", "wall_s", "steps", "samples", "epochs", "samples_per_cpu_s"}
        assert 2.0 <= train["cpu_s"] < 10.0 and train["steps"] > 0
        assert train["samples"] <= train["steps"] * 32
    assert (run / "checkpoints" / "best.ckpt").is_file() and "test/acc" in metrics["test"]


def test_fit_without_budget_records_the_training(trained_run: Path) -> None:
    metrics = json.loads((trained_run / "metrics.json").read_text())
    manifest = json.loads((trained_run / "manifest.json").read_text())
    for record in (metrics, manifest):
        assert record["budget"] == {"cpu_s": None, "wall_s": None}
        assert record["stopped_by"] == "max_epochs"
        train = record["train"]
        assert train["steps"] == 16 and train["samples"] == 512 and train["epochs"] == 2.0
        assert train["cpu_s"] > 0 and train["samples_per_cpu_s"] > 0


def test_explicit_max_epochs_bounds_a_budgeted_run_and_resume_continues_it(
    attnlab, tmp_path: Path
) -> None:
    args = ("toy", "fit", "--config", "quick", "--budget.wall_s", "600", "--run_dir", "r")
    attnlab(*args, "--trainer.max_epochs", "1")
    run = tmp_path / "r"
    first = json.loads((run / "metrics.json").read_text())
    assert first["stopped_by"] == "max_epochs" and first["train"]["steps"] == 8
    state = load_checkpoint(run / "checkpoints" / "last.ckpt")["callbacks"]
    (used,) = [v for k, v in state.items() if k.startswith("Budget")]
    assert used["wall_s"] > 0 and used["samples"] == 256

    attnlab(*args, "--trainer.max_epochs=2", "--ckpt_path", "last")
    second = json.loads((run / "metrics.json").read_text())
    assert second["stopped_by"] == "max_epochs"
    assert second["train"]["steps"] == 16 and second["train"]["samples"] == 512
    assert second["train"]["wall_s"] > used["wall_s"]


def test_bad_budget_is_one_error_line(attnlab, tmp_path: Path) -> None:
    for value in ("0", "-5"):
        proc = attnlab("toy", "fit", "--config", "quick", "--budget.wall_s", value,
                       "--run_dir", "r", check=False)  # fmt: skip
        assert proc.returncode != 0
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert errors == [
            f"error: --budget.wall_s must be a positive number of seconds, got {int(value)}"
        ], proc.stderr
        assert "Traceback" not in proc.stderr and not (tmp_path / "r").exists()


def test_nonfinite_loss_is_recorded_as_the_reason(attnlab, tmp_path: Path) -> None:
    proc = attnlab("toy", "fit", "--config", "quick", "--model.nan_at_step", "3",
                   "--run_dir", "r", check=False)  # fmt: skip
    assert proc.returncode != 0
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["stopped_by"] == "nonfinite_loss"
    assert manifest["train"]["steps"] >= 3


def test_training_progress_follows_the_schedule_position(toy: Any) -> None:
    module = toy.ToyModule()
    module._trainer = SimpleNamespace(estimated_stepping_batches=200, global_step=50)
    assert module.training_progress() == pytest.approx(0.25)
    module.budget_fraction = 0.6  # the budget leads
    assert module.training_progress() == pytest.approx(0.6)
    module._trainer = SimpleNamespace(estimated_stepping_batches=200, global_step=400)
    assert module.training_progress() == 1.0  # never past the end
    module._trainer = SimpleNamespace(estimated_stepping_batches=math.inf, global_step=10**6)
    module.budget_fraction = 0.3  # only the budget ends the run: steps say nothing
    assert module.training_progress() == pytest.approx(0.3)
