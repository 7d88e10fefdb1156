"""Shared helpers for the benchmarks: environment header, result files, timing, peak memory.

* ``environment()`` / ``environment_markdown()``: torch version, threads, CPU model, python, date.
* ``write_results(name, data, markdown)``: ``results/<name>.json`` and ``results/<name>.md``,
  each written to a temporary file in the same folder and moved into place (atomic).
* ``time_fn`` and ``time_interleaved``: median and IQR of per-call wall time after warmup;
  the interleaved form runs several candidates round by round (rotating their order) so that
  slow drift of the machine (other processes, frequency) hits them all alike, and gives paired
  per-round ratios.
* ``peak_memory(target, kwargs)``: runs ``target`` in a fresh subprocess and reports the peak
  RSS increase (``resource.getrusage``) over a baseline taken after the inputs are allocated.

Run as ``python -m benchmarks.common --peak-child ...`` it is that subprocess (internal).
"""

from __future__ import annotations

import datetime as _dt
import gc
import importlib
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "RESULTS_DIR",
    "ROOT",
    "InterleavedTimings",
    "Stats",
    "available_memory_mb",
    "cpu_model",
    "environment",
    "environment_markdown",
    "markdown_table",
    "mean_std",
    "peak_memory",
    "summarize",
    "time_fn",
    "time_interleaved",
    "write_results",
]

ROOT = Path(__file__).resolve().parent.parent
# ATTNLAB_BENCH_RESULTS_DIR sends exploratory runs (a reduced budget, one model) elsewhere, so they
# never replace the committed results.
RESULTS_DIR = Path(os.environ.get("ATTNLAB_BENCH_RESULTS_DIR") or ROOT / "results")

_MARKER = "PEAK_MEMORY_RESULT "
# A tiny interpreter that starts the measured process. The kernel seeds a new process's
# ru_maxrss with the high-water mark of the memory image it replaces at exec(); launched
# straight from a benchmark process holding gigabytes, every child would "peak" at that size.
# Started from this launcher (a few MB), the child's ru_maxrss is its own.
_LAUNCHER = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


# --------------------------------------------------------------------------------------------
# environment
# --------------------------------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, ``platform`` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _git_revision() -> str | None:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{rev}{' (uncommitted changes)' if dirty else ''}"


def available_memory_mb() -> float | None:
    """MemAvailable from ``/proc/meminfo`` in MiB (None where there is no such file)."""
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def quick_mode() -> bool:
    """``ATTNLAB_BENCH_QUICK`` set (and not 0): the programs of their own (``core``,
    ``train_step``) run a cut-down version for smoke tests."""
    return os.environ.get("ATTNLAB_BENCH_QUICK", "") not in ("", "0")


def environment() -> dict[str, Any]:
    """What a result depends on: library versions, threads, CPU, python, date, load."""
    import torch

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        affinity = os.cpu_count() or 0
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        load = []
    mem = available_memory_mb()
    return {
        "date_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "cpu_model": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "cuda_available": torch.cuda.is_available(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git": _git_revision(),
        "load_average_1_5_15": load,
        "mem_available_mb": None if mem is None else round(mem),
        "settings_from_env": bench_settings(),
    }


def bench_settings() -> dict[str, str]:
    """The ``ATTNLAB_BENCH_*`` settings (budgets, models, threads) and ``OMP_NUM_THREADS`` this
    run was started with, so a result names the exact command that reproduces it. Paths (the
    data and results folders) are left out: they are machine-specific."""
    return {
        key: os.environ[key]
        for key in sorted(os.environ)
        if (key.startswith("ATTNLAB_BENCH_") and key != "ATTNLAB_BENCH_RESULTS_DIR")
        or key == "OMP_NUM_THREADS"
    }


def environment_markdown(env: Mapping[str, Any]) -> str:
    """The environment as a two-column markdown table."""
    labels = {
        "date_utc": "date (UTC)",
        "torch": "torch",
        "torch_num_threads": "torch.get_num_threads()",
        "torch_num_interop_threads": "torch.get_num_interop_threads()",
        "cpu_model": "CPU model",
        "cpu_capability": "CPU capability (torch)",
        "cpu_count": "CPUs (os.cpu_count)",
        "cpus_usable": "CPUs usable (affinity)",
        "cuda_available": "CUDA available",
        "python": "python",
        "platform": "platform",
        "git": "git revision",
        "load_average_1_5_15": "load average at start (1/5/15 min)",
        "mem_available_mb": "memory available at start (MiB)",
        "settings_from_env": "settings from the environment",
    }
    rows = [[labels.get(key, key), _fmt_value(value)] for key, value in env.items()]
    return markdown_table(["", "value"], rows)


