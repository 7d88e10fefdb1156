"""``python -m benchmarks [name ...]``: run the named benchmarks; with no names, every registered
benchmark in order and then ``readme`` (the README's results section from results/*.json)."""

from __future__ import annotations

import importlib
import sys
import time

from benchmarks import REGISTRY, TOOLS


def main(argv: list[str] | None = None) -> int:
    names = list(sys.argv[1:] if argv is None else argv)
    known = (*REGISTRY, *TOOLS)
    if any(name in ("-h", "--help") for name in names):
        print(
            f"usage: python -m benchmarks [name ...]; registered: {', '.join(REGISTRY)}; "
            f"also: {', '.join(TOOLS)}; no names: all benchmarks, then readme"
        )
        return 0
    unknown = [name for name in names if name not in known]
    if unknown:
        print(
            f"error: unknown benchmark {', '.join(map(repr, unknown))}; "
            f"registered: {', '.join(known)}",
            file=sys.stderr,
        )
        return 2
    if names:
        for name in names:
            _run(name)
        return 0
    # Everything: a benchmark that fails (no dataset, say) is reported and the rest still run,
    # so the README is refreshed from whatever results exist.
    failed = []
    for name in (*REGISTRY, *TOOLS):
        try:
            _run(name)
        except (Exception, SystemExit) as exc:
            failed.append(name)
            print(f"== benchmark {name} FAILED: {type(exc).__name__}: {exc} ==", flush=True)
    if failed:
        print(f"error: benchmarks that failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _run(name: str) -> None:
    start = time.perf_counter()
    print(f"== benchmark {name} ==", flush=True)
    module = importlib.import_module(f"benchmarks.{name}")
    module.main()
    print(f"== benchmark {name} done in {time.perf_counter() - start:.1f} s ==", flush=True)


if __name__ == "__main__":
    sys.exit(main())
