"""attnlab benchmarks: ``python -m benchmarks [name ...]`` (or ``nox -s bench -- name ...``).

Each benchmark is a module ``benchmarks/<name>.py`` with a ``main() -> None`` that writes
``results/<name>.json`` and ``results/<name>.md`` through ``benchmarks.common``. ``REGISTRY``
lists them in the order a bare ``python -m benchmarks`` runs them.
"""

from __future__ import annotations

__all__ = ["REGISTRY"]

REGISTRY: tuple[str, ...] = ("core", "vit", "caption", "forecast", "recsys", "audio")
