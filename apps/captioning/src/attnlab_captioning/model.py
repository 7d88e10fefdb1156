"""Captioning models: an image encoder giving a grid of features and a word decoder over it.

Encoders return ``(B, N, D)`` features of an ``(h, w)`` grid with 2-D sin-cos positions added:
a ResNet-style CNN (torchvision blocks; torchvision's ResNets with optional ImageNet weights) or
a ViT built from ``attention_core``. Decoders share one interface (teacher-forced ``forward``,
``init_state``/``step``/``reorder`` for decoding):

* ``lstm_attention``: Show, Attend and Tell (Xu et al., 2015): Bahdanau attention over the grid
  from the previous hidden state, a gating scalar on the context, and the doubly stochastic
  regularizer on the attention weights (computed by the module);
* ``transformer``: masked self-attention + cross-attention to the grid, decoded with a KV cache;
* ``lstm_pooled``: the same LSTM fed the mean-pooled grid, no attention (the baseline).
"""

from __future__ import annotations

import os
import pickle
import socket
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import Tensor, nn
from torchvision.models import resnet as tv_resnet

from attention_core import (
    AdditiveAttention,
    LearnedPositionalEncoding,
    TransformerDecoder,
    TransformerEncoder,
    capture_attention,
    sincos_2d_table,
)

__all__ = [
    "DECODERS",
    "ENCODERS",
    "Captioner",
    "CaptionerConfig",
    "LSTMDecoder",
    "SmallResNetEncoder",
    "TorchvisionResNetEncoder",
    "TransformerCaptionDecoder",
    "ViTEncoder",
    "build_captioner",
    "load_pretrained_encoder",
]

State = dict[str, Any]


def _grid_tokens(x: Tensor) -> tuple[Tensor, tuple[int, int]]:
    """(B, C, h, w) feature map -> (B, h*w, C) tokens with 2-D sin-cos positions added."""
    _, c, h, w = x.shape
    tokens = x.flatten(2).transpose(1, 2)  # (B, N, C)
    pos = sincos_2d_table(c, (h, w)).to(device=x.device, dtype=x.dtype)  # (N, C)
    return tokens + pos, (h, w)


# ---------------------------------------------------------------------------------------- encoders


class SmallResNetEncoder(nn.Module):
    """A narrow ResNet from torchvision's ``BasicBlock`` for small images trained from scratch.

    ``stem_stride`` 1 keeps small glyphs; each of ``stages`` halves the grid and doubles the width.
    """

    def __init__(self, width: int = 16, stages: int = 3, stem_stride: int = 1):
        super().__init__()
        if width % 4 != 0:
            raise ValueError(f"encoder_width must be divisible by 4 (2-D positions), got {width}")
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=stem_stride, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        blocks: list[nn.Module] = []
        cin = width
        for i in range(stages):
            cout = width * 2 ** max(0, i)
            down = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=2, bias=False), nn.BatchNorm2d(cout)
            )
            blocks.append(tv_resnet.BasicBlock(cin, cout, stride=2, downsample=down))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.out_dim = cin

    def forward(self, images: Tensor) -> tuple[Tensor, tuple[int, int]]:
        return _grid_tokens(self.blocks(self.stem(images)))  # (B, N, C)


_TV_STAGE_DIMS = {
    "resnet18": (64, 128, 256, 512),
    "resnet34": (64, 128, 256, 512),
    "resnet50": (256, 512, 1024, 2048),
    "resnet101": (256, 512, 1024, 2048),
}


class TorchvisionResNetEncoder(nn.Module):
    """A torchvision ResNet cut after ``stage`` (1-4): stage 3 of a 224 image is a 14x14 grid."""

    def __init__(self, arch: str = "resnet18", stage: int = 4):
        super().__init__()
        if arch not in _TV_STAGE_DIMS:
            raise ValueError(f"unknown ResNet {arch!r}; choose one of {sorted(_TV_STAGE_DIMS)}")
        if not 1 <= stage <= 4:
            raise ValueError(f"encoder_stage must be 1..4, got {stage}")
        net = getattr(tv_resnet, arch)(weights=None)
        self.arch = arch
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layers = nn.Sequential(*[getattr(net, f"layer{i}") for i in range(1, stage + 1)])
        self.out_dim = _TV_STAGE_DIMS[arch][stage - 1]

    def forward(self, images: Tensor) -> tuple[Tensor, tuple[int, int]]:
        return _grid_tokens(self.layers(self.stem(images)))  # (B, N, C)


