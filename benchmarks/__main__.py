"""``python -m benchmarks [name ...] [--jobs N] [--threads T] [--scale full|tiny] [--only TEXT]
[--reuse] [--runs-dir DIR]``: run the named benchmarks; with no names, every benchmark in order
(``benchmarks.names()``) and then ``readme`` (the README's results section from results/*.json).

The options apply to the benchmarks defined by ``BENCHMARK`` (``benchmarks.runner``); ``core``
and ``matrix`` are programs of their own and take their settings from the environment.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import benchmarks
from benchmarks.runner import COLLECT, DEFAULT_RUNS_ROOT, SCALES, BenchmarkFailed, run_benchmark


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run benchmarks; each writes results/<name>.json and results/<name>.md. "
        "With no names: every benchmark, then readme.",
    )
    parser.add_argument("names", nargs="*", metavar="name", help="benchmarks (or 'readme') to run")
    parser.add_argument(
        "--jobs", type=int, default=None, help="runs at once (default: the benchmark's own)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="threads per run (default: the benchmark's own)"
    )
    parser.add_argument(
        "--scale",
        choices=SCALES,
        default="full",
        help="full: the published runs (written to results/); tiny: seconds each on built-in "
        "data (written beside the run folders)",
    )
    parser.add_argument("--only", default=None, help="run only the runs whose name contains this")
    parser.add_argument(
        "--collect",
        action="store_true",
        help="run nothing: tabulate the runs earlier sittings completed (a benchmark assembled "
        "with --only over several sittings)",
    )
    parser.add_argument(
        "--budget-factor",
        type=float,
        default=1.0,
        help="multiply every run's budget (a reduced budget; each run's command shows its own)",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep runs whose folder already holds the same completed command, run with the same "
        "config file contents (resume or merge)",
    )
    parser.add_argument(
        "--runs-dir",
        type=Path,
        default=DEFAULT_RUNS_ROOT,
        help=f"where the run folders go (default {DEFAULT_RUNS_ROOT.relative_to(benchmarks.HERE.parent)})",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    order = benchmarks.names()
    parser.epilog = (
        f"benchmarks, in order: {', '.join(order)}; tools: {', '.join(benchmarks.TOOLS)}"
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    known = [*order, *benchmarks.TOOLS]
    unknown = [name for name in args.names if name not in known]
    if unknown:
        parser.error(
            f"unknown benchmark {', '.join(map(repr, unknown))}; known: {', '.join(known)}"
        )
    if (args.jobs is not None and args.jobs < 1) or (args.threads is not None and args.threads < 1):
        parser.error("--jobs and --threads must be at least 1")
    # Everything, or several: a benchmark that fails (no dataset, a failed run) is reported and
    # the rest still run, so the README is refreshed from whatever results exist.
    failed = []
    for name in args.names or known:
        try:
            _run(name, args)
        except (Exception, SystemExit) as exc:
            if isinstance(exc, SystemExit) and exc.code in (0, None):
                continue
            failed.append(name)
            print(f"== benchmark {name} FAILED: {type(exc).__name__}: {exc} ==", flush=True)
    if failed:
        print(f"error: benchmarks that failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _run(name: str, args: argparse.Namespace) -> None:
    start = time.perf_counter()
    print(f"== benchmark {name} ==", flush=True)
    module = benchmarks.load(name)
    spec = getattr(module, "BENCHMARK", None)
    if spec is not None:
        try:
            run_benchmark(
                spec,
                scale=args.scale,
                jobs=args.jobs,
                threads=args.threads,
                runs_root=args.runs_dir,
                only=COLLECT if args.collect else args.only,
                reuse=args.reuse or args.collect,
                budget_factor=args.budget_factor,
            )
        except BenchmarkFailed as exc:
            for r in exc.failed:
                print(f"-- {r.run.name}: {r.note}\n   {r.run.command()}\n{r.log_tail}", flush=True)
            raise
    elif hasattr(module, "main"):
        module.main()
    else:
        raise SystemExit(f"error: benchmarks/{name}.py defines neither BENCHMARK nor main()")
    print(f"== benchmark {name} done in {time.perf_counter() - start:.1f} s ==", flush=True)


if __name__ == "__main__":
    sys.exit(main())
