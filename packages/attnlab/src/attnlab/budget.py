"""Training budgets: stop a fit after so many CPU or wall-clock seconds, and measure every fit.

``Budget`` is the callback `fit` always gets. It measures the training it watches (CPU seconds of
the whole process, all torch threads included, wall seconds, optimizer steps, samples, epochs)
and, when a budget is set, it

* stops the run at the first batch end at or after the budget (``trainer.should_stop``; Lightning
  then still runs validation, so ``best.ckpt`` and test-after-fit cover the last weights);
* feeds the share of the budget used so far to the module (``budget_fraction``), so the
  learning-rate schedule of ``AttnlabModule`` runs its warmup and cosine over the budget;
* does the same for Lightning's ``--trainer.max_time`` (``max_time_s``): Lightning's ``Timer``
  stops that run, and the schedule is planned over the time limit rather than ``max_epochs``;
* carries the seconds used in the checkpoint (``state_dict``), so a resumed run continues the
  budget instead of starting it again.

Clocks start at the start of training (after the sanity check) and include validation inside the
loop. Under DDP every number is rank 0's process, and rank 0's clock decides for all ranks.
"""

from __future__ import annotations

import math
import time
from datetime import timedelta
from typing import Any, cast

import lightning.pytorch as pl
import torch

__all__ = ["Budget", "batch_samples", "max_time_seconds", "stop_reason"]

# The clocks, as module attributes so a test can replace them with deterministic ones.
cpu_clock = time.process_time  # the whole process: every torch thread counts
wall_clock = time.perf_counter


