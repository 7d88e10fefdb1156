"""attnlab: the Lightning layer every app shares (the `attnlab` command, runs, checkpoints,
figures, export, reports, dataset downloads)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from .app import App, FigureContext, get_app, load_apps

if TYPE_CHECKING:
    from .budget import Budget
    from .module import AttnlabModule

__all__ = [
    "App",
    "AttnlabModule",
    "Budget",
    "FigureContext",
    "__version__",
    "get_app",
    "load_apps",
]


def __getattr__(name: str) -> Any:
    """``AttnlabModule`` and ``Budget`` on first use: they import Lightning and torch, which
    `attnlab list` and every app's ``app`` object do not need."""
    if name == "AttnlabModule":
        from .module import AttnlabModule

        return AttnlabModule
    if name == "Budget":
        from .budget import Budget

        return Budget
    raise AttributeError(f"module 'attnlab' has no attribute {name!r}")
