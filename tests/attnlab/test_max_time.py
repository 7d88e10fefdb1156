"""``--trainer.max_time``: Lightning's Timer stops the run and the learning-rate schedule is
planned over that time limit (``attnlab.budget.Budget(max_time_s=...)``), not over
``max_epochs``: in process with a fake clock, and through the real command."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest

import attnlab.budget as budget_module
from attnlab.budget import Budget, max_time_seconds
from attnlab.checkpoint import load_checkpoint
from attnlab.module import warmup_cosine


class TickClock:
    """A clock that advances ``tick`` seconds each time it is read."""

    def __init__(self, tick: float):
        self.tick = tick
        self.now = 0.0

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


class LearningRates(pl.Callback):
    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("00:01:30:05", 5405.0),
        (timedelta(minutes=2), 120.0),
        ({"hours": 1}, 3600.0),
        (None, None),
    ],
)
def test_max_time_seconds_reads_lightnings_formats(value: Any, seconds: float | None) -> None:
    assert max_time_seconds(value) == seconds


@pytest.mark.parametrize("value", ["90", "00:00:00:00", "1:2:x:4"])
def test_bad_max_time_is_a_value_error_naming_the_option(value: str) -> None:
    with pytest.raises(ValueError, match=r"--trainer\.max_time"):
        max_time_seconds(value)


def test_schedule_follows_max_time_not_max_epochs(
    toy: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """max_epochs=50 (400 steps) with a 10 s time limit and 1 fake second per clock read: the
    LR is past its warmup and falling by the 10th step; on the step plan it would still be
    warming up. The Budget does not stop the run itself (Lightning's Timer does)."""
    monkeypatch.setattr(budget_module, "wall_clock", TickClock(1.0))
    budget, record = Budget(max_time_s=10.0), LearningRates()
    module = toy.ToyModule(warmup_fraction=0.05)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(tmp_path),
        callbacks=[budget, record],
        max_epochs=50,
        max_steps=12,
    )
    trainer.fit(module, datamodule=toy.ToyData())
    assert trainer.global_step == 12 and budget.stopped_by == "max_steps"
    assert budget.limits == {"cpu_s": None, "wall_s": None}
    lr = module.hparams.lr
    # the step plan (12 steps, max_steps bounds it) and the time plan: the larger one leads
    used = [min(1.0, (k + 2) / 10.0) for k in range(1, 13)]  # wall seconds at batch ends
    expected = [lr * warmup_cosine(max(k, f * 12), 12, 0, 0.01) for k, f in enumerate(used, 1)]
    assert record.lrs[-1] == pytest.approx(expected[-1])
    assert all(b <= a for a, b in itertools.pairwise(record.lrs[1:])), record.lrs


def test_max_time_run_ends_at_the_end_of_its_schedule(attnlab, tmp_path: Path) -> None:
    """A 3 s --trainer.max_time with max_epochs 1000 (8,000 steps): the run is stopped by time
    and its last learning rate is near the cosine's floor. Planned over max_epochs it would
    still be in warmup (about 400 steps) at a large fraction of the peak LR."""
    attnlab("toy", "fit", "--config", "quick", "--trainer.max_epochs", "1000",
            "--trainer.max_time", "00:00:00:03", "--test_after_fit", "false",
            "--figure_every", "100000", "--run_dir", "r")  # fmt: skip
    run = tmp_path / "r"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["stopped_by"] == "max_time"
    checkpoint = load_checkpoint(run / "checkpoints" / "last.ckpt")
    peak = checkpoint["hyper_parameters"]["lr"]
    last_lr = checkpoint["lr_schedulers"][0]["_last_lr"][0]  # the decayed parameter group
    assert last_lr < 0.05 * peak, (last_lr, peak)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["max_time_s"] == 3.0
