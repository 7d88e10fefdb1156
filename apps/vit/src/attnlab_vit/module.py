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
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from attention_core import AttentionConfig, MultiHeadAttention
from attnlab.classification import ClassifierModule
from attnlab.options import attention_from_old_flags, renamed

from .model import VisionTransformer, preset_config, timm_vit

__all__ = ["ViTModule"]

Batch = tuple[Tensor, Tensor]


def ema_with_warmup(
    decay: float, power: float = 0.75
) -> Callable[[list[Tensor], list[Tensor], Tensor], None]:
    """An ``AveragedModel`` update whose decay grows with the steps averaged so far:
    ``min(decay, 1 - (1 + step) ** -power)``, the warm-up of timm's ``ModelEmaV3``.

    A fixed 0.9998 averages over ~5,000 steps, so a run shorter than that evaluates weights
    close to the initial ones. Warmed up, the average spans about ``(1 + step) ** power`` recent
    steps (~150 after 800 steps, ~4,500 after 80,000), so its reach scales with the run's length
    and reaches ``decay`` only in runs long enough for it.
    """

    @torch.no_grad()
    def update(averaged: list[Tensor], current: list[Tensor], num_averaged: Tensor) -> None:
        step = int(num_averaged)
        beta = min(decay, 1.0 - (1.0 + step) ** -power)
        if averaged and (averaged[0].is_floating_point() or averaged[0].is_complex()):
            torch._foreach_lerp_(averaged, current, 1.0 - beta)
        else:  # integer buffers (a batch-norm counter): take the current value
            for a, c in zip(averaged, current, strict=True):
                a.copy_(c)

    return update


# The old position names of --model.pos_embed, as --model.attention.pos names them.
_OLD_POS = {"learn": "learned", "sincos": "sincos2d", "none": "none"}


def merge_old_flags(
    attention: AttentionConfig | Mapping[str, Any] | str | None,
    backend: str | None = None,
    backend_kwargs: Mapping[str, Any] | None = None,
    pos_embed: str | None = None,
) -> AttentionConfig:
    """``attention`` with the old flags mapped into it (each warns once); a flag that contradicts
    a ``--model.attention.*`` value given too is an error."""
    pos = None
    if pos_embed is not None:
        if pos_embed not in _OLD_POS:
            raise ValueError(
                f"--model.pos_embed must be one of {list(_OLD_POS)}, got {pos_embed!r}"
            )
        warnings.warn(
            "--model.pos_embed is deprecated; use --model.attention.pos (mapped there for now)",
            FutureWarning,
            stacklevel=2,
        )
        pos = _OLD_POS[pos_embed]
    return attention_from_old_flags(attention, backend, backend_kwargs, pos)


class ViTModule(ClassifierModule):
    """A ViT preset (``model``, see ``list_presets()``) plus per-field overrides (None keeps the
    preset's value), and the attention setting of every self-attention layer (``attention``).

    ``img_size``, ``in_chans`` and ``num_classes`` must match the data; ``configure_from_data``
    checks them. Old names, deprecated but kept so old command lines, configs and checkpoints
    work (``attnlab.options``): ``backend``, ``backend_kwargs``, ``pos_embed`` (now in
    ``attention``), ``preset`` (``model``), ``embed_dim`` (``dim``), ``drop_rate``
    (``dropout``), ``attn_drop_rate`` (``attn_dropout``).
    """

    app_name = "vit"

    def __init__(
        self,
        model: str = "vit_digits_8",
        img_size: int | None = None,
        patch_size: int | None = None,
        in_chans: int | None = None,
        num_classes: int | None = None,
        dim: int | None = None,
        depth: int | None = None,
        num_heads: int | None = None,
        mlp_ratio: float | None = None,
        class_token: bool | None = None,
        global_pool: str | None = None,
        tokenizer: str | None = None,
        conv_layers: int | None = None,
        conv_hidden: int | None = None,
        lsa: bool | None = None,
        dropout: float | None = None,
        attn_dropout: float | None = None,
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
        preset: str | None = None,
        embed_dim: int | None = None,
        drop_rate: float | None = None,
        attn_drop_rate: float | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        attention = merge_old_flags(attention, backend, backend_kwargs, pos_embed)
        model = renamed("preset", preset, "model", model, "vit_digits_8")
        dim = renamed("embed_dim", embed_dim, "dim", dim, None)
        dropout = renamed("drop_rate", drop_rate, "dropout", dropout, None)
        attn_dropout = renamed("attn_drop_rate", attn_drop_rate, "attn_dropout", attn_dropout, None)
        # Checkpoints are loaded weights-only: plain data, under the new names only.
        self.hparams.update(
            attention=attention.to_dict(), model=model, dim=dim, dropout=dropout,
            attn_dropout=attn_dropout,
        )  # fmt: skip
        for old in ("backend", "backend_kwargs", "pos_embed", "preset", "embed_dim", "drop_rate",
                    "attn_drop_rate"):  # fmt: skip
            self.hparams[old] = None
        overrides = {
            k: v
            for k, v in dict(
                img_size=img_size,
                patch_size=patch_size,
                in_chans=in_chans,
                num_classes=num_classes,
                embed_dim=dim,
                depth=depth,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                class_token=class_token,
                global_pool=global_pool,
                tokenizer=tokenizer,
                conv_layers=conv_layers,
                conv_hidden=conv_hidden,
                lsa=lsa,
                drop_rate=dropout,
                attn_drop_rate=attn_dropout,
                drop_path_rate=drop_path_rate,
                init_values=init_values,
                attention=attention,
            ).items()
            if v is not None
        }
        self.config = preset_config(model, **overrides)
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
            from torch.optim.swa_utils import AveragedModel

            self.ema = AveragedModel(
                self.model, multi_avg_fn=ema_with_warmup(ema_decay), use_buffers=True
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
        if self.mixer is not None:
            x, target = self._mix(x, y)
        return self.model(x), target

    def _mix(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """timm's Mixup pairs sample i with sample B-1-i, so it takes even batches only: an odd
        batch (the last of an epoch) mixes all but its last sample, which keeps its own
        (label-smoothed) target, so every batch trains on soft targets of one kind."""
        from timm.data.mixup import mixup_target

        even = len(x) - len(x) % 2
        if even == len(x):
            return self.mixer(x, y)  # type: ignore[no-any-return]
        own = mixup_target(y[even:], self.mixer.num_classes, smoothing=self.mixer.label_smoothing)
        if even == 0:
            return x, own
        mixed, soft = self.mixer(x[:even], y[:even])  # (even, C, H, W), (even, num_classes)
        return torch.cat([mixed, x[even:]]), torch.cat([soft, own])  # (B, ...), (B, num_classes)

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
