"""Kill -9 in the middle of an epoch, resume with ``--ckpt_path last``: for every app the run ends
exactly where an uninterrupted run of the same length ends, and the run folder loses nothing."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from reliability_cases import AppCase, app_params, epoch_rows, fit_args, read_metrics

from attnlab.checkpoint import load_checkpoint

HERE = Path(__file__).parent


def _pause_callback(marker: Path) -> str:
    """``--trainer.callbacks`` value: pause after batch 1 of epoch 1 (the second epoch)."""
    spec = {"class_path": "mid_epoch_pause.PauseMidEpoch", "init_args": {"marker": str(marker)}}
    return json.dumps([spec])


def _wait_for(marker: Path, proc: subprocess.Popen[str], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended ({proc.returncode}) before pausing:\n"
                                 f"{log.read_text()[-3000:]}")  # fmt: skip
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no pause within {timeout:g} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


def _assert_checkpoints_sound(run: Path) -> dict[str, Any]:
    """Every file under checkpoints/ is a whole, loadable checkpoint; returns last.ckpt."""
    folder = run / "checkpoints"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["best.ckpt", "last.ckpt"], names  # no *.tmp, no half-written extra file
    loaded = {name: load_checkpoint(folder / name) for name in names}
    return loaded["last.ckpt"]


def _close(a: str, b: str) -> bool:
    try:
        x, y = float(a), float(b)
    except ValueError:
        return a == b
    return (math.isnan(x) and math.isnan(y)) or math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-7)


TIMING_COLUMNS = ("train_cpu_s", "train_wall_s")


def _assert_same_rows(got: list[dict[str, str]], want: list[dict[str, str]]) -> None:
    assert [r["epoch"] for r in got] == [r["epoch"] for r in want]
    for g, w in zip(got, want, strict=True):
        assert set(g) == set(w)
        # Compute spent is measured, not learned: CPU and wall seconds differ from run to run.
        diff = {k: (g[k], w[k]) for k in w if k not in TIMING_COLUMNS and not _close(g[k], w[k])}
        assert not diff, f"epoch {w['epoch']}: resumed vs uninterrupted {diff}"


def _assert_same_numbers(got: Any, want: Any, where: str) -> None:
    if isinstance(want, dict):
        assert set(got) == set(want), where
        for key in want:
            _assert_same_numbers(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, float):
        assert math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-7), f"{where}: {got} vs {want}"


@pytest.mark.parametrize("app", app_params())
def test_killed_mid_epoch_then_resumed_matches_uninterrupted_run(
    app: AppCase,
    tmp_path: Path,
    attnlab_command: Callable[..., Any],
    reference_run: Callable[[AppCase], Path],
) -> None:
    """The resumed run's per-epoch metrics, best and test metrics equal the uninterrupted run's
    to 1e-6 (same CPU, deterministic kernels): the checkpoint carries the model, optimizer,
    scheduler, data-order and RNG state, so the second epoch is replayed exactly."""
    command = attnlab_command(tmp_path, env={"PYTHONPATH": str(HERE)})
    run = tmp_path / "run"
    marker = tmp_path / "paused"
    log = tmp_path / "killed.log"
    with open(log, "w") as out:
        proc = command.start(
            *fit_args(app, run, "--trainer.callbacks", _pause_callback(marker)), stdout=out
        )
        try:
            _wait_for(marker, proc, log, timeout=240)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert marker.read_text().startswith("epoch 1 ")  # inside the second epoch

    # What the kill left: a whole checkpoint of epoch 0 and the epoch-0 record.
    last = _assert_checkpoints_sound(run)
    assert last["epoch"] == 0
    # The killed process's .lock is not the run's: the resume takes it over and removes it.
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*")
              if p.is_file() and p.name != ".lock"}  # fmt: skip
    assert [r["epoch"] for r in epoch_rows(run)] == ["0"]
    figures_before = {p for p in before if p.parts[0] == "figures"}
    assert figures_before, "figures of epoch 0 should exist before the kill"

    command(*fit_args(app, run, "--ckpt_path", "last"))

    # Nothing from before the kill was lost or rewritten, except the files a resume updates.
    updated = {Path("manifest.json"), Path("metrics.csv"), Path("checkpoints/last.ckpt"),
               Path("checkpoints/best.ckpt")}  # fmt: skip
    for rel, data in before.items():
        assert (run / rel).is_file(), f"{rel} was lost"
        if rel not in updated and rel.parts[0] != "tb":
            assert (run / rel).read_bytes() == data, f"{rel} was rewritten"
    manifest = json.loads((run / "manifest.json").read_text())
    first = json.loads(before[Path("manifest.json")])
    assert manifest["start_time"] == first["start_time"] and manifest["command"] == first["command"]
    assert len(manifest["resumed"]) == 1 and manifest["status"] == "completed"
    assert last_epoch_of(_assert_checkpoints_sound(run)) == 1

    reference = reference_run(app)
    resumed_rows, reference_rows = epoch_rows(run), epoch_rows(reference)
    assert resumed_rows[0] == epoch_rows_from_bytes(before[Path("metrics.csv")])[0]
    _assert_same_rows(resumed_rows, reference_rows)
    got, want = read_metrics(run), read_metrics(reference)
    for section in ("best", "test", "headline"):
        _assert_same_numbers(got[section], want[section], section)
    assert got["best_epoch"] == want["best_epoch"]


def last_epoch_of(checkpoint: dict[str, Any]) -> int:
    return int(checkpoint["epoch"])


def epoch_rows_from_bytes(data: bytes) -> list[dict[str, str]]:
    """metrics.csv as it was read before the resume, without its wall-clock column."""
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    for row in rows:
        row.pop("time", None)
    return rows
