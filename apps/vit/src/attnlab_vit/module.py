"""The ViT LightningModule: the training recipe, metrics, test-time reports and `predict` output.

Recipe: AdamW with warmup + cosine (from ``AttnlabModule``), label smoothing, optional timm
Mixup / CutMix (soft targets), optional weight EMA (evaluation, figures and export then use the
averaged weights). ``backbone="timm"`` trains timm's own ``VisionTransformer`` of the same
configuration with the same recipe, as a reference.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from attention_core import MultiHeadAttention
from attnlab import AttnlabModule
from attnlab.figures import confusion_matrix_figure, save_figure
from attnlab.runs import atomic_write_text, write_topk_predictions

from .model import VisionTransformer, preset_config, timm_vit

__all__ = ["ViTModule"]

Batch = tuple[Tensor, Tensor]


class ViTModule(AttnlabModule):
    """A ViT preset plus per-field overrides (None keeps the preset's value).

    ``img_size``, ``in_chans`` and ``num_classes`` must match the data; ``setup`` checks them.
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
        pos_embed: str | None = None,
        tokenizer: str | None = None,
        lsa: bool | None = None,
        drop_rate: float | None = None,
        attn_drop_rate: float | None = None,
        drop_path_rate: float | None = None,
        init_values: float | None = None,
        backend: str | None = None,
        backend_kwargs: dict[str, Any] | None = None,
        backbone: str = "attnlab",
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_fraction: float = 0.05,
        min_lr_ratio: float = 0.01,
        label_smoothing: float = 0.1,
        mixup: float = 0.0,
        cutmix: float = 0.0,
        ema_decay: float = 0.0,
    ):
        super().__init__()
        self.save_hyperparameters()
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
                pos_embed=pos_embed,
                tokenizer=tokenizer,
                lsa=lsa,
                drop_rate=drop_rate,
                attn_drop_rate=attn_drop_rate,
                drop_path_rate=drop_path_rate,
                init_values=init_values,
                backend=backend,
                backend_kwargs=backend_kwargs,
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
        n = cfg.num_classes
        for stage in ("val", "test"):
            setattr(self, f"{stage}_top1", MulticlassAccuracy(n, top_k=1))
            setattr(self, f"{stage}_top5", MulticlassAccuracy(n, top_k=min(5, n)))
        self.test_per_class = MulticlassAccuracy(n, average=None)
        self.test_confusion = MulticlassConfusionMatrix(n)
        self.class_names = [str(i) for i in range(n)]
        self._predictions: list[dict[str, Any]] = []

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

    # ------------------------------------------------------------------ setup checks
    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is None or not hasattr(dm, "size"):
            return
        cfg = self.config
        problems = []
        if dm.size != cfg.img_size:
            problems.append(
                f"images are {dm.size}x{dm.size} but --model.img_size is {cfg.img_size}"
            )
        if dm.in_chans != cfg.in_chans:
            problems.append(
                f"images have {dm.in_chans} channel(s) but --model.in_chans is {cfg.in_chans}"
            )
        names = list(getattr(dm, "class_names", []) or [])
        if names and len(names) != cfg.num_classes:
            problems.append(
                f"the data has {len(names)} classes but --model.num_classes is {cfg.num_classes}"
            )
        if problems:
            raise ValueError(
                f"model and data disagree: {'; '.join(problems)}; set the --model.* values to match "
                "the data (or --data.image_size / --data.channels)"
            )
        if names and stage != "predict":
            self.class_names = names

    # ------------------------------------------------------------------ steps
    def _loss(self, logits: Tensor, target: Tensor) -> Tensor:
        if target.dim() == 2:  # soft targets from Mixup / CutMix
            return torch.sum(-target * F.log_softmax(logits, dim=-1), dim=-1).mean()
        return F.cross_entropy(logits, target, label_smoothing=self.hparams.label_smoothing)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        x, y = batch
        target: Tensor = y
        if self.mixer is not None and len(x) % 2 == 0:  # timm's Mixup pairs samples
            x, target = self.mixer(x, y)
        loss = self._loss(self.model(x), target)
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=len(x))
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if hasattr(self, "ema"):
            self.ema.update_parameters(self.model)

    def _eval_step(self, batch: Batch, stage: str) -> Tensor:
        x, y = batch
        logits = self.eval_model(x)
        loss = F.cross_entropy(logits, y)
        top1, top5 = getattr(self, f"{stage}_top1"), getattr(self, f"{stage}_top5")
        top1(logits, y)
        top5(logits, y)
        kw: dict[str, Any] = dict(on_step=False, on_epoch=True, batch_size=len(x))
        self.log(f"{stage}/loss", loss, **kw)
        self.log(f"{stage}/top1", top1, prog_bar=stage == "val", **kw)
        self.log(f"{stage}/top5", top5, **kw)
        return logits

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        logits = self._eval_step(batch, "test")
        self.test_per_class.update(logits, batch[1])
        self.test_confusion.update(logits, batch[1])

    def on_test_epoch_end(self) -> None:
        """Per-class accuracy (logged and written to per_class_accuracy.json) and the confusion
        matrix figure, both in the run folder."""
        per_class = self.test_per_class.compute().cpu()
        confusion = self.test_confusion.compute().cpu()
        self.test_per_class.reset()
        self.test_confusion.reset()
        for i, acc in enumerate(per_class.tolist()):
            self.log(f"test/class_acc_{i}", float(acc))
        if not self.trainer.is_global_zero or getattr(self.trainer, "sanity_checking", False):
            return
        root = Path(self.trainer.default_root_dir)
        support = confusion.sum(1).tolist()
        report = {
            "per_class": [
                {"class": i, "name": self.class_names[i], "accuracy": float(a), "support": int(s)}
                for i, (a, s) in enumerate(zip(per_class.tolist(), support))
            ],
            "confusion_matrix": confusion.tolist(),
        }
        atomic_write_text(root / "per_class_accuracy.json", json.dumps(report, indent=2) + "\n")
        fig = confusion_matrix_figure(confusion, self.class_names)
        save_figure(self.trainer, "confusion_matrix", fig, step=self.global_step)

    # ------------------------------------------------------------------ predict
    def predict_step(self, batch: Batch, batch_idx: int) -> Tensor:
        x, index = batch
        probs = self.eval_model(x).softmax(-1)  # (B, num_classes)
        dm = getattr(self.trainer, "datamodule", None)
        values, classes = probs.topk(self._top_k(), dim=-1)  # (B, k)
        paths = getattr(dm, "predict_paths", None) or []
        for i, vals, cls in zip(index.tolist(), values.tolist(), classes.tolist()):
            self._predictions.append(
                {
                    "path": str(paths[i]) if i < len(paths) else str(i),
                    "top": [
                        {"class": c, "name": self._name(c), "probability": round(p, 6)}
                        for c, p in zip(cls, vals)
                    ],
                }
            )
        return probs

    def _top_k(self) -> int:
        dm = getattr(self.trainer, "datamodule", None)
        return min(int(getattr(dm, "top_k", 5)), self.config.num_classes)

    def _name(self, c: int) -> str:
        return self.class_names[c] if c < len(self.class_names) else str(c)

    def on_predict_epoch_start(self) -> None:
        self._predictions = []

    def on_predict_epoch_end(self) -> None:
        """Write predictions.json and predictions.csv (top-k classes and probabilities)."""
        if not self.trainer.is_global_zero:
            return
        write_topk_predictions(
            Path(self.trainer.default_root_dir), self._predictions, self._top_k()
        )

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_extras(self) -> dict[str, Any]:
        return {"class_names": list(self.class_names)}

    def load_checkpoint_extras(self, extras: dict[str, Any]) -> None:
        names = extras.get("class_names")
        if names and len(names) == self.config.num_classes:
            self.class_names = list(names)

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
