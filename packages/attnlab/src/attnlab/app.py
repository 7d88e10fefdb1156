"""What an app is, and how the `attnlab` command finds the installed ones.

An app is "a model, a LightningModule, a DataModule, configs and a drawing function". It
registers an ``App`` under the entry-point group ``attnlab.apps`` in its own pyproject.toml::

    [project.entry-points."attnlab.apps"]
    vit = "attnlab_vit:app"

so a new app never touches this package. The classes and drawing functions may be given as
``"package.module:Name"`` strings, imported on first use: `attnlab list` and `attnlab --help`
then read every app without importing torch (``lazy_exports`` keeps the package's own names).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import lightning.pytorch as pl
    from matplotlib.figure import Figure

    from attention_core import AttentionMaps

    from .atlas import Panel

__all__ = [
    "ENTRY_POINT_GROUP",
    "App",
    "FigureContext",
    "MatrixDomain",
    "get_app",
    "lazy_exports",
    "load_apps",
]

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


@dataclass(frozen=True)
class MatrixDomain:
    """How the variant matrix (``benchmarks/matrix.py``) runs an app's default model.

    ``config`` on the real data when ``data`` (a path under ``ATTNLAB_DATA_DIR``) exists, else
    ``quick``; ``overrides`` pick the default attention model where the config has several;
    ``budget_cpu_s``: CPU seconds per variant, at which the default reaches at least 90 % of its
    full-budget quality (say where that was measured); ``window``: the ``local`` variant's window;
    ``metric``/``mode``: the test metric and whether higher (max) or lower (min) is better;
    ``default_pos``: the model's own position scheme (its variant is the sdpa row);
    ``label`` names the data in the table, ``fallback_label`` the ``quick`` data used when
    ``data`` is missing (default: ``label``, for a domain that runs on built-in data anyway).
    """

    config: str
    data: str | None
    label: str
    metric: str
    mode: str
    budget_cpu_s: float
    window: int
    default_pos: str = "learned"
    overrides: tuple[str, ...] = ()
    fallback_label: str | None = None

    def data_label(self, real: bool) -> str:
        """What the table calls the data: ``label`` on the real data, else the fallback."""
        return self.label if real or self.fallback_label is None else self.fallback_label


@dataclass(frozen=True)
class SuiteCase:
    """How the suites that drive every app (``tests/reliability``: kill and resume, DDP, untrusted
    checkpoints, bad input) run this one: ``small_data`` overrides shrink the quick config's data
    to seconds (validation splits of even size, so two DDP processes split them evenly);
    ``batch_size`` is the quick config's; ``ddp_metric`` the validation metric two processes must
    agree on (default: the app's monitor; a loss is smoother than an accuracy); ``side_data`` the
    key of ``checkpoint_extras`` holding plain data the app needs back at load time."""

    small_data: tuple[str, ...] = ()
    batch_size: int = 32
    ddp_metric: str | None = None
    side_data: str | None = None


# App fields that may be a "package.module:Name" reference, imported on first access.
LAZY_FIELDS = frozenset({"module", "datamodule", "draw", "atlas"})


def _import_reference(reference: str, what: str) -> Any:
    """The object a ``"package.module:Name"`` string names."""
    module_name, sep, attribute = reference.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"{what}: {reference!r} is not a 'package.module:Name' reference")
    try:
        return getattr(import_module(module_name), attribute)
    except AttributeError:
        raise ValueError(f"{what}: {module_name} has no {attribute!r}") from None


def lazy_exports(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for an app package: ``names`` maps each exported name to the
    submodule defining it, imported on first use (so importing the package for its ``app`` does
    not import torch)::

        __getattr__ = lazy_exports(__name__, {"ViTModule": "module", "ImageData": "data"})
    """

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(f"{package}.{names[name]}"), name)

    return __getattr__


@dataclass
class App:
    """An app as the `attnlab` command sees it.

    ``monitor``/``mode`` choose the best checkpoint; ``headline`` is the metric the demo table
    shows (a test metric when the data has a test split), ``demo_also`` the other metrics of
    the same test line it shows beside it (a reference such as a noise floor, or what the
    headline does not say). ``draw`` turns captured attention into
    named matplotlib figures; the layer saves them and logs them to TensorBoard. ``atlas`` turns
    the same capture into interactive panels (``attnlab.atlas``) for `attnlab atlas`.
    ``module``, ``datamodule``, ``draw`` and ``atlas`` may be ``"package.module:Name"`` strings,
    imported the first time they are read.
    """

    name: str
    module: type[pl.LightningModule]
    datamodule: type[pl.LightningDataModule]
    config_dir: Path
    monitor: str = "val/loss"
    mode: str = "min"
    headline: str = "test/loss"
    demo_also: tuple[str, ...] = ()
    draw: DrawFn | None = None
    atlas: AtlasFn | None = None
    description: str = ""
    figure_layers: Sequence[int | str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Where the app comes in lists other tools make (README tables, benchmarks): ascending.
    bench_order: int = 100
    matrix: MatrixDomain | None = None
    suite: SuiteCase = field(default_factory=SuiteCase)

    def __post_init__(self) -> None:
        self.config_dir = Path(self.config_dir)
        if self.mode not in ("min", "max"):
            raise ValueError(f"app {self.name!r}: mode must be 'min' or 'max', got {self.mode!r}")

    def __getattribute__(self, name: str) -> Any:
        value = object.__getattribute__(self, name)
        if name in LAZY_FIELDS and isinstance(value, str):
            value = _import_reference(value, f"app {object.__getattribute__(self, 'name')!r}")
            object.__setattr__(self, name, value)
        return value

    @property
    def quick_config(self) -> Path:
        return self.config_dir / "quick.yaml"

    def configs(self) -> list[Path]:
        return sorted(self.config_dir.glob("*.yaml"))

    def build(
        self, configs: Sequence[str] = ("quick",), overrides: Sequence[str] = ()
    ) -> tuple[pl.LightningModule, pl.LightningDataModule]:
        """The module and datamodule `fit` would train, without a trainer or a run folder.

        ``configs`` are resolved like ``--config`` (a name among the app's configs and the
        trainer presets, or a path); ``overrides`` are command-line arguments, e.g.
        ``["--model.lr=3e-4", "--data.batch_size", "8"]``. Parsed by the same LightningCLI
        parser as `fit` (seeded like it, ``--seed_everything`` included); the data is then
        prepared and set up for fit and the module configured from it
        (``configure_from_data``). A bad argument is a ``ValueError``.
        """
        import warnings

        from .cli import AttnlabCLI, _preprocess

        if isinstance(configs, str) or isinstance(overrides, str):
            raise ValueError(
                f"configs and overrides are sequences of strings, got {configs!r}, {overrides!r}"
            )
        argv = [a for name in configs for a in ("--config", str(name))] + list(overrides)
        try:
            args = ["fit", *_preprocess(self, argv)]
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter.*")
                cli = AttnlabCLI(self, args, build_only=True)
        except SystemExit as exc:  # a config name that is not there
            raise ValueError(str(exc.code).removeprefix("error: ")) from None
        except Exception as exc:
            from jsonargparse import ArgumentError

            if isinstance(exc, ArgumentError):
                message = " ".join(str(exc).split())
                raise ValueError(f"attnlab {self.name} build: {message}") from None
            raise
        module, datamodule = cli.model, cli.datamodule
        datamodule.prepare_data()
        datamodule.setup("fit")
        configure = getattr(module, "configure_from_data", None)
        if callable(configure):
            configure(datamodule)
        return module, datamodule


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
