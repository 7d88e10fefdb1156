"""Models over log-mel spectrograms: an Audio Spectrogram Transformer and a small CNN baseline.

Both take dB features (B, 1, n_mels, frames), normalize them with the training set's mean and
standard deviation (buffers, so checkpoints and exports carry them) and return logits.

The AST (Gong et al., 2021) cuts the spectrogram into *overlapping* patches (stride < patch),
embeds them with one convolution, adds a class token (no distillation token: there is no teacher)
and positions, and runs ``attention_core``'s ``TransformerEncoder`` with the attention its
``AttentionConfig`` selects. Positions (``attention.pos``): ``learned`` (the default: a learned
table initialised from a 2-D sin-cos one), ``sincos2d`` (that table, fixed), ``rope2d`` (2-D
rotary, inside attention) or ``none``; 1-D schemes and ALiBi have no meaning on a 2-D grid. Under
``local`` attention the class token is global by default (``global_tokens=1``): with a window
alone it would gather only the patches next to it and the head would classify from a corner.
Patches are square (an int) or rectangular ([frequency, time]); a patch spanning every mel band
(``[n_mels, k]``, the frame patches of SSAST, Gong et al., 2022) gives one token per few frames.
On a few thousand short speech clips (FSDD) those frame tokens train several times faster than
8x8 patches, which leave the attention to piece each formant pattern back together from pieces.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from attention_core import (
    AttentionConfig,
    Dropout,
    TransformerEncoder,
    build_position,
    sincos_2d_table,
)

__all__ = [
    "AST_POSITIONS",
    "ASTConfig",
    "AudioSpectrogramTransformer",
    "CNNBaseline",
    "CNNConfig",
    "as_pair",
    "create_model",
    "patch_grid",
]


PatchSize = int | tuple[int, int] | list[int]

# Position schemes of the AST's 2-D patch grid; the first is the default.
AST_POSITIONS = ("learned", "none", "sincos2d", "rope2d")


def as_pair(value: PatchSize, name: str) -> tuple[int, int]:
    """An int (square) or a (frequency, time) pair -> (frequency, time)."""
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v > 0 for v in pair):
        raise ValueError(
            f"--model.{name} must be a positive int or [frequency, time], got {value!r}"
        )
    return pair  # type: ignore[return-value]


def patch_grid(size: tuple[int, int], patch: PatchSize, stride: PatchSize) -> tuple[int, int]:
    """Patches along (frequency, time) for a (n_mels, frames) input.

    ``patch``/``stride`` are an int (square patches) or a (frequency, time) pair: a patch as tall
    as the spectrogram (``[n_mels, k]``) makes one token per stretch of ``k`` frames.
    """
    (pf, pt), (sf, st) = as_pair(patch, "patch_size"), as_pair(stride, "patch_stride")
    if sf > pf or st > pt:
        raise ValueError(
            f"patch_stride must be in [1, patch_size] along each axis, got stride {stride} for "
            f"patch {patch}"
        )
    f, t = size
    if f < pf or t < pt:
        raise ValueError(
            f"input {f}x{t} (mels x frames) is smaller than one {pf}x{pt} patch; lower "
            "--model.patch_size or use more mels / a longer --data.duration"
        )
    return (f - pf) // sf + 1, (t - pt) // st + 1


class _Normalize(nn.Module):
    """(x - mean) / std with dataset statistics stored as buffers."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("std", torch.ones(()))

    def set_stats(self, mean: float, std: float) -> None:
        if not std > 0:
            raise ValueError(f"feature std must be positive, got {std}")
        self.mean.fill_(float(mean))
        self.std.fill_(float(std))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


@dataclass
class ASTConfig:
    n_mels: int = 40
    n_frames: int = 63
    num_classes: int = 10
    patch_size: PatchSize = 8  # an int (square) or [frequency, time]
    patch_stride: PatchSize = 6
    embed_dim: int = 96
    depth: int = 4
    num_heads: int = 4
    mlp_ratio: float = 4.0
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.1
    attention: AttentionConfig = field(default_factory=AttentionConfig)

    @property
    def grid_size(self) -> tuple[int, int]:
        return patch_grid((self.n_mels, self.n_frames), self.patch_size, self.patch_stride)

    @property
    def num_patches(self) -> int:
        gf, gt = self.grid_size
        return gf * gt


