"""The audio LightningModule: AST or CNN, SpecAugment, metrics, test reports and `predict` output.

``n_mels``/``n_frames``/``num_classes`` must match the data (``setup`` checks them with a clear
error). At the start of `fit` the data's feature mean and std go into the model's buffers, so
checkpoints and exported models normalize by themselves.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from attnlab import AttnlabModule
from attnlab.figures import confusion_matrix_figure, save_figure
from attnlab.runs import atomic_write_text, write_topk_predictions

from .features import SpecAugment
from .model import create_model

__all__ = ["AudioModule"]

Batch = tuple[Tensor, Tensor]


class AudioModule(AttnlabModule):
    """``arch`` "ast" (Audio Spectrogram Transformer) or "cnn" (the baseline) on log-mel dB."""

    app_name = "audio"

    def __init__(
        self,
        arch: str = "ast",
        n_mels: int = 40,
        n_frames: int = 63,
        num_classes: int = 10,
        patch_size: int | list[int] = 8,
        patch_stride: int | list[int] = 6,
        embed_dim: int = 96,
        depth: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        backend: str = "sdpa",
        backend_kwargs: dict[str, Any] | None = None,
        cnn_channels: list[int] | None = None,
        freq_masks: int = 2,
        freq_mask_param: int = 8,
        time_masks: int = 2,
        time_mask_param: int = 10,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_fraction: float = 0.05,
        min_lr_ratio: float = 0.01,
        label_smoothing: float = 0.1,
        top_k: int = 3,
    ):
        super().__init__()
        self.save_hyperparameters()
        common: dict[str, Any] = dict(n_mels=n_mels, n_frames=n_frames, num_classes=num_classes)
        if arch == "ast":
            self.model: nn.Module = create_model(
                "ast", **common, patch_size=patch_size, patch_stride=patch_stride,
                embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio,
                drop_rate=drop_rate, attn_drop_rate=attn_drop_rate,
                drop_path_rate=drop_path_rate, backend=backend,
                backend_kwargs=dict(backend_kwargs or {}),
            )  # fmt: skip
        else:
            self.model = create_model(
                arch, **common, channels=list(cnn_channels or [32, 64, 128]), drop_rate=drop_rate
            )
        self.augment = SpecAugment(freq_masks, freq_mask_param, time_masks, time_mask_param)
        for stage in ("val", "test"):
            setattr(self, f"{stage}_acc", MulticlassAccuracy(num_classes, average="micro"))
        self.test_per_class = MulticlassAccuracy(num_classes, average=None)
        self.test_confusion = MulticlassConfusionMatrix(num_classes)
        self.top_k = min(top_k, num_classes)
        self.class_names = [str(i) for i in range(num_classes)]
        self._predictions: list[dict[str, Any]] = []

    def forward(self, x: Tensor) -> Tensor:
        """dB features (B, 1, n_mels, n_frames) -> logits (B, num_classes)."""
        return self.model(x)

    # ------------------------------------------------------------------ setup checks
    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is None or not hasattr(dm, "n_mels"):
            return
        hp = self.hparams
        problems = []
        if dm.n_mels != hp.n_mels:
            problems.append(f"the data has {dm.n_mels} mel bands but --model.n_mels is {hp.n_mels}")
        if dm.n_frames != hp.n_frames:
            problems.append(
                f"the data gives {dm.n_frames} frames per clip but --model.n_frames is {hp.n_frames}"
            )
        names = list(getattr(dm, "class_names", []) or [])
        if stage != "predict" and names and len(names) != hp.num_classes:
            problems.append(
                f"the data has {len(names)} classes but --model.num_classes is {hp.num_classes}"
            )
        if problems:
            raise ValueError(
                f"model and data disagree: {'; '.join(problems)}; set the --model.* values to match "
                "the data (frames = duration * sample_rate // hop_length + 1)"
            )
        if names and stage != "predict":
            self.class_names = names
        if stage == "fit" and getattr(dm, "feature_stats", None) is None:
            dm.setup("fit")
        if stage == "fit" and dm.feature_stats is not None:
            self.model.normalize.set_stats(*dm.feature_stats)  # type: ignore[union-attr,operator]

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        x, y = batch
        z = self.augment(self.model.normalize(x))  # type: ignore[operator]
        logits = self.model.classify(z)  # type: ignore[operator]
        loss = F.cross_entropy(logits, y, label_smoothing=self.hparams.label_smoothing)
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=len(x))
        return loss

    def _eval_step(self, batch: Batch, stage: str) -> Tensor:
        x, y = batch
        logits = self.model(x)
        acc = getattr(self, f"{stage}_acc")
        acc(logits, y)
        kw: dict[str, Any] = dict(on_step=False, on_epoch=True, batch_size=len(x))
        self.log(f"{stage}/loss", F.cross_entropy(logits, y), **kw)
        self.log(f"{stage}/acc", acc, prog_bar=stage == "val", **kw)
        return logits

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        logits = self._eval_step(batch, "test")
        self.test_per_class.update(logits, batch[1])
        self.test_confusion.update(logits, batch[1])

    def on_test_epoch_end(self) -> None:
        """Per-class accuracy and the confusion matrix: test_report.json and a figure."""
        per_class = self.test_per_class.compute().cpu()
        confusion = self.test_confusion.compute().cpu()
        self.test_per_class.reset()
        self.test_confusion.reset()
        if not self.trainer.is_global_zero:
            return
        root = Path(self.trainer.default_root_dir)
        support = confusion.sum(1).tolist()
        report = {
            "accuracy": float(confusion.diag().sum() / confusion.sum().clamp_min(1)),
            "per_class": [
                {"class": i, "name": self._name(i), "accuracy": float(a), "support": int(s)}
                for i, (a, s) in enumerate(zip(per_class.tolist(), support))
            ],
            "confusion_matrix": confusion.tolist(),
        }
        atomic_write_text(root / "test_report.json", json.dumps(report, indent=2) + "\n")
        fig = confusion_matrix_figure(confusion, self.class_names)
        save_figure(self.trainer, "confusion_matrix", fig, step=self.global_step)

    # ------------------------------------------------------------------ predict
    def _name(self, c: int) -> str:
        return self.class_names[c] if c < len(self.class_names) else str(c)

    def predict_step(self, batch: Batch, batch_idx: int) -> Tensor:
        x, index = batch
        probs = self.model(x).softmax(-1)  # (B, num_classes)
        values, classes = probs.topk(self.top_k, dim=-1)  # (B, k)
        dm = getattr(self.trainer, "datamodule", None)
        paths = getattr(dm, "predict_paths", None) or []
        for i, vals, cls in zip(index.tolist(), values.tolist(), classes.tolist()):
            self._predictions.append(
                {
                    "path": str(paths[i]) if i < len(paths) else str(i),
                    "top": [
                        {"class": c, "name": self._name(c), "probability": round(p, 6)}
                        for c, p in zip(cls, vals)
                    ],
                }
            )
        return probs

    def on_predict_epoch_start(self) -> None:
        self._predictions = []

    def on_predict_epoch_end(self) -> None:
        """predictions.json and predictions.csv in the run folder (top-k names, probabilities)."""
        if not self.trainer.is_global_zero:
            return
        write_topk_predictions(Path(self.trainer.default_root_dir), self._predictions, self.top_k)

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_extras(self) -> dict[str, Any]:
        return {"class_names": list(self.class_names)}

    def load_checkpoint_extras(self, extras: dict[str, Any]) -> None:
        names = extras.get("class_names")
        if names and len(names) == self.hparams.num_classes:
            self.class_names = list(names)

    # ------------------------------------------------------------------ services
    def figure_forward(self, batch: Batch) -> Tensor:
        return self.model(batch[0])

    def example_inputs(self) -> tuple[Tensor, ...]:
        hp = self.hparams
        g = torch.Generator().manual_seed(0)
        return (-40.0 + 20.0 * torch.randn(2, 1, hp.n_mels, hp.n_frames, generator=g),)

    def export_model(self) -> nn.Module:
        return self.model