class ViTEncoder(nn.Module):
    """Patch embedding + ``attention_core.TransformerEncoder``; every patch is a grid cell."""

    def __init__(self, dim: int = 128, depth: int = 4, num_heads: int = 4, patch_size: int = 8):
        super().__init__()
        if dim % 4 != 0:
            raise ValueError(f"vit_dim must be divisible by 4 (2-D positions), got {dim}")
        self.patch_embed = nn.Conv2d(3, dim, patch_size, stride=patch_size)
        self.encoder = TransformerEncoder(dim, depth, num_heads)
        self.out_dim = dim

    def forward(self, images: Tensor) -> tuple[Tensor, tuple[int, int]]:
        tokens, grid = _grid_tokens(self.patch_embed(images))  # (B, N, dim)
        return self.encoder(tokens), grid


def _pretrained_weights(arch: str) -> Any:
    from torchvision import models

    enum = getattr(
        models,
        {
            "resnet18": "ResNet18_Weights",
            "resnet34": "ResNet34_Weights",
            "resnet50": "ResNet50_Weights",
            "resnet101": "ResNet101_Weights",
        }[arch],
    )
    return enum.IMAGENET1K_V1


def _probe(host: str, timeout: float) -> None:
    """Open and close a connection to ``host``:443; name lookup included, bounded by ``timeout``."""
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        pool.submit(socket.create_connection, (host, 443), timeout).result(timeout).close()
    except FutureTimeout:
        raise OSError(f"no answer from {host} within {timeout:g} s") from None
    finally:
        pool.shutdown(wait=False)


def load_pretrained_encoder(encoder: nn.Module, timeout: float = 10.0) -> None:
    """Load torchvision's ImageNet weights into a ``TorchvisionResNetEncoder``.

    Offline, this fails within ``timeout`` seconds with a message saying where to put the file,
    instead of hanging in a download; with ``ATTNLAB_OFFLINE=1`` it fails at once unless the file
    is in torch's cache.
    """
    if not isinstance(encoder, TorchvisionResNetEncoder):
        raise ValueError(
            "--model.encoder_pretrained true needs a torchvision ResNet encoder "
            f"(resnet18/34/50/101), not {type(encoder).__name__}"
        )
    weights = _pretrained_weights(encoder.arch)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name
    if not cached.is_file() and os.environ.get("ATTNLAB_OFFLINE", "") not in ("", "0"):
        raise RuntimeError(
            f"ATTNLAB_OFFLINE is set and the ImageNet weights for {encoder.arch} are not cached; "
            f"put {cached.name} in {cached.parent}, or use --model.encoder_pretrained false"
        )
    if not cached.is_file():
        host = urlparse(weights.url).hostname or ""
        try:
            _probe(host, timeout)
        except OSError as exc:
            raise RuntimeError(
                f"cannot download ImageNet weights for {encoder.arch} from {weights.url} ({exc}); "
                f"put {cached.name} in {cached.parent} by hand, or train from scratch with "
                "--model.encoder_pretrained false"
            ) from None
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        # weights_only: a file planted in the cache under this name must not run code.
        state = weights.get_state_dict(progress=False, weights_only=True)
    except pickle.UnpicklingError:
        raise RuntimeError(
            f"refusing to load {cached}: it holds objects other than tensors; delete it and "
            "let it download again, or use --model.encoder_pretrained false"
        ) from None
    except OSError as exc:
        raise RuntimeError(
            f"download of ImageNet weights for {encoder.arch} from {weights.url} failed ({exc}); "
            f"put {cached.name} in {cached.parent} by hand or use --model.encoder_pretrained false"
        ) from None
    finally:
        socket.setdefaulttimeout(previous)
    ours = {}
    for key, value in state.items():
        if key.startswith(("conv1.", "bn1.")):
            idx = "0" if key.startswith("conv1.") else "1"
            ours[f"stem.{idx}.{key.split('.', 1)[1]}"] = value
        elif key.startswith("layer"):
            layer = int(key[5]) - 1
            if layer < len(encoder.layers):
                ours[f"layers.{layer}.{key.split('.', 1)[1]}"] = value
    encoder.load_state_dict(ours, strict=True)


# ---------------------------------------------------------------------------------------- decoders


