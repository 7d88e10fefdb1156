"""Functional attention: every backend against a reference, masks, GQA, errors, gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from attention_core import (
    attention,
    attention_weights,
    causal_mask,
    favor_projection,
    list_backends,
    normalize_mask,
)
from attention_core.attention import linear_features

EXACT = [b for b in ("sdpa", "math", "flex") if b in list_backends()]
TOL = {"atol": 1e-5, "rtol": 1e-5}


def rand(*shape: int, gen: torch.Generator | None = None, dtype=torch.float32) -> Tensor:
    return torch.randn(*shape, generator=gen, dtype=dtype)


def qkv(b, h, lq, lk, d, *, hkv=None, dv=None, gen=None, dtype=torch.float32):
    hkv = hkv or h
    dv = dv or d
    return (
        rand(b, h, lq, d, gen=gen, dtype=dtype),
        rand(b, hkv, lk, d, gen=gen, dtype=dtype),
        rand(b, hkv, lk, dv, gen=gen, dtype=dtype),
    )


def bottom_right_causal(lq: int, lk: int) -> Tensor:
    """Query i sits at absolute position i + lk - lq and sees keys j <= that position."""
    i = torch.arange(lq)[:, None] + (lk - lq)
    j = torch.arange(lk)[None, :]
    return j <= i


def band(lq: int, lk: int, window: int) -> Tensor:
    i = torch.arange(lq)[:, None] + (lk - lq)
    j = torch.arange(lk)[None, :]
    return (i - j).abs() <= window


def explicit_softmax(q, k, v, mask=None, scale=None):
    """softmax(q k^T * scale + mask) v with zero rows where every key is masked."""
    scale = scale if scale is not None else 1 / math.sqrt(q.shape[-1])
    s = q @ k.transpose(-1, -2) * scale
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else s + mask
    w = torch.softmax(s, -1).nan_to_num(0.0)
    return w @ v, w


# --------------------------------------------------------------------------------------------
# exact backends against torch's scaled_dot_product_attention
# --------------------------------------------------------------------------------------------

# name: (B, H, Lq, Lk, D, mask kind, causal)
CASES = {
    "self_nomask": (2, 4, 8, 8, 16, None, False),
    "cross_nomask": (2, 4, 5, 9, 16, None, False),
    "bool_mask": (2, 4, 8, 8, 16, "bool", False),
    "bool_mask_cross": (2, 2, 6, 11, 8, "bool", False),
    "float_mask": (2, 4, 8, 8, 16, "float", False),
    "float_mask_cross": (2, 3, 7, 4, 8, "float", False),
    "causal_self": (2, 4, 9, 9, 16, None, True),
    "causal_with_bool_mask": (2, 2, 7, 7, 8, "bool", True),
    "causal_with_float_mask": (2, 2, 7, 7, 8, "float", True),
    "causal_cache_shape": (2, 2, 3, 10, 8, None, True),
    "key_padding": (3, 4, 8, 8, 16, "pad", False),
    "key_padding_cross": (3, 2, 5, 13, 16, "pad", False),
    "key_padding_causal": (3, 2, 6, 6, 8, "pad", True),
    "odd_lengths": (2, 3, 13, 7, 8, "bool", False),
    "one_head": (2, 1, 6, 6, 8, "float", False),
    "head_dim_24": (2, 2, 10, 10, 24, "bool", False),
    "batch_1": (1, 2, 5, 5, 8, None, True),
    "single_token": (2, 2, 1, 1, 8, None, False),
}


def make_mask(kind, b, h, lq, lk, gen):
    """A mask of the given kind whose rows all keep key 0 visible (so no row is fully masked)."""
    if kind is None:
        return None
    if kind == "bool":
        m = torch.rand(b, h, lq, lk, generator=gen) > 0.4
        m[..., 0] = True
        return m
    if kind == "float":
        m = torch.randn(b, 1, lq, lk, generator=gen)
        m = m.masked_fill(torch.rand(b, 1, lq, lk, generator=gen) > 0.7, float("-inf"))
        m[..., 0] = 0.5
        return m
    if kind == "pad":
        lengths = torch.randint(1, lk + 1, (b,), generator=gen)
        lengths[0] = lk
        return (torch.arange(lk)[None, :] < lengths[:, None]).view(b, 1, 1, lk)
    raise AssertionError(kind)


def reference(q, k, v, mask, causal):
    """torch's sdpa, with our bottom-right causal convention made explicit."""
    lq, lk = q.shape[2], k.shape[2]
    if causal:
        cm = bottom_right_causal(lq, lk)
        if mask is None:
            mask = cm
        elif mask.dtype == torch.bool:
            mask = mask & cm
        else:
            mask = mask.masked_fill(~cm, float("-inf"))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


