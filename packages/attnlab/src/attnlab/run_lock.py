"""The lock a command holds on its run folder while it writes there, and taking the folder.

``<run_dir>/.lock`` is created with ``O_CREAT | O_EXCL`` and holds the pid, host and command
line of its holder, who also keeps an ``flock`` on it. The flock is what says whether the holder
is alive: the kernel drops it when the process dies, however it dies, and a recycled pid cannot
fake it. So a second command into a busy folder stops with one line naming the holder, and the
lock of a killed command is taken over with a warning. Where ``fcntl`` is missing, liveness falls
back to asking whether the pid still exists.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from .runs import (
    command_line,
    holds_run,
    mark_interrupted,
    newest_checkpoint,
    now_iso,
    remove_stale_temporaries,
)

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_NAME", "RunFolderBusyError", "RunLock", "take_run_folder"]

LOCK_NAME = ".lock"

# Descriptors of the locks this process holds. A forked child (a DataLoader worker) closes its
# copies at once, so the flock lives exactly as long as the process that took it.
_HELD: set[int] = set()


def _close_inherited_locks() -> None:
    for fd in _HELD:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_inherited_locks)


class RunFolderBusyError(RuntimeError):
    """Another live command holds the run folder."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _describe(holder: dict[str, Any]) -> str:
    pid = holder.get("pid", "?")
    command = holder.get("command") or "an unknown command"
    since = f" since {holder['started']}" if holder.get("started") else ""
    return f"pid {pid} ({command}){since}"


class RunLock:
    """Holds ``<run_dir>/.lock`` from ``acquire`` to ``release`` (and at the latest, exit)."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = None
        self._owner: int | None = None  # the pid that took the lock
        self.took_over: dict[str, Any] | None = None  # the dead holder, when there was one

    def _content(self) -> bytes:
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": command_line(),
            "started": now_iso(),
        }
        return (json.dumps(record) + "\n").encode("utf-8")

    def _holder(self, fd: int) -> dict[str, Any]:
        try:
            data = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _holder_alive(self, fd: int, holder: dict[str, Any]) -> bool:
        """Whether the holder lives; with fcntl, a False answer leaves the flock held by us."""
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            return False
        pid = holder.get("pid")
        local = holder.get("host") in (None, socket.gethostname())
        return isinstance(pid, int) and (not local or _pid_alive(pid))

    def acquire(self) -> RunLock:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = None
        while fd is None:
            fd = self._open_and_lock()
        self._fd = fd
        self._owner = os.getpid()
        _HELD.add(fd)
        atexit.register(self.release)
        if self.took_over is not None:
            print(
                f"warning: {self.run_dir} was locked by {_describe(self.took_over)}, which is no "
                "longer running; taking the folder over",
                file=sys.stderr,
                flush=True,
            )
        return self

    def _open_and_lock(self) -> int | None:
        """The locked descriptor, or None when the file was replaced meanwhile (try again)."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            created = True
        except FileExistsError:
            try:
                fd = os.open(self.path, os.O_RDWR)
            except FileNotFoundError:  # released between our two opens
                return None
            created = False
        try:
            if created:
                if fcntl is not None:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:  # a racing command took over our fresh file
                        raise RunFolderBusyError(self._busy(self._holder(fd))) from None
            else:
                holder = self._holder(fd)
                if self._holder_alive(fd, holder):
                    raise RunFolderBusyError(self._busy(holder))
                if not self._still_named(fd):  # released and unlinked before our flock
                    os.close(fd)
                    return None
                self.took_over = holder
            os.ftruncate(fd, 0)
            os.pwrite(fd, self._content(), 0)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _still_named(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def _busy(self, holder: dict[str, Any]) -> str:
        return (
            f"{self.run_dir} is in use by {_describe(holder)}; wait for it to finish, or choose "
            f"another --run_dir (if no such process runs, delete {self.path})"
        )

    def release(self) -> None:
        if self._fd is None or self._owner != os.getpid():
            return  # not taken, already released, or a forked copy of the holder
        fd, self._fd = self._fd, None
        _HELD.discard(fd)
        try:
            if self._holder(fd).get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
        finally:
            os.close(fd)  # drops the flock
        atexit.unregister(self.release)


def take_run_folder(run_dir: Path, subcommand: str, ckpt_path: str | None) -> RunLock:
    """Lock ``run_dir`` for this command, repair what a dead command left (stale temporaries, a
    manifest still ``running``), then refuse a ``fit`` that would overwrite a run it is not
    resuming. Returns the held lock; on refusal the lock is released first."""
    lock = RunLock(run_dir).acquire()
    try:
        remove_stale_temporaries(run_dir)
        mark_interrupted(run_dir)
        if subcommand == "fit":
            _refuse_overwrite(Path(run_dir), ckpt_path)
    except BaseException:
        lock.release()
        raise
    return lock


def _refuse_overwrite(run_dir: Path, ckpt_path: str | None) -> None:
    """``fit`` into a folder holding a run only resumes a checkpoint of that run."""
    if not holds_run(run_dir):
        return
    checkpoints = (run_dir / "checkpoints").resolve()
    if ckpt_path and Path(ckpt_path).resolve().parent == checkpoints:
        return
    if newest_checkpoint(run_dir) is None:
        raise ValueError(
            f"{run_dir} already holds a run that has no whole checkpoint to resume; choose "
            "another --run_dir (nothing was overwritten)"
        )
    if ckpt_path:
        raise ValueError(
            f"{run_dir} already holds a run, and --ckpt_path {ckpt_path} is not one of its "
            "checkpoints; fine-tune into a new --run_dir, or resume this run with --ckpt_path "
            "last (nothing was overwritten)"
        )
    raise ValueError(
        f"{run_dir} already holds a run; resume it with --ckpt_path last, or choose another "
        "--run_dir (nothing was overwritten)"
    )
