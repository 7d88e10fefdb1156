"""SASRec and BERT4Rec: self-attention over an item history, scored against tied item embeddings.

Sequences are right-padded with item 0. SASRec runs causal attention, so real positions never
see the padding to their right and no padding mask is needed; that keeps the encoder on the
fused, export-safe path and makes incremental scoring with a KV cache exact. BERT4Rec is
bidirectional and masks padded keys.

The attention is one ``AttentionConfig`` (``--model.attention.*``): any backend that fits the
model (SASRec is causal, so not ``linformer``) and any 1-D position scheme, by default the learned
table both papers use.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attention_core import (
    AttentionConfig,
    Dropout,
    KVCache,
    TransformerEncoder,
    build_position,
    get_backend,
)

__all__ = [
    "DEFAULT_POS",
    "MODELS",
    "POSITIONS",
    "RecConfig",
    "SequentialRecommender",
    "last_window",
    "model_attention",
]

MODELS = ("sasrec", "bert4rec")
# Items form a 1-D sequence: every 1-D scheme applies; the grid schemes (sincos2d, rope2d) do not.
POSITIONS = ("none", "learned", "sincos", "rope", "alibi")
DEFAULT_POS = "learned"  # SASRec's and BERT4Rec's own learned table


def model_attention(
    attention: AttentionConfig | dict | str | None, kind: str, attn_dropout: float = 0.0
) -> AttentionConfig:
    """The attention setting with this model's defaults filled in, checked against what the
    model is (SASRec causal, BERT4Rec bidirectional); an invalid combination is a ValueError."""
    if kind not in MODELS:
        raise ValueError(f"unknown model {kind!r}; choose one of {MODELS}")
    cfg = AttentionConfig.coerce(attention).resolved(pos=DEFAULT_POS)
    where = "SASRec self-attention" if kind == "sasrec" else "BERT4Rec self-attention"
    cfg.check(where=where, causal=kind == "sasrec", positions=POSITIONS)
    if attn_dropout > 0 and not get_backend(cfg.backend).dropout:
        raise ValueError(
            f"{where}: backend {cfg.backend!r} has no attention matrix to drop out; "
            f"set --model.attn_dropout 0 (got {attn_dropout})"
        )
    return cfg


@dataclass
class RecConfig:
    """Sizes of a sequential recommender. Item ids run 1..num_items; 0 pads.

    ``scale_item_embeddings`` multiplies the item embeddings by sqrt(dim) before the positions are
    added, as SASRec does (Kang & McAuley 2018). Both tables start at std 0.02, so unscaled the
    positions weigh as much as the items; on Beauty the scaled model reaches a higher validation
    NDCG@10 (see benchmarks/recsys.py).

    ``attention`` (an ``AttentionConfig``, a dict or a backend name) is resolved and checked
    for ``kind`` when the config is made.
    """

    num_items: int
    kind: str = "sasrec"
    max_len: int = 50
    dim: int = 64
    depth: int = 2
    num_heads: int = 2
    mlp_ratio: float = 2.0
    dropout: float = 0.2
    attn_dropout: float = 0.2
    attention: AttentionConfig | None = None
    scale_item_embeddings: bool = True

    def __post_init__(self) -> None:
        if self.kind not in MODELS:
            raise ValueError(f"unknown model {self.kind!r}; choose one of {MODELS}")
        if not 2 <= self.max_len <= 4096:
            raise ValueError(f"max_len must be in [2, 4096], got {self.max_len}")
        if self.num_items < 1:
            raise ValueError(f"num_items must be >= 1, got {self.num_items}")
        self.attention = model_attention(self.attention, self.kind, self.attn_dropout)


def last_window(seq: Tensor, width: int) -> Tensor:
    """The last ``width`` items of each right-padded row, still right-padded: (B, L) -> (B, W)."""
    length = (seq > 0).sum(1)  # (B,)
    if seq.shape[1] <= width:
        return seq
    start = (length - width).clamp(min=0)  # (B,)
    offsets = torch.arange(width, device=seq.device)
    idx = (start[:, None] + offsets[None, :]).clamp(max=seq.shape[1] - 1)  # (B, W)
    out = seq.gather(1, idx)
    return out * (offsets[None, :] < length.clamp(max=width)[:, None])


class SequentialRecommender(nn.Module):
    """Item + position embeddings -> transformer encoder -> scores over all items (tied weights).

    Positions (``cfg.attention.pos``): ``learned`` is an ``nn.Embedding`` table named
    ``pos_embedding`` (as in checkpoints written before the setting existed), ``sincos`` a fixed
    table added to the embeddings, ``rope``/``alibi`` applied inside every attention layer,
    ``none`` nothing (then only SASRec's causal mask tells positions apart).
    """

    def __init__(self, cfg: RecConfig):
        super().__init__()
        self.cfg = cfg
        att = cfg.attention
        assert att is not None and att.pos is not None  # resolved by RecConfig
        self.mask_token = cfg.num_items + 1  # used by BERT4Rec only
        self.item_embedding = nn.Embedding(cfg.num_items + 2, cfg.dim, padding_idx=0)
        self.pos_embedding: nn.Module | None
        if att.pos == "learned":
            self.pos_embedding, in_attention = nn.Embedding(cfg.max_len, cfg.dim), None
        else:
            self.pos_embedding, in_attention = build_position(
                att.pos, dim=cfg.dim, num_heads=cfg.num_heads, max_len=cfg.max_len
            )
        self.drop = Dropout(cfg.dropout)
        self.encoder = TransformerEncoder(
            cfg.dim,
            cfg.depth,
            cfg.num_heads,
            cfg.mlp_ratio,
            proj_drop=cfg.dropout,
            attn_drop=cfg.attn_dropout,
            attention=att,
            pos=in_attention,
            seq_len=cfg.max_len,  # linformer's projections span the longest input
        )
        nn.init.normal_(self.item_embedding.weight, std=0.02)
        if isinstance(self.pos_embedding, nn.Embedding):
            nn.init.normal_(self.pos_embedding.weight, std=0.02)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    @property
    def causal(self) -> bool:
        return self.cfg.kind == "sasrec"

    def embed(self, seq: Tensor, start: int = 0) -> Tensor:
        """(B, L) item ids at positions start.. -> (B, L, dim)."""
        length = seq.shape[1]
        if start + length > self.cfg.max_len:
            raise ValueError(
                f"{start + length} positions exceed max_len={self.cfg.max_len}; truncate the "
                "history (last_window) or build the model with a larger max_len"
            )
        x = self.item_embedding(seq)  # (B, L, dim)
        if self.cfg.scale_item_embeddings:
            x = x * self.cfg.dim**0.5
        if isinstance(self.pos_embedding, nn.Embedding):
            pos = torch.arange(start, start + length, device=seq.device)
            x = x + self.pos_embedding(pos)[None]  # (1, L, dim) broadcast over the batch
        elif self.pos_embedding is not None:  # a fixed sin-cos table
            x = self.pos_embedding(x, offset=start)
        return self.drop(x)

    def encode(self, seq: Tensor) -> Tensor:
        """Hidden states (B, L, dim) of a right-padded batch (B, L)."""
        x = self.embed(seq)
        if self.causal:
            return self.encoder(x, causal=True)
        keep = (seq > 0)[:, None, None, :]  # (B, 1, 1, L) key-padding mask
        return self.encoder(x, mask=keep)

    def item_scores(self, hidden: Tensor) -> Tensor:
        """Dot products with every item embedding: (..., dim) -> (..., num_items + 1); col 0 = pad."""
        weight = self.item_embedding.weight[: self.cfg.num_items + 1]
        scores = hidden @ weight.T
        pad = torch.zeros_like(scores[..., :1]).fill_(float("-inf"))
        return torch.cat([pad, scores[..., 1:]], dim=-1)

    def item_cross_entropy(
        self,
        hidden: Tensor,
        targets: Tensor,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> Tensor:
        """Full-softmax cross-entropy over the real items 1..N: (P, dim), (P,) -> scalar
        (``reduction`` and ``label_smoothing`` as in ``F.cross_entropy``; the smoothing mass is
        spread over the real items only).

        Equal to ``cross_entropy(item_scores(hidden), targets)`` (the pad column is -inf) without
        building the (P, N + 1) copy with the pad column, which costs a tenth of a training step.
        """
        weight = self.item_embedding.weight[1 : self.cfg.num_items + 1]  # (N, dim)
        return F.cross_entropy(
            hidden @ weight.T, targets - 1, reduction=reduction, label_smoothing=label_smoothing
        )

    def sampled_cross_entropy(
        self, hidden: Tensor, targets: Tensor, num_sampled: int, label_smoothing: float = 0.0
    ) -> Tensor:
        """Cross-entropy of each target against ``num_sampled`` items drawn uniformly (one draw
        shared by all P positions), summed: (P, dim), (P,) -> scalar.

        Why: the full softmax over a large catalogue is most of a training step on CPU (on
        Beauty's 12,101 items, 100 of a bucketed step's 125 ms); 2,048 shared samples cost a
        sixth of it. Uniform sampling needs no log-Q correction (every item is equally likely);
        a sample equal to a position's own target is masked out of that position's softmax.
        """
        n = self.cfg.num_items
        sampled = torch.randint(1, n + 1, (num_sampled,), device=hidden.device)  # (K,)
        weight = self.item_embedding.weight
        target_logit = (hidden * weight[targets]).sum(-1, keepdim=True)  # (P, 1)
        sampled_logit = hidden @ weight[sampled].T  # (P, K)
        hit = sampled[None, :] == targets[:, None]  # (P, K) accidental hits
        sampled_logit = sampled_logit.masked_fill(hit, float("-inf"))
        logits = torch.cat([target_logit, sampled_logit], dim=1)  # (P, 1 + K): target first
        zeros = torch.zeros(len(targets), dtype=torch.long, device=hidden.device)
        if label_smoothing == 0.0:
            return F.cross_entropy(logits, zeros, reduction="sum")
        # Smoothing over the columns that are real candidates (not the masked accidental hits).
        log_probs = logits.log_softmax(1)  # (P, 1 + K)
        candidates = torch.isfinite(logits)
        uniform = -(log_probs.masked_fill(~candidates, 0.0).sum(1) / candidates.sum(1))  # (P,)
        per_position = (1 - label_smoothing) * -log_probs[:, 0] + label_smoothing * uniform
        return per_position.sum()

    def next_item_hidden(self, history: Tensor) -> Tensor:
        """The state that predicts the next item after each right-padded history: (B, dim)."""
        if self.causal:
            seq = last_window(history, self.cfg.max_len)
            last = ((seq > 0).sum(1) - 1).clamp(min=0)  # (B,)
            hidden = self.encode(seq)
            return hidden[torch.arange(seq.shape[0], device=seq.device), last]
        seq = last_window(history, self.cfg.max_len - 1)
        length = (seq > 0).sum(1)  # (B,)
        seq = torch.cat([seq, seq.new_zeros(seq.shape[0], 1)], dim=1)  # (B, W + 1)
        seq = seq.scatter(1, length[:, None], self.mask_token)
        hidden = self.encode(seq)
        return hidden[torch.arange(seq.shape[0], device=seq.device), length]

    def forward(self, history: Tensor) -> Tensor:
        """Scores (B, num_items + 1) of the next item after each right-padded history (B, L)."""
        return self.item_scores(self.next_item_hidden(history))

    # ------------------------------------------------------------------ incremental scoring
    def new_cache(self) -> list[KVCache]:
        if not self.causal:
            raise ValueError("incremental scoring needs causal attention; BERT4Rec re-encodes")
        return self.encoder.new_cache(self.cfg.max_len)

    def extend(self, items: Tensor, cache: list[KVCache]) -> Tensor:
        """Append items (B, n) to the cached history; scores (B, num_items + 1) for the next one.

        Equals ``forward`` on the whole history as long as it fits in ``max_len`` positions.
        """
        start = len(cache[0])
        hidden = self.encoder(self.embed(items, start), causal=True, kv_cache=cache)
        return self.item_scores(hidden[:, -1])