@pytest.mark.parametrize("backend", EXACT)
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_exact_backends_match_torch_sdpa(backend, case):
    b, h, lq, lk, d, kind, causal = CASES[case]
    gen = torch.Generator().manual_seed(list(CASES).index(case))
    q, k, v = qkv(b, h, lq, lk, d, gen=gen)
    mask = make_mask(kind, b, h, lq, lk, gen)
    out = attention(q, k, v, mask=mask, causal=causal, backend=backend)
    expected = reference(q, k, v, mask, causal)
    assert out.shape == (b, h, lq, d)
    torch.testing.assert_close(out, expected, **TOL)


def test_causal_self_uses_plain_lower_triangle():
    q, k, v = qkv(1, 2, 6, 6, 8)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    for backend in EXACT:
        torch.testing.assert_close(
            attention(q, k, v, causal=True, backend=backend), expected, **TOL
        )


@pytest.mark.parametrize("backend", EXACT)
def test_explicit_scale_and_value_dim(backend):
    q, k, v = qkv(2, 2, 5, 7, 8, dv=12)
    out = attention(q, k, v, scale=0.3, backend=backend)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, scale=0.3), **TOL)


@pytest.mark.parametrize("backend", EXACT)
def test_auto_is_sdpa(backend):
    q, k, v = qkv(2, 2, 5, 5, 8)
    torch.testing.assert_close(
        attention(q, k, v, backend="auto"), attention(q, k, v, backend=backend), **TOL
    )


@st.composite
def attention_problem(draw):
    b = draw(st.integers(1, 2))
    h = draw(st.sampled_from([1, 2, 4]))
    lq = draw(st.integers(1, 9))
    lk = draw(st.integers(1, 9))
    d = draw(st.sampled_from([4, 8, 12]))
    kind = draw(st.sampled_from([None, "bool", "float", "pad"]))
    causal = draw(st.booleans())
    if causal and lq > lk:
        lq, lk = lk, lq  # bottom-right causal with Lq > Lk masks whole rows; tested separately
    seed = draw(st.integers(0, 2**31 - 1))
    return b, h, lq, lk, d, kind, causal, seed


@pytest.mark.parametrize("backend", EXACT)
@settings(max_examples=30, deadline=None)
@given(problem=attention_problem())
def test_exact_backends_property(backend, problem):
    b, h, lq, lk, d, kind, causal, seed = problem
    if backend == "flex":
        # eager flex traces its score_mod again for every new shape (~0.5 s on CPU): vary the
        # masks and the causal flag, but over two shapes only
        b, h, d = 2, 2, 8
        lq, lk = (4, 4) if lq % 2 else (3, 7)
    gen = torch.Generator().manual_seed(seed)
    q, k, v = qkv(b, h, lq, lk, d, gen=gen)
    mask = make_mask(kind, b, h, lq, lk, gen)
    out = attention(q, k, v, mask=mask, causal=causal, backend=backend)
    torch.testing.assert_close(out, reference(q, k, v, mask, causal), **TOL)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("backend", [*EXACT, "local"])
def test_fully_masked_row_gives_zero_output(backend):
    q, k, v = qkv(2, 2, 4, 6, 8)
    mask = torch.ones(2, 1, 4, 6, dtype=torch.bool)
    mask[0, 0, 1] = False  # row 1 of batch 0 sees no key
    mask[1, 0, 3] = False
    kw = {"window": 10} if backend == "local" else {}
    out = attention(q, k, v, mask=mask, backend=backend, **kw)
    assert torch.isfinite(out).all()
    assert torch.equal(out[0, :, 1], torch.zeros_like(out[0, :, 1]))
    assert torch.equal(out[1, :, 3], torch.zeros_like(out[1, :, 3]))
    # every other row is ordinary attention
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    keep = mask.any(-1).expand(2, 2, 4)
    torch.testing.assert_close(out[keep], expected[keep], **TOL)


@pytest.mark.parametrize("backend", EXACT)
def test_fully_masked_row_additive_mask(backend):
    q, k, v = qkv(1, 2, 3, 4, 8)
    mask = torch.zeros(1, 1, 3, 4)
    mask[0, 0, 2] = float("-inf")
    out = attention(q, k, v, mask=mask, backend=backend)
    assert torch.isfinite(out).all()
    assert torch.equal(out[0, :, 2], torch.zeros_like(out[0, :, 2]))
    _, w = attention(q, k, v, mask=mask, backend=backend, return_weights=True)
    assert torch.equal(w[0, :, 2], torch.zeros_like(w[0, :, 2]))


