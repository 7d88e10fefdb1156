"""End to end through the real `attnlab caption` command: fit, predict, export, and errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from .conftest import run_cli

SMALL = [
    "--model.encoder_width",
    "8",
    "--model.hidden_dim",
    "32",
    "--model.attention_dim",
    "16",
    "--model.word_dim",
    "16",
    "--model.dec_dim",
    "32",
    "--model.dec_depth",
    "1",
    "--data.n_train",
    "64",
    "--data.n_val",
    "16",
    "--data.n_test",
    "16",
    "--data.batch_size",
    "16",
]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cwd = tmp_path_factory.mktemp("fit")
    proc = run_cli(
        "caption",
        "fit",
        "--config",
        "quick",
        "--trainer.max_epochs",
        "1",
        *SMALL,
        "--figure_every",
        "1",
        "--run_dir",
        "run",
        cwd=cwd,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return cwd / "run"


def test_fit_writes_the_run_folder(fitted: Path) -> None:
    metrics = json.loads((fitted / "metrics.json").read_text())
    for name in ("test/bleu1", "test/bleu4", "test/cider", "test/loc"):
        assert name in metrics["test"]
    assert metrics["headline"]["metric"] == "test/bleu4"
    assert "val/bleu4" in metrics["best"]
    assert (fitted / "figures" / "caption_attention_final.png").stat().st_size > 1000
    ckpt = torch.load(fitted / "checkpoints" / "best.ckpt", weights_only=True)
    words = ckpt["attnlab"]["extras"]["vocab"]["words"]
    assert {"a", "left", "of", "above"} <= set(words)


def test_predict_writes_json_captions_and_heatmaps(fitted: Path, tmp_path: Path) -> None:
    images = tmp_path / "imgs"
    images.mkdir()
    for i in range(2):
        Image.fromarray((np.random.default_rng(i).random((40, 50, 3)) * 255).astype(np.uint8)).save(
            images / f"p{i}.png"
        )
    proc = run_cli(
        "caption",
        "predict",
        "--config",
        str(fitted / "config.yaml"),
        "--ckpt_path",
        str(fitted / "checkpoints" / "best.ckpt"),
        "--data.predict_images",
        str(images),
        "--model.beam_size",
        "2",
        "--run_dir",
        "pred",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads((tmp_path / "pred" / "predictions" / "captions.json").read_text())
    assert [r["image"] for r in out] == ["p0.png", "p1.png"]
    assert all(r["beam_size"] == 2 and isinstance(r["caption"], str) for r in out)
    for r in out:
        assert (tmp_path / "pred" / "predictions" / r["heatmap"]).is_file()


def test_export_command(fitted: Path, tmp_path: Path) -> None:
    out = tmp_path / "caption.pt2"
    proc = run_cli(
        "caption",
        "export",
        "--ckpt",
        str(fitted / "checkpoints" / "best.ckpt"),
        "--format",
        "torch-export",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.is_file() and "max abs difference" in proc.stdout


def test_pretrained_offline_is_a_one_line_error(tmp_path: Path) -> None:
    proc = run_cli(
        "caption",
        "fit",
        "--config",
        "quick",
        "--config",
        "debug",
        "--model.encoder",
        "resnet18",
        "--model.encoder_pretrained",
        "true",
        *SMALL,
        "--run_dir",
        "r",
        cwd=tmp_path,
        env={"ATTNLAB_OFFLINE": "1", "TORCH_HOME": str(tmp_path / "th")},
        timeout=120,
    )
    assert proc.returncode == 1
    assert "error:" in proc.stderr and "ImageNet weights for resnet18" in proc.stderr
    assert "encoder_pretrained false" in proc.stderr


def test_missing_images_without_the_flag_is_a_one_line_error(
    flickr_csv_root: Path, tmp_path: Path
) -> None:
    (flickr_csv_root / "images" / "0003_img.jpg").unlink()
    proc = run_cli(
        "caption",
        "fit",
        "--config",
        "quick",
        "--config",
        "debug",
        "--data.dataset",
        "flickr8k",
        "--data.curriculum_epochs",  # the quick config's digit-scene curriculum does not apply
        "0",
        "--data.root",
        str(flickr_csv_root),
        "--run_dir",
        "r",
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    assert "allow_missing_images true" in proc.stderr.strip().splitlines()[-1]


@pytest.mark.data
def test_flickr8k_config_runs_on_the_real_subset(flickr8k_real: Path, tmp_path: Path) -> None:
    proc = run_cli(
        "caption",
        "fit",
        "--config",
        "flickr8k",
        "--config",
        "debug",
        "--data.root",
        str(flickr8k_real),
        "--data.batch_size",
        "4",
        "--run_dir",
        "r",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "dropped 35045 of 40000 captions" in proc.stdout