class LSTMDecoder(nn.Module):
    """Show, Attend and Tell's LSTM; with ``attend=False`` the context is the mean feature.

    Words come from the paper's deep output layer (Xu et al. 2015, eq. 7),
    ``L_o(E y_{t-1} + L_h h_t + L_z z_t)``: the context ``z_t`` reaches the logits directly as
    well as through the LSTM. Without that path an encoder trained from scratch gets its signal
    only through the gates and the decoder learns the grammar but not the image (the digit-scene
    benchmark showed word accuracy at chance after 1,400 steps; with it, the digits are learned).

    The grid features first pass a linear map and a LayerNorm, as the Transformer decoder
    projects its memory: a from-scratch encoder's BatchNorm shifts its features between batch
    statistics (training) and running statistics (evaluation), and the LSTM's saturating gates
    turned that shift into a validation loss several times the training loss.
    """

    def __init__(
        self,
        vocab_size: int,
        feature_dim: int,
        embed_dim: int = 64,
        hidden_dim: int = 256,
        attention_dim: int = 128,
        dropout: float = 0.3,
        attend: bool = True,
    ):
        super().__init__()
        self.attend = attend
        self.feature_proj = nn.Sequential(
            nn.Linear(feature_dim, feature_dim), nn.LayerNorm(feature_dim)
        )
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.attention = (
            AdditiveAttention(hidden_dim, feature_dim, attention_dim) if attend else None
        )
        self.gate = nn.Linear(hidden_dim, feature_dim) if attend else None  # f_beta
        self.init_h = nn.Linear(feature_dim, hidden_dim)
        self.init_c = nn.Linear(feature_dim, hidden_dim)
        self.cell = nn.LSTMCell(embed_dim + feature_dim, hidden_dim)
        self.dropout = nn.Dropout(dropout)
        self.out_h = nn.Linear(hidden_dim, embed_dim)  # L_h
        self.out_z = nn.Linear(feature_dim, embed_dim, bias=False)  # L_z
        self.head = nn.Linear(embed_dim, vocab_size)  # L_o

    def init_state(self, features: Tensor, use_cache: bool = True) -> State:
        features = self.feature_proj(features)  # (B, N, D)
        mean = features.mean(1)  # (B, D)
        state: State = {"h": torch.tanh(self.init_h(mean)), "c": torch.tanh(self.init_c(mean))}
        state["features"] = features
        if self.attention is not None:
            state["keys"] = self.attention.project_keys(features)  # (B, N, A)
        else:
            state["mean"] = mean
        return state

    def step(
        self, tokens: Tensor, state: State, need_attention: bool = True
    ) -> tuple[Tensor, Tensor | None, State]:
        """tokens (B,) -> logits (B, V), attention (B, N) or None, the next state."""
        h, c = state["h"], state["c"]
        if self.attention is not None and self.gate is not None:
            context, alpha = self.attention(h, state["features"], projected_keys=state["keys"])
            context = torch.sigmoid(self.gate(h)) * context  # (B, D), gated
        else:
            context, alpha = state["mean"], None
        embedded = self.embed(tokens)  # (B, E)
        h, c = self.cell(torch.cat([embedded, context], dim=-1), (h, c))
        deep = embedded + self.out_h(h) + self.out_z(context)  # (B, E), deep output layer
        logits = self.head(self.dropout(deep))  # (B, V)
        return logits, alpha, {**state, "h": h, "c": c}

    def reorder(self, state: State, index: Tensor) -> State:
        return {k: v.index_select(0, index) for k, v in state.items()}

    def forward(self, features: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor | None]:
        """Teacher forcing: features (B, N, D), tokens (B, T) -> logits (B, T, V), alphas (B, T, N)."""
        state = self.init_state(features)
        logits, alphas = [], []
        for t in range(tokens.shape[1]):
            step_logits, alpha, state = self.step(tokens[:, t], state)
            logits.append(step_logits)
            if alpha is not None:
                alphas.append(alpha)
        return torch.stack(logits, 1), (torch.stack(alphas, 1) if alphas else None)


