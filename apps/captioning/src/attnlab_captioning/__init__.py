"""attnlab_captioning: image captioning with visual attention, registered as `attnlab caption`.

Show, Attend and Tell (an LSTM with additive attention) and a Transformer captioner (with a KV
cache) behind one encoder interface, a no-attention baseline, greedy and beam decoding, BLEU and
CIDEr-D on generated captions, and word-by-word attention figures.
"""

from __future__ import annotations

from pathlib import Path

from attnlab.app import App, MatrixDomain, SuiteCase, lazy_exports

# Imported on first use (they import torch): `attnlab list` reads `app` without them.
__getattr__ = lazy_exports(__name__, {"CaptionData": "data", "CaptionModule": "module"})

__all__ = ["CaptionData", "CaptionModule", "app"]

app = App(
    name="caption",
    module="attnlab_captioning.module:CaptionModule",
    datamodule="attnlab_captioning.data:CaptionData",
    config_dir=Path(__file__).resolve().parents[2] / "configs",
    monitor="val/bleu4",
    mode="max",
    headline="test/bleu4",
    demo_also=("test/loc",),
    draw="attnlab_captioning.draw:draw",
    atlas="attnlab_captioning.draw:atlas",
    description="image captioning with visual attention (Show-Attend-Tell soft and hard, Transformer; BLEU, CIDEr-D)",
    bench_order=20,
    matrix=MatrixDomain(
        config="quick",
        data=None,
        label="built-in digit scenes, Transformer decoder",
        metric="test/bleu4",
        mode="max",
        budget_cpu_s=40.0,  # the quick config's whole run: ~40 CPU s of training
        window=4,
        overrides=("--model.decoder=transformer",),
    ),
    suite=SuiteCase(
        small_data=("--data.n_train", "256", "--data.n_val", "64", "--data.n_test", "64"),
        ddp_metric="val/loss",
        side_data="vocab",
    ),
)
