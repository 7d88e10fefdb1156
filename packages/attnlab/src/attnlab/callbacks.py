"""Callbacks every app run gets: run artifacts, attention figures, a non-finite-loss guard and
plain progress lines for non-terminal output."""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import move_data_to_device

from attention_core import AttentionMaps, attention_layers, capture_attention

from .app import DrawFn, FigureContext
from .figures import save_figure
from .runs import (
    EpochTable,
    command_line,
    git_commit,
    now_iso,
    read_json,
    to_float,
    versions,
    write_json,
)

__all__ = [
    "AttentionFigures",
    "NonFiniteLossError",
    "NonFiniteLossGuard",
    "PlainProgress",
    "RunArtifacts",
    "epoch_label",
    "forward_with_attention",
    "take_samples",
]


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; raised so no checkpoint of the bad state is saved."""


# metrics.csv columns that describe the row rather than what the model scored.
BOOKKEEPING_COLUMNS = ("epoch", "step", "time", "train_cpu_s", "train_wall_s")


class RunArtifacts(pl.Callback):
    """Writes ``manifest.json`` and ``metrics.csv`` (one row per epoch) into the run folder.

    A ``fit`` into its own folder resumed later appends to ``resumed``; any other command into a
    folder that already holds a run appends an entry to ``evaluations`` and leaves the run's own
    fields (status, times, command) as they were.
    """

    def __init__(
        self,
        run_dir: Path,
        app: str,
        subcommand: str,
        seed: int | None,
        manifest_extra: dict[str, Any] | None = None,
    ):
        self.run_dir = Path(run_dir)
        self.app = app
        self.subcommand = subcommand
        self.seed = seed
        # Fields the command adds to the manifest at the start (fit: the budget).
        self.manifest_extra = dict(manifest_extra or {})
        self.table = EpochTable(self.run_dir / "metrics.csv")

    @property
    def manifest_path(self) -> Path:
        return self.run_dir / "manifest.json"

    def _manifest(self, trainer: pl.Trainer) -> dict[str, Any]:
        if self.manifest_path.exists():
            manifest = read_json(self.manifest_path)
            if self.subcommand != "fit":
                self.evaluation = {
                    "subcommand": self.subcommand,
                    "command": command_line(),
                    "start_time": now_iso(),
                    "end_time": None,
                    "status": "running",
                }
                manifest.setdefault("evaluations", []).append(self.evaluation)
                return manifest
            resumed = {"at": now_iso(), "command": command_line(), "after": manifest.get("status")}
            manifest.setdefault("resumed", []).append(resumed)
            manifest.update(self.manifest_extra, status="running", end_time=None)
            return manifest
        return {
            "app": self.app,
            "subcommand": self.subcommand,
            "command": command_line(),
            "versions": versions(),
            "git_commit": git_commit(),
            "seed": self.seed,
            "device": _device_name(trainer),
            "accelerator": type(trainer.accelerator).__name__,
            "devices": trainer.num_devices,
            "num_nodes": trainer.num_nodes,
            "precision": str(trainer.precision),
            "threads": torch.get_num_threads(),
            "start_time": now_iso(),
            "end_time": None,
            "status": "running",
            **self.manifest_extra,
        }

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Once per command: `fit` also runs `test` at its end with the same callbacks.
        if trainer.is_global_zero and not hasattr(self, "manifest"):
            self.manifest = self._manifest(trainer)
            write_json(self.manifest_path, self.manifest)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # After a resume, rows of epochs that will be trained again are dropped.
        self.table.keep_before(trainer.current_epoch)
        if trainer.is_global_zero and hasattr(self, "manifest"):
            # Counted here, after the module learned its sizes from the data (configure_from_data).
            params = list(pl_module.parameters())
            self.manifest["num_parameters"] = sum(p.numel() for p in params)
            self.manifest["num_trainable_parameters"] = sum(
                p.numel() for p in params if p.requires_grad
            )
            write_json(self.manifest_path, self.manifest)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        row: dict[str, Any] = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        for name, value in sorted(trainer.callback_metrics.items()):
            number = to_float(value)
            if number is not None:
                row[name] = number
        row["time"] = round(time.time(), 3)
        from .budget import Budget

        for callback in trainer.callbacks:  # type: ignore[attr-defined]
            if isinstance(callback, Budget):
                # Training CPU and wall seconds so far: curves of quality against compute.
                cpu, wall = callback.used()
                row["train_cpu_s"], row["train_wall_s"] = round(cpu, 3), round(wall, 3)
        self.table.add(row)

    def last_epoch_metrics(self) -> dict[str, float]:
        """What the model scored in the last epoch of metrics.csv: the same after a kill and
        resume at any point as in an uninterrupted run (the trainer's live metrics are empty
        when a resume finds training already done)."""
        if not self.table.rows:
            return {}
        row = self.table.rows[-1]
        numbers = ((k, to_float(v)) for k, v in row.items() if k not in BOOKKEEPING_COLUMNS)
        return {k: v for k, v in numbers if v is not None}

    def finish(self, status: str, **extra: Any) -> None:
        if not hasattr(self, "manifest"):
            return
        entry = getattr(self, "evaluation", None)
        (entry if entry is not None else self.manifest).update(
            end_time=now_iso(), status=status, **extra
        )
        write_json(self.manifest_path, self.manifest)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if not trainer.is_global_zero:
            return
        from .budget import Budget

        extra: dict[str, Any] = {}
        for callback in trainer.callbacks:  # type: ignore[attr-defined]
            if isinstance(callback, Budget):
                callback.finish(trainer)
                extra["train"] = callback.summary()
        if isinstance(exception, NonFiniteLossError):
            extra["stopped_by"] = "nonfinite_loss"
        elif isinstance(exception, KeyboardInterrupt):
            extra["stopped_by"] = "interrupted"
        elif "train" in extra:
            extra["stopped_by"] = "error"
        self.finish(f"failed: {type(exception).__name__}: {exception}", **extra)


def _device_name(trainer: pl.Trainer) -> str:
    root = trainer.strategy.root_device
    if root.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(root)}"
    import platform

    return f"{root.type}: {platform.processor() or platform.machine()}"


def take_samples(batch: Any, n: int) -> Any:
    """The first ``n`` samples of a batch of tensors / lists / tuples / dicts."""
    if isinstance(batch, torch.Tensor):
        return batch[:n]
    if isinstance(batch, dict):
        return {k: take_samples(v, n) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(take_samples(v, n) for v in batch))
    if isinstance(batch, list | tuple):
        if batch and all(isinstance(v, torch.Tensor | list | tuple | dict) for v in batch):
            return type(batch)(take_samples(v, n) for v in batch)
        return batch[:n]
    return batch


def forward_with_attention(
    module: pl.LightningModule, batch: Any, layers: Any = None
) -> tuple[Any, AttentionMaps]:
    """``module.figure_forward(batch)`` without gradients, with the attention of ``layers``
    captured: what the figures and `attnlab atlas` both draw from."""
    # A model without attention (a baseline in the same app) still gets its figures, with no
    # maps, instead of capture_attention's "no attention layer" error.
    capture = (
        capture_attention(module, layers)
        if attention_layers(module)
        else contextlib.nullcontext(AttentionMaps())
    )
    with torch.no_grad(), capture as maps:
        output = module.figure_forward(batch)  # type: ignore[operator]
    return output, maps


class AttentionFigures(pl.Callback):
    """Every ``every_n_epochs`` epochs and at the end of fit, captures attention on a fixed set of
    validation samples and saves the app's figures (PNG in ``figures/``, images in TensorBoard)."""

    def __init__(
        self,
        draw: DrawFn,
        every_n_epochs: int = 5,
        num_samples: int = 4,
        layers: Any = None,
    ):
        self.draw = draw
        self.every_n_epochs = max(1, every_n_epochs)
        self.num_samples = num_samples
        self.layers = layers
        self._batch: Any = None

    def _samples(self, trainer: pl.Trainer) -> Any:
        if self._batch is None:
            dm = trainer.datamodule  # type: ignore[attr-defined]
            loader = dm.val_dataloader() if dm is not None else trainer.val_dataloaders
            if loader is None:
                raise ValueError("attention figures need validation data; the datamodule has none")
            batch = next(iter(loader))
            self._batch = take_samples(batch, self.num_samples)
        return self._batch

    def render(self, trainer: pl.Trainer, module: pl.LightningModule, tag: str) -> list[Path]:
        batch = move_data_to_device(self._samples(trainer), module.device)
        was_training = module.training
        module.eval()
        try:
            output, maps = forward_with_attention(module, batch, self.layers)
            dm = getattr(trainer, "datamodule", None)
            figures = self.draw(FigureContext(module, batch, output, maps, tag, dm))
        finally:
            module.train(was_training)
        paths = []
        for name, fig in figures:
            paths.append(save_figure(trainer, f"{name}_{tag}", fig, step=trainer.global_step))
        return paths

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or trainer.state.fn != "fit":
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self.render(trainer, pl_module, f"epoch{trainer.current_epoch:03d}")

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero and not getattr(trainer, "fast_dev_run", False):
            self.render(trainer, pl_module, "final")


