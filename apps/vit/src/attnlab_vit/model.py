"""Vision Transformers built from ``attention_core``, as plain ``nn.Module``s.

One model class covers three families, chosen by ``ViTConfig``:

* the plain ViT (Dosovitskiy et al., 2021): convolutional patch embedding, class token or global
  average pooling, learned, 2-D sin-cos or 2-D rotary positions. Its parameter names are those of
  timm's ``VisionTransformer`` (``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``blocks.N.*``,
  ``norm``/``fc_norm``, ``head``), so a timm model of the same configuration loads strictly;
* the small-data ViT of Lee et al. (2021): Shifted Patch Tokenization (``tokenizer="spt"``) and
  Locality Self-Attention (``lsa=True``: a learnable temperature and a masked diagonal);
* CCT (Hassani et al., 2021): a convolutional tokenizer (``tokenizer="conv"``) and sequence
  pooling (``global_pool="seq"``).

Every self-attention layer takes one ``AttentionConfig`` (``ViTConfig.attention``): its backend,
the backend's options and the position scheme (``pos``; None = ``learned``, timm's ``pos_embed``).
Tokens sit on a 2-D grid after the class token, so the valid schemes are ``GRID_POSITIONS``; under
the ``local`` backend the class token attends globally by default (``global_tokens``).

Named configurations live in a registry: ``create_model("vit_tiny_patch4_32", num_classes=100)``.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field, fields, replace
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attention_core import (
    AttentionConfig,
    AttentionPosition,
    Dropout,
    MultiHeadAttention,
    TransformerEncoderBlock,
    build_position,
    get_backend,
    list_backends,
)

__all__ = [
    "GRID_POSITIONS",
    "PRESETS",
    "ConvTokenizer",
    "LocalitySelfAttention",
    "PatchEmbed",
    "ShiftedPatchTokenization",
    "ViTConfig",
    "VisionTransformer",
    "create_model",
    "list_presets",
    "preset_config",
    "register_preset",
]

TOKENIZERS = ("patch", "spt", "conv")
POOLS = ("token", "avg", "seq")
# Position schemes of a 2-D token grid; the default is timm's learned ``pos_embed``. 1-D schemes
# (sincos, rope, alibi) have no meaning on a grid.
GRID_POSITIONS = ("learned", "sincos2d", "rope2d", "none")
DEFAULT_POS = "learned"


def mask_backends() -> list[str]:
    """Backends that apply any additive mask (LSA's masked diagonal needs one)."""
    return [name for name in list_backends() if get_backend(name).masks == "any"]


@dataclass
class ViTConfig:
    """Everything that shapes a ``VisionTransformer``; presets are named instances of it."""

    img_size: int = 32
    patch_size: int = 4
    in_chans: int = 3
    num_classes: int = 10
    embed_dim: int = 192
    depth: int = 6
    num_heads: int = 3
    mlp_ratio: float = 2.0
    qkv_bias: bool = True
    class_token: bool = True
    global_pool: str = "token"  # token | avg | seq (CCT's sequence pooling)
    tokenizer: str = "patch"  # patch | spt | conv
    conv_layers: int = 1  # conv tokenizer: conv + ReLU + max-pool stages
    conv_kernel: int = 3
    conv_hidden: int = 64  # conv tokenizer: channels of every stage but the last
    lsa: bool = False  # Locality Self-Attention
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    init_values: float | None = None  # LayerScale start value; None = no LayerScale
    # Backend, its options and positions of every self-attention layer (pos None: learned).
    attention: AttentionConfig = field(default_factory=AttentionConfig)

    def __post_init__(self) -> None:
        self.attention = AttentionConfig.coerce(self.attention)

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens before the patch grid: the class token."""
        return int(self.class_token)

    @property
    def family(self) -> str:
        return "CCT" if self.tokenizer == "conv" else "ViT"

    @property
    def resolved_attention(self) -> AttentionConfig:
        """``attention`` with this model's defaults: learned positions, and the class token as
        the global token of a backend that has them (local)."""
        return self.attention.resolved(pos=DEFAULT_POS, global_tokens=self.num_prefix_tokens)

    @property
    def grid_size(self) -> tuple[int, int]:
        """Token grid (rows, cols) the tokenizer makes from an image."""
        if self.tokenizer == "conv":
            side = self.img_size
            for _ in range(self.conv_layers):
                side = (side + 1) // 2  # max-pool 3, stride 2, padding 1
            return side, side
        return self.img_size // self.patch_size, self.img_size // self.patch_size

    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad setting and what to change."""
        if self.tokenizer not in TOKENIZERS:
            raise ValueError(f"tokenizer must be one of {TOKENIZERS}, got {self.tokenizer!r}")
        if self.global_pool not in POOLS:
            raise ValueError(f"global_pool must be one of {POOLS}, got {self.global_pool!r}")
        if self.img_size <= 0 or self.patch_size <= 0:
            raise ValueError(
                f"img_size and patch_size must be positive, got {self.img_size}, {self.patch_size}"
            )
        if self.tokenizer != "conv" and self.img_size % self.patch_size != 0:
            divisors = [p for p in range(1, self.img_size + 1) if self.img_size % p == 0]
            raise ValueError(
                f"image size {self.img_size} is not divisible by patch size {self.patch_size}; "
                f"use a patch size that divides it ({', '.join(map(str, divisors))}) or resize "
                "the images with --data.image_size"
            )
        if self.tokenizer == "spt" and self.patch_size < 2:
            raise ValueError("shifted patch tokenization needs patch_size >= 2 (it shifts by half)")
        if self.embed_dim % self.num_heads != 0:
            raise ValueError(
                f"embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}"
            )
        if self.global_pool == "token" and not self.class_token:
            raise ValueError("global_pool='token' needs class_token=True; or use 'avg' or 'seq'")
        self.check_attention()
        num_tokens = self.grid_size[0] * self.grid_size[1] + self.num_prefix_tokens
        if self.lsa and num_tokens < 2:
            raise ValueError(
                "Locality Self-Attention needs at least 2 tokens (it masks the diagonal)"
            )

    def check_attention(self) -> AttentionConfig:
        """The resolved attention setting, refused (one-line ``ValueError``) where this model
        cannot run it; the message names the backend or the position scheme."""
        where = f"{self.family} self-attention"
        attn = self.resolved_attention.check(where=where, grid=True, positions=GRID_POSITIONS)
        head_dim = self.embed_dim // self.num_heads
        if attn.pos == "sincos2d" and self.embed_dim % 4 != 0:
            raise ValueError(
                f"{where}: pos 'sincos2d' needs embed_dim divisible by 4, got {self.embed_dim}"
            )
        if attn.pos == "rope2d" and head_dim % 4 != 0:
            raise ValueError(
                f"{where}: pos 'rope2d' needs a head dimension divisible by 4, got "
                f"{self.embed_dim} / {self.num_heads} heads = {head_dim}"
            )
        if self.lsa and get_backend(attn.backend).masks != "any":
            raise ValueError(
                f"{where}: Locality Self-Attention masks the diagonal of the scores, which "
                f"backend {attn.backend!r} cannot apply; use a backend that takes any mask: "
                f"{', '.join(mask_backends())}"
            )
        return attn

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ViTConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown ViT settings {unknown}; known: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # attention as a plain dict


# --------------------------------------------------------------------------------------------
# tokenizers: (B, C, H, W) -> (B, N, D)
# --------------------------------------------------------------------------------------------


class PatchEmbed(nn.Module):
    """Non-overlapping patches through one strided convolution (timm's ``patch_embed.proj``)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, D, gh, gw) -> (B, N, D)


class ShiftedPatchTokenization(nn.Module):
    """SPT: the image and four copies shifted diagonally by half a patch, concatenated along
    channels, cut into patches, layer-normalized and projected. Each token then sees a patch
    plus its neighbourhood, which a plain patch embedding on small images lacks."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.shift = max(1, patch_size // 2)
        features = 5 * in_chans * patch_size * patch_size
        self.norm = nn.LayerNorm(features)
        self.proj = nn.Linear(features, embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        s = self.shift
        padded = F.pad(x, (s, s, s, s))  # (B, C, H + 2s, W + 2s)
        views = [x]
        for dy, dx in ((-s, -s), (-s, s), (s, -s), (s, s)):
            views.append(padded[..., s + dy : s + dy + h, s + dx : s + dx + w])  # (B, C, H, W)
        x = torch.cat(views, dim=1)  # (B, 5C, H, W)
        x = F.pixel_unshuffle(x, self.patch_size)  # (B, 5C*p*p, gh, gw)
        x = x.flatten(2).transpose(1, 2)  # (B, N, 5C*p*p)
        return self.proj(self.norm(x))  # (B, N, D)


class ConvTokenizer(nn.Module):
    """CCT's tokenizer: ``num_layers`` stages of conv (stride 1), ReLU and max-pool (stride 2);
    tokens overlap and carry a convolutional inductive bias."""

    def __init__(
        self, in_chans: int, embed_dim: int, num_layers: int = 1, kernel: int = 3, hidden: int = 64
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"conv tokenizer needs conv_layers >= 1, got {num_layers}")
        chans = [in_chans] + [hidden] * (num_layers - 1) + [embed_dim]
        stages: list[nn.Module] = []
        for c_in, c_out in itertools.pairwise(chans):
            stages += [
                nn.Conv2d(c_in, c_out, kernel, stride=1, padding=kernel // 2, bias=False),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, stride=2, padding=1),
            ]
        self.layers = nn.Sequential(*stages)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x).flatten(2).transpose(1, 2)  # (B, D, gh, gw) -> (B, N, D)


# --------------------------------------------------------------------------------------------
# Locality Self-Attention, through the attention-position hook of MultiHeadAttention
# --------------------------------------------------------------------------------------------


class LocalitySelfAttention(AttentionPosition):
    """LSA's two changes to softmax attention, given to ``MultiHeadAttention(pos=...)`` so the
    layer keeps its backend and stays visible to ``capture_attention``:

    * a learnable temperature: queries are scaled by ``exp(log_scale)`` (starts at 1, i.e. the
      usual 1/sqrt(d)), so each layer can sharpen its attention;
    * diagonal masking: a token never attends to itself, which pushes attention to other tokens.

    ``inner`` is the model's own position inside attention (2-D RoPE), applied first.
    """

    def __init__(self, inner: AttentionPosition | None = None) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(()))
        self.inner = inner

    def rotate(self, q: Tensor, k: Tensor, q_start: int, k_start: int) -> tuple[Tensor, Tensor]:
        if self.inner is not None:
            q, k = self.inner.rotate(q, k, q_start, k_start)
        return q * self.log_scale.exp(), k

    def bias(self, lq: int, lk: int, q_start: int, device: torch.device) -> Tensor:
        eye = torch.eye(lq, lk, device=device, dtype=torch.bool)  # (Lq, Lk)
        inner = None if self.inner is None else self.inner.bias(lq, lk, q_start, device)
        base = torch.zeros(lq, lk, device=device) if inner is None else inner  # (H|1, Lq, Lk)
        return base.masked_fill(eye, float("-inf"))


# --------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------


class VisionTransformer(nn.Module):
    """Images (B, C, H, W) -> logits (B, num_classes)."""

    def __init__(self, cfg: ViTConfig | None = None, **overrides: Any):
        super().__init__()
        cfg = ViTConfig.from_dict({**(cfg.to_dict() if cfg else {}), **overrides})
        cfg.validate()
        self.cfg = cfg
        self.attention = attention = cfg.check_attention()  # defaults filled in
        dim = cfg.embed_dim
        norm_layer = partial(nn.LayerNorm, eps=1e-6)  # timm's ViT norm
        if cfg.tokenizer == "patch":
            self.patch_embed: nn.Module = PatchEmbed(cfg.patch_size, cfg.in_chans, dim)
        elif cfg.tokenizer == "spt":
            self.patch_embed = ShiftedPatchTokenization(cfg.patch_size, cfg.in_chans, dim)
        else:
            self.patch_embed = ConvTokenizer(
                cfg.in_chans, dim, cfg.conv_layers, cfg.conv_kernel, cfg.conv_hidden
            )
        self.grid_size = cfg.grid_size
        num_patches = self.grid_size[0] * self.grid_size[1]
        self.num_prefix_tokens = cfg.num_prefix_tokens
        seq_len = num_patches + self.num_prefix_tokens
        if cfg.class_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        # Positions: timm's learned ``pos_embed`` table, a fixed 2-D sin-cos table added to the
        # tokens (``pos_sincos``), or 2-D RoPE inside every attention layer.
        rope: AttentionPosition | None = None
        if attention.pos == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(1, seq_len, dim))
        else:
            added, rope = build_position(
                str(attention.pos),
                dim=dim,
                num_heads=cfg.num_heads,
                grid=self.grid_size,
                num_prefix_tokens=self.num_prefix_tokens,
            )
            if added is not None:
                self.pos_sincos = added
        self.pos_drop = Dropout(cfg.drop_rate)
        rates = torch.linspace(0, cfg.drop_path_rate, cfg.depth).tolist()
        self.blocks = nn.ModuleList(
            TransformerEncoderBlock(
                dim,
                cfg.num_heads,
                cfg.mlp_ratio,
                qkv_bias=cfg.qkv_bias,
                proj_drop=cfg.drop_rate,
                attn_drop=cfg.attn_drop_rate,
                init_values=cfg.init_values,
                drop_path=rate,
                norm_layer=norm_layer,
                attn=self._lsa_attention(cfg, attention, rope, seq_len) if cfg.lsa else None,
                attention=attention,
                pos=rope,
                seq_len=seq_len,
            )
            for rate in rates
        )
        # timm: the final norm moves after pooling (fc_norm) when tokens are averaged.
        avg = cfg.global_pool == "avg"
        self.norm = nn.Identity() if avg else norm_layer(dim)
        self.fc_norm = norm_layer(dim) if avg else nn.Identity()
        if cfg.global_pool == "seq":
            self.attn_pool = nn.Linear(dim, 1)
        self.head_drop = Dropout(cfg.drop_rate)
        self.head = nn.Linear(dim, cfg.num_classes)
        self.reset_parameters()

    @staticmethod
    def _lsa_attention(
        cfg: ViTConfig, attention: AttentionConfig, rope: AttentionPosition | None, seq_len: int
    ) -> MultiHeadAttention:
        """One layer's attention with its own LSA temperature (around the shared 2-D RoPE)."""
        return MultiHeadAttention(
            cfg.embed_dim,
            cfg.num_heads,
            qkv_bias=cfg.qkv_bias,
            attn_drop=cfg.attn_drop_rate,
            proj_drop=cfg.drop_rate,
            pos=LocalitySelfAttention(rope),
            attention=attention,
            seq_len=seq_len,
        )

    def reset_parameters(self) -> None:
        """Truncated-normal linear weights and positions, as in timm's ViT."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        if hasattr(self, "pos_embed"):
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if hasattr(self, "cls_token"):
            nn.init.normal_(self.cls_token, std=1e-6)

    def _check_input(self, x: Tensor) -> None:
        cfg = self.cfg
        if (
            x.dim() != 4
            or x.shape[1] != cfg.in_chans
            or tuple(x.shape[-2:])
            != (
                cfg.img_size,
                cfg.img_size,
            )
        ):
            raise ValueError(
                f"expected images shaped (B, {cfg.in_chans}, {cfg.img_size}, {cfg.img_size}), got "
                f"{tuple(x.shape)}; resize the data (--data.image_size) or build the model for it"
            )

    def forward_features(self, x: Tensor) -> Tensor:
        """Images (B, C, H, W) -> normalized tokens (B, prefix + N, D)."""
        self._check_input(x)
        x = self.patch_embed(x)  # (B, N, D)
        if self.num_prefix_tokens:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # (B, 1 + N, D)
        if hasattr(self, "pos_embed"):
            x = x + self.pos_embed
        elif hasattr(self, "pos_sincos"):
            x = self.pos_sincos(x)
        x = self.pos_drop(x)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def pool(self, x: Tensor) -> Tensor:
        """Tokens (B, L, D) -> one vector per image (B, D)."""
        pool = self.cfg.global_pool
        if pool == "token":
            return x[:, 0]
        if pool == "avg":
            return x[:, self.num_prefix_tokens :].mean(1)
        weights = self.attn_pool(x).softmax(dim=1)  # (B, L, 1)
        return (weights.transpose(1, 2) @ x).squeeze(1)  # (B, 1, D) -> (B, D)

    def forward_head(self, x: Tensor) -> Tensor:
        return self.head(self.head_drop(self.fc_norm(self.pool(x))))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def timm_vit(cfg: ViTConfig) -> nn.Module:
    """timm's own ``VisionTransformer`` with the same configuration (plain ViT only)."""
    from timm.models.vision_transformer import VisionTransformer as TimmViT

    if cfg.tokenizer != "patch" or cfg.lsa or cfg.global_pool == "seq":
        raise ValueError(
            "timm's VisionTransformer has no SPT, convolutional tokenizer, LSA or sequence "
            "pooling; use the backbone "
            f"'timm' with a plain ViT preset (got tokenizer={cfg.tokenizer!r}, lsa={cfg.lsa}, "
            f"global_pool={cfg.global_pool!r})"
        )
    # timm's Attention is its own: no backend to choose, positions only as its pos_embed table.
    pos = cfg.attention.pos or DEFAULT_POS
    if replace(cfg.attention, pos=None) != AttentionConfig() or pos not in ("learned", "none"):
        given = {k: v for k, v in cfg.attention.to_dict().items() if v not in (None, {})}
        raise ValueError(
            f"backbone 'timm' runs timm's own attention, which does not take --model.attention "
            f"(got {given}); drop the --model.attention.* settings or use --model.backbone attnlab"
        )
    return TimmViT(
        img_size=cfg.img_size,
        patch_size=cfg.patch_size,
        in_chans=cfg.in_chans,
        num_classes=cfg.num_classes,
        global_pool=cfg.global_pool,
        embed_dim=cfg.embed_dim,
        depth=cfg.depth,
        num_heads=cfg.num_heads,
        mlp_ratio=cfg.mlp_ratio,
        qkv_bias=cfg.qkv_bias,
        init_values=cfg.init_values,
        class_token=cfg.class_token,
        pos_embed="learn" if pos == "learned" else "none",
        drop_rate=cfg.drop_rate,
        proj_drop_rate=cfg.drop_rate,
        attn_drop_rate=cfg.attn_drop_rate,
        drop_path_rate=cfg.drop_path_rate,
    )


