"""Word decoders over an encoder's grid; one interface: teacher-forced ``forward``, and
``init_state``/``step``/``reorder`` for greedy and beam decoding (``decoding.py``).

* ``LSTMDecoder``: Show, Attend and Tell (Xu et al., 2015): Bahdanau attention over the grid from
  the previous hidden state and a gating scalar on the context; with ``attend=False`` the
  mean-pooled grid instead (the no-attention baseline);
* ``TransformerCaptionDecoder``: masked self-attention + cross-attention to the grid, decoded
  with a KV cache.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from attention_core import (
    AdditiveAttention,
    AttentionConfig,
    Dropout,
    TransformerDecoder,
    build_position,
    capture_attention,
)

__all__ = ["DECODER_POSITIONS", "LSTMDecoder", "State", "TransformerCaptionDecoder"]

# The Transformer decoder's position schemes (1-D: words in a sentence); the first is the default.
DECODER_POSITIONS = ("learned", "none", "sincos", "rope", "alibi")

State = dict[str, Any]


class LSTMDecoder(nn.Module):
    """Show, Attend and Tell's LSTM; with ``attend=False`` the context is the mean feature.

    Words come from the paper's deep output layer (Xu et al. 2015, eq. 7),
    ``L_o(E y_{t-1} + L_h h_t + L_z z_t)``: the context ``z_t`` reaches the logits directly as
    well as through the LSTM. Without that path an encoder trained from scratch gets its signal
    only through the gates and the decoder learns the grammar but not the image (the digit-scene
    benchmark showed word accuracy at chance after 1,400 steps; with it, the digits are learned).

    The grid features first pass a linear map and a LayerNorm, as the Transformer decoder
    projects its memory: a from-scratch encoder's BatchNorm shifts its features between batch
    statistics (training) and running statistics (evaluation), and the LSTM's saturating gates
    turned that shift into a validation loss several times the training loss.
    """

    def __init__(
        self,
        vocab_size: int,
        feature_dim: int,
        embed_dim: int = 64,
        hidden_dim: int = 256,
        attention_dim: int = 128,
        dropout: float = 0.3,
        attend: bool = True,
    ):
        super().__init__()
        self.attend = attend
        self.feature_proj = nn.Sequential(
            nn.Linear(feature_dim, feature_dim), nn.LayerNorm(feature_dim)
        )
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.attention = (
            AdditiveAttention(hidden_dim, feature_dim, attention_dim) if attend else None
        )
        self.gate = nn.Linear(hidden_dim, feature_dim) if attend else None  # f_beta
        if self.gate is not None:
            # The gate starts open (beta ~ 0.95). Half-open, it was the first thing the
            # language model learned to shut while the image was still noise to it, and a shut
            # gate passes the encoder almost no gradient (digit scenes: word accuracy at chance
            # for 1,000 steps with the default init, learned within 300 with this one).
            nn.init.constant_(self.gate.bias, 3.0)
        self.init_h = nn.Linear(feature_dim, hidden_dim)
        self.init_c = nn.Linear(feature_dim, hidden_dim)
        self.cell = nn.LSTMCell(embed_dim + feature_dim, hidden_dim)
        self.dropout = Dropout(dropout)
        self.out_h = nn.Linear(hidden_dim, embed_dim)  # L_h
        self.out_z = nn.Linear(feature_dim, embed_dim, bias=False)  # L_z
        self.head = nn.Linear(embed_dim, vocab_size)  # L_o

    def init_state(self, features: Tensor, use_cache: bool = True) -> State:
        features = self.feature_proj(features)  # (B, N, D)
        mean = features.mean(1)  # (B, D)
        state: State = {"h": torch.tanh(self.init_h(mean)), "c": torch.tanh(self.init_c(mean))}
        state["features"] = features
        if self.attention is not None:
            state["keys"] = self.attention.project_keys(features)  # (B, N, A)
        else:
            state["mean"] = mean
        return state

    def step(
        self, tokens: Tensor, state: State, need_attention: bool = True
    ) -> tuple[Tensor, Tensor | None, State]:
        """tokens (B,) -> logits (B, V), attention (B, N) or None, the next state."""
        context, alpha = self.read(state)
        logits, state = self.advance(tokens, context, state)
        return logits, alpha, state

    def read(self, state: State) -> tuple[Tensor, Tensor | None]:
        """The gated context (B, D) this step reads from the grid and its weights (B, N)."""
        if self.attention is None:
            return state["mean"], None
        h = state["h"]
        context, alpha = self.attention(h, state["features"], projected_keys=state["keys"])
        return self.gated(h, context), alpha

    def gated(self, h: Tensor, context: Tensor) -> Tensor:
        """The paper's gating scalar beta = sigmoid(f_beta(h)) on the context (§4.2.1)."""
        assert self.gate is not None
        return torch.sigmoid(self.gate(h)) * context  # (B, D)

    def advance(self, tokens: Tensor, context: Tensor, state: State) -> tuple[Tensor, State]:
        """One LSTM step from the previous words (B,) and the context (B, D): logits (B, V)."""
        embedded = self.embed(tokens)  # (B, E)
        h, c = self.cell(torch.cat([embedded, context], dim=-1), (state["h"], state["c"]))
        deep = embedded + self.out_h(h) + self.out_z(context)  # (B, E), deep output layer
        logits = self.head(self.dropout(deep))  # (B, V)
        return logits, {**state, "h": h, "c": c}

    def reorder(self, state: State, index: Tensor) -> State:
        return {k: v.index_select(0, index) for k, v in state.items()}

    def forward(self, features: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor | None]:
        """Teacher forcing: features (B, N, D), tokens (B, T) -> logits (B, T, V), alphas (B, T, N)."""
        state = self.init_state(features)
        logits, alphas = [], []
        for t in range(tokens.shape[1]):
            step_logits, alpha, state = self.step(tokens[:, t], state)
            logits.append(step_logits)
            if alpha is not None:
                alphas.append(alpha)
        return torch.stack(logits, 1), (torch.stack(alphas, 1) if alphas else None)


