"""The lock a command holds on its run folder while it writes there, and taking the folder.

``<run_dir>/.lock`` is created with ``O_CREAT | O_EXCL`` and holds the pid, host and command
line of its holder, who also keeps an ``flock`` on it. The flock is what says whether the holder
is alive: the kernel drops it when the process dies, however it dies, and a recycled pid cannot
fake it. So a second command into a busy folder stops with one line naming the holder, and the
lock of a killed command is taken over with a warning. Where ``fcntl`` is missing, liveness falls
back to asking whether the pid still exists.

A distributed launch (torchrun, SLURM, Lightning's own DDP launcher) runs the command once per
rank. Global rank 0 takes the lock and records the id of its launch in it (``launch_id``); every
other rank makes the same read-only checks itself (``join_run_folder``: the overwrite guard, a live
holder of another launch) and waits, a bounded time, for the lock of its own launch. So a refusal
is the same one line on every rank at once, never ranks left waiting for a rank 0 that exited.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
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

__all__ = [
    "LOCK_NAME",
    "RANK_WAIT_S",
    "RunFolderBusyError",
    "RunLock",
    "join_run_folder",
    "launch_id",
    "lock_run_folder_of",
    "take_run_folder",
]

LOCK_NAME = ".lock"
# How long a rank other than 0 waits for rank 0 of its launch to lock the run folder. The ranks
# start together, but each imports torch and parses its configs first (seconds on a busy machine).
RANK_WAIT_S = 30.0
# What a refused training or evaluation command can do instead of waiting.
RUN_DIR_HINT = "choose another --run_dir"

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


def launch_id(main_address: str, main_port: int) -> str:
    """What every rank of one distributed launch shares and no other live launch has: the
    rendezvous address and port (a live launch holds its port), plus torchrun's run id and
    restart count and SLURM's job and step where they are set."""
    parts = [f"{main_address}:{main_port}"]
    for name in (
        "TORCHELASTIC_RUN_ID",
        "TORCHELASTIC_RESTART_COUNT",
        "SLURM_JOB_ID",
        "SLURM_STEP_ID",
    ):
        if os.environ.get(name):
            parts.append(f"{name}={os.environ[name]}")
    return " ".join(parts)


def _read_record(data: bytes) -> dict[str, Any]:
    try:
        record = json.loads(data.decode("utf-8"))
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def _busy_message(run_dir: Path, holder: dict[str, Any], hint: str) -> str:
    return (
        f"{run_dir} is in use by {_describe(holder)}; wait for it to finish, or {hint} (if no "
        f"such process runs, delete {Path(run_dir) / LOCK_NAME})"
    )


class RunLock:
    """Holds ``<run_dir>/.lock`` from ``acquire`` to ``release`` (and at the latest, exit).

    ``launch`` is the ``launch_id`` of a distributed launch (recorded for its other ranks);
    ``hint`` says, in the refusal, what the user can do instead of waiting."""

    def __init__(self, run_dir: Path, launch: str | None = None, hint: str = RUN_DIR_HINT):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.launch = launch
        self.hint = hint
        self._fd: int | None = None
        self._owner: int | None = None  # the pid that took the lock
        self.took_over: dict[str, Any] | None = None  # the dead holder, when there was one

    def _content(self) -> bytes:
        record: dict[str, Any] = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": command_line(),
            "started": now_iso(),
        }
        if self.launch is not None:
            record["launch"] = self.launch
        return (json.dumps(record) + "\n").encode("utf-8")

    def _holder(self, fd: int) -> dict[str, Any]:
        try:
            return _read_record(os.pread(fd, 4096, 0))
        except OSError:
            return {}

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
        return _busy_message(self.run_dir, holder, self.hint)

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


def take_run_folder(
    run_dir: Path,
    subcommand: str,
    ckpt_path: str | None,
    launch: str | None = None,
    hint: str = RUN_DIR_HINT,
) -> RunLock:
    """Lock ``run_dir`` for this command, repair what a dead command left (stale temporaries, a
    manifest still ``running``), then refuse a ``fit`` that would overwrite a run it is not
    resuming. Returns the held lock; on refusal the lock is released first."""
    lock = RunLock(run_dir, launch=launch, hint=hint).acquire()
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


def _lives_here(holder: dict[str, Any]) -> bool:
    """Whether a holder recorded as running on this host still does (its pid exists)."""
    pid = holder.get("pid")
    return holder.get("host") == socket.gethostname() and isinstance(pid, int) and _pid_alive(pid)


def join_run_folder(
    run_dir: Path,
    subcommand: str,
    ckpt_path: str | None,
    launch: str,
    rank: int,
    wait_s: float = RANK_WAIT_S,
) -> None:
    """A rank other than 0 of a distributed launch: reach rank 0's decision without writing.

    The overwrite guard is evaluated here as on rank 0 (rank 0 writes nothing that changes it
    before every rank has joined the process group). Then the lock: one recorded with ``launch``
    is rank 0's, and the command goes on; one held by a live command of another launch on this
    host is the same refusal rank 0 makes; a dead holder's lock is left for rank 0 to take over.
    Nothing after ``wait_s`` seconds means rank 0 stopped before locking (its error says why)."""
    run_dir = Path(run_dir)
    if subcommand == "fit":
        _refuse_overwrite(run_dir, ckpt_path)
    path = run_dir / LOCK_NAME
    deadline = time.monotonic() + wait_s
    holder: dict[str, Any] = {}
    while True:
        try:
            holder = _read_record(path.read_bytes())
        except OSError:  # not there yet, or being replaced
            holder = {}
        if holder.get("launch") == launch:
            return
        if holder and _lives_here(holder):
            raise RunFolderBusyError(_busy_message(run_dir, holder, RUN_DIR_HINT))
        if time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    if holder:
        raise RunFolderBusyError(_busy_message(run_dir, holder, RUN_DIR_HINT))
    raise RunFolderBusyError(
        f"{run_dir}: rank {rank} waited {wait_s:.0f} s for rank 0 of its launch to lock the run "
        "folder, in vain; rank 0 stopped first (its error line says why)"
    )


def _run_folder_of(path: Path) -> Path | None:
    """The run folder ``path`` would be written into: its folder or the one above, whichever
    holds a run or a lock (``RUN/report.html`` and ``RUN/checkpoints/best.onnx`` -> ``RUN``)."""
    folder = Path(path).absolute().parent
    for candidate in (folder, folder.parent):
        if (candidate / LOCK_NAME).exists() or holds_run(candidate):
            return candidate
    return None


@contextlib.contextmanager
def lock_run_folder_of(out: Path, command: str) -> Iterator[RunLock | None]:
    """Hold the lock of the run folder ``out`` lies in, if any, while ``command`` writes ``out``:
    a live command there (a fit still training) is a one-line refusal saying to wait or to write
    elsewhere with ``--out``; a dead holder's lock is taken over, as by ``fit``."""
    folder = _run_folder_of(out)
    if folder is None:
        yield None
        return
    lock = take_run_folder(folder, command, None, hint="pass --out with a path outside it")
    try:
        yield lock
    finally:
        lock.release()