class NonFiniteLossGuard(pl.Callback):
    """Stops training at the first NaN/inf loss, before a checkpoint of the bad state is written."""

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        value = to_float(loss)
        if value is not None and not math.isfinite(value):
            last = Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
            ckpt = str(last) if last.exists() else "none yet"
            raise NonFiniteLossError(
                f"non-finite loss ({value}) at step {trainer.global_step} (epoch "
                f"{trainer.current_epoch}, batch {batch_idx}); training stopped, last good "
                f"checkpoint: {ckpt}. Lower --model.lr or set --trainer.gradient_clip_val"
            )


class SharedBuffers(pl.Callback):
    """Under DDP, every process evaluates rank 0's buffers (batch-norm running statistics, a
    REINFORCE baseline): the model the checkpoint holds.

    DDP copies rank 0's buffers to the others at each training forward, but each process then
    updates its own with its own batch, and evaluation does not go through that forward; so the
    processes validated slightly different models, and the synchronised metrics were not those
    of the saved weights (the captioner's val/loss was off by 0.2 %)."""

    def _share(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.world_size <= 1 or not torch.distributed.is_initialized():
            return
        for buffer in pl_module.buffers():
            torch.distributed.broadcast(buffer, src=0)

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._share(trainer, pl_module)

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._share(trainer, pl_module)


def epoch_label(trainer: pl.Trainer) -> str:
    """``epoch 3/9``: the epoch counted from 0 and the last one, as Lightning's bar writes it and
    as metrics.csv, metrics.json (``best_epoch``), checkpoints and figure names count; ``epoch 3``
    when no epoch limit is set (a budget or ``--trainer.max_time`` ends the run)."""
    last = f"/{trainer.max_epochs - 1}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
    return f"epoch {trainer.current_epoch}{last}"


class PlainProgress(pl.Callback):
    """One line per epoch (and per evaluation) for logs and pipes, where a live bar is noise."""

    def __init__(self) -> None:
        self._start = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        metrics = " ".join(
            f"{k}={to_float(v):.4g}"
            for k, v in sorted(trainer.callback_metrics.items())
            if to_float(v) is not None and not k.endswith("_step")
        )
        print(
            f"{epoch_label(trainer)} step {trainer.global_step} "
            f"{metrics} ({time.perf_counter() - self._start:.1f}s)",
            flush=True,
        )

    def _eval_end(self, trainer: pl.Trainer, stage: str) -> None:
        if trainer.is_global_zero and trainer.state.fn != "fit":
            metrics = " ".join(
                f"{k}={to_float(v):.4g}"
                for k, v in sorted(trainer.callback_metrics.items())
                if to_float(v) is not None
            )
            print(f"{stage}: {metrics}", flush=True)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._eval_end(trainer, "test")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._eval_end(trainer, "validate")
