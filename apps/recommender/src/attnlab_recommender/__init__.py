"""attnlab recsys: self-attentive sequential recommendation (SASRec, BERT4Rec) by full ranking."""

from __future__ import annotations

from pathlib import Path

from attnlab.app import App, MatrixDomain, SuiteCase, lazy_exports

# Imported on first use (they import torch): `attnlab list` reads `app` without them.
__getattr__ = lazy_exports(__name__, {"RecDataModule": "data", "RecModule": "module"})

__all__ = ["RecDataModule", "RecModule", "app"]

app = App(
    name="recsys",
    module="attnlab_recommender.module:RecModule",
    datamodule="attnlab_recommender.data:RecDataModule",
    config_dir=Path(__file__).resolve().parents[2] / "configs",
    monitor="val/ndcg@10",
    mode="max",
    headline="test/ndcg@10",
    demo_also=("test/oracle_ndcg@10",),
    draw="attnlab_recommender.draw:draw",
    atlas="attnlab_recommender.draw:atlas",
    description="sequential recommendation: SASRec / BERT4Rec, full-ranking HR@k, NDCG@k, MRR",
    bench_order=40,
    matrix=MatrixDomain(
        config="quick",
        data=None,
        label="built-in taste-drift sessions",
        metric="test/ndcg@10",
        mode="max",
        # The quick config's whole run trains about 10 CPU s; results/matrix.md shows the default
        # at this budget against that run.
        budget_cpu_s=10.0,
        window=8,
    ),
    suite=SuiteCase(
        small_data=("--data.synthetic", "{num_users: 300}"),
        batch_size=64,
        ddp_metric="val/hr@20",
        side_data="item_ids",
    ),
)
