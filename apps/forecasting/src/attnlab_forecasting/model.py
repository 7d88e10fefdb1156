"""Forecasting models: pure ``nn.Module``s built from ``attention_core``.

Every model maps an input window ``x`` (B, L, C) (and, for the encoder-decoder, calendar features
``marks`` (B, L + H, F)) to a forecast (B, H, C), or (B, H, C, Q) when it predicts ``Q``
quantiles. ``build_model(name, config)`` is the registry the Lightning module uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attention_core import TransformerDecoder, TransformerEncoder, sinusoidal_table

__all__ = [
    "MODELS",
    "DLinear",
    "ForecastConfig",
    "LastValue",
    "PatchTST",
    "RevIN",
    "SeasonalNaive",
    "TransformerForecaster",
    "build_model",
    "iTransformer",
]


@dataclass
class ForecastConfig:
    """What every forecaster is built from; each model reads the fields it needs."""

    seq_len: int = 96
    pred_len: int = 96
    channels: int = 7
    num_quantiles: int = 1
    dim: int = 64
    depth: int = 2
    num_heads: int = 4
    mlp_ratio: float = 2.0
    dropout: float = 0.1
    head_dropout: float = 0.0
    backend: str = "sdpa"
    backend_options: dict[str, Any] = field(default_factory=dict)
    revin: bool = True
    revin_affine: bool = False
    # PatchTST
    patch_len: int = 16
    stride: int = 8
    norm: str = "batch"
    # DLinear
    kernel_size: int = 25
    # Transformer encoder-decoder
    label_len: int = 48
    num_time_features: int = 4
    # seasonal naive
    period: int = 24


# --------------------------------------------------------------------------------------------
# reversible instance normalization
# --------------------------------------------------------------------------------------------


class RevIN(nn.Module):
    """Reversible instance normalization (Kim et al., ICLR 2022).

    Each window is shifted and scaled by its own per-channel mean and std before the model sees
    it, and the forecast is mapped back with the same statistics, which removes the level shift
    between training and test windows.
    """

    def __init__(self, channels: int, affine: bool = False, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.affine = affine
        if affine:
            self.weight = nn.Parameter(torch.ones(channels))
            self.bias = nn.Parameter(torch.zeros(channels))

    def normalize(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """x (B, L, C) -> normalized x and the (mean, std) each (B, 1, C) to undo it."""
        mean = x.mean(dim=1, keepdim=True).detach()  # (B, 1, C)
        std = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + self.eps).detach()
        z = (x - mean) / std
        if self.affine:
            z = z * self.weight + self.bias
        return z, (mean, std)

    def denormalize(self, y: Tensor, stats: tuple[Tensor, Tensor]) -> Tensor:
        """y (B, H, C) or (B, H, C, Q) back to the scale of the window the stats came from."""
        mean, std = stats
        if y.dim() == 4:  # quantiles: broadcast over the last axis
            mean, std = mean.unsqueeze(-1), std.unsqueeze(-1)
            if self.affine:
                y = (y - self.bias[:, None]) / (self.weight[:, None] + self.eps * self.eps)
        elif self.affine:
            y = (y - self.bias) / (self.weight + self.eps * self.eps)
        return y * std + mean


class _Identity(nn.Module):
    def normalize(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        zero = x.new_zeros(())
        return x, (zero, zero)

    def denormalize(self, y: Tensor, stats: tuple[Tensor, Tensor]) -> Tensor:
        return y


def _revin(cfg: ForecastConfig) -> nn.Module:
    return RevIN(cfg.channels, cfg.revin_affine) if cfg.revin else _Identity()


def _shape_output(y: Tensor, num_quantiles: int) -> Tensor:
    """(B, C, H * Q) -> (B, H, C) for point forecasts, (B, H, C, Q) for quantiles."""
    b, c, hq = y.shape
    y = y.reshape(b, c, hq // num_quantiles, num_quantiles)  # (B, C, H, Q)
    y = y.permute(0, 2, 1, 3)  # (B, H, C, Q)
    return y.squeeze(-1) if num_quantiles == 1 else y


class TokenBatchNorm(nn.Module):
    """BatchNorm over the feature axis of token sequences (B, N, D), as PatchTST uses.

    Batch statistics suit time series better than LayerNorm (PatchTST, Table 12), and in eval
    mode it is a fixed affine map, so export is unaffected.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(x.transpose(1, 2)).transpose(1, 2)  # (B, D, N) -> (B, N, D)


