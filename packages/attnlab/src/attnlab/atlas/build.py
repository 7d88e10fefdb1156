"""`attnlab atlas RUN_DIR [RUN_DIR ...]`: run folders in, one page out.

For every run folder given, the best checkpoint is loaded, the run's datamodule is rebuilt from
its ``config.yaml``, and a few validation samples go through ``figure_forward`` with attention
captured (``callbacks.forward_with_attention``, the path the training figures take). The app's
``atlas`` hook turns that capture into panels (``panels.py``); ``page.py`` writes them into the
page. The Lightning layer (app registry, callbacks, module, checkpoints) is imported inside the
functions that need it, so importing ``attnlab.atlas`` for its panels stays light.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .page import render_page
from .panels import panel_json

__all__ = [
    "DEFAULT_SAMPLES",
    "atlas_main",
    "build_atlas",
    "check_run_folder",
    "default_out",
    "run_section",
]

DEFAULT_SAMPLES = 3


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a run config (expected a mapping at the top)")
    return data


def _checkpoint(run_dir: Path) -> Path:
    for name in ("best.ckpt", "last.ckpt"):
        path = run_dir / "checkpoints" / name
        if path.is_file():
            return path
    raise ValueError(
        f"{run_dir} has no checkpoints/best.ckpt: pass a run folder that `attnlab <app> fit` "
        "finished (its --run_dir)"
    )


def _app_name(run_dir: Path, checkpoint: dict[str, Any]) -> str:
    name = (checkpoint.get("attnlab") or {}).get("app")
    if not name and (run_dir / "manifest.json").is_file():
        from ..runs import read_json

        name = read_json(run_dir / "manifest.json").get("app")
    if not name:
        raise ValueError(
            f"{run_dir}: neither the checkpoint nor manifest.json names the app that trained it"
        )
    return str(name)


def _datamodule(app: Any, config_path: Path, data_root: str | None = None) -> Any:
    """The run's datamodule from its config.yaml; ``data_root`` (``--data.root``) replaces the
    run's data folder, for data that moved since the run trained."""
    config = _read_yaml(config_path)
    data = config.get("data") or {}
    if isinstance(data, dict) and "init_args" in data:
        data = data.get("init_args") or {}
    if not isinstance(data, dict):
        raise ValueError(f"{config_path}: 'data' is not a mapping of datamodule arguments")
    if data_root is not None:
        data = {**data, "root": data_root}
    try:
        return app.datamodule(**data)
    except TypeError as exc:
        raise ValueError(
            f"{config_path}: its data settings do not fit {app.datamodule.__name__} ({exc}); "
            "was the run written by another version of the app?"
        ) from None


def _samples(dm: Any, n: int) -> Any:
    from ..callbacks import take_samples

    dm.prepare_data()
    dm.setup("validate")
    for make in ("val_dataloader", "test_dataloader"):
        try:
            loader = getattr(dm, make)()
        except (ValueError, NotImplementedError, AttributeError):
            continue
        if loader is None:
            continue
        for batch in loader:
            return take_samples(batch, n)
    raise ValueError(f"{type(dm).__name__} has no validation or test samples to show")


def _headline(run_dir: Path) -> str:
    path = run_dir / "metrics.json"
    if not path.is_file():
        return ""
    from ..runs import read_json

    head = read_json(path).get("headline") or {}
    value = head.get("value")
    if not isinstance(value, int | float):
        return ""
    return f"{head.get('metric')} = {value:.4g} ({head.get('from')})"


