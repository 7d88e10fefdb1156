"""Start-up time of the `attnlab` command (``python -m benchmarks startup``); trains nothing.

Targets (issue 23): ``attnlab list`` and ``attnlab --help`` under 1 s (they must not import
torch), ``attnlab <app> fit --help`` under 3 s. Each command runs in a fresh process, once per
round, the commands interleaved so that a busy machine slows them all alike; the table gives
the median wall seconds over the rounds and the ratio to references measured in the same rounds:
the bare interpreter (``python -c pass``), ``python -c "import torch"`` and
``python -c "import lightning.pytorch.cli"``, the floor under a rendered ``fit --help`` (its
parser is LightningCLI's). What that floor is made of is measured once with
``python -X importtime``: the cumulative seconds of the modules that dominate it (torch,
torch._dynamo, and what torchmetrics imports at its own import when they are installed:
torchvision, scipy.signal, matplotlib).

Every ``fit --help`` is timed twice per round, in cache folders of the benchmark's own
(``ATTNLAB_HELP_CACHE``, ``attnlab.help_cache``): **cold**, the folder emptied before each run
(the first call, or the first after the code, a version, a named config or the terminal width
changed: LightningCLI renders the help and it is stored), and **warm**, the text stored by an
untimed run before the first round (printed without importing torch).

Settings from the environment: ``ATTNLAB_STARTUP_ROUNDS`` (default 5). Writes
``results/startup.json`` (with the keys ``python -m benchmarks readme`` reads: ``format``,
``title``, ``headline``, ``runs``, ``anchors``) and ``results/startup.md``.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
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
# Runs a command in-process; says whether torch was imported, also when it ends in SystemExit.
TORCH_PROBE = (
    "import sys\nfrom attnlab.cli import main\ntry:\n    main(sys.argv[1:])\nfinally:\n"
    "    print('torch imported:', 'torch' in sys.modules, file=sys.stderr)"
)
COLD, WARM = "cold", "warm"
# The app whose warm `fit --help` is also probed for a torch import.
PROBED_APP = "vit"


@dataclass(frozen=True)
class Timed:
    """One command of the table: ``cache`` is ``cold``/``warm`` for a ``fit --help``."""

    command: str
    argv: list[str]
    target_s: float | None
    cache: str | None = None

    @property
    def label(self) -> str:
        """The command, and for a ``fit --help`` its cache state (each row's own name)."""
        return f"{self.command} ({self.cache})" if self.cache else self.command


class HelpCaches:
    """The two help-cache folders of a measurement: ``cold`` emptied before each of its runs,
    ``warm`` filled once before the rounds. Removed on exit; the user's cache is never used."""

    def __init__(self) -> None:
        self._root = tempfile.TemporaryDirectory(prefix="attnlab-startup-")
        self.folders = {cache: Path(self._root.name) / cache for cache in (COLD, WARM)}

    def env(self, base: dict[str, str], cache: str | None) -> dict[str, str]:
        """``base`` for a command: a ``fit --help`` gets its cache folder (the cold one emptied
        first); the others the cache switched off."""
        env = {k: v for k, v in base.items() if k != "ATTNLAB_NO_HELP_CACHE"}
        if cache is None:
            return env
        folder = self.folders[cache]
        if cache == COLD:
            shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        return dict(env, ATTNLAB_HELP_CACHE=str(folder))

    def close(self) -> None:
        self._root.cleanup()


def commands() -> list[Timed]:
    """Every command timed, the references first; each app's ``fit --help`` cold and warm."""
    from attnlab.app import load_apps

    python = sys.executable
    attnlab = [python, "-m", "attnlab.cli"]
    timed = [
        Timed("python -c pass", [python, "-c", "pass"], None),
        Timed("python -c 'import torch'", [python, "-c", "import torch"], None),
        Timed(LIGHTNING_LABEL, [python, "-c", LIGHTNING_IMPORT], None),
        Timed("attnlab list", [*attnlab, "list"], LIGHT_TARGET_S),
        Timed("attnlab --help", [*attnlab, "--help"], LIGHT_TARGET_S),
    ]
    for name in load_apps():
        for cache in (COLD, WARM):
            timed.append(
                Timed(
                    f"attnlab {name} fit --help",
                    [*attnlab, name, "fit", "--help"],
                    HELP_TARGET_S,
                    cache,
                )
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


def imports_torch(args: list[str], env: dict[str, str]) -> bool:
    """Whether ``attnlab <args>`` imports torch (run in-process in a fresh interpreter)."""
    proc = subprocess.run(
        [sys.executable, "-c", TORCH_PROBE, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"attnlab {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return "torch imported: True" in proc.stderr


def torch_probes(caches: HelpCaches, env: dict[str, str]) -> dict[str, bool]:
    """Which commands import torch: the light ones, and one app's warm ``fit --help``."""
    probes = {"list": ["list"], "--help": ["--help"]}
    found = {c: imports_torch(args, caches.env(env, None)) for c, args in probes.items()}
    help_args = [PROBED_APP, "fit", "--help"]
    found[f"{' '.join(help_args)} ({WARM})"] = imports_torch(help_args, caches.env(env, WARM))
    return found


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


def measure(rounds: int, caches: HelpCaches, log: Any = print) -> list[dict[str, Any]]:
    """Median wall (and CPU) seconds of every command over ``rounds`` interleaved rounds."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    timed = commands()
    for t in timed:
        if t.cache == WARM:  # fills the warm folder; not timed
            _run_once(t.argv, caches.env(env, WARM))
    seconds: dict[str, list[float]] = {t.label: [] for t in timed}
    cpu_seconds: dict[str, list[float]] = {t.label: [] for t in timed}
    for index in range(rounds):
        for t in timed:
            wall, cpu = _run_once(t.argv, caches.env(env, t.cache))
            seconds[t.label].append(wall)
            cpu_seconds[t.label].append(cpu)
        log(f"round {index + 1}/{rounds} done")
    base = statistics.median(seconds["python -c pass"])
    torch_s = statistics.median(seconds["python -c 'import torch'"])
    lightning_s = statistics.median(seconds[LIGHTNING_LABEL])
    rows = []
    for t in timed:
        label, target = t.label, t.target_s
        median = statistics.median(seconds[label])
        rows.append(
            {
                "command": t.command,
                "help_cache": t.cache,
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
    """The README's line: the light commands, then the range of the apps' ``fit --help`` warm
    (from the help cache) and cold (rendered), and how busy the machine was (the medians grow
    with its load)."""
    by_label = {r["command"]: r for r in rows if not r.get("help_cache")}
    light = [by_label[c] for c in ("attnlab list", "attnlab --help")]
    floor = by_label[LIGHTNING_LABEL]

    def verdict(group: list[dict[str, Any]]) -> str:
        return "met" if all(r["met"] for r in group) else "NOT met"

    def span(group: list[dict[str, Any]]) -> str:
        wall = sorted(r["median_s"] for r in group)
        cpu = sorted(r["cpu_median_s"] for r in group)
        return f"{wall[0]:.2f}-{wall[-1]:.2f} s ({cpu[0]:.2f}-{cpu[-1]:.2f} CPU s)"

    parts = [
        ", ".join(f"`{r['command']}` {r['median_s']:.2f} s" for r in light)
        + f" (target <= {LIGHT_TARGET_S:g} s: {verdict(light)})"
    ]
    warm = [r for r in rows if r.get("help_cache") == WARM]
    cold = [r for r in rows if r.get("help_cache") == COLD]
    if warm and cold:
        parts.append(
            f"`attnlab <app> fit --help` over {len(warm)} apps (target <= {HELP_TARGET_S:g} s): "
            f"warm, printed from the help cache, {span(warm)}, {verdict(warm)}; cold (the "
            f"first call, or after the code, a version, a named config or the width changed: "
            f"rendered by LightningCLI) {span(cold)}, {verdict(cold)}: `{LIGHTNING_IMPORT}` "
            f"alone takes {floor['median_s']:.2f} s ({floor['cpu_median_s']:.2f} CPU s)"
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


def run_entries(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The commands with a target as the README lists them (a ``fit --help`` with its cache
    state, cold or warm, after the command), each with its verdict."""
    return [
        {
            "command": r["command"] + (f" ({r['help_cache']})" if r.get("help_cache") else ""),
            "status": "ok" if r["met"] is not False else "over target",
            "note": f"median {r['median_s']:.2f} s "
            + ("<=" if r["met"] else ">")
            + f" {r['target_s']:g} s",
        }
        for r in rows
        if r["target_s"] is not None
    ]


def build_markdown(data: dict[str, Any]) -> str:
    rows = [
        [
            f"`{r['command']}`" + (f" {r['help_cache']}" if r.get("help_cache") else ""),
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
            "Each `fit --help` twice a round, in the benchmark's own help-cache folders "
            "(`ATTNLAB_HELP_CACHE`): **cold**, the folder emptied before each run, as on the "
            "first call or the first after the code, a package version, a named config file or "
            "the terminal width changed (LightningCLI renders the help, which is then stored); "
            "**warm**, the text stored by an untimed run before the first round and printed "
            "without importing torch or Lightning.",
            "",
            table,
            "",
            torch_line,
            "",
            f"What `{LIGHTNING_IMPORT}` spends its time on (one `python -X importtime` run, "
            "cumulative seconds, nested: a module includes what it imported first): "
            + ", ".join(f"`{m}` {v:.2f}" for m, v in data["lightning_import_s"].items())
            + ". Every cold `fit --help` pays this floor: its parser is LightningCLI's, built "
            "from the Trainer's and the app's LightningModule and DataModule signatures.",
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
    caches = HelpCaches()
    probe_env = dict(os.environ, OMP_NUM_THREADS="1")
    try:
        rows = measure(rounds, caches, log)
        torch_imports = torch_probes(caches, probe_env)
    finally:
        caches.close()
    data: dict[str, Any] = {
        "format": FORMAT,  # the keys `python -m benchmarks readme` reads
        "benchmark": NAME,
        "title": "start-up of the `attnlab` command (nothing trained)",
        "headline": headline(rows, rounds, env.get("load_average_1_5_15") or []),
        "command": "OMP_NUM_THREADS=1 python -m benchmarks startup",
        "threads": 1,
        "complete": True,
        "anchors": references(rows),
        "runs": run_entries(rows),
        "rounds": rounds,
        "environment": env,
        "commands": rows,
        "imports_torch": torch_imports,
        "lightning_import_s": floor_breakdown(probe_env),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    for r in rows:
        verdict = "" if r["met"] is None else (" met" if r["met"] else " NOT met")
        label = r["command"] + (f" ({r['help_cache']})" if r.get("help_cache") else "")
        log(
            f"{label:38s} {r['median_s']:6.2f} s (x{r['x_import_torch']:.2f} import torch){verdict}"
        )
    json_path, md_path = write_results(NAME, data, build_markdown(data))
    log(f"wrote {json_path.name} and {md_path.name}")


if __name__ == "__main__":
    main()
