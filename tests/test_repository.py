"""Promises the repository makes to its users: the README's test command is what CI runs, the
stack is pinned in one place, and every installed app ships what the `attnlab` command expects."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from attnlab.app import App, load_apps

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = "python3 -m pip install nox && nox -s tests"
    assert command in readme
    assert [line for line in ci.splitlines() if "nox" in line] == [command]


def test_stack_is_pinned_in_one_place() -> None:
    pins = (ROOT / "constraints.txt").read_text()
    for pin in ("torch==2.14.1", "torchvision==0.29.1", "torchaudio==2.11.0"):
        assert re.search(rf"^{re.escape(pin)}$", pins, re.M), pin
    for pyproject in [*ROOT.glob("packages/*/pyproject.toml"), *ROOT.glob("apps/*/pyproject.toml")]:
        text = pyproject.read_text()
        assert "torch==" not in text, f"{pyproject} pins torch; constraints.txt is the one place"


def test_trainer_presets_are_trainer_configs() -> None:
    presets = {
        p.stem: yaml.safe_load(p.read_text())
        for p in (ROOT / "shared" / "configs" / "trainer").glob("*.yaml")
    }
    assert set(presets) >= {"cpu", "gpu", "ddp", "debug"}
    assert presets["gpu"]["trainer"]["precision"] == "bf16-mixed"
    assert presets["ddp"]["trainer"]["strategy"] == "ddp"
    assert presets["debug"]["trainer"]["fast_dev_run"] is True


@pytest.mark.parametrize(
    "app_dir", sorted(ROOT.glob("apps/*/pyproject.toml")), ids=lambda p: p.parent.name
)
def test_every_app_is_installed_and_complete(app_dir: Path) -> None:
    text = app_dir.read_text()
    match = re.search(r'^(\w+)\s*=\s*"(attnlab_\w+):app"', text, re.M)
    assert match and '"attnlab.apps"' in text, f"{app_dir} registers no attnlab.apps entry point"
    apps = load_apps()
    assert match.group(1) in apps, f"app {match.group(1)} is not installed"
    app = apps[match.group(1)]
    assert isinstance(app, App)
    assert app.quick_config.is_file()
    quick = yaml.safe_load(app.quick_config.read_text())
    assert quick["trainer"]["accelerator"] == "cpu"
    assert app.config_dir.resolve() == (app_dir.parent / "configs").resolve()
