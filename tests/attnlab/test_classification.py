"""``attnlab.classification.ClassifierModule`` on a tiny synthetic classifier: the steps learn,
the metrics are the top-k accuracies, test writes ``test_report.json`` and predict its top-k
files."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, ClassVar

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from attnlab.classification import ClassifierModule, classification_report
from attnlab.data import AttnlabDataModule

NAMES = ["red", "green", "blue"]


class Blobs(AttnlabDataModule):
    """Three well separated Gaussian blobs in 2-D; predict gets the test points and their index."""

    class_names: ClassVar[list[str]] = NAMES
    top_k = 2

    def __init__(self, batch_size: int = 32):
        super().__init__(batch_size=batch_size)

    def setup(self, stage: str | None = None) -> None:
        g = torch.Generator().manual_seed(0)
        centres = torch.tensor([[4.0, 0.0], [-4.0, 0.0], [0.0, 4.0]])

        def make(n: int) -> TensorDataset:
            y = torch.arange(n) % 3
            return TensorDataset(centres[y] + torch.randn(n, 2, generator=g), y)

        self.train_set, self.val_set, self.test_set = make(192), make(60), make(60)
        self.predict_set = TensorDataset(self.test_set.tensors[0][:5], torch.arange(5))
        self.predict_paths = [f"point{i}" for i in range(5)]


class Linear(ClassifierModule):
    app_name = "blobs"

    def __init__(self, num_classes: int = 3, lr: float = 0.1, label_smoothing: float = 0.0):
        super().__init__()
        self.save_hyperparameters()
        self.model = nn.Linear(2, num_classes)
        self.init_classifier(num_classes, label_smoothing=label_smoothing, top_k=3)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)  # (B, C)


def _trainer(tmp_path: Path, **kwargs: Any) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
        **kwargs,
    )


def test_classifier_trains_tests_and_predicts(tmp_path: Path) -> None:
    module, data = Linear(), Blobs()
    trainer = _trainer(tmp_path)
    trainer.fit(module, datamodule=data)
    assert module.class_names == NAMES  # from the data, by configure_from_data
    metrics = trainer.callback_metrics
    assert {"train/loss", "val/loss", "val/top1", "val/top5"} <= set(metrics)
    assert float(metrics["val/top1"]) > 0.95  # the blobs are separable
    assert float(metrics["val/top5"]) == 1.0  # k capped at 3 classes

    (result,) = trainer.test(module, datamodule=data, verbose=False)
    assert set(result) == {"test/loss", "test/top1", "test/top5"}
    report = json.loads((tmp_path / "test_report.json").read_text())
    assert report["accuracy"] == pytest.approx(result["test/top1"])
    assert [c["name"] for c in report["per_class"]] == NAMES
    assert [c["support"] for c in report["per_class"]] == [20, 20, 20]
    assert sum(map(sum, report["confusion_matrix"])) == 60
    assert (tmp_path / "figures" / "confusion_matrix.png").is_file()

    trainer.predict(module, datamodule=data)
    predictions = json.loads((tmp_path / "predictions.json").read_text())["predictions"]
    assert [p["path"] for p in predictions] == [f"point{i}" for i in range(5)]
    first = predictions[0]["top"]
    assert len(first) == 2  # the datamodule's top_k wins over the module's
    assert first[0]["name"] == "red" and first[0]["probability"] >= first[1]["probability"]
    with open(tmp_path / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 5 and rows[0]["name_1"] == "red"


def test_report_from_a_known_confusion_matrix() -> None:
    confusion = torch.tensor([[3, 1], [0, 0]])  # no sample of class 1
    report = classification_report(confusion, ["a"])
    assert report["accuracy"] == 0.75
    assert report["per_class"] == [
        {"class": 0, "name": "a", "accuracy": 0.75, "support": 4},
        {"class": 1, "name": "1", "accuracy": 0.0, "support": 0},
    ]
    assert report["confusion_matrix"] == [[3, 1], [0, 0]]


def test_loss_takes_label_smoothing_and_soft_targets() -> None:
    module = Linear(label_smoothing=0.1)
    logits, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    smoothed = F.cross_entropy(logits, y, label_smoothing=0.1)
    torch.testing.assert_close(module.classification_loss(logits, y), smoothed)
    soft = F.one_hot(y, 3).float()
    torch.testing.assert_close(module.classification_loss(logits, soft), F.cross_entropy(logits, y))


def test_class_count_mismatch_and_bad_settings_are_clear_errors() -> None:
    two = Blobs()
    two.class_names = ["a", "b"]
    with pytest.raises(ValueError, match="the data has 2 classes but the model has 3"):
        Linear().configure_from_data(two)
    with pytest.raises(ValueError, match="at least 2 classes, got num_classes=1"):
        Linear(num_classes=1)
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\), got 1.5"):
        Linear(label_smoothing=1.5)


def test_class_names_travel_in_checkpoints() -> None:
    module = Linear()
    module.class_names = ["x", "y", "z"]
    other = Linear()
    other.load_checkpoint_extras(module.checkpoint_extras())
    assert other.class_names == ["x", "y", "z"]
