"""Positional encodings: closed forms, RoPE invariances, ALiBi slopes and bias."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from attention_core import (
    ALiBi,
    AttentionPosition,
    LearnedPositionalEncoding,
    MultiHeadAttention,
    RotaryEmbedding,
    RotaryEmbedding2D,
    SinCos2DPositionalEncoding,
    SinusoidalPositionalEncoding,
    alibi_slopes,
    sincos_2d_table,
    sinusoidal_table,
)

TOL = {"atol": 1e-5, "rtol": 1e-5}


# --------------------------------------------------------------------------------------------
# token-level encodings
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("length", "dim"), [(50, 16), (7, 2), (1, 64)])
def test_sinusoidal_table_closed_form(length, dim):
    table = sinusoidal_table(length, dim)
    assert table.shape == (length, dim) and table.dtype == torch.float32
    expected = torch.empty(length, dim, dtype=torch.float64)
    for pos in range(length):
        for i in range(dim // 2):
            angle = pos / 10000 ** (2 * i / dim)
            expected[pos, 2 * i] = math.sin(angle)
            expected[pos, 2 * i + 1] = math.cos(angle)
    torch.testing.assert_close(table, expected.float(), **TOL)


def test_sinusoidal_base_and_errors():
    t = sinusoidal_table(4, 4, base=100.0)
    torch.testing.assert_close(t[3, 2], torch.tensor(math.sin(3 / 100 ** (2 / 4))))
    with pytest.raises(ValueError, match="even dim, got dim=5"):
        sinusoidal_table(4, 5)


def test_sinusoidal_module_adds_table_with_offset():
    enc = SinusoidalPositionalEncoding(8, max_len=10)
    x = torch.randn(2, 4, 8)
    torch.testing.assert_close(enc(x), x + sinusoidal_table(10, 8)[:4])
    torch.testing.assert_close(enc(x, offset=6), x + sinusoidal_table(10, 8)[6:10])
    assert "table" not in enc.state_dict()
    with pytest.raises(ValueError, match="sequence of 4 tokens at offset 7 exceeds max_len=10"):
        enc(x, offset=7)


def test_learned_encoding():
    enc = LearnedPositionalEncoding(8, max_len=6)
    x = torch.randn(2, 4, 8)
    torch.testing.assert_close(enc(x, offset=2), x + enc.weight[2:6])
    enc(x, offset=1).square().sum().backward()
    assert enc.weight.grad is not None and torch.isfinite(enc.weight.grad).all()
    assert enc.weight.grad[1:5].abs().sum() > 0 and (enc.weight.grad[[0, 5]] == 0).all()
    with pytest.raises(ValueError, match="sequence of 4 tokens at offset 3 exceeds max_len=6"):
        enc(x, offset=3)


@pytest.mark.parametrize(("dim", "grid"), [(16, (3, 5)), (8, (4, 4)), (32, (1, 7))])
def test_sincos_2d_table_shape_and_halves(dim, grid):
    gh, gw = grid
    table = sincos_2d_table(dim, grid)
    assert table.shape == (gh * gw, dim)
    rows, cols = sinusoidal_table(gh, dim // 2), sinusoidal_table(gw, dim // 2)
    for r in range(gh):
        for c in range(gw):
            torch.testing.assert_close(table[r * gw + c, : dim // 2], rows[r])
            torch.testing.assert_close(table[r * gw + c, dim // 2 :], cols[c])
    with pytest.raises(ValueError, match="dim divisible by 4, got dim=6"):
        sincos_2d_table(6, grid)


def test_sincos_2d_module_skips_prefix_tokens():
    enc = SinCos2DPositionalEncoding(16, (2, 3), num_prefix_tokens=1)
    assert enc.table.shape == (6, 16)
    x = torch.randn(2, 7, 16)
    out = enc(x)
    assert out.shape == (2, 7, 16)
    assert torch.equal(out[:, 0], x[:, 0])
    torch.testing.assert_close(out[:, 1:], x[:, 1:] + sincos_2d_table(16, (2, 3)))
    with pytest.raises(
        ValueError, match=r"expected 1 prefix tokens \+ 6 grid tokens \(2, 3\), got 6"
    ):
        enc(torch.randn(2, 6, 16))


# --------------------------------------------------------------------------------------------
# rotary embeddings
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("head_dim", "rotary_dim"), [(8, None), (16, 8), (6, 6)])
def test_rope_preserves_norms(head_dim, rotary_dim):
    rope = RotaryEmbedding(head_dim, rotary_dim=rotary_dim)
    x = torch.randn(2, 3, 20, head_dim)
    for start in (0, 5, 1000):
        y = rope.rotate_tensor(x, start)
        torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1), **TOL)
    y = rope.rotate_tensor(x, 0)
    assert torch.equal(y[:, :, 0], x[:, :, 0])  # position 0 is not rotated
    assert not torch.allclose(y[:, :, 1:], x[:, :, 1:])
    if rotary_dim is not None and rotary_dim < head_dim:
        assert torch.equal(y[..., rotary_dim:], x[..., rotary_dim:])


def test_rope_matches_complex_rotation():
    d = 8
    rope = RotaryEmbedding(d, base=10000.0)
    x = torch.randn(1, 1, 5, d, dtype=torch.float64).float()
    y = rope.rotate_tensor(x, 3)
    # channel pair (i, i + d/2) is the complex number x_i + j x_{i+d/2}, turned by pos * theta_i
    z = torch.complex(x[..., : d // 2].double(), x[..., d // 2 :].double())
    theta = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    angle = torch.arange(3, 8, dtype=torch.float64)[:, None] * theta
    rotated = z * torch.polar(torch.ones_like(angle), angle)
    expected = torch.cat([rotated.real, rotated.imag], -1).float()
    torch.testing.assert_close(y, expected, **TOL)


@settings(max_examples=30, deadline=None)
@given(
    i=st.integers(0, 40),
    j=st.integers(0, 40),
    shift=st.integers(1, 500),
    seed=st.integers(0, 2**31 - 1),
)
def test_rope_scores_depend_only_on_offset(i, j, shift, seed):
    gen = torch.Generator().manual_seed(seed)
    rope = RotaryEmbedding(16)
    q = torch.randn(1, 2, 1, 16, generator=gen, dtype=torch.float64)
    k = torch.randn(1, 2, 1, 16, generator=gen, dtype=torch.float64)
    s1 = (rope.rotate_tensor(q, i) * rope.rotate_tensor(k, j)).sum(-1)
    s2 = (rope.rotate_tensor(q, i + shift) * rope.rotate_tensor(k, j + shift)).sum(-1)
    torch.testing.assert_close(s1, s2, atol=1e-4, rtol=1e-4)


def test_rope_scores_change_with_offset():
    rope = RotaryEmbedding(16)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)
    s = [(rope.rotate_tensor(q, 0) * rope.rotate_tensor(k, d)).sum() for d in range(4)]
    assert len({round(float(v), 4) for v in s}) == 4


def test_rope_start_offsets_a_slice():
    rope = RotaryEmbedding(8)
    x = torch.randn(2, 2, 9, 8)
    torch.testing.assert_close(
        rope.rotate_tensor(x[:, :, 4:], 4), rope.rotate_tensor(x, 0)[:, :, 4:], **TOL
    )
    q, k = rope.rotate(x, x[:, :1], 2, 0)
    torch.testing.assert_close(q, rope.rotate_tensor(x, 2))
    torch.testing.assert_close(k, rope.rotate_tensor(x[:, :1], 0))


def test_rope_rejects_bad_rotary_dim():
    with pytest.raises(ValueError, match="rotary_dim must be even and <= head_dim=8, got 5"):
        RotaryEmbedding(8, rotary_dim=5)
    with pytest.raises(ValueError, match="<= head_dim=8, got 10"):
        RotaryEmbedding(8, rotary_dim=10)


def test_rope_2d_preserves_norms_and_prefix():
    rope = RotaryEmbedding2D(8, (3, 4), num_prefix_tokens=2)
    x = torch.randn(2, 3, 14, 8)
    y = rope.rotate_tensor(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1), **TOL)
    assert torch.equal(y[:, :, :2], x[:, :, :2])
    assert torch.equal(y[:, :, 2], x[:, :, 2])  # grid cell (0, 0) has angle zero
    assert not torch.allclose(y[:, :, 3:], x[:, :, 3:])
    q, k = rope.rotate(x, x, 0, 0)
    assert torch.equal(q, y) and torch.equal(k, y)
    with pytest.raises(
        ValueError, match=r"built for \(3, 4\) grid tokens after 2 prefix tokens, got 13"
    ):
        rope.rotate_tensor(x[:, :, :13])
    with pytest.raises(ValueError, match="head_dim divisible by 4, got 6"):
        RotaryEmbedding2D(6, (2, 2))


def test_rope_2d_scores_depend_only_on_grid_offset():
    gh, gw = 4, 5
    rope = RotaryEmbedding2D(8, (gh, gw))
    q0, k0 = torch.randn(8, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    q = rope.rotate_tensor(q0.expand(1, 1, gh * gw, 8).float())[0, 0].double()
    k = rope.rotate_tensor(k0.expand(1, 1, gh * gw, 8).float())[0, 0].double()
    scores = q @ k.T  # (N, N)
    seen: dict[tuple[int, int], float] = {}
    for a in range(gh * gw):
        for b in range(gh * gw):
            key = (a // gw - b // gw, a % gw - b % gw)
            if key in seen:
                assert abs(scores[a, b].item() - seen[key]) < 1e-4
            else:
                seen[key] = scores[a, b].item()
    # rows and columns both matter
    assert abs(seen[(1, 0)] - seen[(0, 0)]) > 1e-4 and abs(seen[(0, 1)] - seen[(0, 0)]) > 1e-4


# --------------------------------------------------------------------------------------------
# ALiBi
# --------------------------------------------------------------------------------------------


def reference_alibi_slopes(n: int) -> list[float]:
    """Slopes as in Press et al.'s released code (and BLOOM / MPT)."""

    def power_of_2(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(n).is_integer():
        return power_of_2(n)
    closest = 2 ** math.floor(math.log2(n))
    return power_of_2(closest) + reference_alibi_slopes(2 * closest)[0::2][: n - closest]


def test_alibi_slopes_for_8_heads():
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0**-i for i in range(1, 9)]))
    torch.testing.assert_close(alibi_slopes(16)[:2], torch.tensor([2**-0.5, 2.0**-1]))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 6, 7, 12, 24])