@pytest.mark.parametrize("backend", [*EXACT, "local"])
@pytest.mark.parametrize("kind", ["bool", "float"])
def test_fully_masked_rows_have_finite_gradients(backend, kind):
    # left padding under a causal mask: the padded queries at the front see no key at all
    q, k, v = [t.requires_grad_() for t in qkv(2, 2, 5, 5, 8)]
    keep = torch.ones(2, 1, 1, 5, dtype=torch.bool)
    keep[1, ..., :2] = False
    mask = keep if kind == "bool" else torch.zeros(keep.shape).masked_fill(~keep, float("-inf"))
    kw = {"window": 5} if backend == "local" else {}
    out = attention(q, k, v, mask=mask, causal=True, backend=backend, **kw)
    assert torch.equal(out[1, :, :2], torch.zeros_like(out[1, :, :2]))
    out.square().sum().backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
    assert torch.equal(q.grad[1, :, :2], torch.zeros_like(q.grad[1, :, :2]))


@pytest.mark.parametrize("backend", EXACT)
def test_causal_with_more_queries_than_keys_zeroes_unseen_rows(backend):
    # bottom-right alignment: queries 0..(Lq-Lk-1) sit before every key
    q, k, v = qkv(1, 2, 5, 3, 8)
    out = attention(q, k, v, causal=True, backend=backend)
    assert torch.equal(out[:, :, :2], torch.zeros_like(out[:, :, :2]))
    expected = F.scaled_dot_product_attention(
        q[:, :, 2:], k, v, attn_mask=bottom_right_causal(3, 3)
    )
    torch.testing.assert_close(out[:, :, 2:], expected, **TOL)


@pytest.mark.parametrize("backend", EXACT)
def test_return_weights_are_the_softmax(backend):
    q, k, v = qkv(2, 2, 5, 7, 8)
    mask = make_mask("bool", 2, 2, 5, 7, torch.Generator().manual_seed(3))
    out, w = attention(q, k, v, mask=mask, backend=backend, return_weights=True)
    ref_out, ref_w = explicit_softmax(q, k, v, mask)
    torch.testing.assert_close(w, ref_w, **TOL)
    torch.testing.assert_close(out, ref_out, **TOL)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 2, 5), **TOL)
    assert (w[~mask] == 0).all()
    torch.testing.assert_close(attention_weights(q, k, mask=mask, backend=backend), ref_w, **TOL)


def test_causal_mask_and_normalize_mask():
    assert torch.equal(causal_mask(3, 3), torch.ones(3, 3, dtype=torch.bool).tril())
    assert torch.equal(causal_mask(2, 4), bottom_right_causal(2, 4))
    q, k, _ = qkv(2, 2, 3, 3, 4)
    assert normalize_mask(None, q, k) is None
    assert torch.equal(normalize_mask(None, q, k, causal=True), causal_mask(3, 3))
    f = torch.zeros(2, 1, 1, 3, dtype=torch.float64)
    got = normalize_mask(f, q, k, causal=True)
    assert got.dtype == torch.float32
    assert torch.isneginf(got[0, 0, 0, 1:]).all() and got[0, 0, 2].eq(0).all()


