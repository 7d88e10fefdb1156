"""The audio LightningModule: AST or CNN on log-mel dB, with SpecAugment during training.

Training, metrics (``val/acc``, ``test/acc``), ``test_report.json``, the confusion matrix and the
top-k ``predict`` output are the layer's ``ClassifierModule``'s. ``n_mels``/``n_frames``/
``num_classes`` must match the data (``configure_from_data`` checks them with a clear error) and
the data's feature mean and std go into the model's buffers there, so checkpoints and exported
models normalize by themselves.

``attention`` (``--model.attention.*``) is the AST's self-attention; the CNN has none, and
setting it there is an error. ``--model.backend`` and ``--model.backend_kwargs`` are the old
spelling: they warn once and map into ``attention``.
"""

from __future__ import annotations

import warnings
from dataclasses import fields
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from attention_core import AttentionConfig
from attnlab.classification import ClassifierModule

from .features import SpecAugment
from .model import create_model

__all__ = ["AudioModule"]

Batch = tuple[Tensor, Tensor]


class AudioModule(ClassifierModule):
    """``arch`` "ast" (Audio Spectrogram Transformer) or "cnn" (the baseline) on log-mel dB."""

    app_name = "audio"
    # Logged as val/acc and test/acc; runs monitor val/acc.
    accuracy_metrics: ClassVar[dict[str, int]] = {"acc": 1}

    def __init__(
        self,
        arch: str = "ast",
        n_mels: int = 40,
        n_frames: int = 63,
        num_classes: int = 10,
        patch_size: int | list[int] = 8,
        patch_stride: int | list[int] = 6,
        embed_dim: int = 96,
        depth: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
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
    ):
        super().__init__()
        self.save_hyperparameters()
        cfg = AttentionConfig.coerce(attention)
        if backend is not None or backend_kwargs is not None:
            cfg = attention_from_old_flags(cfg, backend, backend_kwargs)
        for old in ("backend", "backend_kwargs"):  # saved as `attention` from now on
            self.hparams.pop(old, None)
        common: dict[str, Any] = dict(n_mels=n_mels, n_frames=n_frames, num_classes=num_classes)
        if arch == "ast":
            self.model: nn.Module = create_model(
                "ast", **common, patch_size=patch_size, patch_stride=patch_stride,
                embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio,
                drop_rate=drop_rate, attn_drop_rate=attn_drop_rate,
                drop_path_rate=drop_path_rate, attention=cfg,
            )  # fmt: skip
            cfg = self.model.attention  # resolved: the model's defaults filled in
        else:
            if cfg != AttentionConfig():
                raise ValueError(
                    f"--model.attention: the CNN baseline (--model.arch {arch}) has no attention "
                    f"(got {_changed(cfg)}); drop the --model.attention settings or use "
                    "--model.arch ast"
                )
            self.model = create_model(
                arch, **common, channels=list(cnn_channels or [32, 64, 128]), drop_rate=drop_rate
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


_OPTION_FIELDS = {f.name for f in fields(AttentionConfig)} - {"backend", "pos", "options"}


def attention_from_old_flags(
    cfg: AttentionConfig, backend: str | None, backend_kwargs: dict[str, Any] | None
) -> AttentionConfig:
    """``--model.backend``/``--model.backend_kwargs`` (and old checkpoints' hyper-parameters)
    mapped into ``attention``, with one FutureWarning naming the new flags."""
    given = [f"--model.{n}" for n, v in (("backend", backend), ("backend_kwargs", backend_kwargs))
             if v is not None]  # fmt: skip
    warnings.warn(
        f"{' and '.join(given)} will be removed: use --model.attention.backend NAME and "
        "--model.attention.<option> (window, feature_map, proj_dim, ...)",
        FutureWarning,
        stacklevel=3,
    )
    settings = cfg.to_dict()
    if backend is not None:
        settings["backend"] = "sdpa" if backend == "auto" else backend
    options = dict(settings.get("options") or {})
    for key, value in dict(backend_kwargs or {}).items():
        if key == "seq_len":  # linformer's: the model fills it in
            continue
        if key in _OPTION_FIELDS:
            settings[key] = value
        else:
            options[key] = value
    settings["options"] = options
    return AttentionConfig.coerce(settings)


def _changed(cfg: AttentionConfig) -> str:
    """The settings of ``cfg`` that differ from the default, as ``name=value`` pairs."""
    default = AttentionConfig().to_dict()
    return ", ".join(f"{k}={v!r}" for k, v in cfg.to_dict().items() if v != default[k])