def test_alibi_slopes_any_head_count(n):
    slopes = alibi_slopes(n)
    assert slopes.shape == (n,) and (slopes > 0).all() and (slopes <= 1).all()
    assert len(set(slopes.tolist())) == n  # every head its own slope
    torch.testing.assert_close(slopes, torch.tensor(reference_alibi_slopes(n)))
    # the paper's layout: the 2^floor(log2 n) geometric slopes, strictly decreasing, then the
    # in-between slopes of the next power of two, also strictly decreasing
    closest = 2 ** math.floor(math.log2(n))
    head, tail = slopes[:closest], slopes[closest:]
    assert (head[1:] < head[:-1]).all() and (tail[1:] < tail[:-1]).all()
    torch.testing.assert_close(head, alibi_slopes(closest))


@pytest.mark.parametrize(("lq", "lk", "q_start"), [(6, 6, 0), (1, 9, 8), (3, 7, 4), (4, 4, 2)])
def test_alibi_bias_closed_form(lq, lk, q_start):
    alibi = ALiBi(8)
    bias = alibi.bias(lq, lk, q_start, torch.device("cpu"))
    assert bias.shape == (8, lq, lk)
    expected = torch.empty(8, lq, lk)
    for h in range(8):
        for i in range(lq):
            for j in range(lk):
                expected[h, i, j] = -(2.0 ** -(h + 1)) * abs(i + q_start - j)
    torch.testing.assert_close(bias, expected)
    q, k = torch.ones(1), torch.zeros(1)
    rq, rk = alibi.rotate(q, k, 0, 0)
    assert rq is q and rk is k


