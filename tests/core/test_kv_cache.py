"""KVCache, and incremental decoding that matches one full causal pass."""

from __future__ import annotations

import pytest
import torch

from attention_core import (
    ALiBi,
    KVCache,
    MultiHeadAttention,
    RotaryEmbedding,
    TransformerDecoder,
    TransformerEncoder,
)

TOL = {"atol": 1e-5, "rtol": 1e-5}


# --------------------------------------------------------------------------------------------
# the cache itself
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_len", [None, 8])
def test_update_appends_and_returns_everything(max_len):
    cache = KVCache(max_len)
    assert len(cache) == 0 and cache.keys is None and cache.values is None
    k1, v1 = torch.randn(2, 3, 2, 4), torch.randn(2, 3, 2, 5)
    k2, v2 = torch.randn(2, 3, 1, 4), torch.randn(2, 3, 1, 5)
    keys, values = cache.update(k1, v1)
    assert torch.equal(keys, k1) and torch.equal(values, v1)
    keys, values = cache.update(k2, v2)
    assert len(cache) == 3
    assert torch.equal(keys, torch.cat([k1, k2], 2)) and torch.equal(values, torch.cat([v1, v2], 2))
    assert torch.equal(cache.keys, keys) and torch.equal(cache.values, values)
    if max_len is not None:
        assert cache._k.shape[2] == max_len  # preallocated once
    cache.reset()
    assert len(cache) == 0 and cache.keys is None


def test_max_len_overflow_raises():
    cache = KVCache(max_len=4)
    with pytest.raises(ValueError, match="5 tokens exceed the cache's max_len=4"):
        cache.update(torch.randn(1, 1, 5, 2), torch.randn(1, 1, 5, 2))
    cache.update(torch.randn(1, 1, 3, 2), torch.randn(1, 1, 3, 2))
    cache.update(torch.randn(1, 1, 1, 2), torch.randn(1, 1, 1, 2))
    with pytest.raises(ValueError, match="cache holds 4 tokens; 1 more exceed max_len=4"):
        cache.update(torch.randn(1, 1, 1, 2), torch.randn(1, 1, 1, 2))
    assert len(cache) == 4


def test_max_len_overflow_through_the_layer():
    m = MultiHeadAttention(8, 2)
    cache = KVCache(max_len=3)
    for _ in range(3):
        m(torch.randn(1, 1, 8), causal=True, kv_cache=cache)
    with pytest.raises(ValueError, match="exceed max_len=3"):
        m(torch.randn(1, 1, 8), causal=True, kv_cache=cache)


@pytest.mark.parametrize("max_len", [None, 6])
def test_reorder_selects_batch_rows(max_len):
    cache = KVCache(max_len)
    k, v = torch.randn(3, 2, 4, 5), torch.randn(3, 2, 4, 5)
    cache.update(k, v)
    index = torch.tensor([2, 0, 0])
    cache.reorder(index)
    assert torch.equal(cache.keys, k[index]) and torch.equal(cache.values, v[index])
    # appending after a reorder continues the selected rows
    k2, v2 = torch.randn(3, 2, 1, 5), torch.randn(3, 2, 1, 5)
    keys, values = cache.update(k2, v2)
    assert torch.equal(keys, torch.cat([k[index], k2], 2))
    assert torch.equal(values, torch.cat([v[index], v2], 2))
    KVCache().reorder(index)  # an empty cache has nothing to reorder


# --------------------------------------------------------------------------------------------
# incremental decoding == one causal pass
# --------------------------------------------------------------------------------------------

POSITIONS = {
    "none": lambda h, d: None,
    "rope": lambda h, d: RotaryEmbedding(d),
    "alibi": lambda h, d: ALiBi(h),
}
BACKENDS = {
    "sdpa": {"backend": "sdpa"},
    "math": {"backend": "math"},
    "local": {"backend": "local", "window": 3},
    "linear": {"backend": "linear", "chunk_size": 4},
}


def step_by_step(m, x, cache, chunks):
    outs, t = [], 0
    for size in chunks:
        outs.append(m(x[:, t : t + size], causal=True, kv_cache=cache))
        t += size
    assert t == x.shape[1]
    return torch.cat(outs, 1)


