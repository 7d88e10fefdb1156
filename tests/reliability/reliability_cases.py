"""The installed apps as the reliability tests drive them (each app's ``App.suite``): each quick
config shrunk to a few seconds of training, and helpers to read what a run wrote."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
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


def peak_rss_mb(argv: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run the command's entry function in a fresh interpreter; its peak resident memory.

    Linux's VmHWM belongs to this interpreter's own memory map; ``ru_maxrss`` would not do: it
    keeps the high-water mark of the (large) pytest worker the process was forked from."""
    probe = (
        "import re, resource, sys\n"
        "from attnlab.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "try:\n"
        "    status = open('/proc/self/status').read()\n"
        "    kb = int(re.search(r'VmHWM:\\s*(\\d+)', status).group(1))\n"
        "except (OSError, AttributeError):\n"
        "    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(f'peak_rss_kb={kb}', file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "ATTNLAB_DEBUG"}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(
        [sys.executable, "-c", probe, *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    found = re.search(r"peak_rss_kb=(\d+)", proc.stderr)
    assert found, proc.stderr[-3000:]
    return proc, int(found.group(1)) / 1024
