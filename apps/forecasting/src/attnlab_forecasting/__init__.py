"""attnlab app `forecast`: long-horizon multivariate forecasting with attention.

PatchTST-style and iTransformer-style encoders and a Transformer encoder-decoder from
``attention_core``, beside DLinear, last-value and seasonal-naive baselines, evaluated on the
literature's protocol: splits by time, train-only scaling, every test window scored.
"""

from __future__ import annotations

from pathlib import Path

from attnlab.app import App, MatrixDomain, SuiteCase, lazy_exports

# Imported on first use (they import torch): `attnlab list` reads `app` without them.
__getattr__ = lazy_exports(__name__, {"ForecastData": "data", "ForecastModule": "module"})

__all__ = ["ForecastData", "ForecastModule", "app"]

app = App(
    name="forecast",
    module="attnlab_forecasting.module:ForecastModule",
    datamodule="attnlab_forecasting.data:ForecastData",
    config_dir=Path(__file__).resolve().parents[2] / "configs",
    monitor="val/mse",
    mode="min",
    headline="test/mse",
    demo_also=("test/noise_floor",),
    draw="attnlab_forecasting.draw:draw",
    atlas="attnlab_forecasting.draw:atlas",
    description="multivariate time-series forecasting (PatchTST, iTransformer, Transformer, DLinear)",
    bench_order=30,
    matrix=MatrixDomain(
        config="quick",
        data=None,
        label="built-in seasonal series with known noise, PatchTST-style",
        metric="test/mse",
        mode="min",
        budget_cpu_s=15.0,  # the quick config's whole run: ~15 CPU s of training
        window=4,
    ),
    suite=SuiteCase(
        small_data=("--data.n_steps", "1510"),  # 56 validation windows
        ddp_metric="val/mse",
        side_data="scaler",  # also a buffer in the weights; the extras are read too
    ),
)
