"""The audio LightningModule: AST or CNN on log-mel dB, with SpecAugment during training.

Training, metrics (``val/acc``, ``test/acc``), ``test_report.json``, the confusion matrix and the
top-k ``predict`` output are the layer's ``ClassifierModule``'s. ``n_mels``/``n_frames``/
``num_classes`` must match the data (``configure_from_data`` checks them with a clear error) and
the data's feature mean and std go into the model's buffers there, so checkpoints and exported
models normalize by themselves.

``attention`` (``--model.attention.*``) is the AST's self-attention; the CNN has none, and
setting it there is an error. ``--model.backend`` and ``--model.backend_kwargs`` are the old
spelling: they warn once and map into ``attention`` (as do the other old names, see
``AudioModule``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from attention_core import AttentionConfig
from attnlab.classification import ClassifierModule
from attnlab.options import attention_from_old_flags, renamed

from .features import SpecAugment
from .model import create_model

__all__ = ["AudioModule"]

Batch = tuple[Tensor, Tensor]


class AudioModule(ClassifierModule):
    """``model`` "ast" (Audio Spectrogram Transformer) or "cnn" (the baseline) on log-mel dB.

    Old names, deprecated but kept so old command lines, configs and checkpoints work
    (``attnlab.options``): ``backend``/``backend_kwargs`` (now in ``attention``), ``arch``
    (``model``), ``embed_dim`` (``dim``), ``drop_rate`` (``dropout``), ``attn_drop_rate``
    (``attn_dropout``)."""

    app_name = "audio"
    # Logged as val/acc and test/acc; runs monitor val/acc.
    accuracy_metrics: ClassVar[dict[str, int]] = {"acc": 1}

    def __init__(
        self,
        model: str = "ast",
        n_mels: int = 40,
        n_frames: int = 63,
        num_classes: int = 10,
        patch_size: int | list[int] = 8,
        patch_stride: int | list[int] = 6,
        dim: int = 96,
        depth: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        drop_path_rate: float = 0.1,
        attention: AttentionConfig = AttentionConfig(),
        cnn_channels: list[int] | None = None,
        freq_masks: int = 2,
        freq_mask_param: int = 8,
        time_masks: int = 2,
        time_mask_param: int = 10,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_fraction: float = 0.05,
        min_lr_ratio: float = 0.01,
        label_smoothing: float = 0.1,
        top_k: int = 3,
        backend: str | None = None,
        backend_kwargs: dict[str, Any] | None = None,
        arch: str | None = None,
        embed_dim: int | None = None,
        drop_rate: float | None = None,
        attn_drop_rate: float | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        cfg = attention_from_old_flags(attention, backend, backend_kwargs)
        model = renamed("arch", arch, "model", model, "ast")
        dim = renamed("embed_dim", embed_dim, "dim", dim, 96)
        dropout = renamed("drop_rate", drop_rate, "dropout", dropout, 0.0)
        attn_dropout = renamed("attn_drop_rate", attn_drop_rate, "attn_dropout", attn_dropout, 0.0)
        # Checkpoints carry the new names only (old ones dropped; `attention` set below).
        self.hparams.update(model=model, dim=dim, dropout=dropout, attn_dropout=attn_dropout)
        for old in ("backend", "backend_kwargs", "arch", "embed_dim", "drop_rate",
                    "attn_drop_rate"):  # fmt: skip
            self.hparams.pop(old, None)
        common: dict[str, Any] = dict(n_mels=n_mels, n_frames=n_frames, num_classes=num_classes)
        if model == "ast":
            self.model: nn.Module = create_model(
                "ast", **common, patch_size=patch_size, patch_stride=patch_stride,
                embed_dim=dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio,
                drop_rate=dropout, attn_drop_rate=attn_dropout,
                drop_path_rate=drop_path_rate, attention=cfg,
            )  # fmt: skip
            cfg = self.model.attention  # resolved: the model's defaults filled in
        else:
            if cfg != AttentionConfig():
                raise ValueError(
                    f"--model.attention: the CNN baseline (--model.model {model}) has no attention "
                    f"(got {_changed(cfg)}); drop the --model.attention settings or use "
                    "--model.model ast"
                )
            self.model = create_model(
                model, **common, channels=list(cnn_channels or [32, 64, 128]), drop_rate=dropout
            )
        # Plain data: checkpoints are loaded weights-only.
        self.hparams["attention"] = cfg.to_dict()
        self.augment = SpecAugment(freq_masks, freq_mask_param, time_masks, time_mask_param)
        self.init_classifier(num_classes, label_smoothing=label_smoothing, top_k=top_k)

    def forward(self, x: Tensor) -> Tensor:
        """dB features (B, 1, n_mels, n_frames) -> logits (B, num_classes)."""
        return self.model(x)

    # ------------------------------------------------------------------ data
    def configure_from_data(self, datamodule: Any) -> None:
        """Check the model's input geometry against the data; take the data's class names (the
        count checked by ``ClassifierModule``) and feature statistics. Both exist once the
        training split is set up, i.e. not for a predict-only datamodule, where the
        checkpoint's names and buffers are the ones that count."""
        dm = datamodule
        if not hasattr(dm, "n_mels"):
            return
        hp = self.hparams
        problems = []
        if dm.n_mels != hp.n_mels:
            problems.append(f"the data has {dm.n_mels} mel bands but --model.n_mels is {hp.n_mels}")
        if dm.n_frames != hp.n_frames:
            problems.append(
                f"the data gives {dm.n_frames} frames per clip but --model.n_frames is {hp.n_frames}"
            )
        if problems:
            raise ValueError(
                f"model and data disagree: {'; '.join(problems)}; set the --model.* values to match "
                "the data (frames = duration * sample_rate // hop_length + 1)"
            )
        if getattr(dm, "feature_stats", None) is None:  # predict: no training split
            return
        super().configure_from_data(dm)
        self.model.normalize.set_stats(*dm.feature_stats)  # type: ignore[union-attr,operator]

    # ------------------------------------------------------------------ training
    def training_logits(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """SpecAugment on the normalized features, then the model's classifier."""
        z = self.augment(self.model.normalize(x))  # type: ignore[operator]
        return self.model.classify(z), y  # type: ignore[operator]

    # ------------------------------------------------------------------ services
    def figure_forward(self, batch: Batch) -> Tensor:
        return self.model(batch[0])

    def example_inputs(self) -> tuple[Tensor, ...]:
        hp = self.hparams
        g = torch.Generator().manual_seed(0)
        return (-40.0 + 20.0 * torch.randn(2, 1, hp.n_mels, hp.n_frames, generator=g),)

    def export_model(self) -> nn.Module:
        return self.model


def _changed(cfg: AttentionConfig) -> str:
    """The settings of ``cfg`` that differ from the default, as ``name=value`` pairs."""
    default = AttentionConfig().to_dict()
    return ", ".join(f"{k}={v!r}" for k, v in cfg.to_dict().items() if v != default[k])
