"""The LightningModule: SASRec (CE, BCE or gBCE), BERT4Rec and the counting baselines on one
full-ranking evaluation."""

from __future__ import annotations

import math
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attention_core import AttentionConfig
from attnlab import AttnlabModule
from attnlab.runs import atomic_write_csv

from .baselines import BASELINES, CoOccurrence, Popularity
from .metrics import KS, PROTOCOL, exclude_history, rank_metrics, sampled_ranks, target_ranks
from .model import MODELS, RecConfig, SequentialRecommender, last_window, model_attention

__all__ = ["ALL_MODELS", "LOSSES", "RecModule"]

LOSSES = ("ce", "bce", "gbce")
ALL_MODELS = (*MODELS, *BASELINES)


class RecModule(AttnlabModule):
    """Trains a sequential recommender; logs HR@k, NDCG@k and MRR by full ranking.

    ``model``: ``sasrec`` (causal; ``loss`` ce = SASRec+, bce = original SASRec with
    ``num_negatives`` sampled negatives, gbce = gSASRec), ``bert4rec`` (masked items, full
    softmax; ``ce_sampled_items`` K > 0 makes either cross-entropy a softmax over the target and
    K items sampled uniformly a step; ``label_smoothing`` spreads that share of the target over
    the other items), or a baseline counted from the training sequences: ``popularity`` or
    ``cooccurrence`` (what followed the history's last item). A baseline has nothing to optimise:
    its fit counts (``configure_from_data``), then takes one zero-loss step on a dummy
    parameter (``fit_anchor``: Lightning writes checkpoints only after an optimizer step),
    validates and stops; best.ckpt, test-after-fit and predict work as for any model.
    ``num_items`` is taken from the data when not given and saved with the checkpoint.

    ``attention`` (``--model.attention.backend/.window/.pos ...``) sets every attention layer;
    ``pos`` defaults to the learned table and may be none, sincos, rope or alibi. ``backend`` is
    the old spelling of ``attention.backend`` (deprecated).
    """

    app_name = "recsys"

    def __init__(
        self,
        model: str = "sasrec",
        loss: str = "ce",
        num_items: int | None = None,
        max_len: int = 50,
        dim: int = 64,
        depth: int = 2,
        num_heads: int = 2,
        mlp_ratio: float = 2.0,
        dropout: float = 0.2,
        attn_dropout: float = 0.2,
        attention: AttentionConfig = AttentionConfig(),  # never mutated: resolved() copies
        scale_item_embeddings: bool = True,
        num_negatives: int = 1,
        ce_sampled_items: int = 0,
        label_smoothing: float = 0.0,
        gbce_t: float = 0.75,
        mask_prob: float = 0.2,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        warmup_fraction: float = 0.0,
        min_lr_ratio: float = 1.0,
        top_k: int = 10,
        sampled_negatives: int = 100,
        backend: str | None = None,
    ):
        super().__init__()
        if model not in ALL_MODELS:
            raise ValueError(f"unknown model {model!r}; choose one of {ALL_MODELS}")
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose one of {LOSSES}")
        if model == "bert4rec" and loss != "ce":
            raise ValueError("BERT4Rec trains with the masked-item cross-entropy; use loss: ce")
        if num_negatives < 1:
            raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
        if ce_sampled_items < 0:
            raise ValueError(
                f"ce_sampled_items must be >= 0 (0: the full softmax), got {ce_sampled_items}"
            )
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if label_smoothing and loss != "ce":
            raise ValueError(
                f"label_smoothing smooths the cross-entropy; loss {loss!r} has none (use loss: ce)"
            )
        if not 0.0 < mask_prob < 1.0:
            raise ValueError(f"mask_prob must be in (0, 1), got {mask_prob}")
        attention = AttentionConfig.coerce(attention)  # a dict from a checkpoint's hparams
        if backend is not None:
            warnings.warn(
                "--model.backend is deprecated; use --model.attention.backend, which takes the "
                "backend's options too (--model.attention.window, ...)",
                FutureWarning,
                stacklevel=2,
            )
            attention = replace(attention, backend=backend)
        if model in MODELS:  # checked now: a bad combination fails before any data is read
            attention = model_attention(attention, model, attn_dropout)
        elif attention != AttentionConfig():
            raise ValueError(
                f"model {model!r} is a counting baseline without attention; drop the "
                f"--model.attention settings (got {attention.to_dict()})"
            )
        self.save_hyperparameters(ignore=["backend", "attention"])
        # Plain data: checkpoints are loaded weights-only.
        self.hparams["attention"] = attention.to_dict()
        self.attention_config = attention
        if model in BASELINES:
            self.fit_anchor = nn.Parameter(torch.zeros(()))
        self.model: SequentialRecommender | Popularity | CoOccurrence | None = None
        self.item_ids: list[str] | None = None
        if num_items is not None:
            self._build(num_items)
        self._predictions: list[tuple[int, list[int], list[float]]] = []
        # Target positions and batches trained on so far: the loss's denominator (_position_mean).
        self.positions_seen = 0
        self.batches_seen = 0

    # ------------------------------------------------------------------ building
    def _build(self, num_items: int) -> None:
        hp = self.hparams
        self.hparams["num_items"] = num_items
        if hp.model in BASELINES:
            self.model = BASELINES[hp.model](num_items)
            return
        cfg = RecConfig(
            num_items=num_items,
            kind=hp.model,
            max_len=hp.max_len,
            dim=hp.dim,
            depth=hp.depth,
            num_heads=hp.num_heads,
            mlp_ratio=hp.mlp_ratio,
            dropout=hp.dropout,
            attn_dropout=hp.attn_dropout,
            attention=self.attention_config,
            scale_item_embeddings=hp.scale_item_embeddings,
        )
        self.model = SequentialRecommender(cfg)

    def configure_from_data(self, datamodule: Any) -> None:
        """The item count and raw item ids from the data (checked against a loaded checkpoint's);
        a baseline counts the training sequences here."""
        dm = datamodule
        if not hasattr(dm, "num_items"):
            return
        if self.model is None:
            self._build(dm.num_items)
        elif self.hparams.num_items != dm.num_items:
            raise ValueError(
                f"the model scores {self.hparams.num_items} items but the data has "
                f"{dm.num_items}; use the data the checkpoint was trained on"
            )
        if self.item_ids is None:
            self.item_ids = list(dm.item_ids)
        elif self.item_ids != list(dm.item_ids):
            raise ValueError(
                "the data's item ids differ from those stored in the checkpoint; predictions "
                "would name the wrong items. Use the dataset and filters the model was trained on"
            )
        net = self.model
        if isinstance(net, Popularity | CoOccurrence) and not net.fitted:
            if getattr(dm, "splits", None) is None:
                dm.setup("fit")
            net.fit(dm.splits.train)

    @property
    def net(self) -> SequentialRecommender:
        """The neural model (a baseline has no layers to train or export)."""
        if self.model is None:
            raise ValueError(
                "the model is not built yet: give model.num_items, or num_items comes from the "
                "data (configure_from_data)"
            )
        if not isinstance(self.model, SequentialRecommender):
            raise ValueError(f"model {self.hparams.model!r} is a counting baseline, not a network")
        return self.model

    @property
    def scorer(self) -> nn.Module:
        """What scores histories: the network or the baseline."""
        if self.model is None:
            return self.net  # raises the error that says how num_items is found
        return self.model

    def checkpoint_extras(self) -> dict[str, Any]:
        return {
            "item_ids": self.item_ids,
            "protocol": PROTOCOL,
            "positions_seen": self.positions_seen,
            "batches_seen": self.batches_seen,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Checkpoints from before scale_item_embeddings existed were trained without the scale.
        if "scale_item_embeddings" not in checkpoint.get("hyper_parameters", {}):
            self.hparams["scale_item_embeddings"] = False
            if isinstance(self.model, SequentialRecommender):
                self.model.cfg.scale_item_embeddings = False
        # Co-occurrence counts are as many as the data made: take the checkpoint's sizes before
        # the layer compares shapes.
        if isinstance(self.model, CoOccurrence):
            self.model.size_like(checkpoint.get("state_dict", {}), "model.")
        super().on_load_checkpoint(checkpoint)

    def load_checkpoint_extras(self, extras: dict[str, Any]) -> None:
        if extras.get("item_ids") is not None:
            self.item_ids = list(extras["item_ids"])
        self.positions_seen = int(extras.get("positions_seen", 0))
        self.batches_seen = int(extras.get("batches_seen", 0))

    def forward(self, history: Tensor) -> Tensor:
        return self.scorer(history)

    # ------------------------------------------------------------------ losses
    def _sasrec_loss(self, seq: Tensor) -> Tensor:
        window = last_window(seq, self.net.cfg.max_len + 1)
        inputs, targets = window[:, :-1], window[:, 1:]  # (B, L) each
        valid = targets > 0
        hidden = self.net.encode(inputs)[valid]  # (P, dim) only positions with a target
        pos = targets[valid]  # (P,)
        hp = self.hparams
        if hp.loss == "ce":
            return self._position_mean(self._cross_entropy_sum(hidden, pos), len(pos))
        n = self.net.cfg.num_items
        neg = torch.randint(1, n + 1, (pos.shape[0], hp.num_negatives), device=seq.device)
        emb = self.net.item_embedding
        pos_logit = (hidden * emb(pos)).sum(-1)  # (P,)
        neg_logit = torch.einsum("pd,pkd->pk", hidden, emb(neg))  # (P, K)
        if hp.loss == "bce":
            per_position = -(F.logsigmoid(pos_logit) + F.logsigmoid(-neg_logit).sum(-1))
        else:  # gSASRec (Petrov & Macdonald 2023): calibrate the positive term with beta.
            alpha = hp.num_negatives / max(1, n - 1)
            beta = alpha * (hp.gbce_t * (1 - 1 / alpha) + 1 / alpha)
            per_position = -(beta * F.logsigmoid(pos_logit) + F.logsigmoid(-neg_logit).sum(-1))
        return self._position_mean(per_position.sum(), len(pos))

    def _cross_entropy_sum(self, hidden: Tensor, targets: Tensor) -> Tensor:
        """Summed cross-entropy over all items, or over ``ce_sampled_items`` sampled ones."""
        sampled = self.hparams.ce_sampled_items
        smoothing = self.hparams.label_smoothing
        if 0 < sampled < self.net.cfg.num_items:
            return self.net.sampled_cross_entropy(hidden, targets, sampled, smoothing)
        return self.net.item_cross_entropy(hidden, targets, "sum", smoothing)

    def _position_mean(self, total: Tensor, positions: int) -> Tensor:
        """The summed loss of a batch's target positions over the mean number of positions a
        training batch has had so far (not this batch's own count).

        Why: every target position then weighs the same in the objective whichever batch it
        lands in. With random batches this is the batch mean up to a few percent; with batches of
        similar history length (``--data.bucket_by_length``) a batch of 128 two-item histories
        holds 256 positions and one of 50-item histories 6,400, and dividing each by its own count
        would weigh a short history's positions 25 times more. Outside training (or before any
        training batch) it is the plain mean. The running count is saved with checkpoints.
        """
        if self.training and positions > 0:
            self.positions_seen += positions
            self.batches_seen += 1
        if self.batches_seen == 0:
            return total / max(1, positions)
        return total / (self.positions_seen / self.batches_seen)

    def _bert4rec_loss(self, seq: Tensor) -> Tensor:
        window = last_window(seq, self.net.cfg.max_len)
        real = window > 0
        masked = (torch.rand(window.shape, device=seq.device) < self.hparams.mask_prob) & real
        # every sequence gets at least one masked item: its last one, as at inference
        last = (real.sum(1) - 1).clamp(min=0)
        none = ~masked.any(1)
        masked[none, last[none]] = True
        inputs = window.masked_fill(masked, self.net.mask_token)
        hidden = self.net.encode(inputs)[masked]  # (P, dim)
        total = self._cross_entropy_sum(hidden, window[masked])
        return self._position_mean(total, int(masked.sum()))

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        if self.hparams.model in BASELINES:
            # The counts were taken in configure_from_data. One step (a zero gradient: nothing
            # moves) makes the fit a fit: validation, checkpoints and test follow; then it stops.
            self.trainer.should_stop = True
            return self.fit_anchor * 0.0
        seq = batch["seq"]
        loss = (
            self._bert4rec_loss(seq) if self.hparams.model == "bert4rec" else self._sasrec_loss(seq)
        )
        self.log(
            "train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=seq.shape[0]
        )
        return loss

    # ------------------------------------------------------------------ evaluation
    def _evaluate(self, batch: dict[str, Tensor], stage: str) -> None:
        history, target = batch["history"], batch["target"]
        scores = exclude_history(self(history), history, target)
        metrics = rank_metrics(target_ranks(scores, target), KS)
        b = target.shape[0]
        for name, values in metrics.items():
            self.log(
                f"{stage}/{name}",
                values.mean(),
                on_step=False,
                on_epoch=True,
                batch_size=b,
                prog_bar=name == "ndcg@10",
            )
        if stage == "test":
            gen = torch.Generator().manual_seed(1000 + int(batch["user"][0]))
            sampled = sampled_ranks(scores, target, history, self.hparams.sampled_negatives, gen)
            for name, values in rank_metrics(sampled, (10,)).items():
                if name != "mrr":
                    self.log(
                        f"test/sampled{self.hparams.sampled_negatives}_{name}",
                        values.mean(),
                        on_step=False,
                        on_epoch=True,
                        batch_size=b,
                    )
        dm = getattr(self.trainer, "datamodule", None)
        oracle = (
            dm.oracle_scores(history) if dm is not None and hasattr(dm, "oracle_scores") else None
        )
        if oracle is not None:
            o = exclude_history(oracle.to(scores.device), history, target)
            ndcg = rank_metrics(target_ranks(o, target), (10,))["ndcg@10"]
            self.log(
                f"{stage}/oracle_ndcg@10", ndcg.mean(), on_step=False, on_epoch=True, batch_size=b
            )

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        m = self.trainer.callback_metrics
        if "test/ndcg@10" in m:
            line = f"recsys test ({PROTOCOL}): NDCG@10 {float(m['test/ndcg@10']):.4f}, HR@10 {float(m['test/hr@10']):.4f}"
            if "test/oracle_ndcg@10" in m:
                line += f"; oracle NDCG@10 {float(m['test/oracle_ndcg@10']):.4f}"
            print(line, flush=True)

    # ------------------------------------------------------------------ predict
    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        history = batch["history"]
        scores = exclude_history(self(history), history)
        k = min(self.hparams.top_k, self.hparams.num_items)
        top = scores.topk(k, dim=1)
        return {"items": top.indices, "scores": top.values}

    def on_predict_epoch_end(self) -> None:
        outputs = self.trainer.predict_loop.predictions
        dm = getattr(self.trainer, "datamodule", None)
        names = list(getattr(dm, "predict_names", []))
        ids = self.item_ids or [str(i) for i in range(1, self.hparams.num_items + 1)]
        rows = []
        flat = outputs[0] if outputs and isinstance(outputs[0], list) else outputs
        n = 0
        for out in flat:
            for items, scores in zip(out["items"].tolist(), out["scores"].tolist()):
                name = names[n] if n < len(names) else str(n)
                for rank, (i, s) in enumerate(zip(items, scores), 1):
                    if math.isfinite(s):
                        rows.append((name, rank, ids[i - 1], f"{s:.6g}"))
                n += 1
        if not self.trainer.is_global_zero:
            return
        path = Path(self.trainer.default_root_dir) / "predictions.csv"
        atomic_write_csv(path, ["user", "rank", "item", "score"], rows)
        print(
            f"recsys: top-{self.hparams.top_k} for {n} histories -> {path} (history items excluded)"
        )

    # ------------------------------------------------------------------ services
    def figure_forward(self, batch: dict[str, Tensor]) -> Tensor:
        return self(batch["history"])

    def example_inputs(self) -> tuple[Tensor, ...]:
        g = torch.Generator().manual_seed(0)
        n = self.hparams.num_items
        length = min(8, self.hparams.max_len)
        hist = torch.randint(1, n + 1, (3, length), generator=g)
        hist[1, length // 2 :] = 0  # a shorter, right-padded history
        return (hist,)

    def export_model(self) -> nn.Module:
        if self.hparams.model in BASELINES:
            raise NotImplementedError(
                f"{self.hparams.model} is a counting baseline; export a sasrec or bert4rec model"
            )
        return self.net