def check_run_folder(run_dir: Path) -> tuple[Path, Path]:
    """(config.yaml, checkpoint) of a run folder, or a one-line error saying what is missing."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(
            f"run folder {run_dir} does not exist; pass folders written by `attnlab <app> fit`"
        )
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise ValueError(
            f"{run_dir} has no config.yaml, so its data cannot be rebuilt: is it an attnlab "
            "run folder?"
        )
    return config_path, _checkpoint(run_dir)


def run_section(
    run_dir: Path, samples: int = DEFAULT_SAMPLES, data_root: str | None = None
) -> dict[str, Any]:
    """Everything the page shows about one run: its app, checkpoint, headline and panels."""
    from ..app import FigureContext, load_apps
    from ..callbacks import forward_with_attention
    from ..checkpoint import load_checkpoint
    from ..module import AttnlabModule

    run_dir = Path(run_dir)
    config_path, ckpt_path = check_run_folder(run_dir)
    name = _app_name(run_dir, load_checkpoint(ckpt_path))
    apps = load_apps()
    if name not in apps:
        raise ValueError(
            f"{run_dir} was trained by app {name!r}, which is not installed "
            f"(installed: {', '.join(apps) or 'none'})"
        )
    app = apps[name]
    if app.atlas is None:
        raise ValueError(f"{run_dir}: app {name!r} has no atlas panels (its App sets no `atlas`)")
    if not issubclass(app.module, AttnlabModule):
        raise ValueError(f"app {name!r}: its module is not an AttnlabModule")
    module = app.module.from_checkpoint(ckpt_path)
    dm = _datamodule(app, config_path, data_root)
    batch = _samples(dm, samples)
    output, maps = forward_with_attention(module, batch, app.figure_layers)
    panels = list(app.atlas(FigureContext(module, batch, output, maps, "atlas", dm)))
    if not panels:
        raise ValueError(
            f"{run_dir}: app {name!r} drew no atlas panels (a model without attention layers?)"
        )
    where = f"{run_dir} ({name})"
    return {
        "app": name,
        "description": app.description,
        "run": str(run_dir),
        "name": run_dir.resolve().name,
        "checkpoint": ckpt_path.name,
        "headline": _headline(run_dir),
        "panels": [panel_json(p, where) for p in panels],
    }


def default_out(run_dirs: Sequence[str | Path]) -> Path:
    """Where the page goes without ``--out``: ``atlas.html`` in the first run folder (never the
    working directory, which is often a source checkout)."""
    return Path(run_dirs[0]) / "atlas.html"


def build_atlas(
    run_dirs: Sequence[str | Path],
    out: str | Path | None = None,
    *,
    samples: int = DEFAULT_SAMPLES,
    force: bool = False,
    data_root: str | None = None,
) -> Path:
    """Write the atlas of ``run_dirs`` to ``out`` (default: ``atlas.html`` in the first run
    folder); every run is read before anything is written."""
    if not run_dirs:
        raise ValueError("give at least one run folder")
    out = Path(out) if out is not None else default_out(run_dirs)
    if out.exists() and not force:
        raise FileExistsError(
            f"{out} already exists; pass --force to replace it or choose another --out"
        )
    if out.exists() and out.is_dir():
        raise IsADirectoryError(f"{out} is a folder; --out needs a file name like atlas.html")
    if samples < 1:
        raise ValueError(f"--samples must be at least 1, got {samples}")
    for run_dir in run_dirs:  # every folder checked before any model is loaded
        check_run_folder(Path(run_dir))
    from ..run_lock import lock_run_folder_of
    from ..runs import atomic_write_text

    # Into a run folder (by default, the first one): not while a live command writes it.
    with lock_run_folder_of(out, "atlas"):
        torch.manual_seed(0)
        sections = [run_section(Path(d), samples, data_root) for d in run_dirs]
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, render_page(sections))
    return out


def atlas_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="attnlab atlas",
        description="one static HTML page of attention maps, side by side, for trained runs",
        allow_abbrev=False,
    )
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders of fit")
    parser.add_argument(
        "--out", default=None, help="output file (default: atlas.html in the first RUN_DIR)"
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=DEFAULT_SAMPLES,
        help=f"validation samples per run (default {DEFAULT_SAMPLES})",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing --out file")
    parser.add_argument(
        "--data.root",
        dest="data_root",
        default=None,
        metavar="DIR",
        help="read every run's data from DIR instead of the data.root in its config.yaml "
        "(data that moved since training; ATTNLAB_DATA_DIR also works for every app)",
    )
    args = parser.parse_args(argv)
    path = build_atlas(
        args.run_dirs,
        args.out,
        samples=args.samples,
        force=args.force,
        data_root=args.data_root,
    )
    size = path.stat().st_size
    print(f"atlas: {path} ({len(args.run_dirs)} run(s), {math.ceil(size / 1024)} KiB)")
    return 0
