"""``CaptionModule``: training with teacher forcing, evaluation on generated captions only."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attention_core import AttentionConfig
from attnlab import AttnlabModule
from attnlab.options import renamed
from attnlab.runs import atomic_write_bytes, atomic_write_text

from .decoding import Generated, generate
from .hard_attention import HardAttentionLSTMDecoder
from .metrics import CiderDScorer, cider_d, corpus_bleu, localization_hits, meteor
from .model import (
    Captioner,
    CaptionerConfig,
    build_captioner,
    load_pretrained_encoder,
    resolve_attention,
)
from .scst import self_critical_step
from .vocab import Vocab

__all__ = ["CaptionModule", "CaptionStep", "doubly_stochastic_penalty"]


def doubly_stochastic_penalty(alphas: Tensor, real: Tensor) -> Tensor:
    """Show, Attend and Tell's doubly stochastic regularizer (Xu et al. 2015, eq. 14), without
    its weight: sum_i (1 - sum_t alpha_ti)^2 over the grid's locations i, per caption, averaged
    over the batch. Only the caption's real steps (its words and ``<eos>``) sum into
    ``sum_t``: padding after ``<eos>`` attends to nothing.

    alphas (B, T, N), real (B, T) 1 for a real step, 0 for padding -> a scalar.
    """
    coverage = (alphas * real[..., None]).sum(1)  # (B, N): attention each location got
    return ((1.0 - coverage) ** 2).sum(1).mean()


class CaptionStep(nn.Module):
    """What `attnlab caption export` writes: the encoder and one greedy decoding step.

    ``(images (B, 3, H, W), tokens (B, T) starting with <bos>)`` -> ``(features (B, N, D),
    next-word logits (B, V))``; the argmax of the logits is the next greedy word.
    """

    def __init__(self, model: Captioner):
        super().__init__()
        self.model = model

    def forward(self, images: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
        features, _ = self.model.encode(images)
        logits, _ = self.model.decoder(features, tokens)  # (B, T, V)
        return features, logits[:, -1]


class CaptionModule(AttnlabModule):
    """Encoder + decoder trained with cross-entropy (+ Show-Attend-Tell's doubly stochastic
    attention regularizer). The model is built once the vocabulary is known: from the data
    (``configure_from_data``), or from the checkpoint's extras.

    ``alpha_c`` is the paper's lambda (eq. 14): the loss is ``xent + alpha_c * penalty``, the
    penalty summed over the grid's locations (``doubly_stochastic_penalty``; a 4x4 grid gives
    16 terms, an 8x8 one 64). The cross-entropy is the mean per word, where the paper sums over
    a caption's words, so ``alpha_c`` weighs like the paper's lambda divided by the mean caption
    length. It applies to ``lstm_attention``; ``lstm_hard_attention`` trains its attention by
    REINFORCE (``hard_attention.py``): ``reinforce_weight`` is the paper's lambda_r (0.001:
    larger values left the attention uniform on digit scenes from scratch, see the app README),
    ``entropy_weight`` lambda_e (0; 0.01 held it uniform), ``expected_context_prob`` the share
    of images read with the expected context (0.5 in the paper), ``baseline_decay`` the reward
    baseline's (0.9).

    ``attention`` is the Transformer decoder's masked self-attention (and a ViT encoder's
    self-attention): backend, options, ``pos``; ``cross_attention`` the decoder's cross-attention
    to the grid. Checked here, at construction, so a bad combination fails before any data is
    read. ``word_dim`` is the LSTM decoders' word-embedding size (``embed_dim`` before: a
    deprecated alias, since elsewhere ``embed_dim`` meant a transformer's width).
    """

    app_name = "caption"

    def __init__(
        self,
        encoder: str = "small_resnet",
        encoder_pretrained: bool = False,
        freeze_encoder: bool = False,
        encoder_width: int = 16,
        encoder_stages: int = 3,
        encoder_stem_stride: int = 1,
        vit_dim: int = 128,
        vit_depth: int = 4,
        vit_heads: int = 4,
        patch_size: int = 8,
        decoder: str = "lstm_attention",
        word_dim: int = 64,
        hidden_dim: int = 256,
        attention_dim: int = 128,
        dec_dim: int = 128,
        dec_depth: int = 2,
        dec_heads: int = 4,
        dropout: float = 0.3,
        max_len: int = 20,
        alpha_c: float = 1.0,
        expected_context_prob: float = 0.5,
        baseline_decay: float = 0.9,
        reinforce_weight: float = 0.001,
        entropy_weight: float = 0.0,
        scst_fraction: float = 0.0,
        label_smoothing: float = 0.0,
        val_beam_size: int = 1,
        beam_size: int = 3,
        length_penalty: float = 0.0,
        predict_heatmaps: bool = True,
        lr: float = 2e-3,
        weight_decay: float = 0.01,
        warmup_fraction: float = 0.05,
        min_lr_ratio: float = 0.05,
        attention: AttentionConfig = AttentionConfig(),
        cross_attention: AttentionConfig = AttentionConfig(),
        embed_dim: int | None = None,
    ):
        super().__init__()
        attention = AttentionConfig.coerce(attention)  # a dict from a checkpoint's hparams
        cross_attention = AttentionConfig.coerce(cross_attention)
        self.save_hyperparameters()
        # `embed_dim` is the old name of `word_dim` (elsewhere it meant a transformer's width).
        self.hparams["word_dim"] = renamed("embed_dim", embed_dim, "word_dim", word_dim, 64)
        self.hparams.pop("embed_dim", None)
        # Plain data in checkpoints (they are loaded weights-only).
        self.hparams["attention"] = attention.to_dict()
        self.hparams["cross_attention"] = cross_attention.to_dict()
        self.config = CaptionerConfig.from_dict(dict(self.hparams))
        resolve_attention(self.config)  # a bad combination is a one-line error now
        self._pretrained_loaded = False
        if not 0.0 <= scst_fraction < 1.0:
            raise ValueError(
                f"--model.scst_fraction is the share of training given to self-critical "
                f"training, from 0 (none) up to but not including 1; got {scst_fraction}"
            )
        self._cider_scorer: CiderDScorer | None = None
        self.vocab: Vocab | None = None
        self.data_info: dict[str, Any] = {}
        self.model: Captioner | None = None
        self._outputs: list[dict[str, Any]] = []
        self._loss_parts: list[tuple[float, int]] = []  # (loss summed over words, words) a batch
        self._predictions: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ building
    def build(self, vocab: Vocab) -> None:
        """(Re)build the network for ``vocab`` (a different vocabulary means new output layers)."""
        if self.model is not None and self.vocab == vocab:
            return
        self.vocab = vocab
        self.model = build_captioner(self.config, len(vocab), self.data_info.get("image_size"))
        if self.hparams.freeze_encoder:
            self.model.encoder.requires_grad_(False)

    def configure_from_data(self, datamodule: Any) -> None:
        """Image size and normalisation for figures and export; the network, once the data has
        a vocabulary (not at predict: the checkpoint brings its own)."""
        if getattr(datamodule, "image_size", None):
            mean, std = getattr(datamodule, "normalization", ((0.5,) * 3, (0.5,) * 3))
            self.data_info = {
                "image_size": int(datamodule.image_size),
                "mean": list(mean),
                "std": list(std),
                "dataset": getattr(datamodule, "dataset", ""),
            }
        vocab = getattr(datamodule, "vocab", None)
        if self.model is None and vocab is not None:
            self.build(vocab)

    def setup(self, stage: str) -> None:
        super().setup(stage)  # configure_from_data
        start = stage == "fit" and self.trainer.ckpt_path is None
        if self.hparams.encoder_pretrained and start and not self._pretrained_loaded:
            load_pretrained_encoder(self._net().encoder)
            self._pretrained_loaded = True

    def checkpoint_extras(self) -> dict[str, Any]:
        assert self.vocab is not None
        return {"vocab": self.vocab.to_dict(), "data": dict(self.data_info)}

    def load_checkpoint_extras(self, extras: dict[str, Any]) -> None:
        if "vocab" not in extras:
            raise ValueError(
                "the checkpoint holds no vocabulary; it was not written by `attnlab caption`"
            )
        self.data_info = dict(extras.get("data") or self.data_info)
        self.build(Vocab.from_dict(extras["vocab"]))

    def _net(self) -> Captioner:
        if self.model is None or self.vocab is None:
            raise RuntimeError(
                "the captioner has no vocabulary yet: train it (fit) or load a checkpoint "
                "(--ckpt_path RUN/checkpoints/best.ckpt)"
            )
        return self.model

    # ------------------------------------------------------------------ training
    def forward(self, images: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor | None]:
        return self._net()(images, tokens)

    def on_train_epoch_start(self) -> None:
        if self.hparams.freeze_encoder and self.model is not None:
            self.model.encoder.eval()  # frozen batch-norm statistics too

    def _loss(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """``loss`` (what training minimises), ``xent`` (per word) and, in training, what the
        regularizers add: ``coverage_penalty`` (unweighted) for soft attention; the REINFORCE
        ``reward``, ``baseline`` and ``attention_entropy`` for hard attention."""
        net = self._net()
        assert self.vocab is not None
        tokens = self.vocab.encode_batch(
            [c.split() for c in batch["caption"]], self.hparams.max_len
        )
        tokens = tokens.to(self.device)  # (B, T)
        inputs, target = tokens[:, :-1], tokens[:, 1:]
        hard = isinstance(net.decoder, HardAttentionLSTMDecoder) and self.training
        if hard:
            features, _ = net.encode(batch["image"])
            trace = net.decoder.trace(features, inputs)
            logits, alphas = trace.logits, None  # alpha is trained by REINFORCE, not alpha_c
        else:
            logits, alphas = net(batch["image"], inputs)  # (B, T-1, V), (B, T-1, N)
        xent = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            target.reshape(-1),
            ignore_index=self.vocab.pad_id,
            label_smoothing=self.hparams.label_smoothing,
        )
        out = {"loss": xent, "xent": xent}
        if alphas is not None and self.hparams.alpha_c > 0:
            real = (target != self.vocab.pad_id).float()  # (B, T-1)
            penalty = doubly_stochastic_penalty(alphas, real)
            out["loss"] = xent + self.hparams.alpha_c * penalty
            out["coverage_penalty"] = penalty.detach()
        if hard:
            terms = net.decoder.reinforce(
                trace,
                target,
                self.vocab.pad_id,
                self.hparams.reinforce_weight,
                self.hparams.entropy_weight,
            )
            out["loss"] = xent + terms.loss
            out |= {
                "reward": terms.reward,
                "baseline": terms.baseline,
                "attention_entropy": terms.entropy,
            }
        return out

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        scst = self.hparams.scst_fraction
        in_scst_phase = scst > 0 and self.training_progress() >= 1.0 - scst
        losses = self._self_critical_loss(batch) if in_scst_phase else self._loss(batch)
        bs = len(batch["caption"])
        for name, value in losses.items():
            self.log(f"train/{name}", value, on_step=False, on_epoch=True, batch_size=bs)
        return losses["loss"]

    def _self_critical_loss(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """Self-critical sequence training (``scst.py``): CIDEr-D of a sampled caption against
        the greedy caption's, with document frequencies from the training references."""
        net = self._net()
        assert self.vocab is not None
        if self._cider_scorer is None:
            train_set = getattr(self.trainer.datamodule, "train_set", None)
            records = getattr(train_set, "records", None)
            if not records:
                raise ValueError("--model.scst_fraction needs the training captions (CaptionData)")
            self._cider_scorer = CiderDScorer(rec.captions for rec in records)
        references = [[r.split() for r in refs.split("\n")] for refs in batch["references"]]
        features, _ = net.encode(batch["image"])
        loss, sampled_reward, greedy_reward = self_critical_step(
            net.decoder,
            features,
            references,
            self._cider_scorer,
            self.vocab.decode,
            bos_id=self.vocab.bos_id,
            eos_id=self.vocab.eos_id,
            pad_id=self.vocab.pad_id,
            max_len=self.hparams.max_len,
        )
        return {"loss": loss, "scst_reward": sampled_reward, "scst_greedy_reward": greedy_reward}

    # ------------------------------------------------------------------ evaluation
    def caption(
        self,
        images: Tensor,
        beam_size: int = 1,
        use_cache: bool = True,
        need_attention: bool = True,
    ) -> tuple[Generated, tuple[int, int]]:
        """Generated captions for images (B, 3, H, W) and the encoder's grid."""
        net = self._net()
        assert self.vocab is not None
        features, grid = net.encode(images)
        out = generate(
            net.decoder,
            features,
            bos_id=self.vocab.bos_id,
            eos_id=self.vocab.eos_id,
            pad_id=self.vocab.pad_id,
            max_len=self.hparams.max_len,
            beam_size=beam_size,
            alpha=self.hparams.length_penalty,
            use_cache=use_cache,
            need_attention=need_attention and net.has_attention,
        )
        return out, grid

    def score_batch(self, batch: dict[str, Any], beam_size: int) -> None:
        """Caption a batch and keep what the epoch's metrics need (the benchmark calls it too)."""
        assert self.vocab is not None
        has_boxes = bool((batch["boxes"][..., 0] >= 0).any())
        out, grid = self.caption(batch["image"], beam_size, need_attention=has_boxes)
        size = tuple(batch["image"].shape[-2:])
        for i in range(len(batch["caption"])):
            words = self.vocab.decode(out.tokens[i].tolist())
            row: dict[str, Any] = {
                "pred": words,
                "refs": [r.split() for r in batch["references"][i].split("\n")],
            }
            if has_boxes and out.attention is not None:
                boxes = [b for b in batch["boxes"][i].tolist() if b[0] >= 0]
                row["loc"] = localization_hits(words, out.attention[i], grid, size, boxes)  # type: ignore[arg-type]
            self._outputs.append(row)

    def compute_metrics(self, with_meteor: bool = False) -> dict[str, float]:
        """BLEU-1..4, CIDEr-D (and localization on digit scenes) of the captions scored so far;
        ``with_meteor``: METEOR too, where pycocoevalcap and java are installed."""
        rows, self._outputs = self._outputs, []
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # Under DDP each process captioned its own share: corpus BLEU and CIDEr-D need them
            # all (averaging per-process scores is not the corpus score).
            shares: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(shares, rows)
            rows = [row for share in shares for row in share]
        if not rows:
            return {}
        preds = [" ".join(r["pred"]) for r in rows]
        refs = [[" ".join(x) for x in r["refs"]] for r in rows]
        metrics = corpus_bleu(preds, refs)
        metrics["cider"] = cider_d([r["pred"] for r in rows], [r["refs"] for r in rows])[0]
        meteor_score = meteor(preds, refs) if with_meteor else None
        if meteor_score is not None:
            metrics["meteor"] = meteor_score
        locs = [r["loc"] for r in rows if "loc" in r]
        if locs:
            metrics["loc"] = sum(h for h, _ in locs) / max(1, sum(t for _, t in locs))
        return metrics

    def _eval_step(self, batch: dict[str, Any], stage: str, beam_size: int) -> None:
        assert self.vocab is not None
        xent = self._loss(batch)["xent"]  # the mean over this batch's words
        # Summed over the split's words at the epoch's end (``_eval_epoch_end``): the mean over
        # every word of the split, whichever captions share a batch or a process.
        tokens = self.vocab.encode_batch(
            [c.split() for c in batch["caption"]], self.hparams.max_len
        )
        words = int((tokens[:, 1:] != self.vocab.pad_id).sum())
        self._loss_parts.append((float(xent) * words, words))
        self.score_batch(batch, beam_size)

    def _eval_epoch_end(self, stage: str) -> None:
        # Sum and word count reduced as float64 sums: Lightning's mean of a value logged with a
        # batch size divides an integer count by the process count under gloo (floor division),
        # which an odd word total turns into a wrong mean.
        parts, self._loss_parts = self._loss_parts, []
        total = torch.tensor(
            [sum(p[0] for p in parts), sum(p[1] for p in parts)], dtype=torch.float64
        )
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(total)  # (loss sum, words) over every process
        if total[1] > 0:
            loss = float(total[0] / total[1])
            self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, sync_dist=False)
        for name, value in self.compute_metrics(with_meteor=stage == "test").items():
            self.log(
                f"{stage}/{name}",
                float(value),
                on_step=False,
                on_epoch=True,
                prog_bar=name == "bleu4",
            )

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "val", self.hparams.val_beam_size)

    def on_validation_epoch_start(self) -> None:
        self._outputs = []
        self._loss_parts = []

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "test", self.hparams.beam_size)

    def on_test_epoch_start(self) -> None:
        self._outputs = []
        self._loss_parts = []

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    # ------------------------------------------------------------------ prediction
    def on_predict_start(self) -> None:
        self._net()
        self._predictions = []

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        assert self.vocab is not None
        out, grid = self.caption(batch["image"], int(self.hparams.beam_size))
        rows = []
        for i, name in enumerate(batch["name"]):
            words = self.vocab.decode(out.tokens[i].tolist())
            row = {"image": name, "caption": " ".join(words), "score": float(out.scores[i])}
            rows.append(row)
            self._predictions.append(
                {
                    **row,
                    "words": words,
                    "pixels": batch["image"][i].cpu(),
                    "attention": None if out.attention is None else out.attention[i].cpu(),
                    "grid": grid,
                }
            )
        return rows

    def on_predict_end(self) -> None:
        from .draw import denormalize, word_attention_figure

        if not self.trainer.is_global_zero:
            return
        folder = Path(self.trainer.default_root_dir) / "predictions"
        info = self.data_info
        records = []
        for p in self._predictions:
            record = {
                "image": p["image"],
                "caption": p["caption"],
                "score": p["score"],
                "beam_size": int(self.hparams.beam_size),
            }
            if self.hparams.predict_heatmaps and p["attention"] is not None:
                image = denormalize(p["pixels"], info.get("mean"), info.get("std"))
                fig = word_attention_figure(
                    [(image, p["words"], p["attention"], p["grid"], p["caption"])],
                    hard=isinstance(self._net().decoder, HardAttentionLSTMDecoder),
                )
                png = folder / f"{Path(p['image']).stem}_attention.png"
                buf = io.BytesIO()
                fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
                atomic_write_bytes(png, buf.getvalue())
                import matplotlib.pyplot as plt

                plt.close(fig)
                record["heatmap"] = png.name
            records.append(record)
        atomic_write_text(folder / "captions.json", json.dumps(records, indent=2) + "\n")
        print(f"wrote {len(records)} captions to {folder / 'captions.json'}", flush=True)

    # ------------------------------------------------------------------ services
    def figure_forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        out, grid = self.caption(batch["image"], 1)
        assert self.vocab is not None
        return {
            "words": [self.vocab.decode(t.tolist()) for t in out.tokens],
            "attention": out.attention,
            "hard": isinstance(self._net().decoder, HardAttentionLSTMDecoder),
            "grid": grid,
            "mean": self.data_info.get("mean"),
            "std": self.data_info.get("std"),
        }

    def example_inputs(self) -> tuple[Tensor, ...]:
        size = int(self.data_info.get("image_size", 64))
        assert self.vocab is not None
        g = torch.Generator().manual_seed(0)
        images = torch.randn(2, 3, size, size, generator=g)
        tokens = torch.randint(4, len(self.vocab), (2, 5), generator=g)
        tokens[:, 0] = self.vocab.bos_id
        return images, tokens

    def export_model(self) -> nn.Module:
        return CaptionStep(self._net()).eval()
