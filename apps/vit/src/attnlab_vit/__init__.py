"""attnlab-vit: Vision Transformers trained from scratch on small image sets (`attnlab vit`)."""

from __future__ import annotations

from pathlib import Path

from attnlab.app import App, MatrixDomain, SuiteCase, lazy_exports

# Imported on first use (they import torch): `attnlab list` reads `app` without them.
__getattr__ = lazy_exports(
    __name__,
    {
        "ImageData": "data",
        "ViTModule": "module",
        **dict.fromkeys(
            ("VisionTransformer", "ViTConfig", "create_model", "list_presets", "preset_config"),
            "model",
        ),
    },
)

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
    module="attnlab_vit.module:ViTModule",
    datamodule="attnlab_vit.data:ImageData",
    config_dir=Path(__file__).resolve().parents[2] / "configs",
    monitor="val/top1",
    mode="max",
    headline="test/top1",
    draw="attnlab_vit.draw:draw",
    atlas="attnlab_vit.draw:atlas",
    description="Vision Transformer (ViT, SPT+LSA, CCT) image classification with attention rollout",
    bench_order=10,
    matrix=MatrixDomain(
        config="quick",
        data=None,
        label="built-in scikit-learn digits",
        metric="test/top1",
        mode="max",
        budget_cpu_s=20.0,  # the quick config's whole run: ~20 CPU s of training
        window=4,
    ),
    suite=SuiteCase(ddp_metric="val/loss", side_data="class_names"),
)