# linear attention cannot add ALiBi's score bias, so that pair is left out
@pytest.mark.parametrize(
    ("backend", "pos"),
    [(b, p) for b in BACKENDS for p in POSITIONS if (b, p) != ("linear", "alibi")],
)
@pytest.mark.parametrize("num_kv_heads", [4, 2, 1])
@pytest.mark.parametrize("max_len", [None, 16])
def test_mha_token_by_token_equals_full_causal_pass(backend, pos, num_kv_heads, max_len):
    m = MultiHeadAttention(
        32, 4, num_kv_heads=num_kv_heads, pos=POSITIONS[pos](4, 8), **BACKENDS[backend]
    ).eval()
    x = torch.randn(2, 10, 32)
    full = m(x, causal=True)
    one_at_a_time = step_by_step(m, x, KVCache(max_len), [1] * 10)
    torch.testing.assert_close(one_at_a_time, full, **TOL)
    # a prompt first, then single tokens and a chunk
    torch.testing.assert_close(step_by_step(m, x, KVCache(max_len), [4, 1, 1, 3, 1]), full, **TOL)


def test_cache_actually_matters():
    m = MultiHeadAttention(16, 2, pos=RotaryEmbedding(8)).eval()
    x = torch.randn(1, 5, 16)
    full = m(x, causal=True)
    without_cache = torch.cat([m(x[:, t : t + 1], causal=True) for t in range(5)], 1)
    assert not torch.allclose(without_cache[:, 1:], full[:, 1:], atol=1e-3)


def test_beam_reorder_through_the_layer():
    m = MultiHeadAttention(16, 2, pos=RotaryEmbedding(8)).eval()
    x = torch.randn(2, 6, 16)
    cache = KVCache()
    step_by_step(m, x[:, :4], cache, [4])
    cache.reorder(torch.tensor([1, 1]))  # both beams continue batch row 1
    tail = torch.randn(2, 2, 16)
    got = step_by_step(m, tail, cache, [1, 1])
    for row in range(2):
        seq = torch.cat([x[1:2, :4], tail[row : row + 1]], 1)
        torch.testing.assert_close(got[row : row + 1], m(seq, causal=True)[:, 4:], **TOL)


def test_static_cross_attention_cache_is_computed_once():
    m = MultiHeadAttention(16, 2, kdim=12, vdim=12).eval()
    x, ctx = torch.randn(2, 3, 16), torch.randn(2, 5, 12)
    cache = KVCache(static=True)
    first = m(x, ctx, kv_cache=cache)
    assert len(cache) == 5
    torch.testing.assert_close(first, m(x, ctx), **TOL)
    # later calls reuse the cached keys and values, whatever context they are given
    second = m(x[:, :1], torch.randn(2, 5, 12), kv_cache=cache)
    assert len(cache) == 5
    torch.testing.assert_close(second, m(x[:, :1], ctx), **TOL)


@pytest.mark.parametrize("max_len", [None, 12])
@pytest.mark.parametrize("memory_dim", [None, 12])
@pytest.mark.parametrize("block_kwargs", [{}, {"num_kv_heads": 2, "pos": "rope"}, {"pos": "alibi"}])
def test_decoder_with_new_cache_equals_full_pass(max_len, memory_dim, block_kwargs):
    kw = dict(block_kwargs)
    if kw.get("pos") == "rope":
        kw["pos"] = RotaryEmbedding(8)
    elif kw.get("pos") == "alibi":
        kw["pos"] = ALiBi(4)
    dec = TransformerDecoder(32, 2, 4, memory_dim=memory_dim, init_values=0.5, **kw).eval()
    x = torch.randn(2, 9, 32)
    memory = torch.randn(2, 5, memory_dim or 32)
    memory_mask = (torch.arange(5)[None, :] < torch.tensor([5, 3])[:, None]).view(2, 1, 1, 5)
    full = dec(x, memory, memory_mask=memory_mask)
    cache = dec.new_cache(max_len)
    assert len(cache) == 2 and all(c[1].static and not c[0].static for c in cache)
    steps = [
        dec(x[:, t : t + 1], memory, memory_mask=memory_mask, kv_cache=cache) for t in range(9)
    ]
    torch.testing.assert_close(torch.cat(steps, 1), full, **TOL)
    assert all(len(self_c) == 9 and len(cross_c) == 5 for self_c, cross_c in cache)


def test_encoder_with_new_cache_equals_full_causal_pass():
    enc = TransformerEncoder(16, 2, 2, pos=RotaryEmbedding(8)).eval()
    x = torch.randn(2, 7, 16)
    full = enc(x, causal=True)
    cache = enc.new_cache(max_len=7)
    steps = [enc(x[:, t : t + 1], causal=True, kv_cache=cache) for t in range(7)]
    torch.testing.assert_close(torch.cat(steps, 1), full, **TOL)