def _check(option: str, value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{option} must be a positive number of seconds, got {value:g}")
    return value


def max_time_seconds(max_time: Any) -> float | None:
    """Seconds of Lightning's ``--trainer.max_time`` ("DD:HH:MM:SS", a ``timedelta`` or a dict
    of ``timedelta`` arguments); None when unset."""
    if max_time is None:
        return None
    if isinstance(max_time, dict):
        max_time = timedelta(**max_time)
    if isinstance(max_time, str):
        parts = max_time.strip().split(":")
        if len(parts) != 4 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(
                f"--trainer.max_time {max_time!r} is not DD:HH:MM:SS (e.g. 00:01:30:00 for 90 min)"
            )
        days, hours, minutes, seconds = (int(p) for p in parts)
        max_time = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if not isinstance(max_time, timedelta):
        raise ValueError(f"--trainer.max_time {max_time!r} is not DD:HH:MM:SS")
    return _check("--trainer.max_time", max_time.total_seconds())


def batch_samples(batch: Any) -> int:
    """Samples in a batch: the leading dimension of its first tensor (0 when it has none)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else 1
    if isinstance(batch, dict):
        values = list(batch.values())
    elif isinstance(batch, list | tuple):
        values = list(batch)
    else:
        return 0
    for value in values:
        n = batch_samples(value)
        if n:
            return n
    return 0


def _feed(module: pl.LightningModule, fraction: float) -> None:
    """Tell the module how much of the budget is used (``AttnlabModule.budget_fraction``, read
    by its learning-rate schedule; any other module just carries the attribute)."""
    cast(Any, module).budget_fraction = fraction


class Budget(pl.Callback):
    """Measures a fit and stops it at ``cpu_s`` CPU seconds or ``wall_s`` wall seconds (either,
    both or none; whichever is reached first stops the run).

    ``max_time_s`` is the wall-clock limit of ``--trainer.max_time``: Lightning's ``Timer`` stops
    the run there, and this callback only plans the learning-rate schedule over it."""

    def __init__(
        self,
        cpu_s: float | None = None,
        wall_s: float | None = None,
        max_time_s: float | None = None,
    ):
        self.cpu_s = _check("--budget.cpu_s", cpu_s)
        self.wall_s = _check("--budget.wall_s", wall_s)
        self.max_time_s = _check("--trainer.max_time", max_time_s)
        # Carried in checkpoints: what earlier (resumed-from) parts of this run used.
        self._cpu_before = 0.0
        self._wall_before = 0.0
        self.samples = 0
        self.batches = 0
        self._cpu_start: float | None = None
        self._wall_start: float | None = None
        self._cpu_end: float | None = None
        self._wall_end: float | None = None
        self.stopped_by: str | None = None
        self.steps = 0
        self.epochs = 0.0

    @property
    def active(self) -> bool:
        return self.cpu_s is not None or self.wall_s is not None

    @property
    def plans_schedule(self) -> bool:
        """Whether a time limit (a budget or ``max_time``) bounds the learning-rate schedule."""
        return self.active or self.max_time_s is not None

    @property
    def limits(self) -> dict[str, float | None]:
        return {"cpu_s": self.cpu_s, "wall_s": self.wall_s}

    # ------------------------------------------------------------------ clocks
    def used(self) -> tuple[float, float]:
        """CPU and wall seconds this run has trained so far, earlier parts of a resumed run
        included."""
        if self._cpu_start is None or self._wall_start is None:
            return self._cpu_before, self._wall_before
        cpu_now = cpu_clock() if self._cpu_end is None else self._cpu_end
        wall_now = wall_clock() if self._wall_end is None else self._wall_end
        return (
            self._cpu_before + cpu_now - self._cpu_start,
            self._wall_before + wall_now - self._wall_start,
        )

    def fraction(self, cpu: float, wall: float, *, with_max_time: bool = True) -> float:
        """The share of the time limits used: the largest of the CPU, wall and (unless told
        otherwise) ``max_time`` shares; 0 without a limit."""
        shares = [0.0]
        if self.cpu_s is not None:
            shares.append(cpu / self.cpu_s)
        if self.wall_s is not None:
            shares.append(wall / self.wall_s)
        if with_max_time and self.max_time_s is not None:
            shares.append(wall / self.max_time_s)
        return max(shares)

    # ------------------------------------------------------------------ hooks
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._cpu_start = cpu_clock()
        self._wall_start = wall_clock()
        self._cpu_end = self._wall_end = None
        self.stopped_by = None
        if self.plans_schedule:
            _feed(pl_module, self.fraction(*self.used()))

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        self.batches += 1
        self.samples += batch_samples(batch)
        if not self.plans_schedule:
            return
        cpu, wall = self.used()
        if trainer.world_size > 1:  # one clock decides for every rank: rank 0's
            cpu, wall = trainer.strategy.broadcast((cpu, wall), src=0)
        _feed(pl_module, self.fraction(cpu, wall))
        # max_time is Lightning's Timer's to stop (its stop reason is then "max_time").
        if self.fraction(cpu, wall, with_max_time=False) >= 1.0 and not trainer.should_stop:
            over_cpu = self.cpu_s is not None and cpu >= self.cpu_s
            self.stopped_by = "cpu_budget" if over_cpu else "wall_budget"
            trainer.should_stop = True

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.finish(trainer)

    def finish(self, trainer: pl.Trainer) -> None:
        """Stop the clocks and take the counts (once: a later call changes nothing)."""
        if self._cpu_end is not None or self._cpu_start is None:
            if self._cpu_start is None:
                self.steps = int(trainer.global_step)
            return
        self._cpu_end = cpu_clock()
        self._wall_end = wall_clock()
        self.steps = int(trainer.global_step)
        per_epoch = trainer.num_training_batches
        if isinstance(per_epoch, int | float) and math.isfinite(per_epoch) and per_epoch > 0:
            self.epochs = round(self.batches / per_epoch, 4)
        else:
            self.epochs = float(trainer.current_epoch)
        if self.stopped_by is None:
            self.stopped_by = stop_reason(trainer)

    def summary(self) -> dict[str, Any]:
        """The ``train`` block of manifest.json and metrics.json."""
        cpu, wall = self.used()
        return {
            "cpu_s": round(cpu, 3),
            "wall_s": round(wall, 3),
            "steps": self.steps,
            "samples": self.samples,
            "epochs": self.epochs,
            "samples_per_cpu_s": round(self.samples / cpu, 3) if cpu > 0 else None,
        }

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        cpu, wall = self.used()
        return {"cpu_s": cpu, "wall_s": wall, "samples": self.samples, "batches": self.batches}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._cpu_before = float(state_dict.get("cpu_s", 0.0))
        self._wall_before = float(state_dict.get("wall_s", 0.0))
        self.samples = int(state_dict.get("samples", 0))
        self.batches = int(state_dict.get("batches", 0))
        self._cpu_start = self._wall_start = None


def stop_reason(trainer: pl.Trainer) -> str:
    """Why a fit that ended without an error ended, as far as the trainer tells."""
    from lightning.pytorch.callbacks import Timer

    if getattr(trainer, "fast_dev_run", False):
        return "fast_dev_run"
    if trainer.interrupted:
        return "interrupted"
    if trainer.should_stop:
        for cb in trainer.callbacks:  # type: ignore[attr-defined]
            remaining = cb.time_remaining() if isinstance(cb, Timer) else None
            if remaining is not None and remaining <= 0:
                return "max_time"
        if trainer.early_stopping_callbacks:
            return "early_stopping"
        return "should_stop"
    if trainer.max_steps is not None and 0 <= trainer.max_steps <= trainer.global_step:
        return "max_steps"
    return "max_epochs"
