"""attnlab: the Lightning layer every app shares (the `attnlab` command, runs, checkpoints,
figures, export, reports, dataset downloads)."""

__version__ = "0.1.0"

from .app import App, FigureContext, get_app, load_apps
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
