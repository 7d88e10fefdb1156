"""``AttnlabModule``: what every app's LightningModule shares.

An app module subclasses it, calls ``self.save_hyperparameters()`` in ``__init__`` and implements
the usual ``training_step``/``validation_step``/``test_step``. It gets:

* AdamW with linear warmup and cosine decay (``lr``, ``weight_decay``, ``warmup_fraction``
  hyper-parameters), no weight decay on biases, norms, tokens and position tables; with a time
  limit (``--budget.cpu_s``/``--budget.wall_s`` or ``--trainer.max_time``) the schedule runs
  over that limit;
* ``configure_from_data(datamodule)``: what the module learns from its data, called by ``setup``
  (and by ``App.build``) once the data is set up;
* checkpoints stamped with the app and module that wrote them, checked on load;
* ``from_checkpoint`` that rebuilds the module from a checkpoint without executing code;
* epoch metrics reduced over DDP processes (``log`` defaults to ``sync_dist=True``);
* hooks the shared services call: ``figure_forward`` (attention figures), ``example_inputs`` and
  ``export_model`` (export with parity), ``checkpoint_extras`` (vocabularies, id maps).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from .checkpoint import (
    check_checkpoint,
    check_compatible,
    load_checkpoint,
    model_hyperparameters,
    module_identity,
)

__all__ = ["AttnlabModule", "param_groups", "warmup_cosine"]


# The schedule's resolution when only a time budget bounds a run (no step count is known): the
# budget is cut into this many steps of warmup and cosine.
BUDGET_SCHEDULE_STEPS = 10_000


def warmup_cosine(step: float, total: int, warmup: int, min_ratio: float = 0.0) -> float:
    """LR multiplier: linear warmup over ``warmup`` steps, then cosine down to ``min_ratio``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


NO_DECAY_NAMES = ("cls_token", "pos_embed", "reg_token", "dist_token", "mask_token", "embedding")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only: biases, norm scales, tokens and embeddings are exempt."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or any(token in name for token in NO_DECAY_NAMES):
            no_decay.append(p)
        else:
            decay.append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


