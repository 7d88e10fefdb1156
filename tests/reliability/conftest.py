"""One uninterrupted reference run per app that the resume and DDP tests both compare against
(each app's tests share an xdist group, so one worker trains it once)."""

from __future__ import annotations

from collections.abc import Callable
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
