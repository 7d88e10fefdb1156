"""The results files of a benchmark run by ``benchmarks.runner``: what they hold and how it is laid out.

``results/<name>.json`` holds the environment, the settings, every run's command, labels,
budget, how it stopped and what it measured (paths relative, never this machine's), and the
tabulated payload; ``results/<name>.md`` the markdown body, a table of every run with its
command, the published anchors and the environment. ``results_table`` and ``command_cell`` are
the helpers benchmark modules tabulate with (imported from ``benchmarks.runner``). The leading
underscore keeps this module out of ``benchmarks.candidates()``: it is part of the runner, not a
benchmark.
"""

from __future__ import annotations

import math
import os
import shlex
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.common import ROOT, environment_markdown, markdown_table, write_results

if TYPE_CHECKING:  # the runner imports this module, so its classes are imported where needed
    from benchmarks.runner import Benchmark, Run, RunResult

__all__ = [
    "FORMAT",
    "bench_command",
    "command_cell",
    "results_table",
    "typed_number",
    "write_benchmark_results",
]

FORMAT = 2  # results/<name>.json written by the runner (the older, per-benchmark files have none)
MANIFEST_KEYS = ("git_commit", "versions", "device", "threads", "start_time", "end_time", "status")


def typed_number(value: float) -> str:
    """480.0 -> '480', 0.5 -> '0.5' (a budget as it is typed on a command line)."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


# --------------------------------------------------------------------------------------------
# tabulating helpers for benchmark modules
# --------------------------------------------------------------------------------------------


def command_cell(result: RunResult | Run) -> str:
    """The run's command as a markdown code span (for a table's ``command`` column)."""
    from benchmarks.runner import RunResult

    run = result.run if isinstance(result, RunResult) else result
    return f"`{run.command()}`"


def results_table(
    results: Iterable[RunResult],
    columns: Mapping[str, Callable[[RunResult], Any]],
    align: Sequence[str] | None = None,
) -> str:
    """A markdown table with one row per result and the given columns, then a ``command``
    column, so every row names the command that produced it."""
    headers = [*columns, "command"]
    rows = [[fn(r) for fn in columns.values()] + [command_cell(r)] for r in results]
    return markdown_table(headers, rows, [*(align or ["l"] * len(columns)), "l"])


# --------------------------------------------------------------------------------------------
# results files
# --------------------------------------------------------------------------------------------


def _portable(value: Any, replace: Sequence[tuple[str, str]]) -> Any:
    """``value`` with every absolute path in ``replace`` rewritten (longest first) and NaN or
    infinite numbers as None (the results are strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str):
        for old, new in replace:
            value = value.replace(old, new)
        return value
    if isinstance(value, Mapping):
        return {k: _portable(v, replace) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_portable(v, replace) for v in value]
    return value


def _shown(path: Path, runs_root: Path) -> str:
    """A path as the results show it: relative to the checkout, else to the runs folder."""
    path = path.resolve()
    for base, prefix in ((ROOT, ""), (runs_root.resolve(), "<runs-dir>/")):
        try:
            rel = path.relative_to(base).as_posix()
        except ValueError:
            continue
        return (prefix + rel).removesuffix("/.") if rel == "." and prefix else prefix + rel
    return path.name


def _run_record(result: RunResult, runs_root: Path) -> dict[str, Any]:
    run, shown = result.run, _shown(result.run_dir, runs_root)
    replace = sorted(
        {
            (str(result.run_dir.resolve()), shown),
            (str(result.run_dir), shown),
            (str(runs_root.resolve()), _shown(runs_root, runs_root) or "."),
            (str(ROOT) + os.sep, ""),
            (str(ROOT), "."),
        },
        key=lambda pair: -len(pair[0]),
    )
    record: dict[str, Any] = {
        "name": run.name,
        "app": run.app,
        "command": run.command(),
        "labels": dict(run.labels),
        "budget": dict(run.budget),
        "seed": run.seed,
        "status": result.status,
        "returncode": result.returncode,
        "reused": result.reused,
        "run_dir": shown,
        "wall_s": round(result.wall_s, 1),
        "stopped_by": result.stopped_by,
        "train": result.train or None,
        "metrics": result.metrics,
        "manifest": {k: result.manifest[k] for k in MANIFEST_KEYS if k in result.manifest},
    }
    if result.note:
        record["note"] = result.note
    if result.status == "failed":
        record["log_tail"] = result.log_tail.splitlines()[-10:]
    return _portable(record, replace)


def bench_command(
    name: str, scale: str, jobs: int, threads: int, only: str | None, budget_factor: float = 1.0
) -> str:
    """The command that runs the whole benchmark as it ran."""
    args = ["nox", "-s", "bench", "--", name, "--jobs", str(jobs), "--threads", str(threads)]
    if scale != "full":
        args += ["--scale", scale]
    from benchmarks.runner import COLLECT

    if only == COLLECT:
        args += ["--collect"]
    elif only:
        args += ["--only", only]
    if budget_factor != 1.0:
        args += ["--budget-factor", typed_number(budget_factor)]
    return shlex.join(args)


