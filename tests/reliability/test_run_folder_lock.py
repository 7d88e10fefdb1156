"""`report`, `atlas` and `export` write into a run folder only under its lock (issue #18): while a
live command (a fit still training) holds it, each is one line naming the holder and saying to
wait or to write elsewhere with ``--out``; a dead holder's lock is taken over, as by `fit`."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from reliability_cases import APPS

FORECAST = next((app for app in APPS if app.command == "forecast"), None)

pytestmark = pytest.mark.skipif(FORECAST is None, reason="the forecasting app is not installed")


def _errors(proc: subprocess.CompletedProcess[str]) -> list[str]:
    """The ``error:`` lines of a failed command (exactly one, and no traceback)."""
    assert proc.returncode == 1, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines


def _files(run: Path) -> dict[Path, bytes]:
    return {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}


def _training_run(run: Path) -> Path:
    """A run folder as a fit leaves it mid-training: manifest `running`, config, a checkpoint
    (the commands are refused before they read it)."""
    (run / "checkpoints").mkdir(parents=True)
    manifest = {"app": "forecast", "status": "running", "command": "attnlab forecast fit"}
    (run / "manifest.json").write_text(json.dumps(manifest))
    (run / "config.yaml").write_text("seed_everything: 0\n")
    (run / "checkpoints" / "best.ckpt").write_bytes(b"written by the fit")
    return run


def test_report_atlas_and_export_refuse_a_folder_a_live_fit_holds(
    tmp_path: Path, attnlab_command: Callable[..., Any], lock_holder: Callable[..., Any]
) -> None:
    """Each writer is refused with the holder's pid and command and writes nothing there; with
    ``--out`` outside the folder it is not refused. Once the holder dies, `report` takes the
    folder over with a warning, records the dead run as `interrupted`, and releases the lock."""
    run = _training_run(tmp_path / "run")
    command = attnlab_command(tmp_path)
    ckpt = str(run / "checkpoints" / "best.ckpt")
    writers = (
        ["report", str(run)],
        ["atlas", str(run)],
        ["forecast", "export", "--ckpt", ckpt, "--format", "torch-export"],
    )
    with lock_holder(run) as holder:
        before = _files(run)
        for args in writers:
            (line,) = _errors(command(*args, check=False))
            assert f"{run} is in use by pid {holder.pid} (attnlab forecast fit" in line, line
            assert "wait for it to finish, or pass --out with a path outside it" in line
        assert _files(run) == before
        elsewhere = tmp_path / "elsewhere.html"
        command("report", str(run), "--out", str(elsewhere))
        assert elsewhere.is_file() and _files(run) == before

    proc = command("report", str(run))
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert any(f"locked by pid {holder.pid}" in w and "no longer running" in w for w in warnings)
    assert (run / "report.html").is_file() and not (run / ".lock").exists()
    assert json.loads((run / "manifest.json").read_text())["status"] == "interrupted"
    assert "interrupted" in (run / "report.html").read_text()
