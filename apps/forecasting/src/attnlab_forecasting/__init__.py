"""attnlab app `forecast`: long-horizon multivariate forecasting with attention.

PatchTST-style and iTransformer-style encoders and a Transformer encoder-decoder from
``attention_core``, beside DLinear, last-value and seasonal-naive baselines, evaluated on the
literature's protocol: splits by time, train-only scaling, every test window scored.
"""

from __future__ import annotations

from pathlib import Path

from attnlab import App

from .data import ForecastData
from .draw import atlas, draw
from .module import ForecastModule

__all__ = ["ForecastData", "ForecastModule", "app"]

app = App(
    name="forecast",
    module=ForecastModule,
    datamodule=ForecastData,
    config_dir=Path(__file__).resolve().parents[2] / "configs",
    monitor="val/mse",
    mode="min",
    headline="test/mse",
    draw=draw,
    atlas=atlas,
    description="multivariate time-series forecasting (PatchTST, iTransformer, Transformer, DLinear)",
)