# --------------------------------------------------------------------------------------------
# grouped-query attention
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("backend", "kw"),
    [(b, {}) for b in EXACT] + [("local", {"window": 2}), ("linear", {})],
)
@pytest.mark.parametrize("hkv", [1, 2])
@pytest.mark.parametrize("causal", [False, True])
def test_gqa_equals_explicitly_repeated_heads(backend, kw, hkv, causal):
    q, k, v = qkv(2, 4, 6, 6, 8, hkv=hkv)
    out = attention(q, k, v, causal=causal, backend=backend, **kw)
    k_rep = k.repeat_interleave(4 // hkv, dim=1)
    v_rep = v.repeat_interleave(4 // hkv, dim=1)
    torch.testing.assert_close(
        out, attention(q, k_rep, v_rep, causal=causal, backend=backend, **kw)
    )
    if backend in EXACT:
        expected = F.scaled_dot_product_attention(q, k_rep, v_rep, is_causal=causal)
        torch.testing.assert_close(out, expected, **TOL)
        # query head h uses kv head h // groups (not h % Hkv)
        assert hkv == 1 or not torch.allclose(
            out,
            attention(q, k.repeat(1, 4 // hkv, 1, 1), v.repeat(1, 4 // hkv, 1, 1), causal=causal),
        )


# --------------------------------------------------------------------------------------------
# local (sliding-window) attention
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padding", [False, True])
@pytest.mark.parametrize(("lq", "lk"), [(9, 9), (4, 9), (10, 10)])
@pytest.mark.parametrize("block_size", [None, 3, 4])
def test_local_with_large_window_is_full_attention(causal, padding, lq, lk, block_size):
    q, k, v = qkv(3, 2, lq, lk, 8)
    mask = make_mask("pad", 3, 2, lq, lk, torch.Generator().manual_seed(lk)) if padding else None
    for window in (lk, lk + 5):
        out = attention(
            q, k, v, mask=mask, causal=causal, backend="local", window=window, block_size=block_size
        )
        torch.testing.assert_close(out, reference(q, k, v, mask, causal), **TOL)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("window", [0, 1, 2, 3])
@pytest.mark.parametrize(("lq", "lk"), [(11, 11), (3, 11), (1, 7)])
@pytest.mark.parametrize("block_size", [None, 2, 5])
def test_local_equals_math_with_band_mask(causal, window, lq, lk, block_size):
    q, k, v = qkv(2, 3, lq, lk, 8)
    out = attention(q, k, v, causal=causal, backend="local", window=window, block_size=block_size)
    expected = attention(q, k, v, mask=band(lq, lk, window), causal=causal, backend="math")
    torch.testing.assert_close(out, expected, **TOL)


@pytest.mark.parametrize("kind", ["bool", "float", "pad"])
def test_local_combines_band_with_user_mask(kind):
    lq = lk = 10
    gen = torch.Generator().manual_seed(5)
    q, k, v = qkv(2, 2, lq, lk, 8, gen=gen)
    user = make_mask(kind, 2, 2, lq, lk, gen)
    b = band(lq, lk, 2)
    full = b & user if user.dtype == torch.bool else user.masked_fill(~b, float("-inf"))
    out = attention(q, k, v, mask=user, backend="local", window=2, block_size=3)
    torch.testing.assert_close(out, attention(q, k, v, mask=full, backend="math"), **TOL)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("lq", "lk"), [(9, 9), (4, 9)])
def test_local_return_weights_is_banded_softmax(causal, lq, lk):
    q, k, v = qkv(2, 2, lq, lk, 8)
    out, w = attention(
        q, k, v, causal=causal, backend="local", window=2, block_size=4, return_weights=True
    )
    cm = bottom_right_causal(lq, lk) if causal else torch.ones(lq, lk, dtype=torch.bool)
    ref_out, ref_w = explicit_softmax(q, k, v, band(lq, lk, 2) & cm)
    assert w.shape == (2, 2, lq, lk)
    torch.testing.assert_close(w, ref_w, **TOL)
    torch.testing.assert_close(out, ref_out, **TOL)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 2, lq), **TOL)
    aw = attention_weights(q, k, causal=causal, backend="local", window=2)
    torch.testing.assert_close(aw, ref_w, **TOL)


@settings(max_examples=30, deadline=None)
@given(
    lq=st.integers(1, 12),
    extra=st.integers(0, 4),
    window=st.integers(0, 6),
    block=st.one_of(st.none(), st.integers(1, 8)),
    causal=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_local_property(lq, extra, window, block, causal, seed):
    lk = lq + extra
    q, k, v = qkv(1, 2, lq, lk, 4, gen=torch.Generator().manual_seed(seed))
    out = attention(q, k, v, causal=causal, backend="local", window=window, block_size=block)
    expected = attention(q, k, v, mask=band(lq, lk, window), causal=causal, backend="math")
    torch.testing.assert_close(out, expected, **TOL)


# --------------------------------------------------------------------------------------------
# linear (kernelized) attention against its explicit O(L^2) formulation
# --------------------------------------------------------------------------------------------


def elu_features(x: Tensor) -> Tensor:
    return F.elu(x) + 1


def favor_features(x: Tensor, w: Tensor, scale: float, *, is_query: bool) -> Tensor:
    """Performer's positive random features exp(w.x - |x|^2/2) / sqrt(F) on sqrt(scale) x.

    The constant subtracted before exp (a per-row max for queries, one max per (batch, head) for
    keys) cancels in the normalized output; it is reproduced here together with the +1e-6 floor
    so that the explicit form is term-for-term the same kernel.
    """
    x = x * math.sqrt(scale)
    proj = x @ w.T
    stab = proj.amax(-1, keepdim=True) if is_query else proj.amax((-1, -2), keepdim=True)
    return (
        torch.exp(proj - 0.5 * (x * x).sum(-1, keepdim=True) - stab) / math.sqrt(w.shape[0]) + 1e-6
    )


def explicit_linear(fq, fk, v, *, causal, pad=None):
    a = fq @ fk.transpose(-1, -2)  # (B, H, Lq, Lk)
    if pad is not None:
        a = a * pad.to(a.dtype)
    if causal:
        a = a * bottom_right_causal(fq.shape[2], fk.shape[2]).to(a.dtype)
    w = a / a.sum(-1, keepdim=True)
    return w @ v, w


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("chunk_size", [1, 3, 4, 128])
@pytest.mark.parametrize(("lq", "lk"), [(11, 11), (10, 10), (4, 11)])
def test_linear_elu_equals_explicit(causal, chunk_size, lq, lk):
    if not causal and lq != lk:
        lq = lk  # non-causal cross is covered below
    q, k, v = qkv(2, 3, lq, lk, 8)
    out = attention(q, k, v, causal=causal, backend="linear", chunk_size=chunk_size)
    expected, _ = explicit_linear(elu_features(q), elu_features(k), v, causal=causal)
    torch.testing.assert_close(out, expected, **TOL)


def test_linear_cross_and_key_padding():
    gen = torch.Generator().manual_seed(1)
    q, k, v = qkv(3, 2, 5, 9, 8, gen=gen)
    pad = make_mask("pad", 3, 2, 5, 9, gen)
    out, w = attention(q, k, v, mask=pad, backend="linear", return_weights=True)
    expected, ref_w = explicit_linear(elu_features(q), elu_features(k), v, causal=False, pad=pad)
    torch.testing.assert_close(out, expected, **TOL)
    torch.testing.assert_close(w, ref_w, **TOL)
    assert (w[~pad.expand_as(w)] == 0).all()
    # a 0/-inf float key-padding mask is the same thing
    fmask = torch.zeros(pad.shape).masked_fill(~pad, float("-inf"))
    torch.testing.assert_close(attention(q, k, v, mask=fmask, backend="linear"), expected, **TOL)
    # without the mask the padded keys matter
    assert not torch.allclose(attention(q, k, v, backend="linear"), expected, atol=1e-3)


def test_linear_causal_with_key_padding():
    gen = torch.Generator().manual_seed(2)
    q, k, v = qkv(3, 2, 9, 9, 8, gen=gen)
    pad = make_mask("pad", 3, 2, 9, 9, gen)
    pad[..., 0] = True
    out = attention(q, k, v, mask=pad, causal=True, backend="linear", chunk_size=4)
    expected, _ = explicit_linear(elu_features(q), elu_features(k), v, causal=True, pad=pad)
    torch.testing.assert_close(out, expected, **TOL)


@pytest.mark.parametrize("causal", [False, True])
def test_linear_return_weights_is_normalized_kernel(causal):
    q, k, v = qkv(2, 2, 7, 7, 8)
    out, w = attention(q, k, v, causal=causal, backend="linear", return_weights=True)
    expected, ref_w = explicit_linear(elu_features(q), elu_features(k), v, causal=causal)
    torch.testing.assert_close(w, ref_w, **TOL)
    torch.testing.assert_close(out, expected, **TOL)
    torch.testing.assert_close(out, attention(q, k, v, causal=causal, backend="linear"), **TOL)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 2, 7), **TOL)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("chunk_size", [3, 5, 64])
