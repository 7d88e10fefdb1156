"""``ForecastModule``: training, the literature's metrics, forecasts to CSV, export."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attention_core import AttentionConfig
from attnlab import AttnlabModule
from attnlab.runs import atomic_write_text

from .metrics import ErrorSums, pinball_loss
from .model import build_model

__all__ = ["ExportWrapper", "ForecastModule"]

Batch = dict[str, Tensor]


class ExportWrapper(nn.Module):
    """Plain tensors in and out for export: (x (B, L, C)[, marks]) -> forecast."""

    def __init__(self, model: nn.Module, with_marks: bool):
        super().__init__()
        self.model = model
        self.with_marks = with_marks

    def forward(self, x: Tensor, marks: Tensor | None = None) -> Tensor:
        return self.model(x, marks if self.with_marks else None)


class ForecastModule(AttnlabModule):
    """Forecasts ``pred_len`` steps of ``channels`` series from ``seq_len`` steps.

    ``model``: patchtst, itransformer, transformer, dlinear, last_value, seasonal_naive.
    ``quantiles`` (must include 0.5) switches to the pinball loss and prediction intervals; the
    median is the point forecast that MSE/MAE score. ``attention`` is the self-attention of the
    Transformers (backend, options, ``pos``; see ``model.py`` for what each model accepts),
    ``cross_attention`` the encoder-decoder's attention to its encoder. ``backend`` and
    ``window`` are the former flags: they still work, with a ``FutureWarning``.
    """

    app_name = "forecast"

    def __init__(
        self,
        model: str = "patchtst",
        seq_len: int | None = None,
        pred_len: int | None = None,
        channels: int | None = None,
        dim: int = 64,
        depth: int = 2,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.1,
        head_dropout: float = 0.0,
        attention: AttentionConfig = AttentionConfig(),
        cross_attention: AttentionConfig = AttentionConfig(),
        backend: str | None = None,
        window: int | None = None,
        patch_len: int = 16,
        stride: int = 8,
        norm: str = "batch",
        revin: bool = True,
        revin_affine: bool = False,
        kernel_size: int = 25,
        label_len: int = 48,
        period: int = 24,
        quantiles: list[float] | None = None,
        loss: str = "mse",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        warmup_fraction: float = 0.0,
        min_lr_ratio: float = 0.0,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["backend", "window"])
        # None: a placeholder size that configure_from_data rebuilds with the data's.
        channels = 1 if channels is None else channels
        seq_len = 96 if seq_len is None else seq_len
        pred_len = 96 if pred_len is None else pred_len
        attention = _with_former_flags(AttentionConfig.coerce(attention), backend, window)
        cross_attention = AttentionConfig.coerce(cross_attention)
        # Plain data in the checkpoint: it is loaded weights-only.
        self.hparams["attention"] = attention.to_dict()
        self.hparams["cross_attention"] = cross_attention.to_dict()
        if loss not in ("mse", "mae", "huber"):
            raise ValueError(f"loss must be mse, mae or huber, got {loss!r}")
        if quantiles is not None:
            if not quantiles or 0.5 not in quantiles or any(not 0 < q < 1 for q in quantiles):
                raise ValueError(
                    f"quantiles must lie in (0, 1) and include 0.5 (the point forecast), got "
                    f"{quantiles}"
                )
            quantiles = sorted(quantiles)
        self.quantiles = quantiles
        self.model = build_model(
            model,
            seq_len=seq_len,
            pred_len=pred_len,
            channels=channels,
            num_quantiles=len(quantiles) if quantiles else 1,
            dim=dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            dropout=dropout,
            head_dropout=head_dropout,
            attention=attention,
            cross_attention=cross_attention,
            patch_len=patch_len,
            stride=stride,
            norm=norm,
            revin=revin,
            revin_affine=revin_affine,
            kernel_size=kernel_size,
            label_len=label_len,
            period=period,
        )
        self.uses_marks = model == "transformer"
        # The training scaler travels with the checkpoint so `predict` scales new history alike.
        self.register_buffer("scaler_mean", torch.zeros(channels))
        self.register_buffer("scaler_std", torch.ones(channels))
        self.register_buffer(
            "quantile_levels",
            torch.tensor(quantiles or [0.5], dtype=torch.float32),
            persistent=False,
        )
        self._sums: dict[str, ErrorSums] = {}
        self.mase_scale: Tensor | None = None
        self.noise_floor: float | None = None
        self.per_step: dict[str, list[float]] = {}

    # ------------------------------------------------------------------ data
    def configure_from_data(self, datamodule: Any) -> None:
        """Check the shapes against the data and take its scaler, MASE scale and noise floor.

        ``channels`` left unset is the data's column count (the model is built for it and the
        count saved with the checkpoint); a value given that disagrees is an error. At predict
        the datamodule holds only the history to forecast from (no scaler): the scaler is the
        one the checkpoint carries.
        """
        dm = datamodule
        if not hasattr(dm, "seq_len"):
            return
        hp = self.hparams
        unset = {
            name: value
            for name, value in (
                ("channels", dm.num_channels if dm.in_columns else None),
                ("seq_len", dm.seq_len),
                ("pred_len", dm.pred_len),
            )
            if hp.get(name) is None and value is not None
        }
        if unset:
            self._build_from_data(**unset)
        # (model hyper-parameter, data value, the data option that sets it)
        sizes = (
            ("seq_len", dm.seq_len, "--data.seq_len"),
            ("pred_len", dm.pred_len, "--data.horizon"),
            ("channels", dm.num_channels if dm.in_columns else hp.channels, None),
        )
        mismatch = [
            f"{name}: model {getattr(hp, name)} vs data {value}"
            + (f" ({option})" if option else "")
            for name, value, option in sizes
            if getattr(hp, name) != value
        ]
        if mismatch:
            hint = (
                "drop --model.channels (the data's input columns are counted)"
                if any(m.startswith("channels") for m in mismatch)
                else "leave the model's lengths unset (they follow the data) or set the data's "
                "to the model's (a checkpoint keeps its own)"
            )
            raise ValueError("model and data disagree (" + "; ".join(mismatch) + "); " + hint)
        if dm.scaler is not None:
            self.scaler_mean.copy_(torch.as_tensor(dm.scaler.mean, dtype=torch.float32))
            self.scaler_std.copy_(torch.as_tensor(dm.scaler.std, dtype=torch.float32))
        if dm.mase_scale is not None:
            self.mase_scale = torch.as_tensor(dm.mase_scale, dtype=torch.float64)
        self.noise_floor = dm.noise_floor

    def _build_from_data(self, **sizes: int) -> None:
        """The model and scaler buffers rebuilt with the data's ``channels``, ``seq_len`` or
        ``pred_len`` where the hyper-parameters left them unset (``__init__`` built a
        placeholder); the sizes are saved with the checkpoint."""
        hp = self.hparams
        hp.update(sizes)
        channels = hp.channels
        self.model = build_model(
            hp.model,
            seq_len=hp.seq_len,
            pred_len=hp.pred_len,
            channels=channels,
            num_quantiles=len(self.quantiles) if self.quantiles else 1,
            dim=hp.dim,
            depth=hp.depth,
            num_heads=hp.num_heads,
            mlp_ratio=hp.mlp_ratio,
            dropout=hp.dropout,
            head_dropout=hp.head_dropout,
            attention=AttentionConfig.coerce(hp.attention),
            cross_attention=AttentionConfig.coerce(hp.cross_attention),
            patch_len=hp.patch_len,
            stride=hp.stride,
            norm=hp.norm,
            revin=hp.revin,
            revin_affine=hp.revin_affine,
            kernel_size=hp.kernel_size,
            label_len=hp.label_len,
            period=hp.period,
        )
        self.scaler_mean = torch.zeros(channels)  # (C,) replaces the registered buffer
        self.scaler_std = torch.ones(channels)

    # ------------------------------------------------------------------ forward and loss
    def forward(self, x: Tensor, marks: Tensor | None = None) -> Tensor:
        return self.model(x, marks if self.uses_marks else None)

    def _outputs(self, batch: Batch) -> Tensor:
        """Forecast for the task's output channels: (B, H, C_out) or (B, H, C_out, Q)."""
        pred = self(batch["x"], batch.get("marks"))
        out_index = batch["out_index"][0]
        if out_index.numel() != pred.shape[2]:
            pred = pred.index_select(2, out_index)
        return pred

    def _point(self, pred: Tensor) -> Tensor:
        if self.quantiles is None:
            return pred
        return pred[..., self.quantiles.index(0.5)]  # (B, H, C)

    def _loss(self, pred: Tensor, y: Tensor) -> Tensor:
        if self.quantiles is not None:
            return pinball_loss(pred, y, self.quantile_levels)
        kind = self.hparams.loss
        if kind == "mae":
            return F.l1_loss(pred, y)
        if kind == "huber":
            return F.huber_loss(pred, y, delta=1.0)
        return F.mse_loss(pred, y)

    @property
    def trainable(self) -> bool:
        return any(p.requires_grad for p in self.parameters())

    def configure_optimizers(self) -> Any:
        if not self.trainable:  # naive baselines: nothing to optimize
            return None
        return super().configure_optimizers()

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor | None:
        pred = self._outputs(batch)
        loss = self._loss(pred, batch["y"])
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=len(pred))
        return loss if self.trainable else None

    # ------------------------------------------------------------------ evaluation
    def _eval_step(self, batch: Batch, stage: str) -> None:
        pred = self._outputs(batch)
        y = batch["y"]
        sums = self._sums.setdefault(stage, ErrorSums())
        out_index = batch["out_index"][0]
        std = self.scaler_std.index_select(0, out_index)
        interval = None
        if self.quantiles is not None:
            interval = (pred[..., 0], pred[..., -1])
        sums.update(self._point(pred), y, std, interval)
        self.log(
            f"{stage}/loss", self._loss(pred, y), on_step=False, on_epoch=True, batch_size=len(y)
        )

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def _eval_epoch_end(self, stage: str) -> None:
        sums = self._sums.pop(stage, None)
        if sums is None or sums.windows == 0:
            return
        sums.reduce_across_processes()
        log = {
            f"{stage}/mse": sums.mse(),
            f"{stage}/mae": sums.mae(),
            f"{stage}/windows": float(sums.windows),
        }
        if stage == "test":
            log["test/mae_orig"] = sums.mae_original()
            if self.mase_scale is not None:
                log["test/mase"] = sums.mase(self.mase_scale)
            if self.noise_floor is not None:
                log["test/noise_floor"] = self.noise_floor
            cov = sums.coverage()
            if cov is not None:
                log["test/coverage"] = cov
            self.per_step = {
                "mse": sums.mse_per_step().tolist(),
                "mae": sums.mae_per_step().tolist(),
            }
            self._write_per_step()
        for key, value in log.items():
            self.log(key, value, on_step=False, on_epoch=True)
        if stage == "test" and self.noise_floor is not None and not self.trainer.sanity_checking:
            print(
                f"test MSE {log['test/mse']:.4f} (normalized) vs noise floor "
                f"{self.noise_floor:.4f}: the best possible forecast of this series",
                flush=True,
            )

    def _write_per_step(self) -> None:
        root = getattr(self.trainer, "default_root_dir", None)
        if not root or not self.trainer.is_global_zero:
            return
        lines = ["step,mse,mae"]
        lines += [
            f"{i + 1},{m:.6g},{a:.6g}"
            for i, (m, a) in enumerate(zip(self.per_step["mse"], self.per_step["mae"]))
        ]
        atomic_write_text(Path(root) / "test_error_per_step.csv", "\n".join(lines) + "\n")
        from attnlab.figures import save_figure

        from .draw import per_step_figure

        fig = per_step_figure(self.per_step["mse"], self.per_step["mae"])
        save_figure(self.trainer, "test_error_per_step", fig, step=self.global_step)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    # ------------------------------------------------------------------ predict
    def predict_step(self, batch: Batch, batch_idx: int) -> Tensor:
        """Raw history (B, L, C) on the original scale -> forecast on the original scale."""
        x = (batch["x"] - self.scaler_mean) / self.scaler_std
        pred = self.model(x, batch.get("marks") if self.uses_marks else None)
        out_index = batch["out_index"][0]
        mean, std = self.scaler_mean[out_index], self.scaler_std[out_index]
        if out_index.numel() != pred.shape[2]:
            pred = pred.index_select(2, out_index)
        if pred.dim() == 4:
            mean, std = mean[:, None], std[:, None]
        return pred * std + mean

    def on_predict_epoch_end(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        outputs = self.trainer.predict_loop.predictions
        if dm is None or not outputs or not hasattr(dm, "write_forecast"):
            return
        if not self.trainer.is_global_zero:
            return
        first = outputs[0] if isinstance(outputs[0], Tensor) else outputs[0][0]
        forecast = first[0].detach().cpu().numpy().astype(np.float64)
        target = Path(dm.predict_out or Path(self.trainer.default_root_dir) / "forecast.csv")
        path = dm.write_forecast(forecast, target, self.quantiles or [0.5])
        print(f"forecast of {forecast.shape[0]} steps written to {path}", flush=True)

    # ------------------------------------------------------------------ figures and export
    def figure_forward(self, batch: Batch) -> dict[str, Tensor]:
        return {"pred": self._outputs(batch)}

    def example_inputs(self) -> tuple[Tensor, ...]:
        cfg = self.model.cfg  # the sizes built, placeholders included
        g = torch.Generator().manual_seed(0)
        x = torch.randn(2, cfg.seq_len, cfg.channels, generator=g)
        if self.uses_marks:
            return (x, torch.rand(2, cfg.seq_len + cfg.pred_len, 4, generator=g) - 0.5)
        return (x,)

    def export_model(self) -> nn.Module:
        return ExportWrapper(self.model, self.uses_marks).eval()


def _with_former_flags(
    attention: AttentionConfig, backend: str | None, window: int | None
) -> AttentionConfig:
    """``attention`` with the former ``--model.backend``/``--model.window`` folded in (warned)."""
    if backend is None and window is None:
        return attention
    used = [f for f, v in (("backend", backend), ("window", window)) if v is not None]
    warnings.warn(
        "; ".join(f"--model.{f} is deprecated, use --model.attention.{f}" for f in used),
        FutureWarning,
        stacklevel=3,
    )
    settings = attention.to_dict()
    if backend is not None:
        settings["backend"] = backend
    if window is not None or settings["backend"] == "local":
        # The former default span of `--model.backend local` was 8.
        settings["window"] = window or settings["window"] or 8
    if settings["backend"] != "local":
        settings["window"] = None  # an old checkpoint's `window: null` beside another backend
    return AttentionConfig.coerce(settings)