class TransformerCaptionDecoder(nn.Module):
    """Token embedding + positions + ``attention_core.TransformerDecoder`` + a head.

    ``attention`` is the masked self-attention's setting, resolved (``pos`` one of
    ``DECODER_POSITIONS``: a learned or sin-cos table added to the embeddings, RoPE or ALiBi
    inside the attention, or none); ``cross_attention`` the cross-attention's.
    """

    def __init__(
        self,
        vocab_size: int,
        feature_dim: int,
        dim: int = 128,
        depth: int = 2,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.1,
        max_len: int = 64,
        attention: AttentionConfig | None = None,
        cross_attention: AttentionConfig | None = None,
    ):
        super().__init__()
        attention = attention or AttentionConfig(pos=DECODER_POSITIONS[0])
        self.max_len = max_len
        self.embed = nn.Embedding(vocab_size, dim)
        # `pos` keeps its name for the learned table, so earlier checkpoints load.
        self.pos, attn_pos = build_position(
            attention.pos or DECODER_POSITIONS[0], dim=dim, num_heads=num_heads, max_len=max_len
        )
        self.pos_drop = Dropout(dropout)
        self.decoder = TransformerDecoder(
            dim,
            depth,
            num_heads,
            mlp_ratio,
            memory_dim=feature_dim,
            proj_drop=dropout,
            pos=attn_pos,
            attention=attention,
            cross_attention=cross_attention,
        )
        self.head = nn.Linear(dim, vocab_size)
        self._cross_name = f"blocks.{depth - 1}.cross_attn"

    def _run(
        self, tokens: Tensor, memory: Tensor, offset: int, cache: Any, need_attention: bool
    ) -> tuple[Tensor, Tensor | None]:
        x = self.embed(tokens)  # (B, L, dim)
        if self.pos is not None:
            x = self.pos(x, offset=offset)
        elif offset + x.shape[1] > self.max_len:
            raise ValueError(
                f"{offset + x.shape[1]} tokens exceed the decoder's max_len={self.max_len}"
            )
        x = self.pos_drop(x)
        if not need_attention:
            return self.decoder(x, memory, causal=True, kv_cache=cache), None
        with capture_attention(self.decoder, layers=[self._cross_name]) as maps:
            h = self.decoder(x, memory, causal=True, kv_cache=cache)
        return h, maps[self._cross_name].mean(1)  # (B, L, N): last layer, heads averaged

    def forward(self, features: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor | None]:
        """Teacher forcing: features (B, N, D), tokens (B, T) -> logits (B, T, V), no alphas."""
        h, _ = self._run(tokens, features, 0, None, need_attention=False)
        return self.head(h), None

    def init_state(self, features: Tensor, use_cache: bool = True) -> State:
        b = features.shape[0]
        state: State = {"memory": features, "t": 0}
        if use_cache:
            state["cache"] = self.decoder.new_cache(self.max_len)
        else:
            state["tokens"] = features.new_zeros(b, 0, dtype=torch.long)
        return state

    def step(
        self, tokens: Tensor, state: State, need_attention: bool = True
    ) -> tuple[Tensor, Tensor | None, State]:
        """tokens (B,) -> logits (B, V), cross-attention (B, N) of the last layer, next state."""
        t, memory = state["t"], state["memory"]
        if "cache" in state:
            h, attn = self._run(tokens[:, None], memory, t, state["cache"], need_attention)
            new = {**state, "t": t + 1}
        else:
            seq = torch.cat([state["tokens"], tokens[:, None]], dim=1)  # (B, t+1)
            h, attn = self._run(seq, memory, 0, None, need_attention)
            new = {**state, "t": t + 1, "tokens": seq}
        logits = self.head(h[:, -1])  # (B, V)
        return logits, (attn[:, -1] if attn is not None else None), new

    def reorder(self, state: State, index: Tensor) -> State:
        new = {**state, "memory": state["memory"].index_select(0, index)}
        if "cache" in state:
            for self_cache, cross_cache in state["cache"]:
                self_cache.reorder(index)
                cross_cache.reorder(index)
        else:
            new["tokens"] = state["tokens"].index_select(0, index)
        return new