def test_linear_favor_equals_explicit(causal, chunk_size):
    d, nf = 8, 16
    q, k, v = qkv(2, 2, 11, 11, d)
    proj = favor_projection(d, nf, seed=3)
    assert proj.shape == (nf, d)
    out = attention(
        q,
        k,
        v,
        causal=causal,
        backend="linear",
        feature_map="favor",
        projection=proj,
        chunk_size=chunk_size,
    )
    scale = 1 / math.sqrt(d)
    fq = favor_features(q, proj, scale, is_query=True)
    fk = favor_features(k, proj, scale, is_query=False)
    expected, _ = explicit_linear(fq, fk, v, causal=causal)
    torch.testing.assert_close(out, expected, **TOL)
    torch.testing.assert_close(
        linear_features(q, "favor", is_query=True, scale=scale, projection=proj), fq, **TOL
    )
    # the stabilizers only rescale rows: without them (and the floor) the result barely moves
    x_q, x_k = q * math.sqrt(scale), k * math.sqrt(scale)
    raw_q = torch.exp(x_q @ proj.T - 0.5 * (x_q * x_q).sum(-1, keepdim=True))
    raw_k = torch.exp(x_k @ proj.T - 0.5 * (x_k * x_k).sum(-1, keepdim=True))
    unstabilized, _ = explicit_linear(raw_q, raw_k, v, causal=causal)
    torch.testing.assert_close(out, unstabilized, atol=1e-2, rtol=0)


