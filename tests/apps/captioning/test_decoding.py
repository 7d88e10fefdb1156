"""Greedy and beam search: beam 1 == greedy, KV-cache parity, batching, <eos> and max length,
the length penalty, and a case where beam search beats greedy."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from attnlab_captioning.decoding import beam_search, greedy_decode
from attnlab_captioning.model import CaptionerConfig, build_captioner
from torch import Tensor, nn

from attention_core import AttentionConfig

IDS = dict(bos_id=1, eos_id=2, pad_id=0)


class MarkovDecoder(nn.Module):
    """Next-word probabilities depend only on the previous word (ids: 0 pad, 1 bos, 2 eos, 3, 4)."""

    def __init__(self, table: dict[int, list[float]]):
        super().__init__()
        probs = torch.full((5, 5), 1e-9)
        for prev, row in table.items():
            probs[prev] = torch.tensor(row)
        self.register_buffer("logits", probs.log())

    def init_state(self, features: Tensor, use_cache: bool = True) -> dict[str, Any]:
        return {"dummy": features[:, 0, 0]}

    def step(
        self, tokens: Tensor, state: dict[str, Any], need_attention: bool = True
    ) -> tuple[Tensor, None, dict[str, Any]]:
        return self.logits[tokens], None, state

    def reorder(self, state: dict[str, Any], index: Tensor) -> dict[str, Any]:
        return {k: v.index_select(0, index) for k, v in state.items()}


# bos -> 3 (.6) | 4 (.4); 3 -> eos .3, 3 .3, 4 .4; 4 -> eos .9, 3 .05, 4 .05
TABLE = {
    1: [0, 0, 0, 0.6, 0.4],
    3: [0, 0, 0.3, 0.3, 0.4],
    4: [0, 0, 0.9, 0.05, 0.05],
    0: [1, 0, 0, 0, 0],
}


def test_beam_finds_the_better_caption_greedy_misses() -> None:
    dec, feats = MarkovDecoder(TABLE), torch.zeros(2, 1, 1)
    greedy = greedy_decode(dec, feats, max_len=5, **IDS)
    assert greedy.tokens[0].tolist()[:3] == [3, 4, 2]  # p = .6 * .4 * .9 = .216
    assert greedy.scores[0].item() == pytest.approx(math.log(0.216), abs=1e-5)
    beam = beam_search(dec, feats, max_len=5, beam_size=2, **IDS)
    assert beam.tokens[0].tolist()[:2] == [4, 2]  # p = .4 * .9 = .36
    assert beam.scores[0].item() == pytest.approx(math.log(0.36), abs=1e-5)
    assert beam.lengths.tolist() == [2, 2]
    assert (beam.tokens[:, 2:] == 0).all()  # <pad> after <eos>


def test_length_penalty_favours_longer_captions() -> None:
    dec, feats = MarkovDecoder(TABLE), torch.zeros(1, 1, 1)
    # log .36 / (7/6)^5 = -0.473 < log .216 / (8/6)^5 = -0.364: the 3-token caption wins
    long = beam_search(dec, feats, max_len=5, beam_size=2, alpha=5.0, **IDS)
    assert long.tokens[0].tolist()[:3] == [3, 4, 2]


def test_max_len_caps_captions_that_never_end() -> None:
    loop = {1: [0, 0, 0, 1.0, 0], 3: [0, 0, 1e-6, 1.0, 0], 0: [1, 0, 0, 0, 0]}
    dec, feats = MarkovDecoder(loop), torch.zeros(2, 1, 1)
    out = greedy_decode(dec, feats, max_len=4, **IDS)
    assert out.tokens[0].tolist() == [3, 3, 3, 3, 2]  # 4 words, then <eos> forced
    assert out.lengths[0].item() == 5
    beam = beam_search(dec, feats, max_len=4, beam_size=3, **IDS)
    assert beam.tokens.shape[1] <= 5 and (beam.lengths <= 5).all()
    for row, n in zip(beam.tokens.tolist(), beam.lengths.tolist()):
        assert row[n - 1] == 2  # every caption ends with <eos>


def _model(decoder: str, attention: AttentionConfig | None = None) -> nn.Module:
    torch.manual_seed(0)
    cfg = CaptionerConfig(
        decoder=decoder,
        encoder_width=8,
        word_dim=16,
        hidden_dim=32,
        attention_dim=16,
        dec_dim=32,
        dec_depth=2,
        dec_heads=2,
        dropout=0.0,
        max_len=10,
        attention=attention or AttentionConfig(),
    )
    return build_captioner(cfg, vocab_size=9).eval()


@pytest.mark.parametrize(
    "decoder", ["lstm_attention", "lstm_hard_attention", "transformer", "lstm_pooled"]
)
def test_beam_one_equals_greedy(decoder: str) -> None:
    model = _model(decoder)
    feats, _ = model.encode(torch.randn(4, 3, 32, 32))
    g = greedy_decode(model.decoder, feats, max_len=10, **IDS)
    b = beam_search(model.decoder, feats, max_len=10, beam_size=1, **IDS)
    assert torch.equal(g.tokens, b.tokens)
    # The same sums reached by two code paths (beam state goes through index_select, so the
    # matmuls see other buffers): the BLAS may round the last bit differently (seen once in CI).
    torch.testing.assert_close(g.scores, b.scores, rtol=0, atol=1e-5)
    assert torch.equal(g.lengths, b.lengths)
    if g.attention is not None:
        assert b.attention is not None
        torch.testing.assert_close(g.attention, b.attention)


# Self-attention settings whose KV-cache decoding must match recomputing the prefix: a window
# shorter than the captions (local), causal chunks shorter than them (linear), and positions
# applied inside the attention at the cache's offset (rope, alibi).
CACHED_SETTINGS = {
    "sdpa": AttentionConfig(),
    "local": AttentionConfig(backend="local", window=2),
    "local-rope": AttentionConfig(backend="local", window=2, block_size=3, pos="rope"),
    "linear": AttentionConfig(backend="linear", chunk_size=3),
    "linear-favor": AttentionConfig(backend="linear", feature_map="favor", chunk_size=4),
    "sdpa-rope": AttentionConfig(pos="rope"),
    "sdpa-alibi": AttentionConfig(pos="alibi"),
    "local-alibi": AttentionConfig(backend="local", window=3, pos="alibi"),
    "math-sincos": AttentionConfig(backend="math", pos="sincos"),
}


@pytest.mark.parametrize("setting", list(CACHED_SETTINGS))
@pytest.mark.parametrize("beam_size", [1, 3])
def test_transformer_kv_cache_parity(beam_size: int, setting: str) -> None:
    """Decoding with the KV cache and by recomputing the whole prefix every step give the same
    captions, scores and attention, for every self-attention setting that decodes."""
    model = _model("transformer", CACHED_SETTINGS[setting])
    feats, _ = model.encode(torch.randn(5, 3, 32, 32))
    cached = beam_search(
        model.decoder, feats, max_len=10, beam_size=beam_size, use_cache=True, **IDS
    )
    full = beam_search(
        model.decoder, feats, max_len=10, beam_size=beam_size, use_cache=False, **IDS
    )
    assert cached.tokens.shape[1] > 3
    assert torch.equal(cached.tokens, full.tokens)
    assert torch.equal(cached.lengths, full.lengths)
    torch.testing.assert_close(cached.scores, full.scores, rtol=0, atol=1e-5)
    assert cached.attention is not None and full.attention is not None
    torch.testing.assert_close(cached.attention, full.attention, rtol=0, atol=1e-5)


@pytest.mark.parametrize("decoder", ["lstm_attention", "lstm_hard_attention", "transformer"])
def test_batched_beam_equals_one_image_at_a_time(decoder: str) -> None:
    model = _model(decoder)
    feats, _ = model.encode(torch.randn(3, 3, 32, 32))
    batched = beam_search(model.decoder, feats, max_len=10, beam_size=3, **IDS)
    for i in range(3):
        one = beam_search(model.decoder, feats[i : i + 1], max_len=10, beam_size=3, **IDS)
        n = one.tokens.shape[1]
        assert batched.tokens[i, :n].tolist() == one.tokens[0].tolist()
        torch.testing.assert_close(batched.scores[i], one.scores[0], rtol=0, atol=1e-5)
