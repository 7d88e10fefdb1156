"""attnlab recsys: self-attentive sequential recommendation (SASRec, BERT4Rec) by full ranking."""

from __future__ import annotations

from pathlib import Path

from attnlab import App

from .data import RecDataModule
from .draw import atlas, draw
from .module import RecModule

__all__ = ["RecDataModule", "RecModule", "app"]

app = App(
    name="recsys",
    module=RecModule,
    datamodule=RecDataModule,
    config_dir=Path(__file__).resolve().parents[2] / "configs",
    monitor="val/ndcg@10",
    mode="max",
    headline="test/ndcg@10",
    draw=draw,
    atlas=atlas,
    description="sequential recommendation: SASRec / BERT4Rec, full-ranking HR@k, NDCG@k, MRR",
)