class AttnlabModule(pl.LightningModule):
    """The ``LightningModule`` an app subclasses: the optimiser, schedule, checkpoints and hooks
    every app shares, so an app writes only its model and its steps.

    A subclass sets ``app_name`` (stamped into checkpoints, so another app's checkpoint is
    refused), calls ``self.save_hyperparameters()`` in ``__init__`` (``from_checkpoint``
    rebuilds the module from them), keeps its ``nn.Module`` in ``self.model`` (what export
    takes by default) and implements ``training_step``/``validation_step``/``test_step``. The
    hooks ``configure_from_data``, ``figure_forward``, ``example_inputs``, ``export_model`` and
    ``checkpoint_extras`` plug it into the layer's services; see the module docstring.
    """

    app_name: ClassVar[str] = ""
    # Share of the run's time budget used so far, fed by ``attnlab.budget.Budget`` at every batch
    # end; None when the run has no budget. The learning-rate schedule reads it.
    budget_fraction: float | None = None

    # ------------------------------------------------------------------ data
    def configure_from_data(self, datamodule: Any) -> None:
        """What a module learns from its data: item count, vocabulary, normalisation
        statistics; called by the layer before training/eval and by App.build.

        The datamodule has been set up when this runs. Default: nothing to learn."""

    def setup(self, stage: str) -> None:
        """Calls ``configure_from_data`` with the trainer's datamodule, when one is attached.

        An app that still overrides ``setup`` may call this or not: the default
        ``configure_from_data`` does nothing."""
        trainer = self._trainer
        datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
        if datamodule is not None:
            self.configure_from_data(datamodule)

    def log(self, name: str, value: Any, *args: Any, **kwargs: Any) -> None:
        """``LightningModule.log`` with ``sync_dist=True`` unless told otherwise: under DDP an
        epoch-level value is then reduced over all processes (a batch-size-weighted mean over
        the whole validation set) instead of being rank 0's shard alone. No-op on one process."""
        kwargs.setdefault("sync_dist", True)
        super().log(name, value, *args, **kwargs)

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> Any:
        hp = self.hparams
        lr = float(hp.get("lr", 1e-3))
        optimizer = torch.optim.AdamW(
            param_groups(self, float(hp.get("weight_decay", 0.05))),
            lr=lr,
            betas=tuple(hp.get("betas", (0.9, 0.999))),
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            self.lr_multiplier(
                float(hp.get("warmup_fraction", 0.05)), float(hp.get("min_lr_ratio", 0.01))
            ),
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def lr_multiplier(self, warmup_fraction: float, min_ratio: float) -> Callable[[int], float]:
        """The ``LambdaLR`` multiplier: warmup and cosine (``warmup_cosine``) over the planned
        optimizer steps, or over the time limit when the run has one (a budget or
        ``--trainer.max_time``).

        The schedule stands at the larger of ``step / total_steps`` and the share of the time
        limit used (``budget_fraction``); when only a time limit bounds the run it follows that
        alone. Without a budget this is exactly ``warmup_cosine(step, total, warmup, min_ratio)``.
        An app with its own ``LambdaLR`` can pass it this multiplier to get the same behaviour.
        """
        total, by_steps = self._planned_steps()
        warmup = int(warmup_fraction * total)

        def multiplier(step: int) -> float:
            at = self._schedule_position(step, total, by_steps)
            return warmup_cosine(at, total, warmup, min_ratio)

        return multiplier

    def _planned_steps(self) -> tuple[int, bool]:
        """The optimizer steps the run plans, and whether steps bound it at all (if not, the
        count is a stand-in and only a time limit ends the run)."""
        estimated = float(self.trainer.estimated_stepping_batches)
        if math.isfinite(estimated):
            return max(1, int(estimated)), True
        return BUDGET_SCHEDULE_STEPS, False

    def _schedule_position(self, step: int, total: int, by_steps: bool) -> float:
        """Where the run stands, in steps of a ``total``-step plan: ``step``, or the share of the
        time limit used times ``total`` when that is further (or when only time ends the run)."""
        fraction = self.budget_fraction
        if not by_steps:
            return (fraction or 0.0) * total
        return step if fraction is None else max(step, fraction * total)

    def training_progress(self) -> float:
        """How far training is through its plan, from 0 to 1: the larger of the optimizer steps
        so far over the planned steps and the share of the time limit used (that share alone
        when only a time limit ends the run). The learning-rate schedule follows the same
        position, and so can anything planned over the run (a last phase of another loss, as
        the captioner's self-critical training)."""
        total, by_steps = self._planned_steps()
        at = self._schedule_position(self.trainer.global_step, total, by_steps)
        return min(1.0, at / total)

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_extras(self) -> dict[str, Any]:
        """Plain data the app needs back at load time (vocabulary, item ids). Override."""
        return {}

    def load_checkpoint_extras(self, extras: dict[str, Any]) -> None:
        """Restore what ``checkpoint_extras`` saved. Override."""

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        from . import __version__

        checkpoint["attnlab"] = {
            "app": self.app_name,
            "module": module_identity(self),
            "attnlab_version": __version__,
            "extras": self.checkpoint_extras(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Extras first: an app whose layer sizes follow a stored vocabulary rebuilds them here,
        # and only then can the shapes be compared.
        extras = (checkpoint.get("attnlab") or {}).get("extras") or {}
        if extras:
            self.load_checkpoint_extras(extras)
        check_compatible(checkpoint, self)

    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location: Any = "cpu") -> AttnlabModule:
        """Rebuild the module a checkpoint was written by, with its weights, in eval mode."""
        checkpoint = load_checkpoint(path, map_location)
        # Untrusted input: its app, hyper-parameters and implied size are checked before building.
        check_checkpoint(path, cls, cls.app_name or None, checkpoint=checkpoint)
        hparams = model_hyperparameters(checkpoint)
        module = cls(**hparams)
        module.on_load_checkpoint(checkpoint)
        module.load_state_dict(checkpoint["state_dict"], strict=True)
        return module.eval()

    # ------------------------------------------------------------------ hooks for the services
    def figure_forward(self, batch: Any) -> Any:
        """Forward pass over a batch of validation samples, run under ``capture_attention``."""
        raise NotImplementedError(f"{type(self).__name__} does not draw attention figures")

    def example_inputs(self) -> tuple[Tensor, ...]:
        """A sample batch of inputs for ``export_model()``; used by `attnlab <app> export`."""
        raise NotImplementedError(f"{type(self).__name__} does not support export")

    def export_model(self) -> nn.Module:
        """The module to export: plain tensors in, tensors out. Defaults to ``self.model``."""
        model = getattr(self, "model", None)
        if not isinstance(model, nn.Module):
            raise NotImplementedError(f"{type(self).__name__} has no `model` to export")
        return model
