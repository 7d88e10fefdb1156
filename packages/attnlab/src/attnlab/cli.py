"""The `attnlab` command.

    attnlab list
    attnlab list-attention
    attnlab <app> fit|validate|test|predict [--config FILE|NAME ...] [--run_dir DIR] [--key=value ...]
    attnlab <app> export --ckpt PATH --format onnx|torch-export [--out PATH]
    attnlab report RUN_DIR
    attnlab atlas RUN_DIR [RUN_DIR ...] [--out FILE] [--samples N] [--force] [--data.root DIR]
    attnlab demo [APP ...]

``fit|validate|test|predict`` are LightningCLI: YAML configs plus dotted overrides,
``--print_config``. ``--config NAME`` also finds ``NAME.yaml`` among the app's configs and the
shared trainer presets (``--config quick --config gpu``). ``fit --budget.cpu_s S`` /
``--budget.wall_s S`` (or a config's ``budget:`` block) end the run at that many CPU / wall
seconds (``attnlab.budget``). ``--verbose`` adds Lightning's own log lines and model summary.
Their ``--help`` is rendered once and then printed from a cache without importing torch
(``attnlab.help_cache``; ``ATTNLAB_NO_HELP_CACHE=1`` turns it off).
The parser and the run folder live in ``attnlab.lightning_cli``.
"""

from __future__ import annotations

import os
import pickle
import sys
import warnings
from pathlib import Path
from typing import Any

from .app import App, get_app, load_apps
from .paths import shared_dir  # re-exported: attnlab.cli.shared_dir

__all__ = ["AttnlabCLI", "main", "resolve_config", "shared_dir"]

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")


def resolve_config(value: str, app: App) -> str:
    """A config given by name -> its path in the app's configs or the trainer presets."""
    if Path(value).is_file() or value.lstrip().startswith("{"):
        return value
    names = [value] if value.endswith((".yaml", ".yml")) else [f"{value}.yaml", value]
    folders = [app.config_dir]
    shared = shared_dir()
    if shared is not None:
        folders.append(shared / "configs" / "trainer")
    for folder in folders:
        for name in names:
            if (folder / name).is_file():
                return str(folder / name)
    known = sorted({p.stem for f in folders for p in f.glob("*.yaml")})
    raise SystemExit(f"error: config {value!r} is neither a file nor one of: {', '.join(known)}")


def _preprocess(app: App, argv: list[str]) -> list[str]:
    """Resolve config names and ``--ckpt_path last`` before LightningCLI sees the arguments."""
    out: list[str] = []
    run_dir = _option(argv, "--run_dir")
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--config" and i + 1 < len(argv):
            out += [arg, resolve_config(argv[i + 1], app)]
            i += 2
            continue
        if arg.startswith("--config="):
            out.append("--config=" + resolve_config(arg.split("=", 1)[1], app))
            i += 1
            continue
        if arg in ("--ckpt_path", "--ckpt_path=last") or arg.startswith("--ckpt_path="):
            value = (
                argv[i + 1] if arg == "--ckpt_path" and i + 1 < len(argv) else arg.split("=", 1)[-1]
            )
            step = 2 if arg == "--ckpt_path" else 1
            if value == "last":
                if not run_dir:
                    raise SystemExit(
                        "error: --ckpt_path last resumes a run: also pass --run_dir with that run's folder"
                    )
                value = str(_resume_checkpoint(Path(run_dir)))
            elif not Path(value).is_file():
                raise SystemExit(f"error: --ckpt_path {value} does not exist")
            out += ["--ckpt_path", value]
            i += step
            continue
        out.append(arg)
        i += 1
    return out