# --------------------------------------------------------------------------------------------
# presets
# --------------------------------------------------------------------------------------------

PRESETS: dict[str, dict[str, Any]] = {}


def register_preset(name: str, **settings: Any) -> None:
    """Name a configuration; ``settings`` are ``ViTConfig`` fields (checked now)."""
    if name in PRESETS:
        raise ValueError(f"preset {name!r} is already registered")
    ViTConfig.from_dict(settings).validate()
    PRESETS[name] = settings


def list_presets() -> list[str]:
    return sorted(PRESETS)


def preset_config(name: str, **overrides: Any) -> ViTConfig:
    """The preset's ``ViTConfig`` with ``overrides`` (None values are ignored)."""
    if name not in PRESETS:
        raise ValueError(f"unknown ViT preset {name!r}; choose one of {list_presets()}")
    values = {**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}}
    cfg = ViTConfig.from_dict(values)
    cfg.validate()
    return cfg


def create_model(name: str, **overrides: Any) -> VisionTransformer:
    return VisionTransformer(preset_config(name, **overrides))


_GRAY8 = dict(img_size=8, in_chans=1, num_classes=10)
_GRAY28 = dict(img_size=28, in_chans=1, num_classes=10)
_RGB32 = dict(img_size=32, in_chans=3, num_classes=10)

