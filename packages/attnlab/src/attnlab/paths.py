"""Where things live on disk: the project's ``shared/`` folder, the download cache and local
dataset roots.

The lowest module of the layer (standard library only), so the dataset downloader and the command
both read these without one importing the other.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["cache_dir", "data_root", "data_root_hint", "shared_dir"]


def shared_dir() -> Path | None:
    """The project's ``shared/`` folder (trainer presets, dataset manifest).

    ``ATTNLAB_SHARED`` wins; otherwise the nearest ``shared/configs`` above this file or the
    working directory.
    """
    env = os.environ.get("ATTNLAB_SHARED")
    if env:
        return Path(env)
    for start in (Path(__file__).resolve(), Path.cwd().resolve()):
        for parent in [start, *start.parents]:
            candidate = parent / "shared"
            if (candidate / "configs").is_dir():
                return candidate
    return None


def cache_dir() -> Path:
    """Where downloads go: ``$ATTNLAB_DATA`` or ``~/.cache/attnlab``."""
    return Path(os.environ.get("ATTNLAB_DATA") or Path.home() / ".cache" / "attnlab")


def data_root(root: str | Path | None, subdir: str) -> Path | None:
    """A folder of real data: ``root`` if given, else ``$ATTNLAB_DATA_DIR/<subdir>`` if present.

    None when neither is there; the app's message then says why with ``data_root_hint``. A set
    ``ATTNLAB_DATA_DIR`` that is not a folder (a typo) is warned about once on stderr, so an app
    that falls back to a download still names it.
    """
    if root:
        path = Path(root).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"data root {path} does not exist; check --data.root")
        return path
    env = os.environ.get("ATTNLAB_DATA_DIR")
    if env and (Path(env).expanduser() / subdir).exists():
        return Path(env).expanduser() / subdir
    if env and not Path(env).expanduser().is_dir() and env not in _WARNED:
        _WARNED.add(env)
        print(f"warning: {data_root_hint(subdir)}", file=sys.stderr, flush=True)
    return None


_WARNED: set[str] = set()


def data_root_hint(subdir: str, looked_for: str | None = None) -> str:
    """Why ``data_root(None, subdir)`` found no folder, for an app's error message: the value of
    ``ATTNLAB_DATA_DIR`` and the path looked for in it (``looked_for``: a file in ``subdir``).

    E.g. ``ATTNLAB_DATA_DIR=/data/sets is not a folder (looked for /data/sets/ett/ETTh1.csv)``.
    """
    env = os.environ.get("ATTNLAB_DATA_DIR")
    relative = Path(subdir, looked_for) if looked_for else Path(subdir)
    if not env:
        return (
            f"ATTNLAB_DATA_DIR is not set (it is searched for <ATTNLAB_DATA_DIR>/{relative}) "
            "and no --data.root was given"
        )
    base = Path(env).expanduser()
    target = base / relative
    if not base.is_dir():
        return f"ATTNLAB_DATA_DIR={env} is not a folder (looked for {target}); check its spelling"
    if not (base / subdir).is_dir():
        return f"ATTNLAB_DATA_DIR={env} has no {subdir}/ folder (looked for {target})"
    return f"ATTNLAB_DATA_DIR={env}: {target} does not exist"