def _norm_layer(name: str) -> Callable[[int], nn.Module]:
    if name == "batch":
        return TokenBatchNorm
    if name == "layer":
        return nn.LayerNorm
    raise ValueError(f"unknown norm {name!r}; choose 'batch' or 'layer'")


def _encoder(cfg: ForecastConfig, norm: str = "layer") -> TransformerEncoder:
    return TransformerEncoder(
        cfg.dim,
        cfg.depth,
        cfg.num_heads,
        cfg.mlp_ratio,
        norm_layer=_norm_layer(norm),
        proj_drop=cfg.dropout,
        # No dropout on attention weights: it forces the unfused path (several times slower on
        # CPU) and PatchTST and iTransformer train without it.
        backend=cfg.backend,
        **cfg.backend_options,
    )


# --------------------------------------------------------------------------------------------
# PatchTST-style
# --------------------------------------------------------------------------------------------


class PatchTST(nn.Module):
    """Channel-independent patch Transformer (Nie et al., ICLR 2023).

    Every channel is forecast alone from its own patches by shared weights, so permuting the
    input channels permutes the outputs. The sequence cost is in patches (``L / stride``), and
    with the ``local`` or ``linear`` backend it grows linearly, so 4096-step inputs fit on a CPU.
    """

    def __init__(self, cfg: ForecastConfig):
        super().__init__()
        if cfg.patch_len < 1 or cfg.stride < 1:
            raise ValueError(
                f"patch_len and stride must be >= 1, got {cfg.patch_len}, {cfg.stride}"
            )
        if cfg.seq_len < cfg.patch_len:
            raise ValueError(f"seq_len={cfg.seq_len} is shorter than patch_len={cfg.patch_len}")
        self.cfg = cfg
        self.revin = _revin(cfg)
        # The end is padded by one stride (repeating the last value) so the last step gets a
        # patch of its own.
        self.num_patches = (cfg.seq_len - cfg.patch_len) // cfg.stride + 2
        self.embed = nn.Linear(cfg.patch_len, cfg.dim)
        self.pos_embed = nn.Parameter(
            torch.empty(1, self.num_patches, cfg.dim).uniform_(-0.02, 0.02)
        )
        self.drop = nn.Dropout(cfg.dropout)
        self.encoder = _encoder(cfg, cfg.norm)
        self.head_drop = nn.Dropout(cfg.head_dropout)
        self.head = nn.Linear(self.num_patches * cfg.dim, cfg.pred_len * cfg.num_quantiles)

    def forward(self, x: Tensor, marks: Tensor | None = None) -> Tensor:
        b, length, c = x.shape
        z, stats = self.revin.normalize(x)
        z = z.permute(0, 2, 1).reshape(b * c, length)  # (B*C, L)
        z = torch.cat([z, z[:, -1:].expand(-1, self.cfg.stride)], dim=1)  # (B*C, L + stride)
        patches = z.unfold(1, self.cfg.patch_len, self.cfg.stride)  # (B*C, N, P)
        tokens = self.drop(self.embed(patches) + self.pos_embed)  # (B*C, N, D)
        tokens = self.encoder(tokens)  # (B*C, N, D)
        flat = self.head_drop(tokens.flatten(1))  # (B*C, N*D)
        y = self.head(flat).reshape(b, c, -1)  # (B, C, H*Q)
        return self.revin.denormalize(_shape_output(y, self.cfg.num_quantiles), stats)


# --------------------------------------------------------------------------------------------
# iTransformer-style
# --------------------------------------------------------------------------------------------


