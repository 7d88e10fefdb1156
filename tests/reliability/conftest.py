"""One uninterrupted reference run per app that the resume and DDP tests both compare against
(each app's tests share an xdist group, so one worker trains it once), and a live command
holding a run folder's lock (``lock_holder``)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from reliability_cases import AppCase, fit_args


@pytest.fixture(scope="session")
def reference_run(
    tmp_path_factory: pytest.TempPathFactory, attnlab_command: Callable[..., Any]
) -> Callable[[AppCase], Path]:
    """``reference_run(app)``: the run folder of an uninterrupted single-process fit."""
    done: dict[str, Path] = {}

    def get(app: AppCase) -> Path:
        if app.command not in done:
            cwd = tmp_path_factory.mktemp(f"reference-{app.command}")
            attnlab_command(cwd)(*fit_args(app, "run"))
            done[app.command] = cwd / "run"
        return done[app.command]

    return get


# A process that takes a run folder's lock as `fit` does, says so, and keeps it until killed.
_HOLD = """
import sys, time
from attnlab.run_lock import RunLock
run = sys.argv[1]
sys.argv = ["attnlab", "forecast", "fit", "--run_dir", run]
RunLock(run).acquire()
print("held", flush=True)
time.sleep(600)
"""


@contextlib.contextmanager
def _hold(run_dir: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def lock_holder() -> Callable[[Path], contextlib.AbstractContextManager[subprocess.Popen[str]]]:
    """``with lock_holder(run) as proc``: a live process (``proc.pid``) holds ``run``'s lock, as a
    training `attnlab forecast fit --run_dir RUN` would; killed on leaving."""
    return _hold