class AudioSpectrogramTransformer(nn.Module):
    """Overlapping patches + class token + 2-D positions + transformer encoder + linear head."""

    num_prefix_tokens = 1  # the class token

    def __init__(self, cfg: ASTConfig):
        super().__init__()
        self.cfg = cfg
        self.grid_size = cfg.grid_size
        dim = cfg.embed_dim
        # The model's defaults (learned positions; the class token global under `local`), then
        # what a spectrogram grid can take: one-line errors here, before anything is built.
        self.attention = (
            AttentionConfig.coerce(cfg.attention)
            .resolved(pos=AST_POSITIONS[0], global_tokens=self.num_prefix_tokens)
            .check(
                where="AST self-attention over a 2-D patch grid", grid=True, positions=AST_POSITIONS
            )
        )
        pos = self.attention.pos
        self.normalize = _Normalize()
        self.patch_embed = nn.Conv2d(
            1, dim, as_pair(cfg.patch_size, "patch_size"), as_pair(cfg.patch_stride, "patch_stride")
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        in_attention = None
        self.pos_add: nn.Module | None = None
        if pos == "learned":  # timm's name, initialised from the fixed 2-D table
            table = sincos_2d_table(dim, self.grid_size)  # (N, dim): rows = frequency, cols = time
            table = torch.cat([torch.zeros(1, dim), table])  # (1+N, dim): class token first
            self.pos_embed = nn.Parameter(table[None])  # (1, 1+N, dim)
        else:
            self.register_parameter("pos_embed", None)
            self.pos_add, in_attention = build_position(
                str(pos), dim=dim, num_heads=cfg.num_heads, max_len=1 + cfg.num_patches,
                grid=self.grid_size, num_prefix_tokens=self.num_prefix_tokens,
            )  # fmt: skip
        self.pos_drop = Dropout(cfg.drop_rate)
        self.encoder = TransformerEncoder(
            dim,
            cfg.depth,
            cfg.num_heads,
            cfg.mlp_ratio,
            drop_path_rate=cfg.drop_path_rate,
            proj_drop=cfg.drop_rate,
            attn_drop=cfg.attn_drop_rate,
            attention=self.attention,
            pos=in_attention,
            seq_len=1 + cfg.num_patches,
        )
        self.head = nn.Linear(dim, cfg.num_classes)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def tokens(self, x: Tensor) -> Tensor:
        """Normalized features (B, 1, F, T) -> encoded tokens (B, 1 + N, dim), class token first."""
        p = self.patch_embed(x)  # (B, dim, gf, gt)
        p = p.flatten(2).transpose(1, 2)  # (B, gf*gt, dim), frequency-major like the pos table
        cls = self.cls_token.expand(p.shape[0], -1, -1)  # (B, 1, dim)
        z = torch.cat([cls, p], dim=1)  # (B, 1+N, dim)
        if self.pos_embed is not None:
            z = z + self.pos_embed
        elif self.pos_add is not None:
            z = self.pos_add(z)
        return self.encoder(self.pos_drop(z))

    def classify(self, x: Tensor) -> Tensor:
        """Normalized features (B, 1, F, T) -> logits (B, num_classes)."""
        return self.head(self.tokens(x)[:, 0])

    def forward(self, x: Tensor) -> Tensor:
        """dB features (B, 1, F, T) -> logits (B, num_classes)."""
        return self.classify(self.normalize(x))


@dataclass
class CNNConfig:
    n_mels: int = 40
    n_frames: int = 63
    num_classes: int = 10
    channels: list[int] = field(default_factory=lambda: [32, 64, 128])
    drop_rate: float = 0.1


class CNNBaseline(nn.Module):
    """Conv-BN-ReLU blocks with 2x2 pooling, average pooling over time only and a linear head.

    Frequency is kept (flattened into the head): a convolution is shift-invariant, and pooling
    over frequency too would throw away *which* band holds the energy, what tells a 697 Hz tone
    from a 770 Hz one or one formant pattern from another.
    """

    def __init__(self, cfg: CNNConfig):
        super().__init__()
        self.cfg = cfg
        if not cfg.channels:
            raise ValueError("the CNN needs at least one entry in --model.cnn_channels")
        self.normalize = _Normalize()
        layers: list[nn.Module] = []
        c_in = 1
        for i, c in enumerate(cfg.channels):
            layers += [
                nn.Conv2d(c_in, c, 3, padding=1, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
            ]
            if i < len(cfg.channels) - 1:
                layers.append(nn.MaxPool2d(2))
            c_in = c
        self.features = nn.Sequential(*layers)
        self.drop = Dropout(cfg.drop_rate)
        bands = cfg.n_mels // 2 ** (len(cfg.channels) - 1)
        if bands < 1:
            raise ValueError(f"{len(cfg.channels)} CNN blocks halve {cfg.n_mels} mels to nothing")
        self.head = nn.Linear(c_in * bands, cfg.num_classes)

    def classify(self, x: Tensor) -> Tensor:
        h = self.features(x).mean(dim=3)  # (B, C, F'): average over time
        return self.head(self.drop(h.flatten(1)))  # (B, C*F') -> (B, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classify(self.normalize(x))


ARCHS = ("ast", "cnn")


def create_model(arch: str, **kwargs: Any) -> AudioSpectrogramTransformer | CNNBaseline:
    """``arch`` "ast" or "cnn" with its config fields as keyword arguments."""
    if arch == "ast":
        return AudioSpectrogramTransformer(ASTConfig(**kwargs))
    if arch == "cnn":
        return CNNBaseline(CNNConfig(**kwargs))
    raise ValueError(f"unknown --model.model {arch!r}; choose one of {list(ARCHS)}")


def config_dict(model: nn.Module) -> dict[str, Any]:
    return asdict(model.cfg)  # type: ignore[arg-type]
