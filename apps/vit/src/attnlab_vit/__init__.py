"""attnlab-vit: Vision Transformers trained from scratch on small image sets (`attnlab vit`)."""

from __future__ import annotations

from pathlib import Path

from attnlab import App
from attnlab.app import MatrixDomain, SuiteCase

from .data import ImageData
from .draw import atlas, draw
from .model import VisionTransformer, ViTConfig, create_model, list_presets, preset_config
from .module import ViTModule

__all__ = [
    "ImageData",
    "ViTConfig",
    "ViTModule",
    "VisionTransformer",
    "app",
    "create_model",
    "list_presets",
    "preset_config",
]

app = App(
    name="vit",
    module=ViTModule,
    datamodule=ImageData,
    config_dir=Path(__file__).resolve().parents[2] / "configs",
    monitor="val/top1",
    mode="max",
    headline="test/top1",
    draw=draw,
    atlas=atlas,
    description="Vision Transformer (ViT, SPT+LSA, CCT) image classification with attention rollout",
    bench_order=10,
    matrix=MatrixDomain(
        config="quick",
        data=None,
        label="built-in scikit-learn digits",
        fallback_label="built-in scikit-learn digits",
        metric="test/top1",
        mode="max",
        budget_cpu_s=20.0,  # the quick config's whole run: ~20 CPU s of training
        window=4,
    ),
    suite=SuiteCase(ddp_metric="val/loss", side_data="class_names"),
)
