"""Image encoders: each returns ``(B, N, D)`` features of an ``(h, w)`` grid with 2-D sin-cos
positions added, and its width as ``out_dim``.

A narrow ResNet from torchvision blocks for small images trained from scratch, torchvision's
ResNets cut after a stage (with ImageNet weights from ``load_pretrained_encoder``), and a ViT
built from ``attention_core`` that takes the captioner's self-attention setting.
"""

from __future__ import annotations

import os
import pickle
import socket
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import Tensor, nn
from torchvision.models import resnet as tv_resnet

from attention_core import AttentionConfig, TransformerEncoder, sincos_2d_table

__all__ = [
    "SmallResNetEncoder",
    "TorchvisionResNetEncoder",
    "ViTEncoder",
    "load_pretrained_encoder",
]


def _grid_tokens(x: Tensor) -> tuple[Tensor, tuple[int, int]]:
    """(B, C, h, w) feature map -> (B, h*w, C) tokens with 2-D sin-cos positions added."""
    _, c, h, w = x.shape
    tokens = x.flatten(2).transpose(1, 2)  # (B, N, C)
    pos = sincos_2d_table(c, (h, w)).to(device=x.device, dtype=x.dtype)  # (N, C)
    return tokens + pos, (h, w)


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
