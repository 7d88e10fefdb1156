"""`attnlab demo`: the table it prints is what the run folders hold, with the columns the README
shows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def test_demo_prints_the_headline_and_the_same_test_line(attnlab: Any, tmp_path: Path) -> None:
    proc = attnlab("demo", "toy", "--runs", "demo")
    lines = proc.stdout.splitlines()
    header = next(line for line in lines if line.startswith("app "))
    assert header.split() == [
        "app",
        "headline",
        "metric",
        "value",
        "time",
        "same",
        "test",
        "line",
        "run",
        "folder",
    ]
    row = next(line for line in lines if line.startswith("toy "))
    metrics = json.loads((tmp_path / "demo" / "toy" / "metrics.json").read_text())
    assert f"{metrics['headline']['value']:.4f}" in row
    assert f"test/loss {metrics['test']['test/loss']:.4f}" in row  # the toy app's demo_also
    assert row.rstrip().endswith(str(Path("demo") / "toy"))
