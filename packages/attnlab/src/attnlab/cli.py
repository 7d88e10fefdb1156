"""The `attnlab` command.

    attnlab list
    attnlab <app> fit|validate|test|predict [--config FILE|NAME ...] [--run_dir DIR] [--key=value ...]
    attnlab <app> export --ckpt PATH --format onnx|torch-export [--out PATH]
    attnlab report RUN_DIR
    attnlab atlas RUN_DIR [RUN_DIR ...] [--out atlas.html] [--samples N] [--force]
    attnlab demo [APP ...]

``fit|validate|test|predict`` are LightningCLI: YAML configs plus dotted overrides,
``--print_config``. ``--config NAME`` also finds ``NAME.yaml`` among the app's configs and the
shared trainer presets (``--config quick --config gpu``).
"""

from __future__ import annotations

import os
import pickle
import sys
import warnings
from pathlib import Path
from typing import Any

from .app import App, get_app, load_apps

__all__ = ["AttnlabCLI", "main", "resolve_config", "shared_dir"]

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")


def shared_dir() -> Path | None:
    """The project's ``shared/`` folder (trainer presets, dataset manifest).

    ``ATTNLAB_SHARED`` wins; otherwise the nearest ``shared/configs`` above this file or the
    working directory.
    """
    env = os.environ.get("ATTNLAB_SHARED")
    if env:
        return Path(env)
    for start in (Path(__file__).resolve(), Path.cwd().resolve()):
        for parent in [start, *start.parents]:
            candidate = parent / "shared"
            if (candidate / "configs").is_dir():
                return candidate
    return None


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
                last = Path(run_dir) / "checkpoints" / "last.ckpt"
                if not last.is_file():
                    raise SystemExit(f"error: no checkpoint to resume: {last} does not exist")
                value = str(last)
            elif not Path(value).is_file():
                raise SystemExit(f"error: --ckpt_path {value} does not exist")
            out += ["--ckpt_path", value]
            i += step
            continue
        out.append(arg)
        i += 1
    return out


