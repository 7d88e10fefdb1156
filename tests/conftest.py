"""Shared test setup: every test starts from the same random state; the real `attnlab` command
in a subprocess (``attnlab_command``); a headless browser for the pages the project writes
(``headless_chromium``, skipped where no Chromium is installed) and a tiny run's atlas page
(``tiny_atlas``)."""

from __future__ import annotations

import html
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    """Seed torch, random and numpy before each test so failures reproduce."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _no_help_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--help` rendered by LightningCLI in every test and command the tests start (the help
    cache off; tests/attnlab/test_help_cache.py turns it on in a folder of its own), so help
    tests check the real rendering and nothing lands in the user's cache folder."""
    monkeypatch.setenv("ATTNLAB_NO_HELP_CACHE", "1")


class AttnlabCommand:
    """``python -m attnlab.cli ...`` run from ``cwd``: one thread (the CI cores are shared), a fixed
    hash seed, no ``ATTNLAB_DEBUG`` (so errors are the one-line kind users see), and ``env``
    overrides (a ``PYTHONPATH`` given there is put in front of the inherited one)."""

    def __init__(self, cwd: Path, env: Mapping[str, str] | None = None):
        self.cwd = Path(cwd)
        self.env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
        self.env.pop("ATTNLAB_DEBUG", None)
        for key, value in (env or {}).items():
            if key == "PYTHONPATH" and self.env.get("PYTHONPATH"):
                value = os.pathsep.join([value, self.env["PYTHONPATH"]])
            self.env[key] = value

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "attnlab.cli", *args]

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run to the end; with ``check`` a non-zero exit fails the test showing the output."""
        proc = subprocess.run(
            self.argv(*args),
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"attnlab {' '.join(args)} failed ({proc.returncode}):\n"
                f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            )
        return proc

    def start(self, *args: str, **popen: Any) -> subprocess.Popen[str]:
        """Start without waiting (to signal or kill it); output goes to ``popen``'s files, or
        is discarded."""
        popen.setdefault("stdout", subprocess.DEVNULL)
        popen.setdefault("stderr", subprocess.STDOUT)
        return subprocess.Popen(self.argv(*args), cwd=self.cwd, env=self.env, text=True, **popen)


@pytest.fixture(scope="session")
def attnlab_command() -> Callable[..., AttnlabCommand]:
    """``attnlab_command(cwd, env=None)``: an ``AttnlabCommand`` running in ``cwd``."""
    return AttnlabCommand


@dataclass
class PageLoad:
    """What headless Chromium saw: the DOM after scripts ran, every console message, and the
    attributes the page's own script left on <body>."""

    dom: str
    console: list[str]
    body: dict[str, str]


def chromium_binary() -> str | None:
    """$ATTNLAB_CHROMIUM, or Debian's chromium (`.ci/run` installs it), or another Chrome."""
    env = os.environ.get("ATTNLAB_CHROMIUM")
    if env:
        return env
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.fixture(scope="session")
def headless_chromium() -> Callable[[Path], PageLoad]:
    """load(path): open a local page in headless Chromium (file:// URL, no network, a fresh
    profile), let its scripts run, and return what it saw."""
    binary = chromium_binary()
    if binary is None:
        pytest.skip("no Chromium to test the page in (apt-get install chromium)")

    def load(path: Path) -> PageLoad:
        with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
            proc = subprocess.run(
                [
                    binary,
                    "--headless",
                    "--no-sandbox",  # CI containers run as root
                    "--disable-gpu",
                    "--no-first-run",
                    f"--user-data-dir={profile}",
                    "--enable-logging=stderr",
                    "--v=0",
                    # Virtual time runs the page's promises and timers to completion before the
                    # DOM is dumped.
                    "--virtual-time-budget=10000",
                    "--dump-dom",
                    Path(path).resolve().as_uri(),
                ],
                capture_output=True,
                text=True,
                timeout=120,
            )
        assert proc.returncode == 0, f"chromium failed ({proc.returncode}): {proc.stderr[-2000:]}"
        console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
        tag = re.search(r"<body([^>]*)>", proc.stdout)
        attrs = re.findall(r'([\w-]+)="([^"]*)"', tag.group(1)) if tag else []
        return PageLoad(proc.stdout, console, {k: html.unescape(v) for k, v in attrs})

    return load


@pytest.fixture(scope="module")
def tiny_atlas(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[..., tuple[Path, dict[str, Any]]]:
    """tiny_atlas(app, *overrides): fit ``app``'s quick config in this process for a couple of
    batches (plus ``overrides``), then write `attnlab atlas` of that run with 2 samples; returns
    the page and its data."""
    from attnlab.atlas import atlas_data, build_atlas
    from attnlab.cli import main

    def make(app: str, *overrides: str) -> tuple[Path, dict[str, Any]]:
        tmp = tmp_path_factory.mktemp(f"{app}_atlas")
        tiny = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
                "--trainer.limit_val_batches", "1", "--trainer.deterministic", "false",
                "--trainer.logger", "false", "--test_after_fit", "false"]  # fmt: skip
        args = [app, "fit", "--config", "quick", *tiny, *overrides, "--run_dir", str(tmp / "run")]
        assert main(args) == 0
        page = build_atlas([tmp / "run"], tmp / "atlas.html", samples=2)
        return page, atlas_data(page.read_text(encoding="utf-8"))

    return make
