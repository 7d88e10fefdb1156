"""Augmentation of whole batches of in-memory images.

The per-image torchvision pipeline (``v2.RandomCrop`` with padding, ``v2.RandomHorizontalFlip``,
``v2.ToDtype``, ``v2.Normalize``) costs about 0.14 ms an image on one CPU thread: a sixth of a
training step of a small CCT on Fashion-MNIST. ``BatchAugment`` draws the same random crop and
flip for each image of a batch but makes them with a handful of tensor operations on the whole
batch, so the data costs almost nothing next to the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


class BatchAugment:
    """uint8 images (B, C, H, W) -> normalized float32 (B, C, H, W).

    ``crop_padding`` p > 0: each image is zero-padded by p on every side (before normalization,
    as ``v2.RandomCrop(size, padding=p)`` pads uint8 images) and an H x W window is cut at an
    offset drawn uniformly from the (2p + 1)^2 possible ones. ``hflip``: each image is mirrored
    with probability 1/2. Offsets and flips come from torch's global generator, so a seeded run
    repeats them.
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        crop_padding: int = 0,
        hflip: bool = False,
    ):
        if crop_padding < 0:
            raise ValueError(f"--data.random_crop must be >= 0, got {crop_padding}")
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.crop_padding = crop_padding
        self.hflip = hflip

    @property
    def random(self) -> bool:
        return self.crop_padding > 0 or self.hflip

    def __call__(self, images: Tensor) -> Tensor:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(
                f"BatchAugment takes uint8 images (B, C, H, W), got {images.dtype} "
                f"{tuple(images.shape)}"
            )
        x = images
        if self.crop_padding:
            x = self._random_crop(x, self.crop_padding)
        if self.hflip:
            flip = torch.rand(x.shape[0]) < 0.5  # (B,)
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        x = x.to(torch.float32).div_(255.0)
        return x.sub_(self.mean).div_(self.std)

    @staticmethod
    def _random_crop(x: Tensor, pad: int) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W): each image's window of the zero-padded batch."""
        batch, _, height, width = x.shape
        padded = F.pad(x, (pad, pad, pad, pad))  # (B, C, H + 2p, W + 2p)
        top = torch.randint(0, 2 * pad + 1, (batch,))
        left = torch.randint(0, 2 * pad + 1, (batch,))
        rows = top[:, None] + torch.arange(height)  # (B, H)
        cols = left[:, None] + torch.arange(width)  # (B, W)
        index = torch.arange(batch)[:, None, None]  # (B, 1, 1)
        # Advanced indexing on the (B, H', W', C) view picks (B, H, W, C).
        windows = padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]]
        return windows.permute(0, 3, 1, 2).contiguous()
