"""Captioning models: an image encoder giving a grid of features and a word decoder over it.

Encoders (``encoders.py``) return ``(B, N, D)`` features of an ``(h, w)`` grid with 2-D sin-cos
positions added: a ResNet-style CNN (torchvision blocks; torchvision's ResNets with optional
ImageNet weights) or a ViT built from ``attention_core``. Decoders (``decoders.py``) share one
interface (teacher-forced ``forward``, ``init_state``/``step``/``reorder`` for decoding):

* ``lstm_attention``: Show, Attend and Tell (Xu et al., 2015): Bahdanau attention over the grid
  from the previous hidden state, a gating scalar on the context, and the doubly stochastic
  regularizer on the attention weights (computed by the module);
* ``lstm_hard_attention``: the same LSTM reading one sampled location per word, trained with
  REINFORCE (the paper's stochastic hard attention, ``hard_attention.py``);
* ``transformer``: masked self-attention + cross-attention to the grid, decoded with a KV cache;
* ``lstm_pooled``: the same LSTM fed the mean-pooled grid, no attention (the baseline).

This module composes them: ``CaptionerConfig``, the ``ENCODERS``/``DECODERS`` factories,
``Captioner`` and ``build_captioner``.

The attention setting (``attention_core.AttentionConfig``) reaches every dot-product attention:
``CaptionerConfig.attention`` is the Transformer decoder's masked self-attention (its backend,
options and position scheme) and the ViT encoder's self-attention (backend and options; the grid
keeps its 2-D sin-cos positions); ``CaptionerConfig.cross_attention`` is the decoder's
cross-attention to the grid. The LSTM decoders' additive attention is another module and takes
neither. ``resolve_attention`` fills in the defaults and refuses what the model cannot do.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, fields, replace
from typing import Any

from torch import Tensor, nn

from attention_core import AttentionConfig, get_backend

from .decoders import DECODER_POSITIONS, LSTMDecoder, TransformerCaptionDecoder
from .decoders import State as State  # the decoders' state type, named here before the split
from .encoders import (
    _TV_STAGE_DIMS,
    SmallResNetEncoder,
    TorchvisionResNetEncoder,
    ViTEncoder,
    load_pretrained_encoder,
)
from .encoders import _pretrained_weights as _pretrained_weights  # tests read the weights' URL
from .hard_attention import HardAttentionLSTMDecoder, check_hard_attention

__all__ = [
    "DECODERS",
    "DECODER_POSITIONS",
    "ENCODERS",
    "Captioner",
    "CaptionerConfig",
    "HardAttentionLSTMDecoder",
    "LSTMDecoder",
    "SmallResNetEncoder",
    "TorchvisionResNetEncoder",
    "TransformerCaptionDecoder",
    "ViTEncoder",
    "build_captioner",
    "load_pretrained_encoder",
    "resolve_attention",
]


@dataclass
class CaptionerConfig:
    """Every knob of a captioner, built from the module's hyper-parameters (plain values; the
    attention settings may come as dicts, as checkpoints hold them)."""

    encoder: str = "small_resnet"  # small_resnet | resnet18 | resnet34 | resnet50 | resnet101 | vit
    encoder_width: int = 16
    encoder_stages: int = 3  # small_resnet: stages after the stem; torchvision: last stage kept
    encoder_stem_stride: int = 1
    vit_dim: int = 128
    vit_depth: int = 4
    vit_heads: int = 4
    patch_size: int = 8
    # lstm_attention | lstm_hard_attention | transformer | lstm_pooled
    decoder: str = "lstm_attention"
    word_dim: int = 64  # the LSTM decoders' word embeddings
    hidden_dim: int = 256
    attention_dim: int = 128
    dec_dim: int = 128
    dec_depth: int = 2
    dec_heads: int = 4
    dropout: float = 0.3
    max_len: int = 30
    expected_context_prob: float = 0.5  # lstm_hard_attention: images read with the expectation
    baseline_decay: float = 0.9  # lstm_hard_attention: the reward baseline's moving average
    # As given (None fields: the model's defaults); resolve_attention fills them in.
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    cross_attention: AttentionConfig = field(default_factory=AttentionConfig)

    def __post_init__(self) -> None:
        self.attention = AttentionConfig.coerce(self.attention)
        self.cross_attention = AttentionConfig.coerce(self.cross_attention)
        check_hard_attention(self.expected_context_prob, self.baseline_decay)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CaptionerConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


def resolve_attention(
    cfg: CaptionerConfig, warn: bool = True
) -> tuple[AttentionConfig, AttentionConfig]:
    """(self-attention, cross-attention) settings with the model's defaults filled in, checked
    against what this captioner is: one-line ``ValueError`` for what it cannot run.

    The decoder's self-attention is causal and decodes with a KV cache (no linformer), its
    positions are 1-D (``DECODER_POSITIONS``, default ``learned``); the cross-attention reads the
    grid through a static cache and has no positions. With an LSTM decoder the setting reaches
    only a ViT encoder; what it cannot reach is warned about (``warn``).
    """
    attention = cfg.attention.resolved(pos=DECODER_POSITIONS[0], global_tokens=0)
    cross = cfg.cross_attention.resolved(pos="none", global_tokens=0)
    if cfg.decoder == "transformer":
        attention.check(
            where="decoder self-attention", causal=True, kv_cache=True, positions=DECODER_POSITIONS
        )
        if cfg.cross_attention.pos not in (None, "none"):
            raise ValueError(
                f"decoder cross-attention: pos {cfg.cross_attention.pos!r} does not apply (words "
                "and grid cells share no positions; the grid has its own 2-D sin-cos); leave "
                "--model.cross_attention.pos unset"
            )
        if not get_backend(cross.backend).cross:
            raise ValueError(
                f"decoder cross-attention: backend {cross.backend!r} cannot attend to another "
                "sequence; use sdpa, math, local or linear"
            )
        cross.check(where="decoder cross-attention", kv_cache=True)
    else:
        unused = []
        if cfg.attention.pos is not None:
            unused.append(f"--model.attention.pos {cfg.attention.pos}")
        if cfg.encoder != "vit" and replace(cfg.attention, pos=None) != AttentionConfig():
            unused.append(f"--model.attention.backend {cfg.attention.backend} (and its options)")
        if cfg.cross_attention != AttentionConfig():
            unused.append("--model.cross_attention")
        if unused and warn:
            warnings.warn(
                f"{', '.join(unused)}: the attention setting applies to the transformer decoder "
                f"(and a ViT encoder's self-attention) only; decoder {cfg.decoder!r} "
                + (
                    "uses additive (Bahdanau) attention, which it does not change"
                    if cfg.decoder in ("lstm_attention", "lstm_hard_attention")
                    else "has no attention"
                ),
                UserWarning,
                stacklevel=2,
            )
    if cfg.encoder == "vit":
        replace(attention, pos=None).check(where="ViT encoder self-attention", grid=True)
    return attention, cross


# Factories: (config, resolved self-attention, image size) -> encoder;
# (config, vocabulary size, feature width, resolved self- and cross-attention) -> decoder.


def _small(cfg: CaptionerConfig, attention: AttentionConfig, image_size: int | None) -> nn.Module:
    return SmallResNetEncoder(cfg.encoder_width, cfg.encoder_stages, cfg.encoder_stem_stride)


def _vit(cfg: CaptionerConfig, attention: AttentionConfig, image_size: int | None) -> nn.Module:
    return ViTEncoder(
        cfg.vit_dim,
        cfg.vit_depth,
        cfg.vit_heads,
        cfg.patch_size,
        attention=replace(attention, pos=None),
        image_size=image_size,
    )


def _tv(arch: str) -> Any:
    def build(
        cfg: CaptionerConfig, attention: AttentionConfig, image_size: int | None
    ) -> nn.Module:
        return TorchvisionResNetEncoder(arch, min(cfg.encoder_stages, 4))

    return build


ENCODERS: dict[str, Any] = {
    "small_resnet": _small,
    "vit": _vit,
    **{arch: _tv(arch) for arch in _TV_STAGE_DIMS},
}


def _lstm(attend: bool) -> Any:
    def build(cfg: CaptionerConfig, vocab_size: int, feature_dim: int, *_: Any) -> nn.Module:
        return LSTMDecoder(
            vocab_size,
            feature_dim,
            cfg.word_dim,
            cfg.hidden_dim,
            cfg.attention_dim,
            cfg.dropout,
            attend,
        )

    return build


def _lstm_hard(cfg: CaptionerConfig, vocab_size: int, feature_dim: int, *_: Any) -> nn.Module:
    return HardAttentionLSTMDecoder(
        vocab_size,
        feature_dim,
        cfg.word_dim,
        cfg.hidden_dim,
        cfg.attention_dim,
        cfg.dropout,
        cfg.expected_context_prob,
        cfg.baseline_decay,
    )


def _transformer(
    cfg: CaptionerConfig,
    vocab_size: int,
    feature_dim: int,
    attention: AttentionConfig,
    cross: AttentionConfig,
) -> nn.Module:
    return TransformerCaptionDecoder(
        vocab_size,
        feature_dim,
        cfg.dec_dim,
        cfg.dec_depth,
        cfg.dec_heads,
        dropout=cfg.dropout,
        max_len=cfg.max_len + 2,
        attention=attention,
        cross_attention=cross,
    )


DECODERS: dict[str, Any] = {
    "lstm_attention": _lstm(True),
    "lstm_hard_attention": _lstm_hard,
    "lstm_pooled": _lstm(False),
    "transformer": _transformer,
}


class Captioner(nn.Module):
    """Encoder + decoder; ``forward`` is teacher-forced, decoding lives in ``decoding.py``."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    @property
    def has_attention(self) -> bool:
        return not (isinstance(self.decoder, LSTMDecoder) and not self.decoder.attend)

    def encode(self, images: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """images (B, 3, H, W) -> features (B, N, D) and the (h, w) grid."""
        return self.encoder(images)

    def forward(self, images: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor | None]:
        """images (B, 3, H, W), input tokens (B, T) -> logits (B, T, V), alphas (B, T, N) or None."""
        features, _ = self.encode(images)
        return self.decoder(features, tokens)


def build_captioner(
    cfg: CaptionerConfig, vocab_size: int, image_size: int | None = None
) -> Captioner:
    """The captioner of ``cfg``; ``image_size`` gives the encoder's token count where an
    attention backend needs it (a ViT encoder with linformer)."""
    if cfg.encoder not in ENCODERS:
        raise ValueError(f"unknown encoder {cfg.encoder!r}; choose one of {sorted(ENCODERS)}")
    if cfg.decoder not in DECODERS:
        raise ValueError(f"unknown decoder {cfg.decoder!r}; choose one of {sorted(DECODERS)}")
    attention, cross = resolve_attention(cfg, warn=False)
    encoder = ENCODERS[cfg.encoder](cfg, attention, image_size)
    decoder = DECODERS[cfg.decoder](cfg, vocab_size, encoder.out_dim, attention, cross)
    return Captioner(encoder, decoder)
