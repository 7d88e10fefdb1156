"""What an app is, and how the `attnlab` command finds the installed ones.

An app is "a model, a LightningModule, a DataModule, configs and a drawing function". It
registers an ``App`` under the entry-point group ``attnlab.apps`` in its own pyproject.toml::

    [project.entry-points."attnlab.apps"]
    vit = "attnlab_vit:app"

so a new app never touches this package.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import lightning.pytorch as pl
    from matplotlib.figure import Figure

    from attention_core import AttentionMaps

    from .atlas import Panel

__all__ = ["ENTRY_POINT_GROUP", "App", "FigureContext", "get_app", "load_apps"]

ENTRY_POINT_GROUP = "attnlab.apps"


@dataclass
class FigureContext:
    """What a drawing function receives: a fixed batch of validation samples, the model's
    output on it, and the attention captured during that forward pass."""

    module: pl.LightningModule
    batch: Any
    output: Any
    maps: AttentionMaps
    tag: str
    # The run's datamodule where the caller has one (`attnlab atlas` rebuilds it from config.yaml;
    # during fit it is also ``module.trainer.datamodule``): normalization, names of classes.
    datamodule: Any = None


DrawFn = Callable[[FigureContext], "Sequence[tuple[str, Figure]]"]
AtlasFn = Callable[[FigureContext], "Sequence[Panel]"]


@dataclass
class App:
    """An app as the `attnlab` command sees it.

    ``monitor``/``mode`` choose the best checkpoint; ``headline`` is the metric the demo table
    shows (a test metric when the data has a test split). ``draw`` turns captured attention into
    named matplotlib figures; the layer saves them and logs them to TensorBoard. ``atlas`` turns
    the same capture into interactive panels (``attnlab.atlas``) for `attnlab atlas`.
    """

    name: str
    module: type[pl.LightningModule]
    datamodule: type[pl.LightningDataModule]
    config_dir: Path
    monitor: str = "val/loss"
    mode: str = "min"
    headline: str = "test/loss"
    draw: DrawFn | None = None
    atlas: AtlasFn | None = None
    description: str = ""
    figure_layers: Sequence[int | str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.config_dir = Path(self.config_dir)
        if self.mode not in ("min", "max"):
            raise ValueError(f"app {self.name!r}: mode must be 'min' or 'max', got {self.mode!r}")

    @property
    def quick_config(self) -> Path:
        return self.config_dir / "quick.yaml"

    def configs(self) -> list[Path]:
        return sorted(self.config_dir.glob("*.yaml"))


def load_apps() -> dict[str, App]:
    """Installed apps by name, from the ``attnlab.apps`` entry points."""
    apps: dict[str, App] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            app = ep.load()
        except Exception as exc:  # a broken app must not take the command down
            if os.environ.get("ATTNLAB_DEBUG"):
                raise
            print(f"warning: app {ep.name!r} failed to load ({type(exc).__name__}: {exc})")
            continue
        if not isinstance(app, App):
            print(f"warning: entry point {ep.name!r} is {type(app).__name__}, not attnlab.App")
            continue
        apps[app.name] = app
    return dict(sorted(apps.items()))


def get_app(name: str) -> App:
    apps = load_apps()
    if name not in apps:
        known = ", ".join(apps) or "none installed"
        raise SystemExit(f"error: no app named {name!r} (installed: {known}); see `attnlab list`")
    return apps[name]
