"""The help cache: `attnlab <app> fit --help` a second time without importing torch or Lightning.

The help of ``fit|validate|test|predict`` is LightningCLI's, built from the Trainer's and the
app's signatures, so rendering it means importing Lightning's CLI (torch, torch._dynamo,
torchmetrics and what it pulls in): 3 s or more on two cores before a line is printed. Like other
tools whose help needs heavy imports, the command renders it once, stores the exact text, and
prints the stored text for the next identical request.

The key holds everything the text could depend on, gathered without importing any of those
packages: the full command line (config names resolved to files), the content of every file it
names, the versions of python and of the packages that build the parser, the size and mtime of
every file of attnlab, attention_core and the app's own package (an editable install changes
without a version bump), the terminal width argparse wraps to, stdout's encoding, the working
folder and the environment variables the parser reads (``ATTNLAB_*``, ``PL_*``,
``JSONARGPARSE_*``, ``LIGHTNING_*``, ``COLUMNS``). Only a help that exited 0 with text is stored;
an error never is.

Where: ``$ATTNLAB_HELP_CACHE``, else ``$XDG_CACHE_HOME/attnlab/help``, else
``~/.cache/attnlab/help`` (beside the download cache's default, ``~/.cache/attnlab``). A folder
that cannot be written never breaks ``--help``: it is rendered every time.
``ATTNLAB_NO_HELP_CACHE=1`` turns the cache off. Standard library only (imported by
``attnlab.cli`` before anything heavy).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from importlib.metadata import PackageNotFoundError, entry_points, version
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from .app import App

__all__ = [
    "help_cache_dir",
    "help_key",
    "print_help_cached",
    "wants_cached_help",
]

CACHE_DIR_ENV = "ATTNLAB_HELP_CACHE"
DISABLE_ENV = "ATTNLAB_NO_HELP_CACHE"
# Environment variables the parser or the help may read: our own, LightningCLI's env_prefix
# ("PL", used when JSONARGPARSE_DEFAULT_ENV turns environment defaults on), jsonargparse's own.
ENV_PREFIXES = ("ATTNLAB_", "PL_", "JSONARGPARSE_", "LIGHTNING_")
ENV_NAMES = ("COLUMNS",)
# Distributions whose code shapes `fit --help` (the app's own is added from its entry point).
DISTRIBUTIONS = (
    "attnlab",
    "attention-core",
    "lightning",
    "pytorch-lightning",
    "jsonargparse",
    "docstring-parser",
    "typeshed-client",
    "torch",
    "torchmetrics",
)
# Packages whose every file is stat'ed: edited in place by an editable install.
OUR_PACKAGES = ("attnlab", "attention_core")
# A file named on the command line is hashed whole up to this size (a config); a larger one (a
# data file, which the help does not read) by its size and mtime.
HASHED_FILE_MAX_BYTES = 1 << 20
# Stored helps kept; the oldest (by last use) go first.
MAX_ENTRIES = 64


def wants_cached_help(args: Sequence[str]) -> bool:
    """Whether a subcommand's arguments ask for help that may come from the cache: ``-h`` or
    ``--help``, not ``--print_config`` (which prints a configuration), the cache not disabled."""
    if os.environ.get(DISABLE_ENV, "") not in ("", "0"):
        return False
    if any(a.startswith("--print_config") for a in args):
        return False
    return any(a in ("-h", "--help") for a in args)


def help_cache_dir() -> Path:
    """``$ATTNLAB_HELP_CACHE``, else ``$XDG_CACHE_HOME/attnlab/help``, else
    ``~/.cache/attnlab/help``."""
    explicit = os.environ.get(CACHE_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "attnlab" / "help"


def _version(distribution: str) -> str | None:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def _top_package(reference: Any) -> str | None:
    """The top-level package of a ``"package.module:Name"`` string or of a class/function."""
    name = reference.partition(":")[0] if isinstance(reference, str) else None
    if name is None:
        name = getattr(reference, "__module__", None)
    return name.split(".")[0] if name else None


def _app_sources(app: App) -> tuple[set[str], dict[str, str | None]]:
    """The top-level packages the app's classes come from, and its distribution's version."""
    from .app import ENTRY_POINT_GROUP, LAZY_FIELDS

    packages: set[str] = set()
    versions: dict[str, str | None] = {}
    # vars(): the raw field values, so that a lazy "package.module:Name" is not imported.
    for name in LAZY_FIELDS:
        package = _top_package(vars(app).get(name))
        if package:
            packages.add(package)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name != app.name:
            continue
        packages.add(ep.module.split(".")[0])
        if ep.dist is not None:
            versions[ep.dist.name] = ep.dist.version
    return packages, versions


def _package_files(package: str) -> list[tuple[str, int, int]]:
    """(path, size, mtime_ns) of every file of an importable package, found without importing
    it (``find_spec`` of a top-level name only locates it); compiled ``__pycache__`` skipped."""
    try:
        spec = find_spec(package)
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    roots = list(spec.submodule_search_locations or [])
    if not roots and spec.origin and os.path.isfile(spec.origin):
        stat = os.stat(spec.origin)
        return [(spec.origin, stat.st_size, stat.st_mtime_ns)]
    found: list[tuple[str, int, int]] = []
    for root in roots:
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
            for name in sorted(files):
                if name.endswith((".pyc", ".pyo")):
                    continue
                path = os.path.join(folder, name)
                try:
                    stat = os.stat(path)
                except OSError:
                    continue
                found.append((path, stat.st_size, stat.st_mtime_ns))
    return found


def _named_files(args: Sequence[str]) -> dict[str, str]:
    """A fingerprint of every existing file an argument names (``--config my.yaml``,
    ``--config=my.yaml``): its content hash, or size and mtime for a file too large to hash."""
    fingerprints: dict[str, str] = {}
    for arg in args:
        candidate = arg.split("=", 1)[1] if arg.startswith("-") and "=" in arg else arg
        if not candidate or candidate.startswith("-") or not os.path.isfile(candidate):
            continue
        try:
            stat = os.stat(candidate)
            if stat.st_size > HASHED_FILE_MAX_BYTES:
                fingerprints[candidate] = f"size={stat.st_size} mtime={stat.st_mtime_ns}"
            else:
                fingerprints[candidate] = hashlib.sha256(Path(candidate).read_bytes()).hexdigest()
        except OSError:
            fingerprints[candidate] = "unreadable"
    return fingerprints


def help_key(app: App, args: Sequence[str], resolved: Sequence[str] = ()) -> str:
    """The cache key of a help request: ``args`` as typed after ``attnlab``, ``resolved`` the
    subcommand's arguments as LightningCLI gets them (config names turned into paths)."""
    packages, app_versions = _app_sources(app)
    stdout = sys.stdout
    parts = {
        "argv": list(args),
        "resolved": list(resolved),
        "files": _named_files([*args, *resolved]),
        "cwd": os.getcwd(),
        "python": [sys.version, sys.executable],
        "versions": {**{d: _version(d) for d in DISTRIBUTIONS}, **app_versions},
        "sources": {p: _package_files(p) for p in sorted({*OUR_PACKAGES, *packages})},
        # What argparse wraps to (it asks shutil, as here), and what the text is encoded for.
        "width": shutil.get_terminal_size().columns,
        "stdout": [getattr(stdout, "encoding", None), _isatty(stdout)],
        "env": {
            k: v
            for k, v in sorted(os.environ.items())
            if (k.startswith(ENV_PREFIXES) or k in ENV_NAMES)
            and k not in (CACHE_DIR_ENV, DISABLE_ENV)
        },
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _read(path: Path) -> str | None:
    """The stored help, or None (missing, unreadable, empty: then it is rendered again)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if not text:
        return None
    with suppress(OSError):
        os.utime(path)  # last use, for pruning
    return text


def _store(folder: Path, path: Path, text: str) -> None:
    """Store ``text`` atomically and drop the least recently used entries beyond
    ``MAX_ENTRIES``; any failure leaves the cache as it was (the help was printed anyway)."""
    from .runs import atomic_write_text  # link-safe, fsync'ed; only on a miss

    try:
        atomic_write_text(path, text)
        entries = sorted(folder.glob("*.txt"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
        for stale in entries[MAX_ENTRIES:]:
            stale.unlink(missing_ok=True)
    except OSError:
        pass


class _Recorder:
    """``sys.stdout`` as it was, also recording what is written (everything else delegated, so
    the help renders exactly as without the cache)."""

    def __init__(self, stream: TextIO):
        self._stream = stream
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return self._stream.write(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextmanager
def _recording_stdout() -> Iterator[_Recorder]:
    recorder = _Recorder(sys.stdout)
    sys.stdout = recorder  # type: ignore[assignment]
    try:
        yield recorder
    finally:
        sys.stdout = recorder._stream


def print_help_cached(
    app: App, args: Sequence[str], resolved: Sequence[str], render: Callable[[], Any]
) -> None:
    """Print the help ``render`` would print, from the cache when this request's key is stored;
    ends like argparse's help does, with ``SystemExit(0)``.

    ``render`` runs LightningCLI (which prints the help and raises ``SystemExit``); its text is
    stored only when it exits 0 with output. Anything going wrong with the key or the folder
    just renders the help as without a cache."""
    try:
        folder = help_cache_dir()
        path: Path | None = folder / f"{help_key(app, args, resolved)}.txt"
    except Exception:  # the cache only saves time: a key it cannot make means rendering
        folder, path = Path(), None
    text = _read(path) if path is not None else None
    if text is not None:
        sys.stdout.write(text)
        sys.stdout.flush()
        raise SystemExit(0)
    with _recording_stdout() as recorder:
        try:
            render()
        except SystemExit as exc:
            rendered = "".join(recorder.parts)
            if exc.code in (0, None) and rendered and path is not None:
                _store(folder, path, rendered)
            raise
