"""The CPU recipe (CCT-2/3x3): its presets' shapes, one recipe in every CPU config, and that it
learns through the command on built-in digits and on a class-folder set of another size."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from attnlab_vit import ViTModule
from attnlab_vit.model import create_model
from PIL import Image

from attnlab.cli import main

CONFIGS = Path(__file__).resolve().parents[3] / "apps" / "vit" / "configs"
RECIPE_KEYS = ("lr", "weight_decay", "warmup_fraction", "label_smoothing")


@pytest.mark.parametrize(
    ("preset", "chans", "side", "grid"),
    [("cct_2_3x3_28", 1, 28, (4, 4)), ("cct_2_3x3_32", 3, 32, (4, 4))],
)
def test_presets_make_a_grid_of_tokens_and_class_logits(
    preset: str, chans: int, side: int, grid: tuple[int, int]
) -> None:
    model = create_model(preset)
    assert model.grid_size == grid and len(model.blocks) == 2
    tokens = model.forward_features(torch.zeros(3, chans, side, side))
    assert tokens.shape == (3, grid[0] * grid[1], 64)  # (B, N, D): no class token
    assert model(torch.zeros(3, chans, side, side)).shape == (3, 10)


def test_every_cpu_config_trains_the_same_recipe() -> None:
    configs = {
        name: yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
        for name in ("fashion_mnist", "mnist5k", "small_rgb")
    }
    models = {name: c["model"] for name, c in configs.items()}
    assert {m["model"].rsplit("_", 1)[0] for m in models.values()} == {"cct_2_3x3"}
    recipe = {k: models["fashion_mnist"][k] for k in RECIPE_KEYS}
    for name, model in models.items():
        assert {k: model[k] for k in RECIPE_KEYS} == recipe, name
        assert configs[name]["data"]["batch_size"] == 64
        assert set(configs[name]["budget"]) == {"wall_s"}, name  # a wall-clock budget
    assert configs["fashion_mnist"]["budget"]["wall_s"] == 600


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]) -> dict:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["attnlab"])
    run_dir = tmp_path / "run"
    code = main(["vit", "fit", *args, "--figure_every", "0", "--run_dir", str(run_dir)])
    assert code == 0
    return json.loads((run_dir / "metrics.json").read_text())


def test_the_recipe_learns_digits_through_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """scikit-learn's digits, resized to 28 px: the fashion_mnist config with its data swapped
    for the built-in set (batches of 32: 1,437 images make 11 batches of 128), 25 CPU seconds
    instead of 600 wall seconds."""
    metrics = _run(
        tmp_path,
        monkeypatch,
        ["--config", "fashion_mnist", "--data.dataset", "digits", "--data.image_size", "28",
         "--data.hflip", "false", "--data.batch_size", "32", "--budget.wall_s", "null",
         "--budget.cpu_s", "25"],
    )  # fmt: skip
    assert metrics["stopped_by"] == "cpu_budget"
    assert metrics["test"]["test/top1"] > 0.85  # chance: 0.10


def test_small_rgb_takes_a_folder_of_grey_images_of_another_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """20x20 grey PNGs in class folders: resized to 32 px and read as RGB, as the config says."""
    rng = np.random.default_rng(0)
    for label, name in enumerate(("dark", "light")):
        folder = tmp_path / "shapes" / name
        folder.mkdir(parents=True)
        for i in range(40):
            pixels = rng.integers(0, 100, (20, 20)) + 150 * label
            Image.fromarray(pixels.astype(np.uint8), "L").save(folder / f"{i}.png")
    metrics = _run(
        tmp_path,
        monkeypatch,
        ["--config", "small_rgb", "--model.num_classes", "2", "--data.root", "shapes",
         "--budget.wall_s", "null", "--budget.cpu_s", "4"],
    )  # fmt: skip
    assert metrics["test"]["test/top1"] > 0.9  # bright vs dark: learned within seconds
    module = ViTModule(model="cct_2_3x3_32", num_classes=2)
    assert module.config.in_chans == 3 and module.config.img_size == 32
