"""The ViT LightningModule: the training recipe on top of the shared classifier.

Metrics (top-1/top-5), the per-class ``test_report.json``, the confusion matrix and the top-k
``predict`` output come from ``attnlab.classification.ClassifierModule``, as for every classifier.
Recipe: AdamW with warmup + cosine (from ``AttnlabModule``), label smoothing, optional timm
Mixup / CutMix (soft targets), optional weight EMA (evaluation, figures and export then use the
averaged weights). ``backbone="timm"`` trains timm's own ``VisionTransformer`` of the same
configuration with the same recipe, as a reference.

``attention`` (``--model.attention.backend local --model.attention.window 8
--model.attention.pos rope2d``) sets every self-attention layer of our models; the old flags
``--model.backend``, ``--model.backend_kwargs`` and ``--model.pos_embed`` still work, with a
``FutureWarning`` naming the new one.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import fields
from typing import Any

import torch
from torch import Tensor, nn

from attention_core import AttentionConfig, MultiHeadAttention
from attnlab.classification import ClassifierModule

from .model import VisionTransformer, preset_config, timm_vit

__all__ = ["ViTModule"]

Batch = tuple[Tensor, Tensor]

# The old position names of --model.pos_embed, as --model.attention.pos names them.
_OLD_POS = {"learn": "learned", "sincos": "sincos2d", "none": "none"}
# Backend options AttentionConfig has as fields; the rest of an old backend_kwargs goes to options.
_OPTION_FIELDS = frozenset(f.name for f in fields(AttentionConfig)) - {"backend", "pos", "options"}


def _deprecated(old: str, new: str) -> None:
    warnings.warn(
        f"--model.{old} is deprecated; use {new} (it is mapped there for now)",
        FutureWarning,
        stacklevel=3,
    )


def merge_old_flags(
    attention: AttentionConfig | Mapping[str, Any] | str | None,
    backend: str | None = None,
    backend_kwargs: Mapping[str, Any] | None = None,
    pos_embed: str | None = None,
) -> AttentionConfig:
    """``attention`` with the old flags mapped into it (each warns once); a flag that contradicts
    a ``--model.attention.*`` value given too is an error."""
    cfg = AttentionConfig.coerce(attention)
    values = cfg.to_dict()
    default = AttentionConfig().to_dict()
    mapped: dict[str, Any] = {}
    if backend is not None:
        _deprecated("backend", "--model.attention.backend")
        mapped["backend"] = "sdpa" if backend == "auto" else backend
    if backend_kwargs:
        _deprecated("backend_kwargs", "--model.attention.<option> (window, feature_map, ...)")
        options = dict(values["options"])
        for key, value in backend_kwargs.items():
            if key in _OPTION_FIELDS:
                mapped[key] = value
            else:
                options[key] = value
        if options != values["options"]:
            mapped["options"] = options
    if pos_embed is not None:
        _deprecated("pos_embed", "--model.attention.pos")
        if pos_embed not in _OLD_POS:
            raise ValueError(
                f"--model.pos_embed must be one of {list(_OLD_POS)}, got {pos_embed!r}"
            )
        mapped["pos"] = _OLD_POS[pos_embed]
    for key, value in mapped.items():
        if key != "options" and values[key] not in (default[key], value):
            raise ValueError(
                f"--model.attention.{key}={values[key]!r} and the old flag's {value!r} disagree; "
                f"give only --model.attention.{key}"
            )
        values[key] = value
    return AttentionConfig.coerce(values)


class ViTModule(ClassifierModule):
    """A ViT preset plus per-field overrides (None keeps the preset's value), and the attention
    setting of every self-attention layer (``attention``).

    ``img_size``, ``in_chans`` and ``num_classes`` must match the data; ``configure_from_data``
    checks them. ``backend``, ``backend_kwargs`` and ``pos_embed`` are the old spellings of
    ``attention`` (deprecated; kept so old command lines and checkpoints work).
    """

    app_name = "vit"

    def __init__(
        self,
        preset: str = "vit_digits_8",
        img_size: int | None = None,
        patch_size: int | None = None,
        in_chans: int | None = None,
        num_classes: int | None = None,
        embed_dim: int | None = None,
        depth: int | None = None,
        num_heads: int | None = None,
        mlp_ratio: float | None = None,
        class_token: bool | None = None,
        global_pool: str | None = None,
        tokenizer: str | None = None,
        lsa: bool | None = None,
        drop_rate: float | None = None,
        attn_drop_rate: float | None = None,
        drop_path_rate: float | None = None,
        init_values: float | None = None,
        attention: AttentionConfig = AttentionConfig(),
        backbone: str = "attnlab",
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_fraction: float = 0.05,
        min_lr_ratio: float = 0.01,
        label_smoothing: float = 0.1,
        mixup: float = 0.0,
        cutmix: float = 0.0,
        ema_decay: float = 0.0,
        backend: str | None = None,
        backend_kwargs: dict[str, Any] | None = None,
        pos_embed: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        attention = merge_old_flags(attention, backend, backend_kwargs, pos_embed)
        # Checkpoints are loaded weights-only: plain data, the old flags folded into attention.
        self.hparams["attention"] = attention.to_dict()
        for old in ("backend", "backend_kwargs", "pos_embed"):
            self.hparams[old] = None
        overrides = {
            k: v
            for k, v in dict(
                img_size=img_size,
                patch_size=patch_size,
                in_chans=in_chans,
                num_classes=num_classes,
                embed_dim=embed_dim,
                depth=depth,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                class_token=class_token,
                global_pool=global_pool,
                tokenizer=tokenizer,
                lsa=lsa,
                drop_rate=drop_rate,
                attn_drop_rate=attn_drop_rate,
                drop_path_rate=drop_path_rate,
                init_values=init_values,
                attention=attention,
            ).items()
            if v is not None
        }
        self.config = preset_config(preset, **overrides)
        cfg = self.config
        if backbone == "attnlab":
            self.model: nn.Module = VisionTransformer(cfg)
        elif backbone == "timm":
            self.model = timm_vit(cfg)
            self.probes = self._make_probes(self.model)
        else:
            raise ValueError(f"backbone must be 'attnlab' or 'timm', got {backbone!r}")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        if ema_decay > 0:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(
                self.model, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True
            )
            self.ema.requires_grad_(False)
        self.mixer = self._make_mixer(mixup, cutmix, label_smoothing, cfg.num_classes)
        self.init_classifier(cfg.num_classes, label_smoothing=label_smoothing)

    # ------------------------------------------------------------------ construction helpers
    @staticmethod
    def _make_mixer(mixup: float, cutmix: float, smoothing: float, num_classes: int) -> Any:
        if mixup <= 0 and cutmix <= 0:
            return None
        from timm.data import Mixup

        return Mixup(
            mixup_alpha=mixup,
            cutmix_alpha=cutmix,
            label_smoothing=smoothing,
            num_classes=num_classes,
        )

    @staticmethod
    def _make_probes(model: nn.Module) -> nn.ModuleList:
        """One attention_core layer per timm block, sharing that block's ``qkv`` and ``proj``, so
        ``capture_attention`` can draw timm's attention too (see ``figure_forward``)."""
        probes = nn.ModuleList()
        for block in model.blocks:  # type: ignore[union-attr]
            attn = block.attn
            probe = MultiHeadAttention(attn.qkv.in_features, attn.num_heads)
            probe.qkv, probe.proj = attn.qkv, attn.proj  # shared, not copied
            probes.append(probe)
        return probes

    # ------------------------------------------------------------------ model access
    @property
    def eval_model(self) -> nn.Module:
        """The weights used for evaluation, figures and export (the EMA copy when enabled)."""
        return self.ema.module if hasattr(self, "ema") else self.model

    @property
    def attention_prefix(self) -> str:
        """Name prefix of the attention layers that ``figure_forward`` runs."""
        if hasattr(self, "probes"):
            return "probes."
        return "ema.module." if hasattr(self, "ema") else "model."

    def forward(self, x: Tensor) -> Tensor:
        return self.eval_model(x) if not self.training else self.model(x)

    # ------------------------------------------------------------------ data
    def configure_from_data(self, datamodule: Any) -> None:
        """Check that the model fits the images (size, channels), then take the data's class
        names (``ClassifierModule``: a different class count is an error)."""
        dm = datamodule
        cfg = self.config
        problems = []
        if hasattr(dm, "size") and dm.size != cfg.img_size:
            problems.append(
                f"images are {dm.size}x{dm.size} but --model.img_size is {cfg.img_size}"
            )
        if hasattr(dm, "in_chans") and dm.in_chans != cfg.in_chans:
            problems.append(
                f"images have {dm.in_chans} channel(s) but --model.in_chans is {cfg.in_chans}"
            )
        if problems:
            raise ValueError(
                f"model and data disagree: {'; '.join(problems)}; set the --model.* values to match "
                "the data (or --data.image_size / --data.channels)"
            )
        super().configure_from_data(dm)

    # ------------------------------------------------------------------ steps
    def training_logits(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """The training forward pass of the trained (not the EMA) weights, with Mixup / CutMix
        (soft targets) when enabled."""
        target: Tensor = y
        if self.mixer is not None and len(x) % 2 == 0:  # timm's Mixup pairs samples
            x, target = self.mixer(x, y)
        return self.model(x), target

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if hasattr(self, "ema"):
            self.ema.update_parameters(self.model)

    # ------------------------------------------------------------------ services
    def figure_forward(self, batch: Batch) -> Tensor:
        x = batch[0]
        if not hasattr(self, "probes"):
            return self.eval_model(x)
        with self._probe_hooks():
            return self.model(x)

    @contextmanager
    def _probe_hooks(self) -> Iterator[None]:
        """Run each probe on its timm block's attention input, so its map is recorded."""
        handles = []
        for block, probe in zip(self.model.blocks, self.probes):  # type: ignore[union-attr]

            def hook(module: nn.Module, args: tuple[Tensor, ...], probe: nn.Module = probe) -> None:
                probe(args[0])

            handles.append(block.attn.register_forward_pre_hook(hook))
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def example_inputs(self) -> tuple[Tensor, ...]:
        cfg = self.config
        g = torch.Generator().manual_seed(0)
        return (torch.randn(2, cfg.in_chans, cfg.img_size, cfg.img_size, generator=g),)

    def export_model(self) -> nn.Module:
        return self.eval_model