def test_favor_projection_is_deterministic_orthogonal_blocks():
    p = favor_projection(8, 20, seed=7, dtype=torch.float64)
    assert p.shape == (20, 8)
    torch.testing.assert_close(p, favor_projection(8, 20, seed=7, dtype=torch.float64))
    assert not torch.allclose(p, favor_projection(8, 20, seed=8, dtype=torch.float64))
    block = p[:8] / p[:8].norm(dim=1, keepdim=True)  # rows of one block are orthogonal
    torch.testing.assert_close(block @ block.T, torch.eye(8, dtype=torch.float64))
    assert favor_projection(8).shape == (32, 8)  # the stated default: 4 x head_dim


@pytest.mark.parametrize("causal", [False, True])
def test_favor_approximates_softmax_with_many_features(causal):
    d = 8
    q, k, v = qkv(2, 2, 16, 16, d)
    q, k = 0.3 * q, 0.3 * k
    proj = favor_projection(d, 4096, seed=0)
    approx = attention(
        q, k, v, causal=causal, backend="linear", feature_map="favor", projection=proj
    )
    exact = attention(q, k, v, causal=causal, backend="math")
    err = (approx - exact).abs().max().item()
    assert err < 0.1, err
    # and it is closer to softmax than elu's kernel is
    elu = attention(q, k, v, causal=causal, backend="linear")
    assert err < (elu - exact).abs().max().item()


def test_favor_kernel_estimate_converges():
    """phi(x).phi(y) estimates exp(x.y) without bias: the error keeps shrinking with features.

    The rows of the projection must be isotropic; an orthogonal block taken straight from a
    Householder QR (without fixing the signs of R's diagonal) leans every direction the same way
    and the estimate then stalls at ~7% error however many features are drawn.
    """
    d = 8
    gen = torch.Generator().manual_seed(0)
    x = 0.3 * torch.randn(64, d, generator=gen, dtype=torch.float64)
    y = 0.3 * torch.randn(64, d, generator=gen, dtype=torch.float64)
    true = torch.exp(x @ y.T)

    def rel_error(num_features: int) -> float:
        w = favor_projection(d, num_features, seed=1, dtype=torch.float64)
        fx = torch.exp(x @ w.T - 0.5 * (x * x).sum(-1, keepdim=True)) / math.sqrt(num_features)
        fy = torch.exp(y @ w.T - 0.5 * (y * y).sum(-1, keepdim=True)) / math.sqrt(num_features)
        return ((fx @ fy.T - true) / true).abs().mean().item()

    assert rel_error(16384) < 0.02
    assert rel_error(16384) < rel_error(256)
    directions = favor_projection(d, 16384, seed=2, dtype=torch.float64)
    directions = directions / directions.norm(dim=1, keepdim=True)
    assert directions.mean(0).abs().max() < 0.015  # about 5 standard errors


