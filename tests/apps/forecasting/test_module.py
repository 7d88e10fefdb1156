"""The Lightning module: learning, metrics over whole splits, quantiles, checkpoints."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from attnlab_forecasting.data import ForecastData
from attnlab_forecasting.module import ForecastModule

from attnlab.export import export_model

SMALL = dict(
    seq_len=48,
    pred_len=12,
    channels=3,
    dim=16,
    depth=1,
    num_heads=2,
    patch_len=8,
    stride=4,
    label_len=24,
)


def _trainer(tmp_path: Path, **kw: object) -> pl.Trainer:
    args: dict = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )
    args.update(kw)
    return pl.Trainer(**args)


def _data(**kw: object) -> ForecastData:
    args: dict = dict(
        n_steps=1200, channels=3, noise_std=0.1, seq_len=48, horizon=12, batch_size=32
    )
    args.update(kw)
    return ForecastData(**args)


@pytest.mark.parametrize(
    "model", ["patchtst", "itransformer", "transformer", "dlinear", "last_value"]
)
def test_fit_and_test_smoke(model: str, tmp_path: Path) -> None:
    module = ForecastModule(model=model, **SMALL)
    dm = _data()
    trainer = _trainer(tmp_path, fast_dev_run=True)
    trainer.fit(module, datamodule=dm)
    out = trainer.test(module, datamodule=dm, verbose=False)[0]
    assert out["test/windows"] == min(dm.eval_batch_size, len(dm.test_set))  # one batch
    for key in ("test/mse", "test/mae", "test/mae_orig", "test/mase", "test/noise_floor"):
        assert key in out and out[key] == out[key]  # present and not NaN


def test_test_metrics_cover_every_window_exactly(tmp_path: Path) -> None:
    """test/mse is the mean over all windows, computed independently here."""
    dm = _data(eval_batch_size=50)  # a short last batch
    module = ForecastModule(model="last_value", **SMALL)
    out = _trainer(tmp_path).test(module, datamodule=dm, verbose=False)[0]
    n = len(dm.test_set)
    assert out["test/windows"] == n
    errs = []
    for i in range(n):
        item = dm.test_set[i]
        errs.append((item["x"][-1:].expand(12, -1) - item["y"]).square())
    expected = torch.stack(errs).double().mean().item()
    assert out["test/mse"] == pytest.approx(expected, rel=1e-5)
    assert out["test/mase"] > 0
    assert (tmp_path / "test_error_per_step.csv").read_text().count("\n") == 13


def test_mismatched_lengths_are_a_clear_error(tmp_path: Path) -> None:
    module = ForecastModule(model="dlinear", **{**SMALL, "pred_len": 24})
    with pytest.raises(
        ValueError, match=r"pred_len: model 24 vs data 12 \(--data.horizon\)\); leave the model.s"
    ):
        _trainer(tmp_path, fast_dev_run=True).fit(module, datamodule=_data())


def test_lengths_left_unset_come_from_the_data(tmp_path: Path) -> None:
    """`--data.horizon H` alone sets the forecast length: a model given no seq_len or pred_len
    is built for the data's (and saves them with its hyper-parameters)."""
    sizes = {k: v for k, v in SMALL.items() if k not in ("seq_len", "pred_len", "channels")}
    module = ForecastModule(model="patchtst", **sizes)
    dm = _data(seq_len=40, horizon=20)
    _trainer(tmp_path, fast_dev_run=True).fit(module, datamodule=dm)
    assert (module.hparams.seq_len, module.hparams.pred_len, module.hparams.channels) == (40, 20, 3)
    assert module(torch.randn(2, 40, 3)).shape == (2, 20, 3)  # (B, H, C)


def test_the_former_data_pred_len_still_sets_the_horizon_and_warns() -> None:
    with pytest.warns(FutureWarning, match=r"--data.pred_len is deprecated, use --data.horizon"):
        dm = ForecastData(seq_len=48, pred_len=24)
    assert dm.horizon == dm.pred_len == 24
    with pytest.raises(
        ValueError, match=r"seq_len and horizon must be at least 1 step, got 48 and 0"
    ):
        ForecastData(seq_len=48, horizon=0)


@pytest.mark.slow
def test_quantile_loss_gives_intervals(tmp_path: Path) -> None:
    module = ForecastModule(model="dlinear", quantiles=[0.1, 0.5, 0.9], lr=0.01, **SMALL)
    dm = _data()
    trainer = _trainer(tmp_path, max_epochs=3)
    trainer.fit(module, datamodule=dm)
    out = trainer.test(module, datamodule=dm, verbose=False)[0]
    assert 0.6 < out["test/coverage"] <= 1.0  # a nominal 80 % interval
    with pytest.raises(ValueError, match=r"include 0\.5"):
        ForecastModule(quantiles=[0.1, 0.9])


@pytest.mark.slow
def test_tiny_overfit(tmp_path: Path) -> None:
    """PatchTST drives the training loss on 64 windows far below where it starts."""
    torch.manual_seed(0)
    dm = _data(n_steps=2000, noise_std=0.0, batch_size=16)
    dm.setup("fit")
    dm.train_set = torch.utils.data.Subset(dm.train_set, range(0, 640, 10))  # type: ignore[assignment]
    module = ForecastModule(model="patchtst", dropout=0.0, lr=3e-3, **SMALL)
    first = None
    trainer = _trainer(tmp_path, max_epochs=25, limit_val_batches=0, num_sanity_val_steps=0)
    batch = next(iter(dm.train_dataloader()))
    with torch.no_grad():
        first = torch.nn.functional.mse_loss(module._outputs(batch), batch["y"]).item()
    dm.setup = lambda stage=None: None  # type: ignore[method-assign]  # keep the subset
    trainer.fit(module, datamodule=dm)
    final = float(trainer.callback_metrics["train/loss"])
    assert final < 0.1 * first and final < 0.02


def test_checkpoint_round_trip_restores_the_scaler(tmp_path: Path) -> None:
    dm = _data()
    module = ForecastModule(model="dlinear", **SMALL)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        logger=False,
        enable_progress_bar=False,
        default_root_dir=str(tmp_path),
    )
    trainer.fit(module, datamodule=dm)
    assert dm.scaler is not None
    torch.testing.assert_close(
        module.scaler_mean, torch.tensor(dm.scaler.mean, dtype=torch.float32)
    )
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    loaded = ForecastModule.from_checkpoint(path)
    torch.testing.assert_close(loaded.scaler_std, module.scaler_std)
    x = torch.randn(2, 48, 3)
    torch.testing.assert_close(loaded(x), module.eval()(x))


@pytest.mark.parametrize("model", ["transformer"])  # two inputs; PatchTST: test_model.py
def test_export_parity_onnx(model: str, tmp_path: Path) -> None:
    module = ForecastModule(model=model, **SMALL).eval()
    diff = export_model(module.export_model(), module.example_inputs(), "onnx", tmp_path / "m.onnx")
    assert diff < 1e-4