class TransformerCaptionDecoder(nn.Module):
    """Token embedding + learned positions + ``attention_core.TransformerDecoder`` + a head."""

    def __init__(
        self,
        vocab_size: int,
        feature_dim: int,
        dim: int = 128,
        depth: int = 2,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.1,
        max_len: int = 64,
    ):
        super().__init__()
        self.max_len = max_len
        self.embed = nn.Embedding(vocab_size, dim)
        self.pos = LearnedPositionalEncoding(dim, max_len, dropout=dropout)
        self.decoder = TransformerDecoder(
            dim, depth, num_heads, mlp_ratio, memory_dim=feature_dim, proj_drop=dropout
        )
        self.head = nn.Linear(dim, vocab_size)
        self._cross_name = f"blocks.{depth - 1}.cross_attn"

    def _run(
        self, tokens: Tensor, memory: Tensor, offset: int, cache: Any, need_attention: bool
    ) -> tuple[Tensor, Tensor | None]:
        x = self.pos(self.embed(tokens), offset=offset)  # (B, L, dim)
        if not need_attention:
            return self.decoder(x, memory, causal=True, kv_cache=cache), None
        with capture_attention(self.decoder, layers=[self._cross_name]) as maps:
            h = self.decoder(x, memory, causal=True, kv_cache=cache)
        return h, maps[self._cross_name].mean(1)  # (B, L, N): last layer, heads averaged

    def forward(self, features: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor | None]:
        """Teacher forcing: features (B, N, D), tokens (B, T) -> logits (B, T, V), no alphas."""
        h, _ = self._run(tokens, features, 0, None, need_attention=False)
        return self.head(h), None

    def init_state(self, features: Tensor, use_cache: bool = True) -> State:
        b = features.shape[0]
        state: State = {"memory": features, "t": 0}
        if use_cache:
            state["cache"] = self.decoder.new_cache(self.max_len)
        else:
            state["tokens"] = features.new_zeros(b, 0, dtype=torch.long)
        return state

    def step(
        self, tokens: Tensor, state: State, need_attention: bool = True
    ) -> tuple[Tensor, Tensor | None, State]:
        """tokens (B,) -> logits (B, V), cross-attention (B, N) of the last layer, next state."""
        t, memory = state["t"], state["memory"]
        if "cache" in state:
            h, attn = self._run(tokens[:, None], memory, t, state["cache"], need_attention)
            new = {**state, "t": t + 1}
        else:
            seq = torch.cat([state["tokens"], tokens[:, None]], dim=1)  # (B, t+1)
            h, attn = self._run(seq, memory, 0, None, need_attention)
            new = {**state, "t": t + 1, "tokens": seq}
        logits = self.head(h[:, -1])  # (B, V)
        return logits, (attn[:, -1] if attn is not None else None), new

    def reorder(self, state: State, index: Tensor) -> State:
        new = {**state, "memory": state["memory"].index_select(0, index)}
        if "cache" in state:
            for self_cache, cross_cache in state["cache"]:
                self_cache.reorder(index)
                cross_cache.reorder(index)
        else:
            new["tokens"] = state["tokens"].index_select(0, index)
        return new


# ---------------------------------------------------------------------------------------- captioner


@dataclass
class CaptionerConfig:
    """Every knob of a captioner (plain values, so it round-trips through checkpoints)."""

    encoder: str = "small_resnet"  # small_resnet | resnet18 | resnet34 | resnet50 | resnet101 | vit
    encoder_width: int = 16
    encoder_stages: int = 3  # small_resnet: stages after the stem; torchvision: last stage kept
    encoder_stem_stride: int = 1
    vit_dim: int = 128
    vit_depth: int = 4
    vit_heads: int = 4
    patch_size: int = 8
    decoder: str = "lstm_attention"  # lstm_attention | transformer | lstm_pooled
    embed_dim: int = 64
    hidden_dim: int = 256
    attention_dim: int = 128
    dec_dim: int = 128
    dec_depth: int = 2
    dec_heads: int = 4
    dropout: float = 0.3
    max_len: int = 30

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CaptionerConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


def _small(cfg: CaptionerConfig) -> nn.Module:
    return SmallResNetEncoder(cfg.encoder_width, cfg.encoder_stages, cfg.encoder_stem_stride)


def _vit(cfg: CaptionerConfig) -> nn.Module:
    return ViTEncoder(cfg.vit_dim, cfg.vit_depth, cfg.vit_heads, cfg.patch_size)


def _tv(arch: str) -> Any:
    return lambda cfg: TorchvisionResNetEncoder(arch, min(cfg.encoder_stages, 4))


ENCODERS: dict[str, Any] = {
    "small_resnet": _small,
    "vit": _vit,
    **{arch: _tv(arch) for arch in _TV_STAGE_DIMS},
}


def _lstm(attend: bool) -> Any:
    def build(cfg: CaptionerConfig, vocab_size: int, feature_dim: int) -> nn.Module:
        return LSTMDecoder(
            vocab_size,
            feature_dim,
            cfg.embed_dim,
            cfg.hidden_dim,
            cfg.attention_dim,
            cfg.dropout,
            attend,
        )

    return build


def _transformer(cfg: CaptionerConfig, vocab_size: int, feature_dim: int) -> nn.Module:
    return TransformerCaptionDecoder(
        vocab_size,
        feature_dim,
        cfg.dec_dim,
        cfg.dec_depth,
        cfg.dec_heads,
        dropout=cfg.dropout,
        max_len=cfg.max_len + 2,
    )


DECODERS: dict[str, Any] = {
    "lstm_attention": _lstm(True),
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


def build_captioner(cfg: CaptionerConfig, vocab_size: int) -> Captioner:
    if cfg.encoder not in ENCODERS:
        raise ValueError(f"unknown encoder {cfg.encoder!r}; choose one of {sorted(ENCODERS)}")
    if cfg.decoder not in DECODERS:
        raise ValueError(f"unknown decoder {cfg.decoder!r}; choose one of {sorted(DECODERS)}")
    encoder = ENCODERS[cfg.encoder](cfg)
    decoder = DECODERS[cfg.decoder](cfg, vocab_size, encoder.out_dim)
    return Captioner(encoder, decoder)
