"""One path from a config to a published number: a benchmark is a list of ``attnlab`` commands.

A benchmark module ``benchmarks/<name>.py`` defines ``BENCHMARK = Benchmark(...)``: which runs
to make (``runs(scale)``, each a :class:`Run`, i.e. one ``attnlab <app> fit`` command line) and
how to turn the finished run folders into a table (``tabulate``). This module runs them:

* every :class:`Run` is its own process, ``python -m attnlab.cli <app> fit ... --run_dir
  <runs_root>/<benchmark>/<scale>/<run name>``, with ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` set
  to ``threads``; ``jobs`` of them at once; each one's output goes to ``<run folder>.log``;
* what a run measured is read back from its folder only (``metrics.json``, ``manifest.json``,
  ``metrics.csv``), so a number in ``results/`` is exactly what ``Run.command()`` prints, typed by
  hand, gives;
* ``reuse=True`` keeps a run whose folder already holds a completed run of the same command,
  threads and config files (recorded in ``bench.json`` in the folder: the command line, and a
  digest of the files its ``--config`` names resolve to, so a shipped config edited between
  sittings runs again), so a long benchmark can be resumed or assembled over several sittings;
* a failed run is reported (name, return code, last lines of its log); the others are still
  tabulated and written, and :func:`run_benchmark` then raises :class:`BenchmarkFailed`.

What the results files (``results/<name>.json`` and ``.md``) hold, and the tabulating helpers
(``results_table``, ``command_cell``) re-exported here, are in ``benchmarks._results``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmarks._results import FORMAT as FORMAT  # benchmarks.readme reads it from here
from benchmarks._results import (
    command_cell,
    results_table,
    typed_number,
    write_benchmark_results,
)
from benchmarks.common import RESULTS_DIR, ROOT, environment

__all__ = [
    "DEFAULT_RUNS_ROOT",
    "SCALES",
    "Benchmark",
    "BenchmarkFailed",
    "Run",
    "RunResult",
    "command_cell",
    "config_digest",
    "execute",
    "results_table",
    "run_benchmark",
]

SCALES = ("full", "tiny")
# ``only`` that selects no run: with ``reuse`` the benchmark is tabulated from the run folders that
# earlier sittings completed, and nothing runs (``--collect``).
COLLECT = "\x00collect"
DEFAULT_RUNS_ROOT = ROOT / "runs" / "bench"
STAMP = "bench.json"  # in a run folder: the command, threads and config digest that completed it
LOG_TAIL_LINES = 30
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]*$")


# --------------------------------------------------------------------------------------------
# what a benchmark is
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One ``attnlab <app> fit`` command: the unit a benchmark is made of.

    ``name`` is unique within its benchmark and names the run folder; ``labels`` are what the
    benchmark's table groups and prints by (model, horizon, dataset); ``needs_data`` runs are
    skipped, with a note, when ``ATTNLAB_DATA_DIR`` is not a folder.
    """

    name: str
    app: str
    configs: tuple[str, ...]
    overrides: tuple[str, ...] = ()
    budget: Mapping[str, float] = field(default_factory=dict)
    seed: int = 42
    needs_data: bool = False
    labels: Mapping[str, Any] = field(default_factory=dict)
    # The command may refuse this combination (exit 1, one ``error:`` line): recorded as
    # ``refused`` with that line and tabulated, not a failure (the variant matrix tries them all).
    may_refuse: bool = False

    def __post_init__(self) -> None:
        if not _NAME_OK.match(self.name):
            raise ValueError(
                f"run name {self.name!r}: use letters, digits and . _ = + - only (it names a folder)"
            )
        for key in ("configs", "overrides"):
            value = getattr(self, key)
            if isinstance(value, str):
                raise ValueError(
                    f"run {self.name!r}: {key} must be a tuple of strings, got {value!r}"
                )
            object.__setattr__(self, key, tuple(value))

    def argv(self) -> list[str]:
        """The arguments after ``attnlab`` (the run folder is not one of them)."""
        args = [self.app, "fit"]
        for config in self.configs:
            args += ["--config", config]
        args += list(self.overrides)
        args += [f"--budget.{key}={typed_number(value)}" for key, value in self.budget.items()]
        args.append(f"--seed_everything={self.seed}")
        return args

    def command(self) -> str:
        """What reproduces this run by hand (it writes to the default ``runs/<app>/<time>``)."""
        return shlex.join(["attnlab", *self.argv()])