def _fmt_value(value: Any) -> str:
    if isinstance(value, Mapping):
        return " ".join(f"{k}={v}" for k, v in value.items()) or "none (the defaults)"
    if isinstance(value, list | tuple):
        return " / ".join(str(v) for v in value)
    return str(value)


def markdown_table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], align: Sequence[str] | None = None
) -> str:
    """A github-flavoured markdown table; ``align`` holds "l" or "r" per column."""
    align = align or ["l"] * len(headers)
    sep = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# result files
# --------------------------------------------------------------------------------------------


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_results(
    name: str, data: Mapping[str, Any], markdown: str, results_dir: Path | None = None
) -> tuple[Path, Path]:
    """Write ``<results_dir>/<name>.json`` and ``.md`` atomically; returns both paths."""
    folder = RESULTS_DIR if results_dir is None else results_dir
    json_path, md_path = folder / f"{name}.json", folder / f"{name}.md"
    _atomic_write(json_path, json.dumps(data, indent=2, allow_nan=False) + "\n")
    _atomic_write(md_path, markdown.rstrip() + "\n")
    return json_path, md_path


# --------------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stats:
    """Median and quartiles of a sample (seconds for timings, plain numbers for ratios)."""

    median: float
    q1: float
    q3: float
    n: int
    samples: list[float] = field(default_factory=list, repr=False)

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    def to_dict(self, scale: float = 1.0, digits: int = 6) -> dict[str, Any]:
        """The numbers (times ``scale``, e.g. 1e3 for ms), rounded, samples included."""
        return {
            "median": round(self.median * scale, digits),
            "q1": round(self.q1 * scale, digits),
            "q3": round(self.q3 * scale, digits),
            "iqr": round(self.iqr * scale, digits),
            "n": self.n,
            "samples": [round(s * scale, digits) for s in self.samples],
        }


