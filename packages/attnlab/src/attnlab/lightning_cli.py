"""``AttnlabCLI``: LightningCLI plus the run folder, the shared callbacks, budgets and
metrics.json.

Imported lazily by ``attnlab.cli`` (``attnlab list`` must not import Lightning). ``App.build``
uses the same class with ``build_only=True``: the same parser and configs, the module and
datamodule instantiated, no trainer, no run folder.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger

from .app import App
from .budget import Budget, max_time_seconds
from .callbacks import (
    AttentionFigures,
    NonFiniteLossGuard,
    PlainProgress,
    RunArtifacts,
    SharedBuffers,
)
from .checkpoint import (
    AtomicCheckpointIO,
    CheckpointError,
    RandomStateCallback,
    check_checkpoint,
    load_checkpoint,
)
from .console import (
    ModelSize,
    option_names,
    progress_bar_wanted,
    quiet_lightning,
    unknown_option_message,
)
from .help_format import ListHelpFormatter
from .run_lock import RunLock, join_run_folder, launch_id, take_run_folder
from .runs import (
    atomic_write_text,
    check_run_dir_path,
    default_run_dir,
    evaluation_name,
    holds_run,
    to_float,
    write_json,
)

__all__ = ["AttnlabCLI", "headline"]

LIMIT_KEYS = ("max_epochs", "max_steps")


def headline(app: App, result: dict[str, Any]) -> dict[str, Any]:
    """The app's headline metric from a result: test first, then best validation, then last."""
    for section in ("test", "best", "last"):
        values = result.get(section) or {}
        if app.headline in values:
            return {"metric": app.headline, "value": values[app.headline], "from": section}
        alt = app.monitor
        if section == "best" and alt in values:
            return {"metric": alt, "value": values[alt], "from": section}
    return {"metric": app.headline, "value": None, "from": None}


def _refuse_untrained_fit(cfg: Any) -> None:
    """A ``fit`` limited to 0 epochs or steps would report an untrained model as its headline."""
    if cfg.get("trainer.fast_dev_run"):
        return  # Lightning runs one batch whatever the limits say
    for key in LIMIT_KEYS:
        if cfg.get(f"trainer.{key}") == 0:
            raise ValueError(
                f"--trainer.{key} 0 trains nothing, and the run would report an untrained model; "
                "give at least 1, or evaluate a checkpoint with validate or test"
            )


def _launch_of(trainer: Any) -> str | None:
    """The ``launch_id`` every rank of a distributed run shares (None for one process)."""
    environment = getattr(trainer.strategy, "cluster_environment", None)
    if trainer.world_size <= 1 or environment is None:
        return None
    return launch_id(environment.main_address, environment.main_port)


def _budget_limits(cfg: Any) -> dict[str, float | None]:
    """``{"cpu_s": ..., "wall_s": ...}`` of a subcommand's parsed configuration."""
    return {key: cfg.get(f"budget.{key}") for key in ("cpu_s", "wall_s")}


