"""The run folder: what every `attnlab <app> fit` writes, and small atomic-write helpers.

A run folder holds ``config.yaml``, ``manifest.json``, ``metrics.csv`` (one row per epoch),
``metrics.json`` (best validation metrics and the best checkpoint's test metrics),
``checkpoints/{last,best}.ckpt``, ``figures/*.png`` and TensorBoard events under ``tb/``; later
evaluations add ``evals/<stage>-<timestamp>.json`` and ``evals/<stage>-<timestamp>/``, and the
command writing to it holds ``.lock`` (``attnlab.run_lock``). The helpers at the end say what a
folder holds: whether it is a run, its newest whole checkpoint, what a killed command left.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "RUN_MARKERS",
    "EpochTable",
    "atomic_output",
    "atomic_write_bytes",
    "atomic_write_csv",
    "atomic_write_text",
    "check_run_dir_path",
    "checkpoint_files",
    "default_run_dir",
    "evaluation_name",
    "git_commit",
    "holds_run",
    "is_whole_checkpoint",
    "mark_interrupted",
    "newest_checkpoint",
    "now_iso",
    "read_json",
    "remove_stale_temporaries",
    "to_float",
    "versions",
    "write_json",
]


def _default_mode() -> int:
    """The permissions ``open()`` would give a new file: 0o666 less the process umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """A fresh temporary file beside ``path`` to write into; renamed over ``path`` on success.

    The one way attnlab writes a file, for writers that want a file name (``torch.export.save``,
    the ONNX exporter) as well as for bytes: the temporary name is unique (``mkstemp``, created
    with ``O_EXCL`` in the target folder, so no planted file or link is opened), and ``rename``
    replaces whatever is at ``path`` -- a symbolic link included -- instead of writing through
    it, so a link planted in a run folder never redirects a write elsewhere. Readers see the old
    file or the new one, never half; on failure the temporary is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir() and not path.is_symlink():
        raise IsADirectoryError(f"{path} is a folder; pass a file name to write")
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        # mkstemp creates the file private (0600); a report or a checkpoint should get the same
        # permissions as any other file the user writes.
        os.fchmod(fd, _default_mode())
        os.close(fd)
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _naming_target(exc, path, tmp) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _naming_target(exc: OSError, path: Path, tmp: Path) -> OSError:
    """A write error that names no file (a full disk, a quota, a size limit: ``write`` does not
    say which file) or names the hidden temporary, restated for the file being written."""
    if exc.filename is not None and Path(exc.filename) != tmp:
        return exc
    where = f"could not write {path} (its previous version is kept)"
    if exc.errno is None:
        return OSError(f"{exc}: {where}")
    return OSError(exc.errno, f"{exc.strerror}: {where}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through ``atomic_output``."""
    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_csv(path: Path, header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> None:
    """A CSV file (``csv.writer``'s dialect) written through ``atomic_output``."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


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


# ------------------------------------------------------------------ what a run folder holds
# Files whose presence means a folder already holds a run (a fit, or an evaluation's own folder).
RUN_MARKERS = ("manifest.json", "metrics.json")


def check_run_dir_path(run_dir: Path) -> None:
    """A ``--run_dir`` that is, or lies under, a file is refused before anything is built."""
    run_dir = Path(run_dir)
    for path in (run_dir, *run_dir.parents):
        if path.exists() and not path.is_dir():
            where = "is a file" if path == run_dir else f"lies under {path}, which is a file"
            raise ValueError(
                f"--run_dir {run_dir} {where}, not a folder; pass a folder path (a new one for fit)"
            )


def checkpoint_files(run_dir: Path) -> list[Path]:
    """``checkpoints/*.ckpt`` of a run folder (temporaries of interrupted saves excluded)."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.ckpt") if p.is_file() and not p.name.startswith("."))


def holds_run(run_dir: Path) -> bool:
    """Whether an earlier command already wrote a run into this folder."""
    run_dir = Path(run_dir)
    return any((run_dir / name).is_file() for name in RUN_MARKERS) or bool(
        checkpoint_files(run_dir)
    )


def is_whole_checkpoint(path: Path) -> bool:
    """A file ``torch.save`` finished: its zip directory (written last) reads and lists the
    pickle. Checked without loading the tensors."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/data.pkl") for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def newest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint ``--ckpt_path last`` resumes: the newest whole one in the run folder
    (``last.ckpt`` on a tie). A run killed between its first ``best.ckpt`` and its first
    ``last.ckpt`` resumes from ``best.ckpt``, which holds the same training state."""
    whole = [p for p in checkpoint_files(run_dir) if is_whole_checkpoint(p)]
    if not whole:
        return None
    return max(whole, key=lambda p: (p.stat().st_mtime_ns, p.name == "last.ckpt"))


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete the ``.<name>.*.tmp`` files that killed atomic writes left behind. Only called
    by the command that holds the folder's lock, so no live write owns them."""
    removed = []
    # os.walk does not follow links to folders: a link planted in the run folder never leads
    # this cleanup outside it.
    for folder, _, names in os.walk(run_dir):
        for name in sorted(names):
            path = Path(folder) / name
            if fnmatch.fnmatch(name, ".*.tmp") and path.is_file() and not path.is_symlink():
                path.unlink()
                removed.append(path)
    return removed


def mark_interrupted(run_dir: Path) -> bool:
    """A manifest still saying ``running`` when a command takes the folder belongs to a process
    that died (the lock is free): record it as ``interrupted``. Returns whether it did."""
    path = Path(run_dir) / "manifest.json"
    try:
        manifest = read_json(path)
    except (OSError, ValueError):
        return False  # no manifest yet, or not one of ours: nothing to mark
    if not isinstance(manifest, dict):
        return False
    changed = False
    found = {"status": "interrupted", "interrupted_found_at": now_iso()}
    if manifest.get("status") == "running":
        manifest.update(found)
        changed = True
    for entry in manifest.get("evaluations") or []:
        if isinstance(entry, dict) and entry.get("status") == "running":
            entry.update(found)
            changed = True
    if changed:
        write_json(path, manifest)
    return changed


def evaluation_name(run_dir: Path, subcommand: str) -> str:
    """``<subcommand>-<timestamp>``, unused under ``evals/``: what an evaluation adds to a
    folder that already holds a run is ``evals/<name>.json`` and the folder ``evals/<name>/``."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = Path(run_dir) / "evals"
    name, n = f"{subcommand}-{stamp}", 1
    while (folder / name).exists() or any(folder.glob(f"{name}.*")):
        n += 1
        name = f"{subcommand}-{stamp}-{n}"
    return name
