"""The installed apps as the reliability tests drive them (each app's ``App.suite``): each quick
config shrunk to a few seconds of training, and helpers to read what a run wrote."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent


@dataclass(frozen=True)
class AppCase:
    """An app as these tests drive it: its command, its quick config made small (validation splits
    of even size, so two DDP processes split them without padding), and the validation metric
    the DDP test compares (a loss where the app logs one: smoother than an accuracy)."""

    command: str
    ddp_metric: str
    batch_size: int  # the quick config's; the DDP run halves it per process
    small_data: tuple[str, ...]
    side_data: str | None = None  # the checkpoint_extras key of data needed back at load time


def _cases() -> list[AppCase]:
    """Every installed app (entry points), as its ``App.suite`` says to drive it."""
    from attnlab.app import load_apps

    apps = sorted(load_apps().values(), key=lambda a: (a.bench_order, a.name))
    return [
        AppCase(
            app.name,
            app.suite.ddp_metric or app.monitor,
            app.suite.batch_size,
            tuple(app.suite.small_data),
            app.suite.side_data,
        )
        for app in apps
    ]


APPS = _cases()

# Two epochs of four steps each, figures every epoch (so some exist before a mid-run kill), a
# short test after fit. Validation runs on the whole (small) validation split.
TRAIN_STEPS = 4
SHORT = (
    "--trainer.max_epochs", "2",
    "--trainer.limit_train_batches", str(TRAIN_STEPS),
    "--trainer.limit_test_batches", "2",
    "--figure_every", "1",
)  # fmt: skip


def app_params() -> list[Any]:
    """One case per app, each in its own xdist group (the reference run is shared inside it)."""
    return [
        pytest.param(app, id=app.command, marks=pytest.mark.xdist_group(f"rel-{app.command}"))
        for app in APPS
    ]


def fit_args(app: AppCase, run_dir: str | Path, *extra: str) -> list[str]:
    return [app.command, "fit", "--config", "quick", *SHORT, *app.small_data,
            "--run_dir", str(run_dir), *extra]  # fmt: skip


def epoch_rows(run_dir: Path) -> list[dict[str, str]]:
    """metrics.csv without its wall-clock column."""
    with open(run_dir / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        row.pop("time", None)
    return rows


def read_metrics(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "metrics.json").read_text())