def mean_std(values: Iterable[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation over seeds of the finite values (None, None if there
    are none; a single value has std 0)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None, None
    return statistics.fmean(finite), (statistics.stdev(finite) if len(finite) > 1 else 0.0)


def summarize(samples: Sequence[float]) -> Stats:
    """Median and inclusive quartiles (a single sample is its own quartiles)."""
    values = [float(s) for s in samples]
    if not values:
        raise ValueError("summarize needs at least one sample")
    if len(values) == 1:
        return Stats(values[0], values[0], values[0], 1, values)
    q1, med, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return Stats(med, q1, q3, len(values), values)


def time_fn(
    fn: Callable[[], object],
    *,
    warmup: int = 3,
    repeats: int = 15,
    inner: int | None = None,
    target_sample_s: float = 0.05,
) -> Stats:
    """Per-call wall time of ``fn`` (median, IQR over ``repeats`` samples) after ``warmup`` calls.

    Each sample times ``inner`` back-to-back calls (by default enough for ~``target_sample_s``).
    The garbage collector is off while timing.
    """
    result = time_interleaved(
        {"fn": fn},
        warmup=warmup,
        min_rounds=repeats,
        max_rounds=repeats,
        inner=inner,
        target_sample_s=target_sample_s,
    )
    return result.timings["fn"]


@dataclass(frozen=True)
class InterleavedTimings:
    """Per-call times of candidates measured round by round; ``samples[i]`` is round ``i``.

    ``timings`` is wall-clock time; ``cpu_timings`` the process CPU time (all threads) over the
    same calls, which time spent waiting for a CPU taken by other processes does not inflate.
    """

    timings: dict[str, Stats]
    cpu_timings: dict[str, Stats]
    rounds: int
    inner: int
    warmup: int

    def ratio(self, name: str, reference: str, *, cpu: bool = False) -> Stats:
        """Median and IQR of the per-round ratios time(name) / time(reference)."""
        table = self.cpu_timings if cpu else self.timings
        a, b = table[name].samples, table[reference].samples
        return summarize([x / max(y, 1e-12) for x, y in zip(a, b, strict=True)])


def time_interleaved(
    fns: Mapping[str, Callable[[], object]],
    *,
    warmup: int = 2,
    min_rounds: int = 5,
    max_rounds: int = 25,
    budget_s: float = 15.0,
    inner: int | None = None,
    target_sample_s: float = 0.05,
) -> InterleavedTimings:
    """Time several candidates in rounds: each round runs every candidate once, in rotated order.

    Each candidate first runs ``warmup`` calls (at least one); the last of them calibrates:
    ``inner`` (the calls per sample, shared by all candidates) reaches ~``target_sample_s`` for
    the slowest, and the number of rounds fits ``budget_s`` within [``min_rounds``,
    ``max_rounds``].
    """
    names = list(fns)
    if not names:
        raise ValueError("time_interleaved needs at least one candidate")
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        calib: dict[str, float] = {}
        for name in names:
            fn = fns[name]
            for _ in range(max(warmup, 1)):  # the last warmup call also calibrates
                start = time.perf_counter()
                fn()
                calib[name] = time.perf_counter() - start
        slowest = max(calib.values())
        if inner is None:
            inner = max(1, int(target_sample_s / max(slowest, 1e-9)))
        round_s = inner * sum(calib.values())
        rounds = int(min(max_rounds, max(min_rounds, budget_s // max(round_s, 1e-9))))
        samples: dict[str, list[float]] = {name: [] for name in names}
        cpu: dict[str, list[float]] = {name: [] for name in names}
        for r in range(rounds):
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:
                fn = fns[name]
                cpu_start = time.process_time()
                start = time.perf_counter()
                for _ in range(inner):
                    fn()
                samples[name].append((time.perf_counter() - start) / inner)
                cpu[name].append((time.process_time() - cpu_start) / inner)
    finally:
        if gc_was_enabled:
            gc.enable()
    return InterleavedTimings(
        timings={name: summarize(s) for name, s in samples.items()},
        cpu_timings={name: summarize(s) for name, s in cpu.items()},
        rounds=rounds,
        inner=inner,
        warmup=warmup,
    )


# --------------------------------------------------------------------------------------------
# peak memory
# --------------------------------------------------------------------------------------------


def _maxrss_mb() -> float:
    """This process's peak RSS so far (``resource.getrusage``), in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _proc_status_mb(key: str) -> float | None:
    try:
        with open("/proc/self/status", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith(f"{key}:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset /proc's VmHWM to the current RSS (Linux); getrusage's peak is not affected."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="utf-8") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class PeakMemory:
    """One subprocess measurement; ``increase_mb`` is the peak RSS growth over the baseline."""

    ok: bool
    increase_mb: float | None = None
    baseline_mb: float | None = None
    peak_mb: float | None = None
    increase_hwm_mb: float | None = None
    maxrss_at_start_mb: float | None = None
    seconds: float | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, float):
                out[key] = round(value, 2)
        return out


def peak_memory(
    target: str, kwargs: Mapping[str, Any] | None = None, *, timeout_s: float = 600.0
) -> PeakMemory:
    """Peak RSS increase of one call, measured in a fresh subprocess.

    ``target`` is ``"module:function"``; in the subprocess ``function(**kwargs)`` allocates the
    inputs (and may warm up on tiny ones) and returns a zero-argument callable. Then the
    baseline is ``getrusage().ru_maxrss``, the callable runs once, and the increase is the new
    ru_maxrss minus the baseline. ``increase_hwm_mb`` cross-checks it with /proc's VmHWM reset
    to the current RSS at the baseline (Linux only). A crash, a kill by the OOM killer or a
    timeout gives ``ok=False`` and the reason in ``error``.
    """
    cmd = [
        sys.executable,
        "-S",
        "-c",
        _LAUNCHER,
        sys.executable,
        "-m",
        "benchmarks.common",
        "--peak-child",
        target,
        json.dumps(dict(kwargs or {})),
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        return PeakMemory(ok=False, error=f"timed out after {timeout_s:.0f} s")
    for line in proc.stdout.splitlines():
        if line.startswith(_MARKER):
            return PeakMemory(**json.loads(line[len(_MARKER) :]))
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    reason = "killed (out of memory?)" if proc.returncode in (-9, 137) else "failed"
    return PeakMemory(
        ok=False, error=f"{reason}: exit code {proc.returncode}; {' | '.join(tail)}"[:500]
    )


def _peak_child(target: str, kwargs_json: str) -> None:
    at_start = _maxrss_mb()
    module_name, _, func_name = target.partition(":")
    setup = getattr(importlib.import_module(module_name), func_name)
    run = setup(**json.loads(kwargs_json))
    gc.collect()
    baseline = _maxrss_mb()
    rss_now = _proc_status_mb("VmRSS")
    reset = _reset_peak_rss()
    start = time.perf_counter()
    extra = run()
    seconds = time.perf_counter() - start
    peak = _maxrss_mb()
    hwm = _proc_status_mb("VmHWM") if reset else None
    result = PeakMemory(
        ok=True,
        increase_mb=peak - baseline,
        baseline_mb=baseline,
        peak_mb=peak,
        increase_hwm_mb=None if hwm is None or rss_now is None else hwm - rss_now,
        maxrss_at_start_mb=at_start,
        seconds=seconds,
        extra=extra if isinstance(extra, dict) else {},
    )
    print(_MARKER + json.dumps(result.to_dict()), flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--peak-child":
        _peak_child(sys.argv[2], sys.argv[3])
    else:
        print(
            "usage: python -m benchmarks.common --peak-child module:function '<kwargs json>'",
            file=sys.stderr,
        )
        sys.exit(2)
