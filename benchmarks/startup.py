"""Start-up time of the `attnlab` command (``python -m benchmarks startup``); trains nothing.

Targets (issue 23): ``attnlab list`` and ``attnlab --help`` under 1 s (they must not import
torch), ``attnlab <app> fit --help`` under 3 s. Each command runs in a fresh process, once per
round, the commands interleaved so that a busy machine slows them all alike; the table gives
the median wall seconds over the rounds and the ratio to references measured in the same rounds:
the bare interpreter (``python -c pass``), ``python -c "import torch"`` and
``python -c "import lightning.pytorch.cli"``, the floor under every ``fit --help`` (its parser is
LightningCLI's). What that floor is made of is measured once with ``python -X importtime``: the
cumulative seconds of the modules that dominate it (torch, torch._dynamo, and what torchmetrics
imports at its own import when they are installed: torchvision, scipy.signal, matplotlib).

Settings from the environment: ``ATTNLAB_STARTUP_ROUNDS`` (default 5). Writes
``results/startup.json`` (with the keys ``python -m benchmarks readme`` reads: ``format``,
``title``, ``headline``, ``runs``, ``anchors``) and ``results/startup.md``.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

from benchmarks._results import FORMAT
from benchmarks.common import environment, environment_markdown, markdown_table, write_results

NAME = "startup"
ROUNDS_DEFAULT = 5
# Seconds a command may take (the targets); None: a reference, no target.
LIGHT_TARGET_S = 1.0
HELP_TARGET_S = 3.0
LIGHTNING_IMPORT = "import lightning.pytorch.cli"
LIGHTNING_LABEL = f"python -c '{LIGHTNING_IMPORT}'"
# Modules whose import time makes up LIGHTNING_IMPORT: torchmetrics (which Lightning imports)
# imports torchvision, scipy.signal and matplotlib when they are installed. (importtime logs no
# line of its own for the torchmetrics package in this chain, so it is not listed.)
FLOOR_MODULES = (
    "torch",
    "torch._dynamo",
    "torchvision",
    "scipy.signal",
    "matplotlib",
    "matplotlib.pyplot",
    "lightning",
)
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
        (LIGHTNING_LABEL, [python, "-c", LIGHTNING_IMPORT], None),
        ("attnlab list", [*attnlab, "list"], LIGHT_TARGET_S),
        ("attnlab --help", [*attnlab, "--help"], LIGHT_TARGET_S),
    ]
    for name in load_apps():
        timed.append(
            (f"attnlab {name} fit --help", [*attnlab, name, "fit", "--help"], HELP_TARGET_S)
        )
    return timed


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run; the CPU seconds (user + system of the child,
    which ran alone among this process's children) grow far less than the wall seconds when
    other processes share the machine."""
    start, cpu_start = time.perf_counter(), _children_cpu_s()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    elapsed, cpu = time.perf_counter() - start, _children_cpu_s() - cpu_start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr[-500:]}")
    return elapsed, cpu


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


def floor_breakdown(env: dict[str, str]) -> dict[str, float]:
    """Cumulative seconds of each of ``FLOOR_MODULES`` inside ``import lightning.pytorch.cli``,
    from one ``python -X importtime`` run (nested: a module's time includes what it imported
    first, and importtime itself slows every import a little); absent modules are left out."""
    stderr = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", LIGHTNING_IMPORT],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stderr
    cumulative_us: dict[str, int] = {}
    for line in stderr.splitlines():
        # "import time:   self [us] | cumulative | imported package", one line per module
        fields = line.removeprefix("import time:").split("|")
        if len(fields) != 3 or not fields[1].strip().isdigit():
            continue
        cumulative_us.setdefault(fields[2].strip(), int(fields[1]))
    return {m: round(cumulative_us[m] / 1e6, 2) for m in FLOOR_MODULES if m in cumulative_us}