def _option(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _make_cli_class() -> type:
    """Build the LightningCLI subclass lazily so `attnlab list` does not import Lightning."""
    from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
    from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
    from lightning.pytorch.loggers import TensorBoardLogger

    from .callbacks import AttentionFigures, NonFiniteLossGuard, PlainProgress, RunArtifacts
    from .checkpoint import AtomicCheckpointIO, RandomStateCallback, load_checkpoint
    from .runs import atomic_write_text, default_run_dir, to_float, write_json

    class AttnlabCLI(LightningCLI):
        """LightningCLI plus the run folder, the shared callbacks and metrics.json."""

        app: App

        def __init__(self, app: App, args: list[str]):
            self.app = app
            self._raw_args = list(args)
            self.run_dir: Path | None = None
            self.artifacts: RunArtifacts | None = None
            super().__init__(
                app.module,
                app.datamodule,
                save_config_callback=None,
                seed_everything_default=42,
                auto_configure_optimizers=False,
                parser_kwargs={"prog": f"attnlab {app.name}"},
                args=args,
            )

        def _parse_ckpt_path(self) -> None:
            """Model settings from the checkpoint, except the ones given on the command line.

            LightningCLI rebuilds the model from ``--ckpt_path``'s hyper-parameters and would
            silently drop an explicit ``--model.beam_size 5`` at predict time; here explicit
            ``--model.*`` arguments win (a shape they change is still caught when loading).
            """
            from_command_line = self.config.clone()
            sub = from_command_line.get("subcommand")
            try:
                super()._parse_ckpt_path()
            except (pickle.UnpicklingError, RuntimeError, EOFError, OSError):
                # Lightning reads the hyper-parameters first (weights-only, so nothing ran) and
                # its error does not say which file; ours names it and says what to do.
                load_checkpoint(from_command_line[sub]["ckpt_path"])
                raise
            keys = [
                a[len("--model.") :].split("=", 1)[0]
                for a in self._raw_args
                if a.startswith("--model.")
            ]
            if not sub or not keys:
                return
            override: dict[str, Any] = {}
            for key in keys:
                node = override
                parts = key.split(".")
                for part in parts[:-1]:
                    node = node.setdefault(part, {})
                node[parts[-1]] = from_command_line[f"{sub}.model.{key}"]
            self.config = self.parser.parse_object({sub: {"model": override}}, self.config)

        def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
            parser.add_argument(
                "--run_dir",
                type=str | None,
                default=None,
                help="run folder (default runs/<app>/<timestamp>)",
            )
            parser.add_argument(
                "--test_after_fit",
                type=bool,
                default=True,
                help="after fit, test the best checkpoint when the data has a test split",
            )
            parser.add_argument(
                "--figure_every", type=int, default=5, help="draw attention figures every N epochs"
            )
            parser.add_argument(
                "--figure_samples",
                type=int,
                default=4,
                help="validation samples in attention figures",
            )

        # -------------------------------------------------------------- trainer
        def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Any]) -> Any:
            sub = str(self.subcommand)
            cfg = self.config[sub]
            fast = bool(config.get("fast_dev_run"))
            run_dir = Path(cfg.get("run_dir") or default_run_dir(self.app.name, sub))
            ckpt = cfg.get("ckpt_path")
            if (
                sub == "fit"
                and not ckpt
                and (run_dir / "checkpoints").is_dir()
                and any((run_dir / "checkpoints").glob("*.ckpt"))
            ):
                raise ValueError(
                    f"{run_dir} already holds a run; resume it with --ckpt_path last, or choose "
                    "another --run_dir (nothing was overwritten)"
                )
            run_dir.mkdir(parents=True, exist_ok=True)
            self.run_dir = run_dir
            config["default_root_dir"] = str(run_dir)
            if config.get("logger") in (None, True):
                config["logger"] = TensorBoardLogger(save_dir=str(run_dir), name="tb", version="")
            plugins = config.get("plugins") or []
            plugins = plugins if isinstance(plugins, list) else [plugins]
            config["plugins"] = [*plugins, AtomicCheckpointIO()]
            seed = self.config[sub].get("seed_everything")
            self.artifacts = RunArtifacts(
                run_dir, self.app.name, sub, seed if isinstance(seed, int) else None
            )
            ours: list[Any] = [self.artifacts, NonFiniteLossGuard(), RandomStateCallback()]
            if sub == "fit":
                # Two checkpoints: `best` by the app's monitor, `last` after every epoch (Lightning's
                # own save_last skips epochs that did not improve, which would make resuming lose work).
                common: dict[str, Any] = dict(
                    dirpath=str(run_dir / "checkpoints"),
                    save_top_k=1,
                    auto_insert_metric_name=False,
                    enable_version_counter=False,
                )
                ours.append(
                    ModelCheckpoint(
                        filename="best", monitor=self.app.monitor, mode=self.app.mode, **common
                    )
                )
                ours.append(ModelCheckpoint(filename="last", monitor=None, **common))
                if self.app.draw is not None and not fast:
                    ours.append(
                        AttentionFigures(
                            self.app.draw,
                            every_n_epochs=int(cfg.get("figure_every") or 5),
                            num_samples=int(cfg.get("figure_samples") or 4),
                            layers=self.app.figure_layers,
                        )
                    )
            if config.get("enable_progress_bar", True) and sys.stdout.isatty():
                ours.append(RichProgressBar())
            else:
                config["enable_progress_bar"] = False
                ours.append(PlainProgress())
            self._write_config(run_dir, sub, fast)
            return super()._instantiate_trainer(config, [*callbacks, *ours])

        def _write_config(self, run_dir: Path, sub: str, fast: bool) -> None:
            parser = self._parser(sub)
            text = parser.dump(self.config.get(sub, self.config), skip_none=False)
            target = run_dir / "config.yaml"
            if target.exists():
                if target.read_text(encoding="utf-8") == text:
                    return
                n = 1
                while (run_dir / f"config.resume{n}.yaml").exists():
                    n += 1
                target = run_dir / f"config.resume{n}.yaml"
            atomic_write_text(target, text)

        # -------------------------------------------------------------- after each subcommand
        def _metrics(self) -> dict[str, float]:
            return {
                k: v
                for k, v in ((k, to_float(v)) for k, v in self.trainer.callback_metrics.items())
                if v is not None
            }

        def after_fit(self) -> None:
            trainer = self.trainer
            assert self.run_dir is not None and self.artifacts is not None
            result: dict[str, Any] = {
                "app": self.app.name,
                "monitor": self.app.monitor,
                "mode": self.app.mode,
            }
            best_row = self.artifacts.table.best(self.app.monitor, self.app.mode)
            checkpoint = trainer.checkpoint_callback
            best_path = getattr(checkpoint, "best_model_path", "") or ""
            result["best_epoch"] = int(float(best_row["epoch"])) if best_row else None
            result["best_checkpoint"] = best_path or None
            result["best"] = (
                {
                    k: to_float(v)
                    for k, v in best_row.items()
                    if k.startswith("val") and to_float(v) is not None
                }
                if best_row
                else {}
            )
            result["last"] = self._metrics()
            cfg = self.config["fit"]
            fast = bool(getattr(trainer, "fast_dev_run", False))
            dm = self.datamodule
            if cfg.get("test_after_fit", True) and getattr(dm, "has_test_split", True) and not fast:
                trainer.test(self.model, datamodule=dm, ckpt_path=best_path or None, verbose=False)
                result["test"] = {k: v for k, v in self._metrics().items() if k.startswith("test")}
                result["test_checkpoint"] = "best" if best_path else "last"
            result["headline"] = _headline(self.app, result)
            if trainer.is_global_zero:
                write_json(self.run_dir / "metrics.json", result)
                self.artifacts.finish("completed")
                print(f"run folder: {self.run_dir}", flush=True)

        def _after_eval(self, stage: str) -> None:
            assert self.run_dir is not None and self.artifacts is not None
            if self.trainer.is_global_zero:
                metrics = self._metrics()
                result = {
                    "app": self.app.name,
                    stage: metrics,
                    "headline": _headline(self.app, {"test": metrics, "best": metrics}),
                }
                write_json(self.run_dir / "metrics.json", result)
                self.artifacts.finish("completed")
                print(f"run folder: {self.run_dir}", flush=True)

        def after_validate(self) -> None:
            self._after_eval("validate")

        def after_test(self) -> None:
            self._after_eval("test")

        def after_predict(self) -> None:
            if self.artifacts is not None and self.trainer.is_global_zero:
                self.artifacts.finish("completed")
                print(f"run folder: {self.run_dir}", flush=True)

    return AttnlabCLI