def _resume_checkpoint(run_dir: Path) -> Path:
    """``--ckpt_path last``: the newest whole checkpoint of the run (``last.ckpt`` normally; the
    first ``best.ckpt`` of a run killed before its first ``last.ckpt``)."""
    from .runs import newest_checkpoint

    found = newest_checkpoint(run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    if found is None:
        raise SystemExit(
            f"error: no checkpoint to resume: {last} does not exist and {run_dir} holds no other "
            "whole checkpoint; start the run again with another --run_dir"
        )
    if found.name != last.name:
        print(f"resuming from {found}: the newest whole checkpoint of {run_dir}", flush=True)
    return found


def _option(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def AttnlabCLI(app: App, args: list[str], build_only: bool = False, verbose: bool = False) -> Any:
    """The LightningCLI of ``app`` run on ``args`` (``attnlab.lightning_cli``, imported here so
    that `attnlab list` does not import Lightning)."""
    from .lightning_cli import AttnlabCLI as cli_class

    return cli_class(app, args, build_only=build_only, verbose=verbose)


USAGE = __doc__ or ""


def _run_app(app: App, argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(f"attnlab {app.name}: {app.description}\n")
        print(f"usage: attnlab {app.name} fit|validate|test|predict|export [options] [--verbose]")
        print(f"configs: {', '.join(p.stem for p in app.configs())}")
        return 0
    sub = argv[0]
    if sub == "export":
        from .export import export_main

        return export_main(app, argv[1:])
    if sub not in LIGHTNING_SUBCOMMANDS:
        raise SystemExit(
            f"error: unknown command {sub!r} for app {app.name}; use fit, validate, test, predict or export"
        )
    # --verbose: Lightning's own log lines, its warnings and the model summary table.
    verbose = "--verbose" in argv[1:]
    rest = _preprocess(app, [a for a in argv[1:] if a != "--verbose"])
    asks_help = any(a in ("-h", "--help") or a.startswith("--print_config") for a in rest)
    if _option(rest, "--run_dir") is None and not asks_help:
        from .runs import default_run_dir

        # Fixed here, not inside LightningCLI, so that DDP workers (which re-run this command
        # line) write into the same folder as the main process.
        rest += ["--run_dir", str(default_run_dir(app.name, sub))]
    # Whether --run_dir may be written (a run it is not resuming, a live command in it) is
    # decided by the process that takes its lock: attnlab.run_lock.take_run_folder.
    sys.argv = [sys.argv[0], app.name, sub, *rest]
    args = [sub, *rest]
    warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter.*")
    if asks_help:
        from .help_cache import print_help_cached, wants_cached_help

        if wants_cached_help(rest):
            # Printed from the cache without importing torch when rendered before.
            print_help_cached(
                app, [app.name, *argv], args, lambda: AttnlabCLI(app, args, verbose=verbose)
            )
            return 0
    AttnlabCLI(app, args, verbose=verbose)
    return 0


def attention_help() -> str:
    """What ``--model.attention.*`` takes in every app: the registered backends and positions."""
    from attention_core import POSITIONS, backend_table

    return "\n".join(
        [
            "--model.attention.* (every app; see each app's README for where it applies)",
            "",
            "backends (--model.attention.backend NAME, options as --model.attention.OPTION):",
            backend_table(),
            "",
            f"positions (--model.attention.pos): {', '.join(POSITIONS)} "
            "(unset: the model's default)",
            "global tokens (--model.attention.global_tokens N, local only): the first N tokens "
            "attend to and are attended by all (unset: the model's class token)",
            "options of a registered third-party backend: --model.attention.options "
            "'{\"name\": value}'",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        apps = load_apps()
        print("apps: " + (", ".join(apps) or "none installed"))
        return 0
    command = argv[0]
    try:
        if command == "list":
            apps = load_apps()
            if not apps:
                print("no apps installed (an app registers an entry point in group 'attnlab.apps')")
            for name, app in apps.items():
                print(
                    f"{name:12s} {app.description}  [configs: {', '.join(p.stem for p in app.configs())}]"
                )
            return 0
        if command == "list-attention":
            print(attention_help())
            return 0
        if command == "report":
            from .report import report_main

            return report_main(argv[1:])
        if command == "demo":
            from .demo import demo_main

            return demo_main(argv[1:])
        if command == "atlas":
            from .atlas import atlas_main

            return int(atlas_main(argv[1:]))
        return _run_app(get_app(command), argv[1:])
    except (ValueError, FileNotFoundError, OSError, pickle.UnpicklingError, RuntimeError) as exc:
        if os.environ.get("ATTNLAB_DEBUG"):
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