# Tiny variants for tests (8x8 grayscale, a few thousand parameters).
register_preset("vit_test", **_GRAY8, patch_size=2, embed_dim=32, depth=2, num_heads=2)
register_preset(
    "vit_test_spt_lsa", **_GRAY8, patch_size=2, embed_dim=32, depth=2, num_heads=2,
    tokenizer="spt", lsa=True,
)  # fmt: skip
register_preset(
    "cct_test", **_GRAY8, embed_dim=32, depth=2, num_heads=2, tokenizer="conv",
    class_token=False, global_pool="seq",
)  # fmt: skip
# sklearn digits (quick.yaml): 16 tokens of 2x2 pixels.
register_preset(
    "vit_digits_8", **_GRAY8, patch_size=2, embed_dim=64, depth=3, num_heads=4, global_pool="avg"
)
# 28x28 grayscale (MNIST, Fashion-MNIST): 49 tokens; the size of the timm reference in docs/anchors.md
# (d128, depth 6, 4 heads, patch 4, 0.8M parameters).
register_preset(
    "vit_mini_patch4_28", **_GRAY28, patch_size=4, embed_dim=128, depth=6, num_heads=4,
    drop_path_rate=0.05,
)  # fmt: skip
register_preset(
    "vit_spt_lsa_mini_patch4_28", **_GRAY28, patch_size=4, embed_dim=128, depth=6, num_heads=4,
    tokenizer="spt", lsa=True, drop_path_rate=0.05,
)  # fmt: skip
register_preset(
    "cct_6_3x1_28", **_GRAY28, embed_dim=128, depth=6, num_heads=4, tokenizer="conv",
    conv_layers=1, class_token=False, global_pool="seq", drop_path_rate=0.05,
)  # fmt: skip
# The CPU default for 28x28 grey images (fashion_mnist.yaml, mnist5k.yaml): CCT-2/3x3, a
# convolutional tokenizer (three conv + max-pool stages, 32, 32 and 64 channels) to a 4 x 4 token
# grid, two transformer blocks of width 64, sequence pooling; 96,747 parameters. Chosen on
# Fashion-MNIST validation: at 600 CPU s on one thread, two blocks (89.8 %) over four (89.4 %) or
# four of width 128 (88.2 %); at 500 CPU s, batches of 64 (89.9 %) over 128 (89.3 %); at 600 wall
# s on two threads, three stages (92.0 %) over two (91.3 %): 16 tokens instead of 49 make a step
# 1.7x cheaper. A 32-channel first stage: 1.5x faster than 64.
_CCT_2_3X3 = dict(
    embed_dim=64, depth=2, num_heads=2, tokenizer="conv", conv_layers=3, conv_hidden=32,
    class_token=False, global_pool="seq", drop_path_rate=0.05,
)  # fmt: skip
register_preset("cct_2_3x3_28", **_GRAY28, **_CCT_2_3X3)
# timm's plain ViT with the parameter count of cct_2_3x3_28 (95,174): the benchmark's reference.
register_preset(
    "vit_pico_patch4_28", **_GRAY28, patch_size=4, embed_dim=74, depth=2, num_heads=2,
    drop_path_rate=0.05,
)  # fmt: skip
# 32x32 RGB (CIFAR, SVHN).
register_preset(
    "vit_tiny_patch4_32", **_RGB32, patch_size=4, embed_dim=192, depth=6, num_heads=3,
    drop_path_rate=0.1,
)  # fmt: skip
register_preset(
    "vit_small_patch4_32", **_RGB32, patch_size=4, embed_dim=384, depth=7, num_heads=12,
    mlp_ratio=1.0, drop_path_rate=0.1,
)  # fmt: skip  # ~6.3M parameters, the omihub/ViT-CIFAR size
register_preset(
    "vit_spt_lsa_tiny_patch4_32", **_RGB32, patch_size=4, embed_dim=192, depth=9, num_heads=12,
    tokenizer="spt", lsa=True, drop_path_rate=0.1,
)  # fmt: skip
# The same recipe for 32x32 RGB class folders (small_rgb.yaml): a 4 x 4 token grid.
register_preset("cct_2_3x3_32", **_RGB32, **_CCT_2_3X3)
register_preset(
    "cct_7_3x1_32", **_RGB32, embed_dim=256, depth=7, num_heads=4, mlp_ratio=2.0,
    tokenizer="conv", conv_layers=1, conv_kernel=3, class_token=False, global_pool="seq",
    drop_path_rate=0.1,
)  # fmt: skip  # ~3.7M parameters, CCT-7/3x1