def _headline(app: App, result: dict[str, Any]) -> dict[str, Any]:
    for section in ("test", "best", "last"):
        values = result.get(section) or {}
        if app.headline in values:
            return {"metric": app.headline, "value": values[app.headline], "from": section}
        alt = app.monitor
        if section == "best" and alt in values:
            return {"metric": alt, "value": values[alt], "from": section}
    return {"metric": app.headline, "value": None, "from": None}


def AttnlabCLI(app: App, args: list[str]) -> Any:
    return _make_cli_class()(app, args)


USAGE = __doc__ or ""


def _run_app(app: App, argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(f"attnlab {app.name}: {app.description}\n")
        print(f"usage: attnlab {app.name} fit|validate|test|predict|export [options]")
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
    rest = _preprocess(app, argv[1:])
    asks_help = any(a in ("-h", "--help") or a.startswith("--print_config") for a in rest)
    if _option(rest, "--run_dir") is None and not asks_help:
        from .runs import default_run_dir

        # Fixed here, not inside LightningCLI, so that DDP workers (which re-run this command
        # line) write into the same folder as the main process.
        rest += ["--run_dir", str(default_run_dir(app.name, sub))]
    run_dir = Path(_option(rest, "--run_dir") or ".")
    if (
        sub == "fit"
        and _option(rest, "--ckpt_path") is None
        and any(run_dir.glob("checkpoints/*.ckpt"))
    ):
        raise ValueError(
            f"{run_dir} already holds a run; resume it with --ckpt_path last, or choose "
            "another --run_dir (nothing was overwritten)"
        )
    sys.argv = [sys.argv[0], app.name, sub, *rest]
    args = [sub, *rest]
    warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter.*")
    AttnlabCLI(app, args)
    return 0


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
