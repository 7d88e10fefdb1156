"""Where things live on disk: the project's ``shared/`` folder, the download cache and local
dataset roots.

The lowest module of the layer (standard library only), so the dataset downloader and the command
both read these without one importing the other.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir", "data_root", "shared_dir"]


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
    """A folder of real data: ``root`` if given, else ``$ATTNLAB_DATA_DIR/<subdir>`` if present."""
    if root:
        path = Path(root).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"data root {path} does not exist; check --data.root")
        return path
    env = os.environ.get("ATTNLAB_DATA_DIR")
    if env and (Path(env) / subdir).exists():
        return Path(env) / subdir
    return None