def _anchor_line(anchor: Mapping[str, Any]) -> str:
    text = f"{anchor.get('what', '?')}: {anchor.get('value', '?')}"
    extra = "; ".join(str(anchor[k]) for k in ("protocol", "source") if anchor.get(k))
    return f"{text} ({extra})" if extra else text


def _runs_markdown(results: Sequence[RunResult], threads: int) -> str:
    def num(x: Any) -> str:
        if x is None:
            return ""
        x = float(x)
        return f"{x:.0f}" if x >= 100 else f"{x:.1f}" if x >= 1 else f"{x:.2f}"

    rows = []
    for r in results:
        status = r.status + (" (reused)" if r.reused else "")
        rows.append(
            [
                r.run.name,
                status if r.ok else f"{status}: {r.note}",
                r.stopped_by or "",
                num(r.train.get("cpu_s")),
                num(r.train.get("steps")),
                num(r.wall_s or r.train.get("wall_s")),
                command_cell(r),
            ]
        )
    table = markdown_table(
        ["run", "status", "stopped by", "train CPU s", "steps", "wall s", "command"],
        rows,
        ["l", "l", "l", "r", "r", "r", "l"],
    )
    intro = (
        f"Each run is one process started with `OMP_NUM_THREADS={threads} "
        f"MKL_NUM_THREADS={threads}`; the command reproduces it by hand."
    )
    return f"{intro}\n\n{table}"


def write_benchmark_results(
    bench: Benchmark,
    results: Sequence[RunResult],
    *,
    scale: str,
    jobs: int,
    threads: int,
    only: str | None,
    budget_factor: float,
    runs_root: Path,
    results_dir: Path,
    env: dict[str, Any],
    start: float,
) -> tuple[Path, str | None]:
    """Tabulate the runs that completed (and those the command refused), then write
    ``<name>.json`` and ``<name>.md`` (and ``bench.write_extra``'s files) into ``results_dir``.

    Returns the json's path and what went wrong tabulating, if anything: the run records are
    written either way. ``start`` is when the benchmark began (``time.perf_counter()``).
    """
    done = [r for r in results if r.ok]
    refused = [r for r in results if r.status == "refused"]
    failed = [r for r in results if r.status == "failed"]
    skipped = [r for r in results if r.status == "skipped"]
    payload: dict[str, Any] | None = None
    body, error = "", None
    if done:
        try:
            payload, body = bench.tabulate(done + refused)
        except Exception as exc:  # the run records are still worth writing
            error = f"{type(exc).__name__}: {exc}"
            body = f"Tabulating the runs failed: {error}."
    else:
        body = "No run completed."
    headline = None
    if payload is not None and bench.headline is not None:
        try:
            headline = bench.headline(payload)
        except Exception as exc:
            error = f"headline: {type(exc).__name__}: {exc}"
    # An --only that left nothing out (the other runs reused from earlier sittings) is not part
    # of the command that makes the whole table.
    from benchmarks.runner import COLLECT

    shown_only = only if skipped or only == COLLECT else None
    command = bench_command(bench.name, scale, jobs, threads, shown_only, budget_factor)
    data: dict[str, Any] = {
        "format": FORMAT,
        "benchmark": bench.name,
        "title": bench.title,
        "scale": scale,
        "jobs": jobs,
        "threads": threads,
        "only": only,
        "budget_factor": budget_factor,
        "command": command,
        "complete": len(done) + len(refused) == len(results),
        "elapsed_s": round(time.perf_counter() - start, 1),
        "environment": env,
        "anchors": [dict(a) for a in bench.anchors],
        "runs": [_run_record(r, runs_root) for r in results],
        "payload": payload,
        "headline": headline,
    }
    if error:
        data["tabulate_error"] = error
    sections = [
        f"# {bench.title}",
        f"`{command}` ({scale} scale; {jobs} run(s) at a time, {threads} thread(s) each; "
        f"{len(done)} of {len(results)} runs completed"
        + (f", {len(refused)} refused by the command (n/a)" if refused else "")
        + (f", {len(skipped)} skipped" if skipped else "")
        + (f", {len(failed)} failed" if failed else "")
        + ").",
    ]
    if headline:
        sections.append(f"**{headline}**")
    sections += [body.strip(), "## Runs", _runs_markdown(results, threads)]
    if failed:
        sections.append("## Failed runs")
        for r in failed:
            sections.append(
                f"`{r.run.name}`: {r.note}; last lines of its log:\n\n```\n"
                + "\n".join(r.log_tail.splitlines()[-10:])
                + "\n```"
            )
    if bench.anchors:
        sections.append("## Published anchors")
        sections.append("\n".join(f"- {_anchor_line(a)}" for a in bench.anchors))
    sections += ["## Environment", environment_markdown(env)]
    markdown = "\n\n".join(s for s in sections if s)
    replace = [(str(runs_root.resolve()), _shown(runs_root, runs_root)), (str(ROOT) + os.sep, "")]
    data, markdown = _portable(data, replace), _portable(markdown, replace)
    json_path, md_path = write_results(bench.name, data, markdown, results_dir)
    if payload is not None and bench.write_extra is not None:
        bench.write_extra(payload, Path(results_dir))
    print(f"[{bench.name}] wrote {json_path} and {md_path.name}", flush=True)
    return json_path, error