def test_alibi_inside_attention_adds_the_bias():
    m = MultiHeadAttention(16, 4, pos=ALiBi(4)).eval()
    x = torch.randn(2, 6, 16)
    q, k, v = (t.view(2, 6, 4, 4).transpose(1, 2) for t in m.qkv(x).split(16, -1))
    bias = ALiBi(4).bias(6, 6, 0, x.device)
    causal = torch.ones(6, 6, dtype=torch.bool).tril()
    for is_causal, mask in ((False, bias), (True, bias.masked_fill(~causal, float("-inf")))):
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        expected = m.proj(out.transpose(1, 2).reshape(2, 6, 16))
        torch.testing.assert_close(m(x, causal=is_causal), expected, **TOL)
    # combined with a key-padding mask
    pad = torch.tensor([[True] * 6, [True] * 4 + [False] * 2]).view(2, 1, 1, 6)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.masked_fill(~pad, float("-inf")))
    expected = m.proj(out.transpose(1, 2).reshape(2, 6, 16))
    torch.testing.assert_close(m(x, mask=pad), expected, **TOL)


def test_base_attention_position_is_a_no_op():
    pos = AttentionPosition()
    q, k = torch.randn(1, 1, 2, 4), torch.randn(1, 1, 2, 4)
    rq, rk = pos.rotate(q, k, 0, 0)
    assert rq is q and rk is k
    assert pos.bias(2, 2, 0, q.device) is None