class AttnlabCLI(LightningCLI):
    """LightningCLI plus the run folder, the shared callbacks and metrics.json."""

    app: App

    def __init__(self, app: App, args: list[str], build_only: bool = False, verbose: bool = False):
        self.app = app
        self._raw_args = list(args)
        self.build_only = build_only
        self.verbose = verbose
        quiet_lightning(verbose)
        self.run_dir: Path | None = None
        self.artifacts: RunArtifacts | None = None
        self.budget: Budget | None = None
        self.run_lock: RunLock | None = None
        # evals/<name>.json and evals/<name>/: validate/test/predict into a folder holding a run.
        self.eval_name: str | None = None
        # No prefix matching (--trainer.max_epoch is a typo, not max_epochs); a parse error is
        # raised, and parse_arguments turns it into one line instead of the whole usage.
        parser_kwargs: dict[str, Any] = {
            "prog": f"attnlab {app.name}",
            "allow_abbrev": False,
            "exit_on_error": False,
        }
        self._made_run_dir = False
        try:
            super().__init__(
                app.module,
                app.datamodule,
                save_config_callback=None,
                seed_everything_default=42,
                auto_configure_optimizers=False,
                parser_kwargs=parser_kwargs,
                args=args,
            )
        except Exception as exc:
            self._record_failure(exc)
            raise

    def _record_failure(self, exc: Exception) -> None:
        """A failed command leaves no run folder without a manifest saying why: one that failed
        before Lightning's callbacks started (bad data in ``prepare_data``/``setup``) gets its
        manifest with ``status: failed: ...``; a folder this command made and left empty (the
        trainer could not be built) is removed."""
        run_dir, artifacts = self.run_dir, self.artifacts
        if self.build_only or run_dir is None:
            return
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            if self._made_run_dir and run_dir.is_dir() and not any(run_dir.iterdir()):
                run_dir.rmdir()
            return
        if (
            artifacts is not None
            and trainer.is_global_zero
            and not artifacts.manifest_path.exists()
        ):
            artifacts.setup(trainer, self.model, str(self.subcommand))
            artifacts.on_exception(trainer, self.model, exc)

    def subcommands(self) -> dict[str, set[str]]:  # type: ignore[override]
        """Only the subcommand this command runs: LightningCLI builds one parser per subcommand
        (Trainer, model and data signatures each time), a third of `fit --help`'s time for
        parsers nobody reads. ``attnlab.cli`` has already refused any other first argument."""
        every = LightningCLI.subcommands()
        asked = self._raw_args[0] if self._raw_args else None
        return {asked: every[asked]} if asked in every else every

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        """Every parser (the main one and the subcommand's) prints ``- `` lists in an option's
        help one item a line (``attnlab.help_format``)."""
        kwargs.setdefault("formatter_class", ListHelpFormatter)
        return super().init_parser(**kwargs)

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """LightningCLI's parsing; a bad option or value is one ``ValueError`` line naming the
        closest valid options."""
        from jsonargparse import ArgumentError

        try:
            super().parse_arguments(parser, args)
        except ArgumentError as exc:
            sub = next((a for a in self._raw_args if not a.startswith("-")), "")
            sub_parser = getattr(self, "_subcommand_parsers", {}).get(sub, parser)
            command = f"attnlab {self.app.name} {sub}".strip()
            raise ValueError(
                unknown_option_message(str(exc), option_names(sub_parser), command)
            ) from None

    def _parse_ckpt_path(self) -> None:
        """Model settings from the checkpoint, except the ones given on the command line.

        LightningCLI rebuilds the model from ``--ckpt_path``'s hyper-parameters and would
        silently drop an explicit ``--model.beam_size 5`` at predict time; here explicit
        ``--model.*`` arguments win (a shape they change is still caught when loading).
        """
        from_command_line = self.config.clone()
        sub = from_command_line.get("subcommand")
        ckpt_path = from_command_line[sub].get("ckpt_path") if sub else None
        if ckpt_path and Path(ckpt_path).is_file():
            # An untrusted file: another app's, mistyped, or claiming a model far larger than
            # its tensors is one error naming it, before Lightning reads its hyper-parameters.
            check_checkpoint(
                ckpt_path, self.app.module, self.app.name, resume=sub == "fit", lightning=True
            )
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
        parser.add_argument(
            "--budget.cpu_s",
            type=float | None,
            default=None,
            help="fit: stop after this many CPU seconds of the process (all threads); the "
            "learning-rate schedule runs over the budget",
        )
        parser.add_argument(
            "--budget.wall_s",
            type=float | None,
            default=None,
            help="fit: stop after this many wall-clock seconds; with --budget.cpu_s, whichever "
            "comes first",
        )

    def before_instantiate_classes(self) -> None:
        sub = self.config.get("subcommand")
        cfg = self.config.get(sub, self.config) if sub else self.config
        # A bad value is one ValueError line, before any folder.
        Budget(**_budget_limits(cfg), max_time_s=max_time_seconds(cfg.get("trainer.max_time")))
        if self.build_only:
            return
        if cfg.get("run_dir"):
            check_run_dir_path(Path(cfg.get("run_dir")))
        if sub == "fit":
            _refuse_untrained_fit(cfg)

    # -------------------------------------------------------------- build_only (App.build)
    def instantiate_classes(self) -> None:
        if not self.build_only:
            super().instantiate_classes()
            return
        instantiate = getattr(self.parser, "instantiate", None) or self.parser.instantiate_classes
        self.config_init = instantiate(self.config)
        self.datamodule = self._get(self.config_init, "data")
        self.model = self._get(self.config_init, "model")
        self.trainer = None  # type: ignore[assignment]

    def _run_subcommand(self, subcommand: str) -> None:
        if self.build_only:
            return
        try:
            super()._run_subcommand(subcommand)
        except (KeyError, IndexError, AttributeError, TypeError, ValueError, RuntimeError) as exc:
            # Lightning holds the loaded checkpoint only while restoring from it: a failure then
            # comes from the file (a crafted loop or scheduler state), so name the file.
            connector = getattr(self.trainer, "_checkpoint_connector", None)
            if isinstance(exc, CheckpointError) or not getattr(
                connector, "_loaded_checkpoint", None
            ):
                raise
            ckpt = self.config[subcommand].get("ckpt_path")
            message = " ".join(str(exc).split())
            raise CheckpointError(
                f"{ckpt} could not be restored ({type(exc).__name__}: {message}); it is not a "
                "checkpoint this app wrote"
            ) from None
        finally:
            if self.run_lock is not None:
                self.run_lock.release()

    # -------------------------------------------------------------- trainer
    def _limits_set_with_budget(self) -> bool:
        """Whether max_epochs/max_steps were chosen for this run rather than inherited: given on
        the command line, or in a config file that also sets the budget."""
        for arg in self._raw_args:
            if arg.split("=", 1)[0] in tuple(f"--trainer.{k}" for k in LIMIT_KEYS):
                return True
        import yaml

        for i, arg in enumerate(self._raw_args):
            path = None
            if arg == "--config" and i + 1 < len(self._raw_args):
                path = self._raw_args[i + 1]
            elif arg.startswith("--config="):
                path = arg.split("=", 1)[1]
            if not path or not Path(path).is_file():
                continue
            try:
                data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
            except (OSError, yaml.YAMLError, UnicodeDecodeError):
                continue
            if isinstance(data, dict) and data.get("budget"):
                trainer = data.get("trainer")
                if isinstance(trainer, dict) and any(k in trainer for k in LIMIT_KEYS):
                    return True
        return False

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Any]) -> Any:
        sub = str(self.subcommand)
        cfg = self.config[sub]
        fast = bool(config.get("fast_dev_run"))
        run_dir = Path(cfg.get("run_dir") or default_run_dir(self.app.name, sub))
        ckpt = cfg.get("ckpt_path")
        # Whether an earlier command wrote a run here: then validate/test/predict add to it.
        joins_run = sub != "fit" and holds_run(run_dir)
        if joins_run:
            self.eval_name = evaluation_name(run_dir, sub)
        self._made_run_dir = not run_dir.exists()
        run_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir = run_dir
        # What an evaluation of a run writes (figures, predictions, TensorBoard events) goes to
        # evals/<name>/, beside the run's own files, never over them.
        root = run_dir / "evals" / self.eval_name if self.eval_name else run_dir
        config["default_root_dir"] = str(root)
        if config.get("logger") in (None, True):
            config["logger"] = TensorBoardLogger(save_dir=str(root), name="tb", version="")
        plugins = config.get("plugins") or []
        plugins = plugins if isinstance(plugins, list) else [plugins]
        config["plugins"] = [*plugins, AtomicCheckpointIO()]
        seed = self.config[sub].get("seed_everything")
        manifest_extra: dict[str, Any] = {}
        ours: list[Any] = []
        if sub == "fit":
            # --trainer.max_time: Lightning's Timer stops the run, the schedule is planned over it.
            max_time_s = max_time_seconds(config.get("max_time"))
            self.budget = Budget(**_budget_limits(cfg), max_time_s=max_time_s)
            manifest_extra["budget"] = self.budget.limits
            manifest_extra["max_time_s"] = max_time_s
            if self.budget.active and not fast and not self._limits_set_with_budget():
                # The budget ends the run; a config's epoch count is for runs without one.
                config["max_epochs"] = -1
                config["max_steps"] = -1
        self.artifacts = RunArtifacts(
            run_dir,
            self.app.name,
            sub,
            seed if isinstance(seed, int) else None,
            manifest_extra=manifest_extra,
        )
        ours += [self.artifacts, NonFiniteLossGuard(), RandomStateCallback(), SharedBuffers()]
        if self.budget is not None:
            ours.append(self.budget)
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
        if progress_bar_wanted(config.get("enable_progress_bar"), sys.stdout):
            config["enable_progress_bar"] = True
            ours.append(RichProgressBar())
        else:
            config["enable_progress_bar"] = False
            ours.append(PlainProgress())
        if config.get("enable_model_summary") is None and not self.verbose:
            config["enable_model_summary"] = False  # one line instead of the table
            ours.append(ModelSize())
        trainer = super()._instantiate_trainer(config, [*callbacks, *ours])
        if sub == "predict" and trainer.world_size > 1:
            # Each process predicts its share of the inputs, and rank 0 writes the files.
            raise ValueError(
                f"predict in {trainer.world_size} processes would write rank 0's share of the "
                "predictions only; run it in one process (--trainer.devices 1, without the ddp "
                "preset)"
            )
        launch = _launch_of(trainer)
        if trainer.is_global_zero:
            # Rank 0 locks the folder (recording its launch) and writes it.
            self.run_lock = take_run_folder(run_dir, sub, ckpt, launch=launch)
            try:
                self._write_config(run_dir, sub, fast)
            except BaseException:
                self.run_lock.release()
                raise
        elif launch is not None:
            # Every other rank re-runs this command: the same checks, read-only, so a refusal is
            # the same line on every rank at once instead of ranks waiting for rank 0.
            join_run_folder(run_dir, sub, ckpt, launch, trainer.global_rank)
        return trainer

    def _write_config(self, run_dir: Path, sub: str, fast: bool) -> None:
        parser = self._parser(sub)
        text = parser.dump(self.config.get(sub, self.config), skip_none=False)
        if self.eval_name:
            atomic_write_text(run_dir / "evals" / self.eval_name / "config.yaml", text)
            return
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
        result["last"] = self.artifacts.last_epoch_metrics() or self._metrics()
        run_facts: dict[str, Any] = {}
        if self.budget is not None:
            run_facts = {
                "budget": self.budget.limits,
                "stopped_by": self.budget.stopped_by,
                "train": self.budget.summary(),
            }
        result.update(run_facts)
        cfg = self.config["fit"]
        fast = bool(getattr(trainer, "fast_dev_run", False))
        dm = self.datamodule
        if cfg.get("test_after_fit", True) and getattr(dm, "has_test_split", True) and not fast:
            trainer.test(self.model, datamodule=dm, ckpt_path=best_path or None, verbose=False)
            result["test"] = {k: v for k, v in self._metrics().items() if k.startswith("test")}
            result["test_checkpoint"] = "best" if best_path else "last"
        result["headline"] = headline(self.app, result)
        if trainer.is_global_zero:
            write_json(self.run_dir / "metrics.json", result)
            self.artifacts.finish("completed", **run_facts)
            print(f"run folder: {self.run_dir}", flush=True)

    def _after_eval(self, stage: str) -> None:
        assert self.run_dir is not None and self.artifacts is not None
        if self.trainer.is_global_zero:
            metrics = self._metrics()
            result = {
                "app": self.app.name,
                stage: metrics,
                "headline": headline(self.app, {"test": metrics, "best": metrics}),
            }
            if self.eval_name:
                # The folder holds a run: add to it, never replace its metrics.json.
                path = self.run_dir / "evals" / f"{self.eval_name}.json"
                result["checkpoint"] = self.config[stage].get("ckpt_path")
                write_json(path, result)
                self.artifacts.finish("completed", result=str(path.relative_to(self.run_dir)))
                print(f"wrote {path}", flush=True)
            else:
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
