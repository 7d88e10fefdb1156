"""``python -m benchmarks [name ...]``: run the named benchmarks (all registered ones if none)."""

from __future__ import annotations

import importlib
import sys
import time

from benchmarks import REGISTRY


def main(argv: list[str] | None = None) -> int:
    names = list(sys.argv[1:] if argv is None else argv)
    if any(name in ("-h", "--help") for name in names):
        print(f"usage: python -m benchmarks [name ...]; registered: {', '.join(REGISTRY)}")
        return 0
    unknown = [name for name in names if name not in REGISTRY]
    if unknown:
        print(
            f"error: unknown benchmark {', '.join(map(repr, unknown))}; "
            f"registered: {', '.join(REGISTRY)}",
            file=sys.stderr,
        )
        return 2
    for name in names or REGISTRY:
        start = time.perf_counter()
        print(f"== benchmark {name} ==", flush=True)
        module = importlib.import_module(f"benchmarks.{name}")
        module.main()
        print(f"== benchmark {name} done in {time.perf_counter() - start:.1f} s ==", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