class iTransformer(nn.Module):
    """Inverted Transformer (Liu et al., ICLR 2024): each variate's whole window is one token and
    attention runs across variates, so it models cross-channel dependence directly."""

    def __init__(self, cfg: ForecastConfig):
        super().__init__()
        self.cfg = cfg
        self.revin = _revin(cfg)
        self.embed = nn.Linear(cfg.seq_len, cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.encoder = _encoder(cfg, "layer")
        self.head = nn.Linear(cfg.dim, cfg.pred_len * cfg.num_quantiles)

    def forward(self, x: Tensor, marks: Tensor | None = None) -> Tensor:
        z, stats = self.revin.normalize(x)
        tokens = self.drop(self.embed(z.transpose(1, 2)))  # (B, C, D)
        tokens = self.encoder(tokens)  # (B, C, D)
        y = self.head(tokens)  # (B, C, H*Q)
        return self.revin.denormalize(_shape_output(y, self.cfg.num_quantiles), stats)


# --------------------------------------------------------------------------------------------
# vanilla encoder-decoder with calendar features
# --------------------------------------------------------------------------------------------


class TransformerForecaster(nn.Module):
    """Encoder-decoder Transformer with calendar features, Informer-style one-shot decoding.

    The decoder input is the last ``label_len`` observed steps followed by ``pred_len`` zeros,
    each with its calendar features; the outputs at the zero positions are the forecast.
    """

    def __init__(self, cfg: ForecastConfig):
        super().__init__()
        if cfg.label_len > cfg.seq_len:
            raise ValueError(f"label_len={cfg.label_len} exceeds seq_len={cfg.seq_len}")
        self.cfg = cfg
        self.revin = _revin(cfg)
        self.value_embed = nn.Linear(cfg.channels, cfg.dim)
        self.time_embed = nn.Linear(cfg.num_time_features, cfg.dim)
        total = cfg.seq_len + cfg.pred_len
        self.register_buffer("pos_table", sinusoidal_table(total, cfg.dim), persistent=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.encoder = _encoder(cfg, "layer")
        self.decoder = TransformerDecoder(
            cfg.dim,
            max(1, cfg.depth // 2),
            cfg.num_heads,
            cfg.mlp_ratio,
            proj_drop=cfg.dropout,
            backend="sdpa",
        )
        self.head = nn.Linear(cfg.dim, cfg.channels * cfg.num_quantiles)

    def _embed(self, values: Tensor, marks: Tensor, start: int) -> Tensor:
        n = values.shape[1]
        pos = self.pos_table[start : start + n]  # (N, D)
        return self.drop(self.value_embed(values) + self.time_embed(marks) + pos)  # (B, N, D)

    def forward(self, x: Tensor, marks: Tensor | None = None) -> Tensor:
        cfg = self.cfg
        b = x.shape[0]
        if marks is None:
            marks = x.new_zeros(b, cfg.seq_len + cfg.pred_len, cfg.num_time_features)
        z, stats = self.revin.normalize(x)
        memory = self.encoder(self._embed(z, marks[:, : cfg.seq_len], 0))  # (B, L, D)
        start = cfg.seq_len - cfg.label_len
        dec_values = torch.cat(
            [z[:, start:], z.new_zeros(b, cfg.pred_len, cfg.channels)], dim=1
        )  # (B, label + H, C)
        dec = self._embed(dec_values, marks[:, start:], start)
        out = self.decoder(dec, memory)[:, -cfg.pred_len :]  # (B, H, D)
        y = self.head(out).reshape(b, cfg.pred_len, cfg.channels, cfg.num_quantiles)
        y = y.squeeze(-1) if cfg.num_quantiles == 1 else y
        return self.revin.denormalize(y, stats)


# --------------------------------------------------------------------------------------------
# baselines
# --------------------------------------------------------------------------------------------


class MovingAverage(nn.Module):
    """Moving average over time with the ends padded by repetition; x (B, L, C) -> (B, L, C)."""

    def __init__(self, kernel_size: int):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 1, got {kernel_size}")
        self.kernel_size = kernel_size

    def forward(self, x: Tensor) -> Tensor:
        pad = (self.kernel_size - 1) // 2
        front = x[:, :1].expand(-1, pad, -1)
        back = x[:, -1:].expand(-1, pad, -1)
        padded = torch.cat([front, x, back], dim=1).transpose(1, 2)  # (B, C, L + 2 pad)
        return F.avg_pool1d(padded, self.kernel_size, stride=1).transpose(1, 2)


class DLinear(nn.Module):
    """DLinear (Zeng et al., AAAI 2023): trend (moving average) and remainder, one linear map of
    the window each, shared by all channels."""

    def __init__(self, cfg: ForecastConfig):
        super().__init__()
        self.cfg = cfg
        self.revin = _revin(cfg)
        self.decompose = MovingAverage(cfg.kernel_size)
        out = cfg.pred_len * cfg.num_quantiles
        self.seasonal = nn.Linear(cfg.seq_len, out)
        self.trend = nn.Linear(cfg.seq_len, out)
        for layer in (self.seasonal, self.trend):  # start as the window mean, as DLinear does
            nn.init.constant_(layer.weight, 1.0 / cfg.seq_len)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor, marks: Tensor | None = None) -> Tensor:
        z, stats = self.revin.normalize(x)
        trend = self.decompose(z)  # (B, L, C)
        season = z - trend
        y = self.seasonal(season.transpose(1, 2)) + self.trend(trend.transpose(1, 2))  # (B, C, H*Q)
        return self.revin.denormalize(_shape_output(y, self.cfg.num_quantiles), stats)


class _Naive(nn.Module):
    def __init__(self, cfg: ForecastConfig):
        super().__init__()
        self.cfg = cfg

    def _quantiles(self, y: Tensor) -> Tensor:
        q = self.cfg.num_quantiles
        return y if q == 1 else y.unsqueeze(-1).expand(*y.shape, q)


class LastValue(_Naive):
    """Repeats the last observed value over the horizon."""

    def forward(self, x: Tensor, marks: Tensor | None = None) -> Tensor:
        return self._quantiles(x[:, -1:].expand(-1, self.cfg.pred_len, -1))  # (B, H, C)


class SeasonalNaive(_Naive):
    """Repeats the last observed season (``period`` steps) over the horizon."""

    def __init__(self, cfg: ForecastConfig):
        super().__init__(cfg)
        if not 1 <= cfg.period <= cfg.seq_len:
            raise ValueError(f"period={cfg.period} must be in [1, seq_len={cfg.seq_len}]")
        index = cfg.seq_len - cfg.period + torch.arange(cfg.pred_len) % cfg.period
        self.register_buffer("index", index, persistent=False)

    def forward(self, x: Tensor, marks: Tensor | None = None) -> Tensor:
        return self._quantiles(x.index_select(1, self.index))  # (B, H, C)


MODELS: dict[str, type[nn.Module]] = {
    "patchtst": PatchTST,
    "itransformer": iTransformer,
    "transformer": TransformerForecaster,
    "dlinear": DLinear,
    "last_value": LastValue,
    "seasonal_naive": SeasonalNaive,
}


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """A forecaster by registry name; ``kwargs`` are ``ForecastConfig`` fields."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    known = {f.name for f in fields(ForecastConfig)}
    unknown = set(kwargs) - known
    if unknown:
        raise ValueError(f"unknown model options {sorted(unknown)}; known: {sorted(known)}")
    cfg = ForecastConfig(**kwargs)
    if cfg.num_quantiles < 1:
        raise ValueError(f"num_quantiles must be >= 1, got {cfg.num_quantiles}")
    if name in ("patchtst", "itransformer", "transformer") and cfg.dim % cfg.num_heads:
        raise ValueError(f"num_heads={cfg.num_heads} must divide dim={cfg.dim}")
    return MODELS[name](cfg)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
