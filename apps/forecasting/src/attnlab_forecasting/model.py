"""Forecasting models: pure ``nn.Module``s built from ``attention_core``.

Every model maps an input window ``x`` (B, L, C) (and, for the encoder-decoder, calendar features
``marks`` (B, L + H, F)) to a forecast (B, H, C), or (B, H, C, Q) when it predicts ``Q``
quantiles. ``build_model(name, config)`` is the registry the Lightning module uses.

Attention: every Transformer here takes one ``AttentionConfig`` (``cfg.attention``: backend,
its options, position scheme), checked against what the model is when it is built. PatchTST
attends over patches of one channel (positions: learned by default, none, sincos, rope, alibi),
iTransformer over variates, which have no order (positions: none only; no sliding window), and
the encoder-decoder over time steps (sincos by default, none, learned, rope, alibi) with a causal
decoder; its cross-attention has its own ``cfg.cross_attention`` (no positions). DLinear and the
naive baselines have no attention and refuse a non-default setting.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attention_core import (
    AttentionConfig,
    AttentionPosition,
    Dropout,
    TransformerDecoder,
    TransformerEncoder,
    build_position,
    get_backend,
)

__all__ = [
    "ATTENTION_MODELS",
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
    # Self-attention of every Transformer here (encoder, and causal decoder self-attention).
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    # The encoder-decoder's cross-attention to the encoder output.
    cross_attention: AttentionConfig = field(default_factory=AttentionConfig)
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


def _encoder(
    cfg: ForecastConfig,
    attention: AttentionConfig,
    seq_len: int,
    norm: str = "layer",
    pos: AttentionPosition | None = None,
) -> TransformerEncoder:
    """The encoder stack; ``seq_len`` is its token count (linformer's projections need it)."""
    return TransformerEncoder(
        cfg.dim,
        cfg.depth,
        cfg.num_heads,
        cfg.mlp_ratio,
        norm_layer=_norm_layer(norm),
        proj_drop=cfg.dropout,
        # No dropout on attention weights: it forces the unfused path (several times slower on
        # CPU) and PatchTST and iTransformer train without it.
        attention=attention,
        pos=pos,
        seq_len=seq_len,
    )


def _attention(
    cfg: ForecastConfig, model: type[nn.Module], *, causal: bool = False
) -> AttentionConfig:
    """``cfg.attention`` with the model's default position, refused where it cannot apply."""
    name = getattr(model, "name", model.__name__)
    attention = cfg.attention.resolved(pos=model.default_pos)  # type: ignore[attr-defined]
    return attention.check(
        where=f"{name} attention",
        causal=causal,
        positions=model.positions,  # type: ignore[attr-defined]
    )


# --------------------------------------------------------------------------------------------
# PatchTST-style
# --------------------------------------------------------------------------------------------


class PatchTST(nn.Module):
    """Channel-independent patch Transformer (Nie et al., ICLR 2023).

    Every channel is forecast alone from its own patches by shared weights, so permuting the
    input channels permutes the outputs. The sequence cost is in patches (``L / stride``), and
    with the ``local`` or ``linear`` backend it grows linearly, so 4096-step inputs fit on a CPU.
    Positions: a learned table (``pos_embed``, the default), none, sincos, or rope/alibi inside
    attention.
    """

    name: ClassVar[str] = "patchtst"
    default_pos: ClassVar[str] = "learned"
    positions: ClassVar[tuple[str, ...]] = ("learned", "none", "sincos", "rope", "alibi")

    def __init__(self, cfg: ForecastConfig):
        super().__init__()
        if cfg.patch_len < 1 or cfg.stride < 1:
            raise ValueError(
                f"patch_len and stride must be >= 1, got {cfg.patch_len}, {cfg.stride}"
            )
        if cfg.seq_len < cfg.patch_len:
            raise ValueError(f"seq_len={cfg.seq_len} is shorter than patch_len={cfg.patch_len}")
        self.cfg = cfg
        attention = _attention(cfg, PatchTST)
        self.revin = _revin(cfg)
        # The end is padded by one stride (repeating the last value) so the last step gets a
        # patch of its own.
        self.num_patches = (cfg.seq_len - cfg.patch_len) // cfg.stride + 2
        self.embed = nn.Linear(cfg.patch_len, cfg.dim)
        # "learned" keeps PatchTST's own table (its name and init), so checkpoints still load.
        self.pos_embed: nn.Parameter | None = None
        self.pos_table: nn.Module | None = None
        attn_pos = None
        if attention.pos == "learned":
            self.pos_embed = nn.Parameter(
                torch.empty(1, self.num_patches, cfg.dim).uniform_(-0.02, 0.02)
            )
        else:
            self.pos_table, attn_pos = build_position(
                str(attention.pos), dim=cfg.dim, num_heads=cfg.num_heads, max_len=self.num_patches
            )
        self.drop = Dropout(cfg.dropout)
        self.encoder = _encoder(cfg, attention, self.num_patches, cfg.norm, attn_pos)
        self.head_drop = Dropout(cfg.head_dropout)
        self.head = nn.Linear(self.num_patches * cfg.dim, cfg.pred_len * cfg.num_quantiles)

    def forward(self, x: Tensor, marks: Tensor | None = None) -> Tensor:
        b, length, c = x.shape
        z, stats = self.revin.normalize(x)
        z = z.permute(0, 2, 1).reshape(b * c, length)  # (B*C, L)
        z = torch.cat([z, z[:, -1:].expand(-1, self.cfg.stride)], dim=1)  # (B*C, L + stride)
        patches = z.unfold(1, self.cfg.patch_len, self.cfg.stride)  # (B*C, N, P)
        tokens = self.embed(patches)  # (B*C, N, D)
        if self.pos_embed is not None:
            tokens = tokens + self.pos_embed
        if self.pos_table is not None:
            tokens = self.pos_table(tokens)
        tokens = self.drop(tokens)
        tokens = self.encoder(tokens)  # (B*C, N, D)
        flat = self.head_drop(tokens.flatten(1))  # (B*C, N*D)
        y = self.head(flat).reshape(b, c, -1)  # (B, C, H*Q)
        return self.revin.denormalize(_shape_output(y, self.cfg.num_quantiles), stats)


# --------------------------------------------------------------------------------------------
# iTransformer-style
# --------------------------------------------------------------------------------------------


class iTransformer(nn.Module):
    """Inverted Transformer (Liu et al., ICLR 2024): each variate's whole window is one token and
    attention runs across variates, so it models cross-channel dependence directly.

    Variates have no order, so there are no positions (``pos`` none only) and no sliding window
    (``local``) over them.
    """

    name: ClassVar[str] = "itransformer"
    default_pos: ClassVar[str] = "none"
    positions: ClassVar[tuple[str, ...]] = ("none",)

    def __init__(self, cfg: ForecastConfig):
        super().__init__()
        self.cfg = cfg
        attention = _attention(cfg, iTransformer)
        if attention.backend == "local":
            raise ValueError(
                "itransformer attention: backend 'local' windows over token order, and variate "
                "tokens have none; use sdpa, math, flex, linear or linformer"
            )
        self.revin = _revin(cfg)
        self.embed = nn.Linear(cfg.seq_len, cfg.dim)
        self.drop = Dropout(cfg.dropout)
        self.encoder = _encoder(cfg, attention, cfg.channels, "layer")
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
    ``cfg.attention`` sets the encoder's and the (causal) decoder's self-attention, positions
    included (sincos added to the embeddings by default); ``cfg.cross_attention`` the decoder's
    attention to the encoder output, which has no positions.
    """

    name: ClassVar[str] = "transformer"
    default_pos: ClassVar[str] = "sincos"
    positions: ClassVar[tuple[str, ...]] = ("sincos", "none", "learned", "rope", "alibi")

    def __init__(self, cfg: ForecastConfig):
        super().__init__()
        if cfg.label_len > cfg.seq_len:
            raise ValueError(f"label_len={cfg.label_len} exceeds seq_len={cfg.seq_len}")
        self.cfg = cfg
        attention = _attention(cfg, TransformerForecaster, causal=True)
        cross = cfg.cross_attention.resolved(pos="none").check(
            where="transformer cross-attention", positions=("none",)
        )
        if not get_backend(cross.backend).cross:
            raise ValueError(
                f"transformer cross-attention: backend {cross.backend!r} cannot attend to "
                "another sequence; use sdpa, math, flex, local or linear"
            )
        self.revin = _revin(cfg)
        self.value_embed = nn.Linear(cfg.channels, cfg.dim)
        self.time_embed = nn.Linear(cfg.num_time_features, cfg.dim)
        total = cfg.seq_len + cfg.pred_len
        # Positions count from the first input step; the decoder's tokens start at L - label_len.
        self.pos_table, attn_pos = build_position(
            str(attention.pos), dim=cfg.dim, num_heads=cfg.num_heads, max_len=total
        )
        self.drop = Dropout(cfg.dropout)
        self.encoder = _encoder(cfg, attention, cfg.seq_len, "layer", attn_pos)
        self.decoder = TransformerDecoder(
            cfg.dim,
            max(1, cfg.depth // 2),
            cfg.num_heads,
            cfg.mlp_ratio,
            proj_drop=cfg.dropout,
            attention=attention,
            cross_attention=cross,
            pos=attn_pos,
        )
        self.head = nn.Linear(cfg.dim, cfg.channels * cfg.num_quantiles)

    def _embed(self, values: Tensor, marks: Tensor, start: int) -> Tensor:
        tokens = self.value_embed(values) + self.time_embed(marks)  # (B, N, D)
        if self.pos_table is not None:
            tokens = self.pos_table(tokens, offset=start)
        return self.drop(tokens)

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


# The models with attention; the others refuse a non-default ``attention``.
ATTENTION_MODELS = ("patchtst", "itransformer", "transformer")

MODELS: dict[str, type[nn.Module]] = {
    "patchtst": PatchTST,
    "itransformer": iTransformer,
    "transformer": TransformerForecaster,
    "dlinear": DLinear,
    "last_value": LastValue,
    "seasonal_naive": SeasonalNaive,
}


def _changed(attention: AttentionConfig) -> list[str]:
    """The settings of ``attention`` that differ from the default, as ``name=value``."""
    default = AttentionConfig().to_dict()
    return [f"{k}={v!r}" for k, v in attention.to_dict().items() if v != default[k]]


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """A forecaster by registry name; ``kwargs`` are ``ForecastConfig`` fields.

    ``attention`` and ``cross_attention`` may be an ``AttentionConfig``, a dict or a backend
    name. The former ``backend=``/``backend_options=`` still work, with a ``FutureWarning``.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    if "backend" in kwargs or "backend_options" in kwargs:
        warnings.warn(
            "build_model(backend=, backend_options=) is deprecated; pass "
            "attention=AttentionConfig(backend=..., <option>=...)",
            FutureWarning,
            stacklevel=2,
        )
        options = dict(kwargs.pop("backend_options", None) or {})
        typed = {f.name for f in fields(AttentionConfig)} - {"backend", "pos", "options"}
        legacy = {k: options.pop(k) for k in list(options) if k in typed}
        kwargs["attention"] = replace(
            AttentionConfig.coerce(kwargs.get("attention")),
            backend=kwargs.pop("backend", "sdpa"),
            options=options,
            **legacy,
        )
    known = {f.name for f in fields(ForecastConfig)}
    unknown = set(kwargs) - known
    if unknown:
        raise ValueError(f"unknown model options {sorted(unknown)}; known: {sorted(known)}")
    for key in ("attention", "cross_attention"):
        if key in kwargs:
            kwargs[key] = AttentionConfig.coerce(kwargs[key])
    cfg = ForecastConfig(**kwargs)
    if name not in ATTENTION_MODELS and _changed(cfg.attention):
        raise ValueError(
            f"model {name!r} has no attention, so attention settings "
            f"({', '.join(_changed(cfg.attention))}) do not apply; drop them or choose one of "
            f"{list(ATTENTION_MODELS)}"
        )
    if name != "transformer" and _changed(cfg.cross_attention):
        raise ValueError(
            f"model {name!r} has no cross-attention, so cross-attention settings "
            f"({', '.join(_changed(cfg.cross_attention))}) do not apply; only 'transformer' has one"
        )
    if cfg.num_quantiles < 1:
        raise ValueError(f"num_quantiles must be >= 1, got {cfg.num_quantiles}")
    if name in ("patchtst", "itransformer", "transformer") and cfg.dim % cfg.num_heads:
        raise ValueError(f"num_heads={cfg.num_heads} must divide dim={cfg.dim}")
    return MODELS[name](cfg)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
