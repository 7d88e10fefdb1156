"""Start-up time of the `attnlab` command (``python -m benchmarks startup``); trains nothing.

Targets (issue 23): ``attnlab list`` and ``attnlab --help`` under 1 s (they must not import
torch), ``attnlab <app> fit --help`` under 3 s. Each command runs in a fresh process, once per
round, the commands interleaved so that a busy machine slows them all alike; the table gives
the median wall seconds over the rounds and the ratio to two references measured in the same
rounds: the bare interpreter (``python -c pass``) and ``python -c "import torch"``.

Settings from the environment: ``ATTNLAB_STARTUP_ROUNDS`` (default 5). Writes
``results/startup.json`` and ``results/startup.md``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from typing import Any

from benchmarks.common import environment, environment_markdown, markdown_table, write_results

NAME = "startup"
ROUNDS_DEFAULT = 5
# Seconds a command may take (the targets); None: a reference, no target.
LIGHT_TARGET_S = 1.0
HELP_TARGET_S = 3.0
TORCH_PROBE = (
    "import sys; from attnlab.cli import main; main(sys.argv[1:]); "
    "print('torch imported:', 'torch' in sys.modules)"
)


def commands() -> list[tuple[str, list[str], float | None]]:
    """(label, argv, target seconds) of every command timed: the references first."""
    from attnlab.app import load_apps

    python = sys.executable
    attnlab = [python, "-m", "attnlab.cli"]
    timed: list[tuple[str, list[str], float | None]] = [
        ("python -c pass", [python, "-c", "pass"], None),
        ("python -c 'import torch'", [python, "-c", "import torch"], None),
        ("attnlab list", [*attnlab, "list"], LIGHT_TARGET_S),
        ("attnlab --help", [*attnlab, "--help"], LIGHT_TARGET_S),
    ]
    for name in load_apps():
        timed.append(
            (f"attnlab {name} fit --help", [*attnlab, name, "fit", "--help"], HELP_TARGET_S)
        )
    return timed


def _run_once(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr[-500:]}")
    return elapsed


def imports_torch(command: str, env: dict[str, str]) -> bool:
    """Whether ``attnlab <command>`` imports torch (run in-process in a fresh interpreter)."""
    out = subprocess.run(
        [sys.executable, "-c", TORCH_PROBE, command],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    return "torch imported: True" in out


def measure(rounds: int, log: Any = print) -> list[dict[str, Any]]:
    """Median wall seconds of every command over ``rounds`` interleaved rounds."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    timed = commands()
    seconds: dict[str, list[float]] = {label: [] for label, _, _ in timed}
    for index in range(rounds):
        for label, argv, _ in timed:
            seconds[label].append(_run_once(argv, env))
        log(f"round {index + 1}/{rounds} done")
    base = statistics.median(seconds["python -c pass"])
    torch_s = statistics.median(seconds["python -c 'import torch'"])
    rows = []
    for label, _, target in timed:
        median = statistics.median(seconds[label])
        rows.append(
            {
                "command": label,
                "median_s": round(median, 3),
                "min_s": round(min(seconds[label]), 3),
                "x_python": round(median / base, 2),
                "x_import_torch": round(median / torch_s, 2),
                "target_s": target,
                "met": None if target is None else median <= target,
            }
        )
    return rows


def build_markdown(data: dict[str, Any]) -> str:
    rows = [
        [
            f"`{r['command']}`",
            f"{r['median_s']:.2f}",
            f"{r['min_s']:.2f}",
            f"{r['x_python']:.1f}",
            f"{r['x_import_torch']:.2f}",
            "" if r["target_s"] is None else f"<= {r['target_s']:g} s",
            "" if r["met"] is None else ("met" if r["met"] else "NOT met"),
        ]
        for r in data["commands"]
    ]
    table = markdown_table(
        ["command", "median s", "min s", "x python", "x import torch", "target", ""], rows
    )
    torch_line = ", ".join(
        f"`attnlab {c}` imports torch: {'yes' if v else 'no'}"
        for c, v in data["imports_torch"].items()
    )
    return "\n".join(
        [
            "# startup",
            "",
            f"Wall seconds of each command in a fresh process, median of {data['rounds']} "
            "interleaved rounds, one thread. Nothing is trained.",
            "",
            table,
            "",
            torch_line,
            "",
            environment_markdown(data["environment"]),
            "",
        ]
    )


def main() -> None:
    start = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - start:6.1f}s] {message}", flush=True)

    rounds = int(os.environ.get("ATTNLAB_STARTUP_ROUNDS", ROUNDS_DEFAULT))
    env = environment()
    log(f"python {env['python']}, torch {env['torch']}, load {env['load_average_1_5_15']}")
    rows = measure(rounds, log)
    probe_env = dict(os.environ, OMP_NUM_THREADS="1")
    data: dict[str, Any] = {
        "benchmark": NAME,
        "rounds": rounds,
        "environment": env,
        "commands": rows,
        "imports_torch": {c: imports_torch(c, probe_env) for c in ("list", "--help")},
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    for r in rows:
        verdict = "" if r["met"] is None else (" met" if r["met"] else " NOT met")
        log(
            f"{r['command']:32s} {r['median_s']:6.2f} s (x{r['x_import_torch']:.2f} import torch){verdict}"
        )
    json_path, md_path = write_results(NAME, data, build_markdown(data))
    log(f"wrote {json_path.name} and {md_path.name}")


if __name__ == "__main__":
    main()
