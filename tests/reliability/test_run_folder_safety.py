"""Nothing a run wrote is ever lost (issue #18): `fit` only writes into a folder holding a run to
resume that run; evaluations add to a run; a run folder is locked while a command writes to it;
a run killed at any point resumes from its newest whole checkpoint to the same metrics.json; and
bad limits, a file as ``--run_dir`` and a full disk are one line naming what is wrong.

Driven through the real command on the forecasting app (the cheapest to train), in the same xdist
group as its kill/resume test so that both compare against one uninterrupted reference run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
from reliability_cases import APPS, AppCase, epoch_rows, fit_args, read_metrics

HERE = Path(__file__).parent
FORECAST = next((app for app in APPS if app.command == "forecast"), None)

pytestmark = [
    pytest.mark.skipif(FORECAST is None, reason="the forecasting app is not installed"),
    pytest.mark.xdist_group("rel-forecast"),
]


class KillAt(pl.Callback):
    """Test-only: SIGKILL this process at the ``count``-th call of ``hook`` -- a kill at an exact
    point. ``on_save_checkpoint`` runs before each checkpoint file is written (``best`` before
    ``last`` at every epoch end), so ``count=2`` leaves the first ``best.ckpt`` without a
    ``last.ckpt``; ``on_test_start`` is after training, before metrics.json."""

    def __init__(self, hook: str, count: int = 1):
        self.hook = hook
        self.count = count
        self.calls = 0
        setattr(self, hook, self._maybe_kill)

    def _maybe_kill(self, *args: Any) -> None:
        self.calls += 1
        if self.calls == self.count:
            os.kill(os.getpid(), signal.SIGKILL)


def _kill_at(hook: str, count: int = 1) -> tuple[str, str]:
    spec = {
        "class_path": "test_run_folder_safety.KillAt",
        "init_args": {"hook": hook, "count": count},
    }
    return ("--trainer.callbacks", json.dumps([spec]))


def _pause_mid_epoch(marker: Path) -> tuple[str, str]:
    spec = {"class_path": "mid_epoch_pause.PauseMidEpoch", "init_args": {"marker": str(marker)}}
    return ("--trainer.callbacks", json.dumps([spec]))


def _errors(proc: subprocess.CompletedProcess[str]) -> list[str]:
    """The ``error:`` lines of a failed command (exactly one, and no traceback)."""
    assert proc.returncode == 1, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines


def _files(run: Path) -> dict[Path, bytes]:
    return {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}


def _finished_copy(reference: Path, tmp_path: Path) -> Path:
    """A finished run this test may break (the shared reference run stays untouched)."""
    return Path(shutil.copytree(reference, tmp_path / "finished"))


def _eval_args(stage: str, run: Path, *extra: str) -> list[str]:
    assert FORECAST is not None
    return [FORECAST.command, stage, "--config", "quick", *FORECAST.small_data,
            "--trainer.limit_test_batches", "2", "--run_dir", str(run), *extra]  # fmt: skip


def _assert_same_numbers(got: dict[str, Any], want: dict[str, Any], where: str) -> None:
    assert set(got) == set(want), f"{where}: {sorted(got)} vs {sorted(want)}"
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-7), f"{where}.{key}"


def test_fit_into_a_run_it_is_not_resuming_is_refused(
    tmp_path: Path,
    attnlab_command: Callable[..., Any],
    reference_run: Callable[[AppCase], Path],
) -> None:
    """Fine-tuning from another run's checkpoint (or starting afresh) into a finished run's folder
    is one error line, and every file of that run is byte-identical afterwards."""
    assert FORECAST is not None
    reference = reference_run(FORECAST)
    finished = _finished_copy(reference, tmp_path)
    before = _files(finished)
    command = attnlab_command(tmp_path)
    other = reference / "checkpoints" / "best.ckpt"

    proc = command(*fit_args(FORECAST, finished, "--ckpt_path", str(other)), check=False)
    (line,) = _errors(proc)
    assert str(finished) in line and "is not one of its checkpoints" in line
    assert "new --run_dir" in line
    proc = command(*fit_args(FORECAST, finished), check=False)
    (line,) = _errors(proc)
    assert "already holds a run; resume it with --ckpt_path last" in line
    assert _files(finished) == before


def test_evaluations_add_to_a_run_and_never_replace_it(
    tmp_path: Path,
    attnlab_command: Callable[..., Any],
    reference_run: Callable[[AppCase], Path],
) -> None:
    """`test` and `validate` into a finished fit write evals/<stage>-<timestamp>.json (and their
    own files under evals/<stage>-<timestamp>/); the fit's metrics.json, config, figures and
    checkpoints stay byte-identical, and its manifest keeps its own status and command."""
    assert FORECAST is not None
    finished = _finished_copy(reference_run(FORECAST), tmp_path)
    before = _files(finished)
    command = attnlab_command(tmp_path)
    for stage in ("test", "validate"):
        out = command(*_eval_args(stage, finished, "--ckpt_path", "last")).stdout
        assert f"wrote {finished / 'evals'}" in out

    after = _files(finished)
    changed = {rel for rel in before if after.get(rel) != before[rel]}
    assert changed == {Path("manifest.json")}, changed
    added = {rel for rel in after if rel not in before}
    assert added and all(rel.parts[0] == "evals" for rel in added), sorted(added)
    results = sorted((finished / "evals").glob("*.json"))
    assert [p.name.split("-")[0] for p in results] == ["test", "validate"]
    tested = json.loads(results[0].read_text())
    fit_metrics = json.loads(before[Path("metrics.json")])
    # The same checkpoint (last = best here) on the same test batches: the fit's own test result.
    _assert_same_numbers(tested["test"], fit_metrics["test"], "test")
    assert "val/mse" in json.loads(results[1].read_text())["validate"]

    manifest, first = (json.loads((finished / "manifest.json").read_text()),
                       json.loads(before[Path("manifest.json")]))  # fmt: skip
    for key in ("status", "command", "start_time", "end_time", "subcommand"):
        assert manifest[key] == first[key], key
    assert [e["subcommand"] for e in manifest["evaluations"]] == ["test", "validate"]
    assert all(e["status"] == "completed" for e in manifest["evaluations"])
    assert manifest["evaluations"][0]["result"] == str(results[0].relative_to(finished))


def test_a_run_folder_is_locked_while_a_command_writes_to_it(
    tmp_path: Path, attnlab_command: Callable[..., Any]
) -> None:
    """While a fit runs, a second fit, a resume and a test into its folder each stop with one line
    naming the holder's pid and command; once the holder is killed, its lock is taken over with
    a warning, and the lock is gone when the resumed command ends."""
    assert FORECAST is not None
    command = attnlab_command(tmp_path, env={"PYTHONPATH": str(HERE)})
    run, marker, log = tmp_path / "run", tmp_path / "paused", tmp_path / "holder.log"
    with open(log, "w") as out:
        holder = command.start(*fit_args(FORECAST, run, *_pause_mid_epoch(marker)), stdout=out)
        try:
            _wait_for(marker, holder, log)
            lock = json.loads((run / ".lock").read_text())
            assert lock["pid"] == holder.pid and " fit " in lock["command"]
            before = _files(run)
            for args in (fit_args(FORECAST, run), fit_args(FORECAST, run, "--ckpt_path", "last"),
                         _eval_args("test", run, "--ckpt_path", "last")):  # fmt: skip
                (line,) = _errors(command(*args, check=False))
                assert f"{run} is in use by pid {holder.pid} (" in line, line
                assert "wait for it to finish" in line
            assert _files(run) == before  # the refused commands wrote nothing
        finally:
            holder.kill()
            holder.wait(timeout=60)

    proc = command(*fit_args(FORECAST, run, "--ckpt_path", "last"))
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert any(f"locked by pid {holder.pid}" in w and "no longer running" in w for w in warnings)
    assert not (run / ".lock").exists()
    assert json.loads((run / "manifest.json").read_text())["status"] == "completed"


def _wait_for(marker: Path, proc: subprocess.Popen[str], log: Path, timeout: float = 240) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the run did not pause:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


def test_run_killed_between_its_first_best_and_last_checkpoint_resumes(
    tmp_path: Path,
    attnlab_command: Callable[..., Any],
    reference_run: Callable[[AppCase], Path],
) -> None:
    """Killed after the first best.ckpt, before the first last.ckpt (a stale temporary of the
    interrupted save beside it): `fit` says to resume with --ckpt_path last, which resumes from
    best.ckpt; the temporary is removed (and nothing behind a link out of the run folder), the
    manifest records the death as `interrupted`, and the run ends with the uninterrupted run's
    metrics."""
    assert FORECAST is not None
    command = attnlab_command(tmp_path, env={"PYTHONPATH": str(HERE)})
    run = tmp_path / "run"
    killed = command(*fit_args(FORECAST, run, *_kill_at("on_save_checkpoint", 2)), check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt"]
    stale = run / "checkpoints" / ".last.ckpt.k1ll3d.tmp"
    stale.write_bytes(b"half a checkpoint")
    # A link in the run folder to a folder outside it: the cleanup must not follow it.
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / ".notes.keep.tmp").write_text("not the run's\n")
    (run / "elsewhere").symlink_to(outside, target_is_directory=True)

    (line,) = _errors(command(*fit_args(FORECAST, run), check=False))
    assert "resume it with --ckpt_path last" in line
    assert json.loads((run / "manifest.json").read_text())["status"] == "interrupted"
    assert not stale.exists()
    assert (outside / ".notes.keep.tmp").read_text() == "not the run's\n"
    (run / "elsewhere").unlink()

    resumed = command(*fit_args(FORECAST, run, "--ckpt_path", "last"))
    assert f"resuming from {run / 'checkpoints' / 'best.ckpt'}" in resumed.stdout
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["resumed"][0]["after"] == "interrupted"
    _assert_same_metrics(run, reference_run(FORECAST))


def test_metrics_json_after_a_kill_before_it_was_written_equals_an_uninterrupted_run(
    tmp_path: Path,
    attnlab_command: Callable[..., Any],
    reference_run: Callable[[AppCase], Path],
) -> None:
    """Killed after training, while testing, before metrics.json: the resume finds training done
    and writes metrics.json with the same `last`, `best` and `test` blocks as an uninterrupted
    run (the `last` block is the last epoch of metrics.csv, not the trainer's live metrics)."""
    assert FORECAST is not None
    command = attnlab_command(tmp_path, env={"PYTHONPATH": str(HERE)})
    run = tmp_path / "run"
    killed = command(*fit_args(FORECAST, run, *_kill_at("on_test_start")), check=False)
    assert killed.returncode == -signal.SIGKILL and not (run / "metrics.json").exists()
    command(*fit_args(FORECAST, run, "--ckpt_path", "last"))
    _assert_same_metrics(run, reference_run(FORECAST))


def _assert_same_metrics(run: Path, reference: Path) -> None:
    """metrics.csv (less its clocks) and metrics.json's blocks equal the uninterrupted run's."""
    timing = ("time", "train_cpu_s", "train_wall_s")
    rows = [[{k: v for k, v in row.items() if k not in timing} for row in epoch_rows(folder)]
            for folder in (run, reference)]  # fmt: skip
    assert [r["epoch"] for r in rows[0]] == [r["epoch"] for r in rows[1]]
    for got_row, want_row in zip(*rows, strict=True):
        _assert_same_numbers(
            {k: float(v) for k, v in got_row.items()},
            {k: float(v) for k, v in want_row.items()},
            f"metrics.csv epoch {want_row['epoch']}",
        )
    got, want = read_metrics(run), read_metrics(reference)
    assert want["last"], "the reference run has a last block"
    for section in ("last", "best", "test"):
        _assert_same_numbers(got[section], want[section], section)
    assert got["best_epoch"] == want["best_epoch"]


def test_fit_of_zero_epochs_or_steps_is_refused(
    tmp_path: Path, attnlab_command: Callable[..., Any]
) -> None:
    """An untrained model is never reported as a run's headline; nothing is written."""
    assert FORECAST is not None
    command = attnlab_command(tmp_path)
    for limit in ("--trainer.max_epochs", "--trainer.max_steps"):
        run = tmp_path / limit.rsplit(".", 1)[1]
        (line,) = _errors(command(*fit_args(FORECAST, run, limit, "0"), check=False))
        assert f"{limit} 0 trains nothing" in line
        assert not run.exists()


def test_run_dir_that_is_a_file_says_so(
    tmp_path: Path, attnlab_command: Callable[..., Any]
) -> None:
    assert FORECAST is not None
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    command = attnlab_command(tmp_path)
    (line,) = _errors(command(*fit_args(FORECAST, notes), check=False))
    assert f"--run_dir {notes} is a file, not a folder" in line
    (line,) = _errors(command(*_eval_args("test", notes / "run"), check=False))
    assert f"lies under {notes}, which is a file" in line
    assert notes.read_text() == "mine\n"


def test_full_disk_names_the_file_it_could_not_write(
    tmp_path: Path, attnlab_command: Callable[..., Any]
) -> None:
    """A run folder on a 400 KiB tmpfs (a private mount namespace; skipped where unprivileged
    namespaces are not allowed) fills up at the first checkpoint: one error line naming the file,
    and the lock is released."""
    assert FORECAST is not None
    disk = tmp_path / "disk"
    disk.mkdir()
    probe = ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=1k none {disk}"]
    try:
        usable = subprocess.run(probe, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        usable = False
    if not usable:
        pytest.skip("cannot mount a small tmpfs here (unshare -rm not permitted)")
    command = attnlab_command(tmp_path)
    run = disk / "run"
    inner = " ".join(f"'{a}'" for a in command.argv(*fit_args(FORECAST, run)))
    script = f"mount -t tmpfs -o size=400k none {disk} && cd {tmp_path} && exec {inner}"
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=tmp_path, env=command.env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    (line,) = _errors(proc)
    assert "No space left on device" in line
    assert f"could not write {run}{os.sep}" in line, line
