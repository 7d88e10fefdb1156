"""``ClassifierModule``: what a classification app's LightningModule shares (vit, audio).

Cross-entropy training (label smoothing, soft targets from Mixup/CutMix), top-k accuracy on
validation and test, a per-class report at the end of test and top-k ``predict`` output, so every
classifier logs the same metrics and writes the same files.

A subclass provides:

* in ``__init__``, after ``self.save_hyperparameters()`` and building its model, a call to
  ``self.init_classifier(num_classes, label_smoothing=..., top_k=...)``;
* ``forward(x) -> logits (B, num_classes)``: the evaluation forward pass (validation, test,
  predict, figures), e.g. through EMA weights;
* optionally ``training_logits(x, y) -> (logits, target)``: the training forward pass with the
  app's augmentation (SpecAugment, Mixup); ``target`` is class ids (B,) or soft targets (B, C).
  Default: ``(self(x), y)``;
* optionally ``accuracy_metrics``: logged metric name -> k of its top-k accuracy (default
  ``{"top1": 1, "top5": 5}``, k capped at the number of classes; the first is on the progress
  bar). An app whose runs monitor ``val/acc`` sets ``{"acc": 1}``.

Batches are ``(inputs, class ids)`` for fit, validate and test, and ``(inputs, index)`` for
predict, ``index`` pointing into the datamodule's ``predict_paths``. ``class_names`` (default
``"0"``..) come from the datamodule's ``class_names`` in ``configure_from_data`` and travel in
checkpoints. The datamodule's ``top_k``, when it has one, overrides ``top_k`` at predict time.

Files in the run folder: ``test_report.json`` (overall accuracy; per class its accuracy and
number of test samples, ``support``; the confusion matrix, rows true classes, columns predicted)
and ``figures/confusion_matrix.png`` at the end of test; ``predictions.json`` and
``predictions.csv`` at the end of predict.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from .module import AttnlabModule
from .runs import atomic_write_text, write_topk_predictions

__all__ = ["REPORT_NAME", "ClassifierModule", "classification_report"]

REPORT_NAME = "test_report.json"


def classification_report(confusion: Tensor, class_names: list[str]) -> dict[str, Any]:
    """``test_report.json``'s content from a confusion matrix (C, C) of counts, rows = true class."""
    confusion = confusion.detach().cpu().long()
    support = confusion.sum(1)  # (C,)
    correct = confusion.diag()  # (C,)
    accuracy = correct.double() / support.clamp_min(1).double()

    def name(c: int) -> str:
        return class_names[c] if c < len(class_names) else str(c)

    return {
        "accuracy": float(correct.sum()) / max(1, int(confusion.sum())),
        "per_class": [
            {"class": c, "name": name(c), "accuracy": float(a), "support": int(s)}
            for c, (a, s) in enumerate(zip(accuracy.tolist(), support.tolist(), strict=True))
        ],
        "confusion_matrix": confusion.tolist(),
    }


