"""End to end through the real `attnlab vit` command: fit + test, figures, predict, export."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from attnlab.cli import main

from .conftest import make_image_folder, run_attnlab


def test_fast_dev_run_on_digits(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert (
        main(["vit", "fit", "--config", "quick", "--config", "debug", "--run_dir", str(run)]) == 0
    )
    assert json.loads((run / "manifest.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_fit_test_predict_export(tmp_path: Path) -> None:
    common = ["--config", "quick", "--run_dir", "run", "--trainer.max_epochs", "1",
              "--data.max_train", "256", "--figure_every", "1"]  # fmt: skip
    proc = run_attnlab("vit", "fit", *common, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert (
        0.0 <= metrics["test"]["test/top1"] <= 1.0 and metrics["headline"]["metric"] == "test/top1"
    )
    figures = {p.name for p in (run / "figures").iterdir()}
    assert {
        "confusion_matrix.png",
        "attention_rollout_final.png",
        "last_layer_heads_final.png",
    } <= figures
    report = json.loads((run / "test_report.json").read_text())
    assert len(report["per_class"]) == 10 and sum(map(sum, report["confusion_matrix"])) == 359
    assert report["accuracy"] == pytest.approx(metrics["test"]["test/top1"], abs=1e-4)
    assert not (run / "per_class_accuracy.json").exists()  # one report file, the shared one

    images = make_image_folder(tmp_path / "to_classify", classes=("a",), per_class=3)
    proc = run_attnlab(
        "vit", "predict", "--config", str(run / "config.yaml"), "--run_dir", "pred",
        "--ckpt_path", str(run / "checkpoints" / "best.ckpt"), "--data.predict_path", str(images),
        "--data.top_k", "3", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader((tmp_path / "pred" / "predictions.csv").open()))
    assert len(rows) == 3 and rows[0]["path"].endswith("000.png")
    assert float(rows[0]["probability_1"]) >= float(rows[0]["probability_3"])
    preds = json.loads((tmp_path / "pred" / "predictions.json").read_text())["predictions"]
    assert len(preds[0]["top"]) == 3

    proc = run_attnlab("vit", "export", "--ckpt", str(run / "checkpoints" / "best.ckpt"),
                       "--format", "torch-export", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "max abs difference" in proc.stdout


def test_bad_patch_size_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["vit", "fit", "--config", "quick", "--config", "debug", "--model.patch_size", "3"]
    assert main([*args, "--run_dir", str(tmp_path / "run")]) == 1
    out = capsys.readouterr()
    assert "error: image size 8 is not divisible by patch size 3" in out.out + out.err
