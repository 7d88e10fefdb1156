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

The attention setting (``attention_core.AttentionConfig``) reaches every dot-product attention:
``CaptionerConfig.attention`` is the Transformer decoder's masked self-attention (its backend,
options and position scheme) and the ViT encoder's self-attention (backend and options; the grid
keeps its 2-D sin-cos positions); ``CaptionerConfig.cross_attention`` is the decoder's
cross-attention to the grid. The LSTM decoders' additive attention is another module and takes
neither. ``resolve_attention`` fills in the defaults and refuses what the model cannot do.
"""

from __future__ import annotations

import os
import pickle
import socket
import warnings
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import Tensor, nn
from torchvision.models import resnet as tv_resnet

from attention_core import (
    AdditiveAttention,
    AttentionConfig,
    TransformerDecoder,
    TransformerEncoder,
    build_position,
    capture_attention,
    get_backend,
    sincos_2d_table,
)

__all__ = [
    "DECODERS",
    "DECODER_POSITIONS",
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
    "resolve_attention",
]

# The Transformer decoder's position schemes (1-D: words in a sentence); the first is the default.
DECODER_POSITIONS = ("learned", "none", "sincos", "rope", "alibi")

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
    """Patch embedding + ``attention_core.TransformerEncoder``; every patch is a grid cell.

    ``attention`` sets the blocks' backend and options (its ``pos`` is the decoder's: the grid
    always gets 2-D sin-cos positions); ``image_size`` gives the token count a backend may need
    (linformer's ``seq_len``).
    """

    def __init__(
        self,
        dim: int = 128,
        depth: int = 4,
        num_heads: int = 4,
        patch_size: int = 8,
        attention: AttentionConfig | None = None,
        image_size: int | None = None,
    ):
        super().__init__()
        if dim % 4 != 0:
            raise ValueError(f"vit_dim must be divisible by 4 (2-D positions), got {dim}")
        self.patch_embed = nn.Conv2d(3, dim, patch_size, stride=patch_size)
        tokens = (image_size // patch_size) ** 2 if image_size else None
        self.encoder = TransformerEncoder(
            dim, depth, num_heads, attention=attention, seq_len=tokens
        )
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
    """Token embedding + positions + ``attention_core.TransformerDecoder`` + a head.

    ``attention`` is the masked self-attention's setting, resolved (``pos`` one of
    ``DECODER_POSITIONS``: a learned or sin-cos table added to the embeddings, RoPE or ALiBi
    inside the attention, or none); ``cross_attention`` the cross-attention's.
    """

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
        attention: AttentionConfig | None = None,
        cross_attention: AttentionConfig | None = None,
    ):
        super().__init__()
        attention = attention or AttentionConfig(pos=DECODER_POSITIONS[0])
        self.max_len = max_len
        self.embed = nn.Embedding(vocab_size, dim)
        # `pos` keeps its name for the learned table, so earlier checkpoints load.
        self.pos, attn_pos = build_position(
            attention.pos or DECODER_POSITIONS[0], dim=dim, num_heads=num_heads, max_len=max_len
        )
        self.pos_drop = nn.Dropout(dropout)
        self.decoder = TransformerDecoder(
            dim,
            depth,
            num_heads,
            mlp_ratio,
            memory_dim=feature_dim,
            proj_drop=dropout,
            pos=attn_pos,
            attention=attention,
            cross_attention=cross_attention,
        )
        self.head = nn.Linear(dim, vocab_size)
        self._cross_name = f"blocks.{depth - 1}.cross_attn"

    def _run(
        self, tokens: Tensor, memory: Tensor, offset: int, cache: Any, need_attention: bool
    ) -> tuple[Tensor, Tensor | None]:
        x = self.embed(tokens)  # (B, L, dim)
        if self.pos is not None:
            x = self.pos(x, offset=offset)
        elif offset + x.shape[1] > self.max_len:
            raise ValueError(
                f"{offset + x.shape[1]} tokens exceed the decoder's max_len={self.max_len}"
            )
        x = self.pos_drop(x)
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
    decoder: str = "lstm_attention"  # lstm_attention | transformer | lstm_pooled
    embed_dim: int = 64
    hidden_dim: int = 256
    attention_dim: int = 128
    dec_dim: int = 128
    dec_depth: int = 2
    dec_heads: int = 4
    dropout: float = 0.3
    max_len: int = 30
    # As given (None fields: the model's defaults); resolve_attention fills them in.
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    cross_attention: AttentionConfig = field(default_factory=AttentionConfig)

    def __post_init__(self) -> None:
        self.attention = AttentionConfig.coerce(self.attention)
        self.cross_attention = AttentionConfig.coerce(self.cross_attention)

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
                    if cfg.decoder == "lstm_attention"
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
            cfg.embed_dim,
            cfg.hidden_dim,
            cfg.attention_dim,
            cfg.dropout,
            attend,
        )

    return build


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