class ClassifierModule(AttnlabModule):
    """Cross-entropy classification with top-k metrics, a per-class test report and top-k
    predictions (see the module docstring for what a subclass provides)."""

    accuracy_metrics: ClassVar[dict[str, int]] = {"top1": 1, "top5": 5}

    def init_classifier(
        self, num_classes: int, label_smoothing: float = 0.0, top_k: int = 5
    ) -> None:
        """Metrics, class names and settings; call once from ``__init__``."""
        if num_classes < 2:
            raise ValueError(
                f"a classifier needs at least 2 classes, got num_classes={num_classes}"
            )
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        self.num_classes = int(num_classes)
        self.label_smoothing = float(label_smoothing)
        self.top_k = min(int(top_k), self.num_classes)
        for stage in ("val", "test"):
            for metric, k in self.accuracy_metrics.items():
                acc = MulticlassAccuracy(num_classes, top_k=min(k, num_classes), average="micro")
                setattr(self, f"{stage}_{metric}", acc)
        self.test_per_class = MulticlassAccuracy(num_classes, average=None)
        self.test_confusion = MulticlassConfusionMatrix(num_classes)
        self.class_names = [str(i) for i in range(num_classes)]
        self._predictions: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ data
    def configure_from_data(self, datamodule: Any) -> None:
        """Class names from the data; a count that disagrees with the model is an error."""
        names = list(getattr(datamodule, "class_names", None) or [])
        if not names:
            return
        if len(names) != self.num_classes:
            raise ValueError(
                f"the data has {len(names)} classes but the model has {self.num_classes}; set "
                "--model.num_classes to match the data"
            )
        self.class_names = [str(n) for n in names]

    # ------------------------------------------------------------------ steps
    def training_logits(self, x: Any, y: Tensor) -> tuple[Tensor, Tensor]:
        """The training forward pass; override to augment (targets may become soft)."""
        return self(x), y

    def classification_loss(self, logits: Tensor, target: Tensor) -> Tensor:
        """Cross-entropy with label smoothing; soft targets (B, C) are used as they are."""
        if target.dim() == 2:  # Mixup / CutMix
            return torch.sum(-target * F.log_softmax(logits, dim=-1), dim=-1).mean()
        return F.cross_entropy(logits, target, label_smoothing=self.label_smoothing)

    def training_step(self, batch: tuple[Any, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        logits, target = self.training_logits(x, y)  # (B, C)
        loss = self.classification_loss(logits, target)
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def _eval_step(self, batch: tuple[Any, Tensor], stage: str) -> Tensor:
        x, y = batch
        logits = self(x)  # (B, C)
        kw: dict[str, Any] = dict(on_step=False, on_epoch=True, batch_size=len(y))
        self.log(f"{stage}/loss", F.cross_entropy(logits, y), **kw)
        for i, metric in enumerate(self.accuracy_metrics):
            acc = getattr(self, f"{stage}_{metric}")
            acc(logits, y)
            self.log(f"{stage}/{metric}", acc, prog_bar=stage == "val" and i == 0, **kw)
        return logits

    def validation_step(self, batch: tuple[Any, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: tuple[Any, Tensor], batch_idx: int) -> None:
        logits = self._eval_step(batch, "test")
        self.test_per_class.update(logits, batch[1])
        self.test_confusion.update(logits, batch[1])

    def on_test_epoch_end(self) -> None:
        """``test_report.json`` and the confusion-matrix figure in the run folder."""
        confusion = self.test_confusion.compute().cpu()  # (C, C), reduced over DDP processes
        self.test_per_class.reset()
        self.test_confusion.reset()
        trainer = self.trainer
        if not trainer.is_global_zero or getattr(trainer, "sanity_checking", False):
            return
        report = classification_report(confusion, self.class_names)
        root = Path(trainer.default_root_dir)
        atomic_write_text(root / REPORT_NAME, json.dumps(report, indent=2) + "\n")
        from .figures import confusion_matrix_figure, save_figure

        figure = confusion_matrix_figure(confusion, self.class_names)
        save_figure(trainer, "confusion_matrix", figure, step=self.global_step)

    # ------------------------------------------------------------------ predict
    def predict_top_k(self) -> int:
        """Classes per prediction: the datamodule's ``top_k`` when it has one, else ``top_k``."""
        dm = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        k = getattr(dm, "top_k", None)
        return min(int(k if k is not None else self.top_k), self.num_classes)

    def class_name(self, c: int) -> str:
        return self.class_names[c] if c < len(self.class_names) else str(c)

    def on_predict_epoch_start(self) -> None:
        self._predictions = []

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, index = batch
        probs = self(x).softmax(-1)  # (B, C)
        values, classes = probs.topk(self.predict_top_k(), dim=-1)  # (B, k)
        dm = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        paths = list(getattr(dm, "predict_paths", None) or [])
        for i, vals, cls in zip(index.tolist(), values.tolist(), classes.tolist(), strict=True):
            self._predictions.append(
                {
                    "path": str(paths[i]) if i < len(paths) else str(i),
                    "top": [
                        {"class": c, "name": self.class_name(c), "probability": round(p, 6)}
                        for c, p in zip(cls, vals, strict=True)
                    ],
                }
            )
        return probs

    def on_predict_epoch_end(self) -> None:
        """``predictions.json`` and ``predictions.csv``: top-k classes, names, probabilities."""
        if self.trainer.is_global_zero:
            root = Path(self.trainer.default_root_dir)
            write_topk_predictions(root, self._predictions, self.predict_top_k())

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_extras(self) -> dict[str, Any]:
        return {"class_names": list(self.class_names)}

    def load_checkpoint_extras(self, extras: dict[str, Any]) -> None:
        names = extras.get("class_names")
        if names and len(names) == self.num_classes:
            self.class_names = [str(n) for n in names]
