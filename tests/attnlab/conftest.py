"""Fixtures for the Lightning-layer tests: the toy app registered through a real entry point, a
helper that runs the real `attnlab` command, and a local HTTP server for download tests."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TOY_DIR = Path(__file__).parent / "toy"


@pytest.fixture(scope="session")
def toy_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment in which `attnlab` discovers the toy app via the `attnlab.apps` entry point."""
    site = tmp_path_factory.mktemp("toysite")
    dist = site / "toy_attnlab-0.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-attnlab\nVersion: 0.0\n")
    (dist / "entry_points.txt").write_text("[attnlab.apps]\ntoy = toy_app:app\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(TOY_DIR), env.get("PYTHONPATH", "")])
    env["PYTHONHASHSEED"] = "0"
    env.pop("ATTNLAB_DEBUG", None)
    return env


@pytest.fixture
def attnlab(toy_env: dict[str, str], tmp_path: Path, attnlab_command: Any) -> Any:
    """The real command, with the toy app installed, run in this test's folder."""
    return attnlab_command(tmp_path, env=toy_env)


@pytest.fixture(scope="session")
def trained_run(
    toy_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory, attnlab_command: Any
) -> Path:
    """One finished 2-epoch toy run shared by the tests that only read it."""
    cwd = tmp_path_factory.mktemp("trained")
    attnlab_command(cwd, env=toy_env)(
        "toy", "fit", "--config", "quick", "--trainer.max_epochs", "2", "--run_dir", "run"
    )
    return cwd / "run"


@pytest.fixture
def toy(toy_env: dict[str, str]) -> Iterator[Any]:
    """The toy app's module (``tests/attnlab/toy/toy_app.py``), importable for one test."""
    sys.path.insert(0, str(TOY_DIR))
    try:
        import toy_app

        yield toy_app
    finally:
        sys.path.remove(str(TOY_DIR))


@pytest.fixture
def toy_module_cls(toy: Any) -> type:
    return toy.ToyModule
