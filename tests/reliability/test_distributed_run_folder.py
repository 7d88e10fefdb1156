"""Every rank of a distributed launch makes the run folder's decisions (issue #18): a refusal on
rank 0 (a run it would overwrite, a live command holding the folder) is the same one line on every
rank, at once, instead of the other ranks waiting for rank 0 until the collective timeout.

The ranks of a torchrun or SLURM launch are set up by hand (the environment torchrun gives each
worker), so that no launcher kills the other ranks when rank 0 exits, as `srun` or a second
node's torchrun would not; a real torchrun launch then checks that the ranks agree when nothing
is wrong.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from reliability_cases import APPS, fit_args

FORECAST = next((app for app in APPS if app.command == "forecast"), None)
DDP = ("--config", "ddp", "--trainer.accelerator", "cpu", "--trainer.devices", "2")
# A refusal is made before any rank joins the process group; a rank that joins instead waits for
# its peers until the collective timeout (30 minutes), so this bound tells the two apart.
REFUSAL_S = 150

pytestmark = pytest.mark.skipif(FORECAST is None, reason="the forecasting app is not installed")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rank_env(rank: int, port: int) -> dict[str, str]:
    """What torchrun gives worker ``rank`` of a 2-process launch on one node."""
    return {
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "GROUP_RANK": "0",
        "ROLE_RANK": str(rank),
        "WORLD_SIZE": "2",
        "LOCAL_WORLD_SIZE": "2",
        "ROLE_WORLD_SIZE": "2",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "TORCHELASTIC_RUN_ID": f"test-{port}",
        "TORCHELASTIC_RESTART_COUNT": "0",
    }


def _both_ranks(
    attnlab_command: Callable[..., Any], cwd: Path, run: Path
) -> list[subprocess.CompletedProcess[str]]:
    """Ranks 0 and 1 of one launch of `fit` into ``run``, started together; each must end
    within ``REFUSAL_S``."""
    assert FORECAST is not None
    port = _free_port()
    args = fit_args(FORECAST, run, *DDP)
    procs = []
    for rank in (0, 1):
        command = attnlab_command(cwd, env=_rank_env(rank, port))
        procs.append(command.start(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    deadline = time.monotonic() + REFUSAL_S
    done = []
    try:
        for rank, proc in enumerate(procs):
            try:
                out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise AssertionError(
                    f"rank {rank} did not exit within {REFUSAL_S} s: it waits for a rank 0 that "
                    "refused"
                ) from None
            done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    return done


def _error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


def _files(run: Path) -> dict[Path, bytes]:
    return {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}


def test_every_rank_refuses_a_run_it_would_overwrite(
    tmp_path: Path, attnlab_command: Callable[..., Any]
) -> None:
    """`fit` of a 2-rank launch into a folder holding a run: both ranks exit 1 with the same one
    line, and the folder is untouched (before: rank 0 refused, rank 1 waited for it)."""
    run = tmp_path / "finished"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"app": "forecast", "status": "completed"}))
    (run / "metrics.json").write_text("{}\n")
    before = _files(run)
    lines = [_error_line(p) for p in _both_ranks(attnlab_command, tmp_path, run)]
    assert lines[0] == lines[1], lines
    assert f"{run} already holds a run" in lines[0]
    assert _files(run) == before


def test_every_rank_refuses_a_folder_a_live_command_holds(
    tmp_path: Path, attnlab_command: Callable[..., Any], lock_holder: Callable[..., Any]
) -> None:
    """While another command holds the folder's lock, both ranks name it in the same line."""
    run = tmp_path / "busy"
    with lock_holder(run) as holder:
        lines = [_error_line(p) for p in _both_ranks(attnlab_command, tmp_path, run)]
    assert lines[0] == lines[1], lines
    assert f"{run} is in use by pid {holder.pid} (attnlab forecast fit" in lines[0]
    assert "wait for it to finish" in lines[0]


def test_a_torchrun_launch_trains_into_one_locked_folder(
    tmp_path: Path, attnlab_command: Callable[..., Any]
) -> None:
    """A real torchrun launch of 2 CPU processes: rank 0's lock records the launch, rank 1 finds
    it and goes on, and the run completes with the lock released."""
    assert FORECAST is not None
    command = attnlab_command(tmp_path)
    run = tmp_path / "run"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", "2", "-m", "attnlab.cli"]  # fmt: skip
    proc = subprocess.run(
        [*launcher, *fit_args(FORECAST, run, *DDP)],
        cwd=tmp_path,
        env=command.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["devices"] == 2
    assert not (run / ".lock").exists()