@dataclass
class RunResult:
    """A finished (or failed, or skipped) run, read back from its folder.

    ``status`` is ``ok``, ``failed`` or ``skipped`` (``note`` says why); ``reused`` marks a run
    taken from an earlier sitting (``--reuse``).
    """

    run: Run
    run_dir: Path
    metrics: dict[str, Any]
    manifest: dict[str, Any]
    epochs: list[dict[str, Any]]
    returncode: int
    log_tail: str
    status: str = "ok"
    note: str = ""
    wall_s: float = 0.0
    reused: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def train(self) -> dict[str, Any]:
        """metrics.json's ``train`` block (cpu_s, wall_s, steps, samples, epochs, ...), if any."""
        return dict(self.metrics.get("train") or {})

    @property
    def stopped_by(self) -> str | None:
        return self.metrics.get("stopped_by")

    def metric(self, key: str, default: Any = None) -> Any:
        """A metric by its logged name (``test/mse``): from the test block, else the best
        validation epoch, else the last logged values."""
        for section in ("test", "best", "last"):
            values = self.metrics.get(section) or {}
            if key in values:
                return values[key]
        return default


@dataclass(frozen=True)
class Benchmark:
    """A named list of runs and how to tabulate them.

    ``runs(scale)``: ``"full"`` gives the published runs, ``"tiny"`` a few CPU seconds each on
    built-in data (the tests run it). ``tabulate(results)`` gets the runs that completed (and those refused by a ``may_refuse`` run) and
    returns ``(json payload, markdown body)``; it must read nothing but the results (their run
    folders). ``headline(payload)`` is the README's one-line summary; ``anchors`` are published
    numbers ``{"what", "value", "protocol", "source"}``.
    """

    name: str
    title: str
    runs: Callable[[str], list[Run]]
    tabulate: Callable[[list[RunResult]], tuple[dict[str, Any], str]]
    headline: Callable[[dict[str, Any]], str] | None = None
    anchors: tuple[dict[str, Any], ...] = ()
    default_jobs: int = 1
    # Threads per run when --threads is not given: 2 for a benchmark whose runs are limited by
    # wall time on the whole machine (one run at a time), 1 for CPU-second budgets.
    default_threads: int = 1
    # Files beside results/<name>.json made from the payload (a plot): (payload, folder) -> paths.
    write_extra: Callable[[dict[str, Any], Path], list[Path]] | None = None

    def planned(self, scale: str = "full") -> list[Run]:
        """``runs(scale)``, checked: a known scale, at least one run, unique names."""
        if scale not in SCALES:
            raise ValueError(f"scale {scale!r}: use one of {', '.join(SCALES)}")
        runs = list(self.runs(scale))
        names = [r.name for r in runs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"benchmark {self.name!r}: run names used twice: {', '.join(dupes)}")
        return runs


class BenchmarkFailed(RuntimeError):
    """Some runs failed; the results of the others were written."""

    def __init__(self, name: str, failed: Sequence[RunResult]):
        self.failed = list(failed)
        super().__init__(
            f"benchmark {name}: {len(self.failed)} run(s) failed: "
            + ", ".join(f"{r.run.name} (exit {r.returncode})" for r in self.failed)
        )


# --------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _value(text: str | None) -> Any:
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        return text


