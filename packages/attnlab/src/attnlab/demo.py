"""`attnlab demo`: run every installed app's quick config and print one table of results."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from .app import load_apps
from .runs import read_json

__all__ = ["demo_main"]


def demo_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="attnlab demo", description=__doc__)
    parser.add_argument("apps", nargs="*", help="apps to run (default: all installed)")
    parser.add_argument("--runs", default=None, help="parent folder of the run folders")
    args = parser.parse_args(argv)
    apps = load_apps()
    chosen = args.apps or list(apps)
    unknown = [a for a in chosen if a not in apps]
    if unknown:
        raise ValueError(f"unknown app(s) {unknown}; installed: {list(apps)}")
    if not chosen:
        raise ValueError("no apps installed: install one (pip install -e apps/<app>)")
    base = Path(args.runs or Path("runs") / "demo" / datetime.now().strftime("%Y%m%d-%H%M%S"))
    rows = []
    failed = 0
    for name in chosen:
        app = apps[name]
        run_dir = base / name
        cmd = [
            sys.executable,
            "-m",
            "attnlab.cli",
            name,
            "fit",
            "--config",
            str(app.quick_config),
            "--run_dir",
            str(run_dir),
        ]
        print(f"== {name}: {' '.join(cmd[2:])}", flush=True)
        start = time.perf_counter()
        code = subprocess.call(cmd)
        seconds = time.perf_counter() - start
        metrics_path = run_dir / "metrics.json"
        if code != 0 or not metrics_path.exists():
            failed += 1
            rows.append((name, app.headline, "failed", f"{seconds:.0f}s", "", str(run_dir)))
            continue
        metrics = read_json(metrics_path)
        headline = metrics.get("headline") or {}
        also = ", ".join(
            f"{key} {_shown(metrics.get('test', {}).get(key))}"
            for key in app.demo_also
            if key in metrics.get("test", {})
        )
        rows.append(
            (
                name,
                str(headline.get("metric")),
                _shown(headline.get("value")),
                f"{seconds:.0f}s",
                also,
                str(run_dir),
            )
        )
    header = ("app", "headline metric", "value", "time", "same test line", "run folder")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print()
    print(line.format(*header))
    print(line.format(*("-" * w for w in widths)))
    for row in rows:
        print(line.format(*row))
    return 1 if failed else 0


def _shown(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
