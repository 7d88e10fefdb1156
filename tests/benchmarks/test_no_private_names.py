"""Nothing in ``benchmarks/`` reaches into an app's private names.

A benchmark is a list of ``attnlab`` commands (``benchmarks/runner.py``); it builds nothing
itself, so it has no business with ``module._loss``, ``dataset._pixels`` or
``attnlab_recommender._sasrec_loss``. The check is strict on purpose: every ``X._name``
attribute, every ``getattr(X, "_name")``, and every import of a ``_name`` (or from a ``_module``)
out of an app package fails, unless ``X`` is ``self``/``cls`` or the pair is in ALLOWED with its
reason. Dunders (``torch.__version__``) are public protocol, not private names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _app_packages() -> tuple[str, ...]:
    """The installed apps' top-level packages (entry points), so a new app is covered too."""
    from attnlab.app import load_apps

    return tuple(sorted({app.module.__module__.split(".")[0] for app in load_apps().values()}))


APP_PACKAGES = _app_packages()
# (object name, attribute) -> why it is allowed. Keep it short.
ALLOWED: dict[tuple[str, str], str] = {}
OWN = frozenset({"self", "cls"})


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _owner(node: ast.expr) -> str:
    """The source text of the object an attribute is read from (``self``, ``module``, ...)."""
    return ast.unparse(node)


def violations(source: str, filename: str = "<string>") -> list[str]:
    """Every private access in ``source``, as ``file:line: what``."""
    found = []

    def report(node: ast.AST, what: str) -> None:
        found.append(f"{filename}:{getattr(node, 'lineno', '?')}: {what}")

    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            owner = _owner(node.value)
            if owner not in OWN and (owner, node.attr) not in ALLOWED:
                report(node, f"{owner}.{node.attr}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _private(node.args[1].value)
        ):
            owner = _owner(node.args[0])
            if owner not in OWN and (owner, node.args[1].value) not in ALLOWED:
                report(node, f"{node.func.id}({owner}, {node.args[1].value!r})")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            if isinstance(node, ast.Import):
                modules, names = [alias.name for alias in node.names], []
            else:
                modules, names = [node.module or ""], [alias.name for alias in node.names]
            for mod in modules:
                parts = mod.split(".")
                if parts[0] not in APP_PACKAGES:
                    continue
                if any(_private(p) for p in parts):
                    report(node, f"import from private module {mod}")
                for name in names:
                    if _private(name):
                        report(node, f"from {mod} import {name}")
    return found


def _files() -> list[Path]:
    return sorted((ROOT / "benchmarks").glob("*.py"))


def test_the_check_catches_what_it_should() -> None:
    bad = """
import attnlab_forecasting._impl
from attnlab_recommender import _sasrec_loss
from attnlab_vit.data import _Reader
from attnlab_captioning._private import thing
loss = module._loss(batch)
pixels = dm.train_set._pixels(0)
fn = getattr(module, "_bert4rec_loss")
"""
    assert len(violations(bad)) == 7
    good = """
import torch
from attnlab_forecasting.data import ForecastData
version = torch.__version__
name = fn.__name__
class A:
    def f(self):
        return self._x, cls._y if False else None
"""
    assert violations(good) == []


@pytest.mark.parametrize("path", _files(), ids=lambda p: p.name)
def test_benchmarks_use_no_private_names(path: Path) -> None:
    # Fails on benchmarks that still reach into an app (see the module docstring); the lead
    # makes it pass as the app benchmarks become specs of `attnlab` runs.
    found = violations(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert not found, "private names used outside their app:\n" + "\n".join(found)
