"""attnlab benchmarks: ``python -m benchmarks [name ...]`` (or ``nox -s bench -- name ...``).

Each benchmark is a module ``benchmarks/<name>.py`` with a ``main()`` that writes
``results/<name>.json`` and ``results/<name>.md`` through ``benchmarks.common``. ``REGISTRY``
lists them in the order a bare ``python -m benchmarks`` runs them; after the last one it runs
``readme`` (``benchmarks/readme.py``), which rewrites the README's results section from the
result files. ``readme`` can also be named on its own.
"""

from __future__ import annotations

__all__ = ["REGISTRY", "TOOLS"]

REGISTRY: tuple[str, ...] = ("core", "vit", "caption", "forecast", "recsys", "audio", "matrix")
TOOLS: tuple[str, ...] = ("readme",)