@settings(max_examples=30, deadline=None)
@given(
    length=st.integers(1, 13),
    past=st.integers(0, 4),
    chunk=st.integers(1, 8),
    causal=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_linear_property(length, past, chunk, causal, seed):
    lq, lk = length, length + (past if causal else 0)
    q, k, v = qkv(1, 2, lq, lk, 4, gen=torch.Generator().manual_seed(seed))
    out = attention(q, k, v, causal=causal, backend="linear", chunk_size=chunk)
    expected, _ = explicit_linear(elu_features(q), elu_features(k), v, causal=causal)
    torch.testing.assert_close(out, expected, **TOL)


# --------------------------------------------------------------------------------------------
# gradients
# --------------------------------------------------------------------------------------------


def _tiny(lq=5, lk=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [t.requires_grad_() for t in qkv(1, 2, lq, lk, 3, gen=gen, dtype=torch.float64)]


@pytest.mark.parametrize("causal", [False, True])
def test_gradcheck_math(causal):
    q, k, v = _tiny(4, 5)
    mask = torch.ones(1, 1, 4, 5, dtype=torch.bool)
    mask[..., 3] = False
    assert torch.autograd.gradcheck(
        lambda q, k, v: attention(q, k, v, mask=mask, causal=causal, backend="math"), (q, k, v)
    )


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("block_size", [None, 2])
def test_gradcheck_local(causal, block_size):
    q, k, v = _tiny(5, 5)
    assert torch.autograd.gradcheck(
        lambda q, k, v: attention(
            q, k, v, causal=causal, backend="local", window=1, block_size=block_size
        ),
        (q, k, v),
    )


@pytest.mark.parametrize("causal", [False, True])
def test_gradcheck_linear_elu(causal):
    q, k, v = _tiny(5, 5)
    assert torch.autograd.gradcheck(
        lambda q, k, v: attention(q, k, v, causal=causal, backend="linear", chunk_size=2),
        (q, k, v),
    )


@pytest.mark.parametrize("backend", [*EXACT, "local", "linear"])
def test_gradients_flow_and_are_finite(backend):
    q, k, v = [t.requires_grad_() for t in qkv(2, 2, 6, 6, 8)]
    mask = make_mask("pad", 2, 2, 6, 6, torch.Generator().manual_seed(0))
    kw = {"window": 2} if backend == "local" else {}
    out = attention(q, k, v, mask=mask, causal=True, backend=backend, **kw)
    out.square().sum().backward()
    for t in (q, k, v):
        assert t.grad is not None and torch.isfinite(t.grad).all()
        assert t.grad.abs().sum() > 0


@pytest.mark.parametrize(("backend", "kw"), [(b, {}) for b in EXACT] + [("local", {"window": 2})])
def test_dropout_is_applied_by_every_backend_that_takes_it(backend, kw):
    q, k, v = qkv(2, 2, 6, 6, 8)
    plain = attention(q, k, v, backend=backend, **kw)
    dropped = attention(q, k, v, dropout_p=0.5, backend=backend, **kw)
    assert dropped.shape == plain.shape and torch.isfinite(dropped).all()
    assert not torch.allclose(dropped, plain)
    # dropout_p=0 is deterministic
    torch.testing.assert_close(attention(q, k, v, dropout_p=0.0, backend=backend, **kw), plain)


def test_dropout_bad_values():
    q, k, v = qkv(2, 2, 6, 6, 8)
    with pytest.raises(ValueError, match=r"dropout_p must be in \[0, 1\), got 1.0"):
        attention(q, k, v, dropout_p=1.0)
    with pytest.raises(ValueError, match="linear attention has no attention matrix"):
        attention(q, k, v, dropout_p=0.1, backend="linear")


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------


def test_head_dims_differ():
    q = torch.randn(2, 2, 3, 8)
    k = torch.randn(2, 2, 3, 4)
    with pytest.raises(ValueError, match=r"q \(2, 2, 3, 8\) has D=8, k \(2, 2, 3, 4\) has D=4"):
        attention(q, k, k)


def test_bad_qkv_shapes():
    q, k, v = qkv(2, 4, 3, 5, 8)
    with pytest.raises(ValueError, match=r"\(B, H, L, D\); got q \(4, 3, 8\)"):
        attention(q[0], k, v)
    with pytest.raises(ValueError, match=r"k \(2, 4, 5, 8\), v \(2, 4, 4, 8\)"):
        attention(q, k, v[:, :, :4])
    with pytest.raises(ValueError, match=r"batch sizes differ: q \(1, 4, 3, 8\), k \(2, 4, 5, 8\)"):
        attention(q[:1], k, v)
    with pytest.raises(
        ValueError, match=r"query heads \(4\) must be a multiple of key/value heads \(3\)"
    ):
        attention(q, k[:, :3], v[:, :3])


@pytest.mark.parametrize("backend", [*EXACT, "local", "linear"])
def test_mask_of_wrong_shape(backend):
    q, k, v = qkv(2, 2, 3, 5, 8)
    kw = {"window": 2} if backend == "local" else {}
    with pytest.raises(
        ValueError, match=r"mask of shape \(2, 1, 3, 4\) does not broadcast to .*\(2, 2, 3, 5\)"
    ):
        attention(q, k, v, mask=torch.ones(2, 1, 3, 4, dtype=torch.bool), backend=backend, **kw)
    with pytest.raises(ValueError, match=r"mask \(1, 2, 1, 3, 5\) has more than 4 dims"):
        attention(q, k, v, mask=torch.ones(1, 2, 1, 3, 5, dtype=torch.bool), backend=backend, **kw)
    with pytest.raises(ValueError, match=r"mask must be bool or float, got dtype torch\.int64"):
        attention(q, k, v, mask=torch.ones(2, 1, 1, 5, dtype=torch.long), backend=backend, **kw)


def test_unknown_backend():
    q, k, v = qkv(1, 1, 2, 2, 4)
    with pytest.raises(ValueError, match=r"unknown attention backend 'fast'.*'sdpa', 'math'"):
        attention(q, k, v, backend="fast")
    with pytest.raises(ValueError, match=r"backend 'math' does not take options \['window'\]"):
        attention(q, k, v, backend="math", window=3)


def test_local_needs_window():
    q, k, v = qkv(1, 1, 4, 4, 4)
    with pytest.raises(ValueError, match="backend 'local' needs window="):
        attention(q, k, v, backend="local")
    with pytest.raises(ValueError, match="window must be >= 0, got -1"):
        attention(q, k, v, backend="local", window=-1)


def test_linear_refuses_non_key_padding_mask():
    q, k, v = qkv(2, 2, 4, 6, 8)
    with pytest.raises(
        ValueError,
        match=r"key-padding masks shaped \(B, 1, 1, Lk\); got a mask of shape \(2, 1, 4, 6\)",
    ):
        attention(q, k, v, mask=torch.ones(2, 1, 4, 6, dtype=torch.bool), backend="linear")
    bias = torch.randn(2, 1, 1, 6)
    with pytest.raises(ValueError, match="cannot apply an additive bias"):
        attention(q, k, v, mask=bias, backend="linear")
    with pytest.raises(ValueError, match=r"feature_map='relu' is not one of \['elu', 'favor'\]"):
        attention(q, k, v, backend="linear", feature_map="relu")


def test_functional_linformer_points_to_the_module():
    q, k, v = qkv(1, 1, 4, 4, 4)
    assert "linformer" in list_backends()
    with pytest.raises(
        ValueError, match=r"MultiHeadAttention\(dim, num_heads, backend='linformer'"
    ):
        attention(q, k, v, backend="linformer")


# --------------------------------------------------------------------------------------------
# local attention with global tokens (Longformer)
# --------------------------------------------------------------------------------------------


def _band_with_globals(lq: int, lk: int, window: int, g: int) -> torch.Tensor:
    """(Lq, Lk) bool: within the window, or a global key, or a global query (bottom-right)."""
    qpos = torch.arange(lq)[:, None] + (lk - lq)
    kpos = torch.arange(lk)[None, :]
    return ((qpos - kpos).abs() <= window) | (kpos < g) | (qpos < g)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(
    ("length", "window", "g", "block"), [(37, 3, 1, 8), (20, 2, 3, 16), (9, 0, 2, 4)]
)
@pytest.mark.parametrize("masked", [False, True])
def test_local_with_global_tokens_equals_math_with_that_mask(
    causal, length, window, g, block, masked
):
    torch.manual_seed(0)
    q, k, v = qkv(2, 2, length, length, 8)
    allowed = _band_with_globals(length, length, window, g)
    user = None
    if masked:
        user = torch.ones(2, 1, 1, length, dtype=torch.bool)
        user[0, ..., -3:] = False  # padding at the end of the first sequence
        allowed = allowed & user
    out, w = attention(
        q,
        k,
        v,
        mask=user,
        causal=causal,
        backend="local",
        window=window,
        global_tokens=g,
        block_size=block,
        return_weights=True,
    )
    ref, ref_w = attention(
        q, k, v, mask=allowed, causal=causal, backend="math", return_weights=True
    )
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w, ref_w, atol=1e-5, rtol=1e-5)
    # The class token (position 0) reads the whole sequence when not causal.
    if not causal:
        assert (w[1, :, 0] > 0).all()


def test_local_global_tokens_have_gradients_and_decode_with_a_cache():
    torch.manual_seed(0)
    q, k, v = qkv(1, 2, 12, 12, 8)
    q.requires_grad_(True)
    out = attention(q, k, v, backend="local", window=2, global_tokens=1)
    out.sum().backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()
    # Incremental decoding: the last 3 queries against all 12 keys, causal.
    full = attention(q.detach(), k, v, backend="local", window=2, global_tokens=1, causal=True)
    tail = attention(
        q.detach()[:, :, -3:], k, v, backend="local", window=2, global_tokens=1, causal=True
    )
    torch.testing.assert_close(tail, full[:, :, -3:], atol=1e-5, rtol=1e-5)
