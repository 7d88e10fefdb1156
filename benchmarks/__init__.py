"""attnlab benchmarks: ``python -m benchmarks [name ...]`` (or ``nox -s bench -- name ...``).

A benchmark is a module ``benchmarks/<name>.py`` that defines ``BENCHMARK``, a
:class:`benchmarks.runner.Benchmark`: the ``attnlab`` commands to run and how to tabulate their
run folders; ``benchmarks.runner`` runs them and writes ``results/<name>.json`` and ``.md``.
Three modules are programs of their own with a ``main()``: ``core`` (a micro-benchmark of the
attention kernels, no training), ``startup`` (how long the `attnlab` command takes to start, no
training) and ``matrix``; a module without ``BENCHMARK`` is run through its ``main()`` too.

The order (``names()``): ``core``, then the installed apps' benchmarks in the apps' order (an app
``forecast`` has its benchmark in ``benchmarks/forecast.py``, where that module exists), then any
other benchmark module, then ``matrix``. A bare ``python -m benchmarks`` runs them all and then
the tool ``readme``, which rewrites the README's results section from the result files.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

__all__ = [
    "DATA_MAKERS", "FIRST", "INFRASTRUCTURE", "LAST", "TOOLS", "candidates", "load", "names",
]  # fmt: skip

HERE = Path(__file__).resolve().parent
FIRST: tuple[str, ...] = ("core",)
LAST: tuple[str, ...] = ("matrix",)
TOOLS: tuple[str, ...] = ("readme",)
# Data the benchmarks' documented runs read, made from the shared data sets (not benchmarks).
DATA_MAKERS: tuple[str, ...] = ("colour_fashion",)
# Modules of this package that are not benchmarks.
INFRASTRUCTURE = frozenset(
    {"__init__", "__main__", "common", "runner", "spec", *TOOLS, *DATA_MAKERS}
)


def candidates() -> list[str]:
    """Every module of this folder that may be a benchmark, by file name (nothing imported)."""
    return sorted(
        p.stem
        for p in HERE.glob("*.py")
        if p.stem not in INFRASTRUCTURE and not p.stem.startswith("_")
    )


def _app_names() -> list[str]:
    try:
        from attnlab.app import load_apps
    except ImportError:  # the layer is not installed: no app benchmarks, the rest still run
        return []
    apps = load_apps().values()
    return [
        app.name for app in sorted(apps, key=lambda a: (getattr(a, "bench_order", 100), a.name))
    ]


def names() -> list[str]:
    """The benchmarks in the order a bare ``python -m benchmarks`` runs them."""
    present = candidates()
    apps = [name for name in _app_names() if name in present and name not in (*FIRST, *LAST)]
    middle = apps + [n for n in present if n not in apps and n not in (*FIRST, *LAST)]
    return [n for n in FIRST if n in present] + middle + [n for n in LAST if n in present]


def load(name: str) -> ModuleType:
    """The module ``benchmarks.<name>``."""
    return importlib.import_module(f"benchmarks.{name}")
