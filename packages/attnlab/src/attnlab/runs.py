"""The run folder: what every `attnlab <app> fit` writes, and small atomic-write helpers.

A run folder holds ``config.yaml``, ``manifest.json``, ``metrics.csv`` (one row per epoch),
``metrics.json`` (best validation metrics and the best checkpoint's test metrics),
``checkpoints/{last,best}.ckpt``, ``figures/*.png`` and TensorBoard events under ``tb/``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "EpochTable",
    "atomic_write_bytes",
    "atomic_write_text",
    "default_run_dir",
    "git_commit",
    "now_iso",
    "read_json",
    "to_float",
    "versions",
    "write_json",
]


def _default_mode() -> int:
    """The permissions ``open()`` would give a new file: 0o666 less the process umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates the file private (0600); a report or a checkpoint should get the same
        # permissions as any other file the user writes.
        os.fchmod(fd, _default_mode())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(_jsonable(data), indent=2, sort_keys=False) + "\n")


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def default_run_dir(app: str, subcommand: str = "fit", root: Path | None = None) -> Path:
    """``runs/<app>/<timestamp>`` (``-<subcommand>`` appended for evaluation-only runs)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    name = stamp if subcommand == "fit" else f"{stamp}-{subcommand}"
    base = Path(root) if root is not None else Path(os.environ.get("ATTNLAB_RUNS", "runs"))
    path = base / app / name
    n = 1
    while path.exists():
        n += 1
        path = base / app / f"{name}-{n}"
    return path


def git_commit(cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd or Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def versions() -> dict[str, str]:
    import lightning
    import torch

    from . import __version__

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "attnlab": __version__,
        "platform": platform.platform(),
    }


def to_float(value: Any) -> float | None:
    try:
        return float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError, RuntimeError):
        return None


class EpochTable:
    """Per-epoch metrics kept in ``metrics.csv``; rows of epochs after a resume point are replaced."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []
        if self.path.exists():
            with open(self.path, newline="", encoding="utf-8") as fh:
                self.rows = [dict(r) for r in csv.DictReader(fh)]

    def keep_before(self, epoch: int) -> None:
        self.rows = [r for r in self.rows if int(float(r.get("epoch", 0))) < epoch]

    def add(self, row: dict[str, Any]) -> None:
        self.rows = [r for r in self.rows if int(float(r["epoch"])) != int(row["epoch"])]
        self.rows.append(row)
        self.write()

    def columns(self) -> list[str]:
        cols: list[str] = ["epoch", "step"]
        for row in self.rows:
            cols += [c for c in row if c not in cols]
        return cols

    def write(self) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns(), extrasaction="ignore")
        writer.writeheader()
        for row in self.rows:
            writer.writerow(row)
        atomic_write_text(self.path, buf.getvalue())

    def best(self, monitor: str, mode: str) -> dict[str, Any] | None:
        scored = [r for r in self.rows if to_float(r.get(monitor)) is not None]
        if not scored:
            return None

        def key(row: dict[str, Any]) -> float:
            return to_float(row[monitor]) or 0.0

        return min(scored, key=key) if mode == "min" else max(scored, key=key)


def command_line() -> str:
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])


def write_topk_predictions(run_dir: Path, predictions: list[dict[str, Any]], top_k: int) -> Path:
    """``predictions.json`` and ``predictions.csv`` of a classifier's ``predict``.

    Each prediction is ``{"path": ..., "top": [{"class", "name", "probability"}, ...]}``; the CSV
    has one row per input with ``class_r, name_r, probability_r`` for r = 1..top_k.
    """
    run_dir = Path(run_dir)
    write_json(run_dir / "predictions.json", {"predictions": predictions})
    buf = io.StringIO()
    writer = csv.writer(buf)
    header = ["path"]
    for r in range(1, top_k + 1):
        header += [f"class_{r}", f"name_{r}", f"probability_{r}"]
    writer.writerow(header)
    for row in predictions:
        line: list[Any] = [row["path"]]
        for top in row["top"]:
            line += [top["class"], top["name"], top["probability"]]
        writer.writerow(line)
    path = run_dir / "predictions.csv"
    atomic_write_text(path, buf.getvalue())
    print(f"wrote {len(predictions)} predictions to {path}", flush=True)
    return path