def measure(rounds: int, log: Any = print) -> list[dict[str, Any]]:
    """Median wall (and CPU) seconds of every command over ``rounds`` interleaved rounds."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    timed = commands()
    seconds: dict[str, list[float]] = {label: [] for label, _, _ in timed}
    cpu_seconds: dict[str, list[float]] = {label: [] for label, _, _ in timed}
    for index in range(rounds):
        for label, argv, _ in timed:
            wall, cpu = _run_once(argv, env)
            seconds[label].append(wall)
            cpu_seconds[label].append(cpu)
        log(f"round {index + 1}/{rounds} done")
    base = statistics.median(seconds["python -c pass"])
    torch_s = statistics.median(seconds["python -c 'import torch'"])
    lightning_s = statistics.median(seconds[LIGHTNING_LABEL])
    rows = []
    for label, _, target in timed:
        median = statistics.median(seconds[label])
        rows.append(
            {
                "command": label,
                "median_s": round(median, 3),
                "min_s": round(min(seconds[label]), 3),
                "cpu_median_s": round(statistics.median(cpu_seconds[label]), 3),
                "x_python": round(median / base, 2),
                "x_import_torch": round(median / torch_s, 2),
                "over_lightning_s": round(median - lightning_s, 3),
                "target_s": target,
                "met": None if target is None else median <= target,
            }
        )
    return rows


def headline(rows: list[dict[str, Any]], rounds: int, load: list[float]) -> str:
    """The README's line: the light commands, then the range of the apps' ``fit --help``, and
    how busy the machine was (the medians grow with its load)."""
    by_label = {r["command"]: r for r in rows}
    light = [by_label[c] for c in ("attnlab list", "attnlab --help")]
    helps = [r for r in rows if r["command"].endswith(" fit --help")]
    floor = by_label[LIGHTNING_LABEL]

    def verdict(group: list[dict[str, Any]]) -> str:
        return "met" if all(r["met"] for r in group) else "NOT met"

    parts = [
        ", ".join(f"`{r['command']}` {r['median_s']:.2f} s" for r in light)
        + f" (target <= {LIGHT_TARGET_S:g} s: {verdict(light)})"
    ]
    if helps:
        wall = sorted(r["median_s"] for r in helps)
        cpu = sorted(r["cpu_median_s"] for r in helps)
        parts.append(
            f"`attnlab <app> fit --help` {wall[0]:.2f}-{wall[-1]:.2f} s ({cpu[0]:.2f}-"
            f"{cpu[-1]:.2f} CPU s) over {len(helps)} apps (target <= {HELP_TARGET_S:g} s: "
            f"{verdict(helps)}), of which `{LIGHTNING_IMPORT}` alone takes "
            f"{floor['median_s']:.2f} s ({floor['cpu_median_s']:.2f} CPU s)"
        )
    busy = f", load average {load[0]:.1f} at the start" if load else ""
    return "; ".join(parts) + f" (medians of {rounds} rounds, one thread{busy})"


def references(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The reference commands, measured in the same rounds, as the README's anchors: the floor
    of every ``fit --help`` (importing Lightning's CLI) first."""
    refs = sorted(
        (r for r in rows if r["target_s"] is None),
        key=lambda r: r["command"] != LIGHTNING_LABEL,
    )
    return [
        {
            "what": f"`{r['command']}`",
            "value": f"{r['median_s']:.2f} s",
            "protocol": "measured in the same interleaved rounds as the commands",
        }
        for r in refs
    ]


def build_markdown(data: dict[str, Any]) -> str:
    rows = [
        [
            f"`{r['command']}`",
            f"{r['median_s']:.2f}",
            f"{r['min_s']:.2f}",
            f"{r['cpu_median_s']:.2f}",
            f"{r['x_python']:.1f}",
            f"{r['x_import_torch']:.2f}",
            f"{r['over_lightning_s']:+.2f}",
            "" if r["target_s"] is None else f"<= {r['target_s']:g} s",
            "" if r["met"] is None else ("met" if r["met"] else "NOT met"),
        ]
        for r in data["commands"]
    ]
    table = markdown_table(
        [
            "command",
            "median s",
            "min s",
            "CPU s (median)",
            "x python",
            "x import torch",
            "s over import lightning",
            "target",
            "",
        ],
        rows,
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
            f"What `{LIGHTNING_IMPORT}` spends its time on (one `python -X importtime` run, "
            "cumulative seconds, nested: a module includes what it imported first): "
            + ", ".join(f"`{m}` {v:.2f}" for m, v in data["lightning_import_s"].items())
            + ". Every `fit --help` pays this floor: its parser is LightningCLI's, built from "
            "the Trainer's and the app's LightningModule and DataModule signatures.",
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
        "format": FORMAT,  # the keys `python -m benchmarks readme` reads
        "benchmark": NAME,
        "title": "start-up of the `attnlab` command (nothing trained)",
        "headline": headline(rows, rounds, env.get("load_average_1_5_15") or []),
        "command": "OMP_NUM_THREADS=1 python -m benchmarks startup",
        "threads": 1,
        "complete": True,
        "anchors": references(rows),
        "runs": [
            {
                "command": r["command"],
                "status": "ok" if r["met"] is not False else "over target",
                "note": f"median {r['median_s']:.2f} s "
                + ("<=" if r["met"] else ">")
                + f" {r['target_s']:g} s",
            }
            for r in rows
            if r["target_s"] is not None
        ],
        "rounds": rounds,
        "environment": env,
        "commands": rows,
        "imports_torch": {c: imports_torch(c, probe_env) for c in ("list", "--help")},
        "lightning_import_s": floor_breakdown(probe_env),
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