def _read_epochs(path: Path) -> list[dict[str, Any]]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return [{k: _value(v) for k, v in row.items()} for row in csv.DictReader(fh)]
    except OSError:
        return []


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def config_digest(run: Run) -> str:
    """sha256 of what the run's ``--config`` names resolve to (the app's configs, the trainer
    presets, or a file), in order: the same command line with an edited config is another run."""
    from attnlab.app import get_app  # the apps' config folders; imports no torch
    from attnlab.cli import resolve_config

    digest = hashlib.sha256()
    for name in run.configs:
        try:
            resolved = resolve_config(name, get_app(run.app))
        except SystemExit:  # an unknown app or config: the run itself fails and says why
            resolved = name
        path = Path(resolved)
        digest.update(name.encode() + b"\0")
        digest.update(path.read_bytes() if path.is_file() else resolved.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _stamp(run: Run, threads: int) -> dict[str, Any]:
    return {
        "command": run.command(),
        "threads": threads,
        "budget": dict(run.budget),
        "configs_sha256": config_digest(run),
    }


def _same_configs(run: Run, stamp: Mapping[str, Any]) -> bool:
    """The stamp was made with the config files as they are now (a stamp without the digest
    predates it and is not trusted)."""
    return stamp.get("configs_sha256") == config_digest(run)


def _as_run_earlier(run: Run, run_dir: Path, threads: int) -> Run | None:
    """The run as an earlier sitting completed it, when that was this run at another budget
    (``--budget-factor``): a benchmark assembled over sittings keeps each run's own command."""
    stamp = _read_json(run_dir / STAMP)
    if not _completed(run_dir) or "budget" not in stamp or stamp.get("threads") != threads:
        return None
    earlier = replace(run, budget=dict(stamp["budget"]))
    same = stamp.get("command") == earlier.command() and _same_configs(run, stamp)
    return earlier if same else None


def _completed(run_dir: Path) -> bool:
    status = _read_json(run_dir / "manifest.json").get("status", "completed")
    return (run_dir / "metrics.json").is_file() and status == "completed"


def _reusable(run: Run, run_dir: Path, threads: int) -> bool:
    stamp = _read_json(run_dir / STAMP)
    return (
        _completed(run_dir)
        and stamp.get("command") == run.command()
        and stamp.get("threads") == threads
        and _same_configs(run, stamp)
    )


def _collect(run: Run, run_dir: Path, **kw: Any) -> RunResult:
    log = run_dir.with_name(run_dir.name + ".log")
    return RunResult(
        run=run,
        run_dir=run_dir,
        metrics=_read_json(run_dir / "metrics.json"),
        manifest=_read_json(run_dir / "manifest.json"),
        epochs=_read_epochs(run_dir / "metrics.csv"),
        log_tail=_tail(log),
        **kw,
    )


def _refusal_file(run_dir: Path) -> Path:
    return run_dir.with_name(run_dir.name + ".refused.json")


def _refused_earlier(run: Run, run_dir: Path, threads: int) -> RunResult | None:
    """A ``may_refuse`` run the command refused in an earlier sitting, with the same command."""
    record = _read_json(_refusal_file(run_dir))
    if not record or record.get("command") != run.command() or record.get("threads") != threads:
        return None
    if not _same_configs(run, record):
        return None
    return RunResult(
        run, run_dir, {}, {}, [], 1, "", status="refused", note=str(record.get("error", "")),
        reused=True,
    )  # fmt: skip


def _skipped(run: Run, run_dir: Path, note: str) -> RunResult:
    return RunResult(run, run_dir, {}, {}, [], 0, "", status="skipped", note=note)


def _data_missing() -> str:
    folder = os.environ.get("ATTNLAB_DATA_DIR", "")
    if not folder:
        return "needs ATTNLAB_DATA_DIR (the folder holding the real datasets), not set"
    if not Path(folder).is_dir():
        return "ATTNLAB_DATA_DIR is not a folder"
    return ""


def _execute_one(run: Run, run_dir: Path, threads: int, say: Callable[[str], None]) -> RunResult:
    """Run one command into an empty ``run_dir``, its output into ``<run_dir>.log``."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    log_path = run_dir.with_name(run_dir.name + ".log")
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "attnlab.cli", *run.argv(), "--run_dir", str(run_dir)]
    say(f"start {run.name}: {run.command()}")
    stamp = _stamp(run, threads)  # the config files as the run reads them, not as they end up
    start = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        log.write(f"$ {shlex.join(cmd)}\n")
        log.flush()
        proc = subprocess.run(
            cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    wall = time.perf_counter() - start
    if proc.returncode == 0 and _completed(run_dir):
        (run_dir / STAMP).write_text(
            json.dumps({**stamp, "wall_s": round(wall, 1)}, indent=2) + "\n",
            encoding="utf-8",
        )
        say(f"done  {run.name} in {wall:.0f} s")
        return _collect(run, run_dir, returncode=0, wall_s=wall)
    note = (
        f"exit code {proc.returncode}"
        if proc.returncode
        else "exit code 0 but no completed metrics.json in the run folder"
    )
    result = _collect(run, run_dir, returncode=proc.returncode or 1, status="failed", note=note)
    result.wall_s = wall
    last = result.log_tail.splitlines()[-5:]
    say(
        f"FAILED {run.name} ({note}) after {wall:.0f} s; log {log_path}:\n    "
        + "\n    ".join(last)
    )
    return result


def scaled_budgets(runs: Sequence[Run], factor: float) -> list[Run]:
    """The runs with every budget multiplied by ``factor`` (a reduced budget where the full one
    does not fit the time at hand; each run's command then shows the budget it really had)."""
    if not (factor > 0 and math.isfinite(factor)):
        raise ValueError(f"--budget-factor must be a positive number, got {factor}")
    if factor == 1.0:
        return list(runs)
    return [
        replace(r, budget={k: round(float(v) * factor, 3) for k, v in r.budget.items()})
        for r in runs
    ]


def execute(
    bench: Benchmark,
    *,
    scale: str = "full",
    jobs: int = 1,
    threads: int = 1,
    runs_root: Path,
    only: str | None = None,
    reuse: bool = False,
    budget_factor: float = 1.0,
) -> list[RunResult]:
    """Run the benchmark's runs (``jobs`` processes at once, ``threads`` threads each) and read
    back every run folder; one :class:`RunResult` per planned run, in the planned order.

    ``only`` keeps the runs whose name contains it; the others are skipped (with ``reuse``, one
    whose folder already holds the same completed command is read back instead). ``reuse``
    keeps such runs rather than running them again.
    """
    if jobs < 1 or threads < 1:
        raise ValueError(f"jobs and threads must be at least 1, got jobs={jobs}, threads={threads}")
    runs = scaled_budgets(bench.planned(scale), budget_factor)
    folder = Path(runs_root) / bench.name / scale
    lock = threading.Lock()

    def say(msg: str) -> None:
        with lock:
            print(f"[{bench.name}] {msg}", flush=True)

    results: dict[str, RunResult] = {}
    todo: list[Run] = []
    for run in runs:
        run_dir = folder / run.name
        selected = only is None or only in run.name
        if reuse and run.may_refuse and (refused := _refused_earlier(run, run_dir, threads)):
            results[run.name] = refused
            say(f"reuse {run.name} (refused earlier: {refused.note})")
        elif reuse and _reusable(run, run_dir, threads):
            wall = float(_read_json(run_dir / STAMP).get("wall_s") or 0.0)
            results[run.name] = _collect(run, run_dir, returncode=0, reused=True, wall_s=wall)
            say(f"reuse {run.name} (completed earlier: {run_dir})")
        elif (
            not selected
            and reuse
            and (earlier := _as_run_earlier(run, run_dir, threads)) is not None
        ):
            wall = float(_read_json(run_dir / STAMP).get("wall_s") or 0.0)
            results[run.name] = _collect(earlier, run_dir, returncode=0, reused=True, wall_s=wall)
            say(f"reuse {run.name} (completed earlier at its own budget: {earlier.command()})")
        elif not selected:
            if (
                reuse
                and _completed(run_dir)
                and not _same_configs(run, _read_json(run_dir / STAMP))
            ):
                why = "its folder ran with other config files (edited since): run it again"
                say(f"skip  {run.name}: {why}")
            elif only == COLLECT:
                why = "not run in any sitting yet"
            else:
                why = f"not selected by --only {only!r}"
            results[run.name] = _skipped(run, run_dir, why)
        elif run.needs_data and _data_missing():
            results[run.name] = _skipped(run, run_dir, _data_missing())
            say(f"skip  {run.name}: {_data_missing()}")
        else:
            todo.append(run)
    if todo:
        say(
            f"{len(todo)} run(s), {jobs} at a time, {threads} thread(s) each, folders under {folder}"
        )
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {
                run.name: pool.submit(_execute_one, run, folder / run.name, threads, say)
                for run in todo
            }
            for name, future in futures.items():
                results[name] = future.result()
    return [results[run.name] for run in runs]


def _refusal(result: RunResult) -> str | None:
    """The command's one ``error:`` line when it refused the run cleanly (exit 1), else None."""
    if result.returncode != 1:
        return None
    errors = [line for line in result.log_tail.splitlines() if line.startswith("error: ")]
    return errors[-1][len("error: ") :] if len(errors) == 1 else None


def run_benchmark(
    bench: Benchmark,
    *,
    scale: str = "full",
    jobs: int | None = None,
    threads: int | None = None,
    runs_root: Path | None = None,
    only: str | None = None,
    reuse: bool = False,
    results_dir: Path | None = None,
    budget_factor: float = 1.0,
) -> Path:
    """Execute, tabulate and write ``<name>.json`` and ``<name>.md``; returns the json's path.

    The published scale writes to ``results/`` (``ATTNLAB_BENCH_RESULTS_DIR`` elsewhere);
    another scale next to its run folders, so a quick check never replaces published numbers.
    Raises :class:`BenchmarkFailed` after writing when a run failed.
    """
    runs_root = Path(runs_root or DEFAULT_RUNS_ROOT)
    jobs = jobs or bench.default_jobs
    threads = threads or (bench.default_threads if scale == "full" else 1)
    if results_dir is None:
        results_dir = RESULTS_DIR if scale == "full" else runs_root / bench.name / scale
    env = environment()
    start = time.perf_counter()
    results = execute(
        bench,
        scale=scale,
        jobs=jobs,
        threads=threads,
        runs_root=runs_root,
        only=only,
        reuse=reuse,
        budget_factor=budget_factor,
    )
    for r in results:
        line = _refusal(r) if r.status == "failed" and r.run.may_refuse else None
        if line:
            r.status, r.note = "refused", line
            _refusal_file(r.run_dir).write_text(
                json.dumps({**_stamp(r.run, threads), "error": line}) + "\n",
                encoding="utf-8",
            )
    json_path, error = write_benchmark_results(
        bench,
        results,
        scale=scale,
        jobs=jobs,
        threads=threads,
        only=only,
        budget_factor=budget_factor,
        runs_root=runs_root,
        results_dir=results_dir,
        env=env,
        start=start,
    )
    failed = [r for r in results if r.status == "failed"]
    if failed:
        raise BenchmarkFailed(bench.name, failed)
    if error:
        raise RuntimeError(f"benchmark {bench.name}: {error} (the run records were written)")
    return json_path
