"""A tiny attention classifier on generated data, registered as app `toy` by the tests.

It exercises the whole Lightning layer through the real `attnlab` command without any real app.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from attention_core import TransformerEncoder
from attnlab import App, AttnlabModule, FigureContext
from attnlab.atlas import Panel, TokensPanel, layer_head_views
from attnlab.data import AttnlabDataModule
from attnlab.figures import heatmap_grid


class ToyData(AttnlabDataModule):
    """Label = whether the first feature summed over the 8 tokens is positive."""

    def __init__(
        self, n_train: int = 256, batch_size: int = 32, seed: int = 0, root: str | None = None
    ):
        super().__init__(batch_size=batch_size, seed=seed)
        self.n_train = n_train

    def setup(self, stage: str | None = None) -> None:
        g = torch.Generator().manual_seed(1234)

        def make(n: int) -> TensorDataset:
            x = torch.randn(n, 8, 4, generator=g)
            return TensorDataset(x, (x[:, :, 0].sum(1) > 0).long())

        self.train_set, self.val_set, self.test_set = make(self.n_train), make(64), make(64)
        self.predict_set = TensorDataset(self.test_set.tensors[0])


class ToyModel(nn.Module):
    def __init__(self, dim: int, depth: int, backend: str):
        super().__init__()
        self.embed = nn.Linear(4, dim)
        self.encoder = TransformerEncoder(dim, depth, num_heads=2, backend=backend)
        self.head = nn.Linear(dim, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(self.embed(x)).mean(1))  # (B, 2)


class ToyModule(AttnlabModule):
    app_name = "toy"

    def __init__(
        self,
        dim: int = 16,
        depth: int = 1,
        backend: str = "sdpa",
        lr: float = 1e-2,
        weight_decay: float = 0.0,
        warmup_fraction: float = 0.0,
        nan_at_step: int = -1,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.model = ToyModel(dim, depth, backend)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def _step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        if stage == "train" and self.global_step == self.hparams.nan_at_step:
            loss = loss * float("nan")
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=stage != "train")
        self.log(
            f"{stage}/acc", (logits.argmax(-1) == y).float().mean(), on_step=False, on_epoch=True
        )
        return loss

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: tuple[Tensor], batch_idx: int) -> Tensor:
        return self(batch[0]).softmax(-1)

    def figure_forward(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        return self(batch[0])

    def example_inputs(self) -> tuple[Tensor, ...]:
        return (torch.randn(3, 8, 4, generator=torch.Generator().manual_seed(0)),)


def draw(ctx: FigureContext) -> list:
    last = ctx.maps[-1]  # (B, H, L, L)
    return [
        (
            "toy_attention",
            heatmap_grid([last[0, h] for h in range(last.shape[1])], ["head 0", "head 1"]),
        )
    ]


def atlas(ctx: FigureContext) -> list[Panel]:
    """One row of the 8 input tokens per sample, coloured by the attention they receive."""
    maps = list(ctx.maps)  # each (B, H, L, L)
    return [
        TokensPanel(
            f"sample {b}",
            [f"t{i}" for i in range(maps[0].shape[-1])],
            layer_head_views([m[b] for m in maps], lambda a: a.mean(0)),
        )
        for b in range(maps[0].shape[0])
    ]


app = App(
    name="toy",
    module=ToyModule,
    datamodule=ToyData,
    config_dir=Path(__file__).parent / "configs",
    monitor="val/acc",
    mode="max",
    headline="test/acc",
    demo_also=("test/loss",),
    draw=draw,
    atlas=atlas,
    description="tiny attention classifier on generated data (tests only)",
)
