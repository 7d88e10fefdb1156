"""MultiHeadAttention: against an explicit reference, backends, linformer, timm weights, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from attention_core import (
    KVCache,
    MultiHeadAttention,
    RotaryEmbedding,
    attention,
    list_backends,
    set_backend,
)

EXACT = [b for b in ("sdpa", "math", "flex") if b in list_backends()]
TOL = {"atol": 1e-5, "rtol": 1e-5}


def heads(t: Tensor, h: int) -> Tensor:
    b, n, c = t.shape
    return t.view(b, n, h, c // h).transpose(1, 2)


def bottom_right_causal(lq: int, lk: int) -> Tensor:
    return torch.arange(lk)[None, :] <= torch.arange(lq)[:, None] + (lk - lq)


def reference_mha(m: MultiHeadAttention, x, context=None, mask=None, causal=False):
    """The layer written out: slice qkv, split heads, repeat kv heads, sdpa, merge, proj."""
    src = x if context is None else context
    if m.fused:
        w, b = m.qkv.weight, m.qkv.bias
        q = F.linear(x, w[: m.dim], b[: m.dim])
        k = F.linear(src, w[m.dim : m.dim + m.kv_dim], b[m.dim : m.dim + m.kv_dim])
        v = F.linear(src, w[m.dim + m.kv_dim :], b[m.dim + m.kv_dim :])
    else:
        q, k, v = m.q_proj(x), m.k_proj(src), m.v_proj(src)
    q, k, v = heads(q, m.num_heads), heads(k, m.num_kv_heads), heads(v, m.num_kv_heads)
    q, k = m.q_norm(q), m.k_norm(k)
    groups = m.num_heads // m.num_kv_heads
    k, v = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
    if causal:
        cm = bottom_right_causal(q.shape[2], k.shape[2])
        mask = cm if mask is None else mask & cm
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return m.proj(out.transpose(1, 2).reshape(x.shape[0], x.shape[1], m.dim))


def padding_mask(lengths: list[int], lk: int) -> Tensor:
    return (torch.arange(lk)[None, :] < torch.tensor(lengths)[:, None]).view(len(lengths), 1, 1, lk)


@pytest.mark.parametrize("backend", [*EXACT, "auto"])
@pytest.mark.parametrize("num_kv_heads", [None, 2, 1])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_self_attention_matches_reference(backend, num_kv_heads, causal, padded):
    m = MultiHeadAttention(32, 4, num_kv_heads=num_kv_heads, backend=backend).eval()
    x = torch.randn(3, 7, 32)
    mask = padding_mask([7, 4, 1], 7) if padded else None
    expected = reference_mha(m, x, mask=mask, causal=causal)
    torch.testing.assert_close(m(x, mask=mask, causal=causal), expected, **TOL)
    kv = num_kv_heads or 4
    assert m.qkv.weight.shape == (32 + 2 * 8 * kv, 32)


@pytest.mark.parametrize("num_kv_heads", [None, 2])
def test_cross_attention_fused_and_separate(num_kv_heads):
    fused = MultiHeadAttention(16, 4, num_kv_heads=num_kv_heads).eval()
    x, ctx = torch.randn(2, 5, 16), torch.randn(2, 9, 16)
    mask = padding_mask([9, 3], 9)
    torch.testing.assert_close(fused(x, ctx, mask=mask), reference_mha(fused, x, ctx, mask), **TOL)

    separate = MultiHeadAttention(16, 4, num_kv_heads=num_kv_heads, kdim=12, vdim=12).eval()
    assert not separate.fused and not hasattr(separate, "qkv")
    ctx = torch.randn(2, 9, 12)
    torch.testing.assert_close(
        separate(x, ctx, mask=mask), reference_mha(separate, x, ctx, mask), **TOL
    )


def test_qk_norm_and_no_bias():
    m = MultiHeadAttention(16, 2, qk_norm=True, qkv_bias=False).eval()
    assert m.qkv.bias is None
    assert isinstance(m.q_norm, torch.nn.LayerNorm) and m.q_norm.normalized_shape == (8,)
    with torch.no_grad():
        m.q_norm.weight.uniform_(0.5, 1.5)
        m.k_norm.bias.normal_()
    x = torch.randn(2, 5, 16)
    q = m.q_norm(heads(F.linear(x, m.qkv.weight[:16]), 2))
    k = m.k_norm(heads(F.linear(x, m.qkv.weight[16:32]), 2))
    v = heads(F.linear(x, m.qkv.weight[32:]), 2)
    out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(2, 5, 16)
    torch.testing.assert_close(m(x), m.proj(out), **TOL)


def test_backends_agree_and_set_backend_switches_all():
    model = torch.nn.Sequential(MultiHeadAttention(16, 4), MultiHeadAttention(16, 4)).eval()
    x = torch.randn(2, 6, 16)
    expected = model(x)
    for backend in EXACT:
        assert set_backend(model, backend) == 2
        assert all(m.backend == backend for m in model)
        torch.testing.assert_close(model(x), expected, **TOL)
    set_backend(model, "local", window=6)
    torch.testing.assert_close(model(x), expected, **TOL)
    set_backend(model, "local", window=1)
    assert not torch.allclose(model(x), expected, atol=1e-3)
    assert set_backend(torch.nn.Linear(2, 2), "math") == 0


def test_local_backend_is_banded():
    m = MultiHeadAttention(16, 2, backend="local", window=1).eval()
    x = torch.randn(2, 6, 16)
    band = (torch.arange(6)[:, None] - torch.arange(6)[None, :]).abs() <= 1
    torch.testing.assert_close(m(x), reference_mha(m, x, mask=band), **TOL)


def test_linear_backends():
    m = MultiHeadAttention(16, 2, backend="linear", chunk_size=3).eval()
    x = torch.randn(2, 7, 16)
    q, k, v = (heads(t, 2) for t in m.qkv(x).split(16, -1))
    for causal in (False, True):
        out = attention(q, k, v, causal=causal, backend="linear", chunk_size=3)
        expected = m.proj(out.transpose(1, 2).reshape(2, 7, 16))
        torch.testing.assert_close(m(x, causal=causal), expected, **TOL)

    favor = MultiHeadAttention(16, 2, backend="linear", feature_map="favor", num_features=24)
    assert favor.favor_features.shape == (24, 8)
    assert "favor_features" in favor.state_dict()
    out = attention(q, k, v, backend="linear", feature_map="favor", projection=favor.favor_features)
    favor.load_state_dict(m.state_dict(), strict=False)
    torch.testing.assert_close(favor(x), m.proj(out.transpose(1, 2).reshape(2, 7, 16)), **TOL)
    favor.configure_backend("sdpa")
    assert not hasattr(favor, "favor_features")
    assert "favor_features" not in favor.state_dict()


# --------------------------------------------------------------------------------------------
# linformer
# --------------------------------------------------------------------------------------------


def linformer_reference(m: MultiHeadAttention, x: Tensor, keep: Tensor | None = None) -> Tensor:
    q, k, v = (heads(t, m.num_heads) for t in m.qkv(x).split(m.dim, -1))
    if keep is not None:
        k, v = k * keep.transpose(-1, -2), v * keep.transpose(-1, -2)
    n = x.shape[1]
    k = torch.einsum("pl,bhld->bhpd", m.linformer_e[:, :n], k)
    v = torch.einsum("pl,bhld->bhpd", m.linformer_f[:, :n], v)
    out = F.scaled_dot_product_attention(q, k, v)
    return m.proj(out.transpose(1, 2).reshape(x.shape[0], n, m.dim))


def test_linformer_projects_keys_and_values():
    m = MultiHeadAttention(16, 2, backend="linformer", seq_len=10, proj_dim=4).eval()
    assert m.linformer_e.shape == m.linformer_f.shape == (4, 10)
    for n in (10, 7):  # shorter inputs use the first n columns of E and F
        x = torch.randn(2, n, 16)
        torch.testing.assert_close(m(x), linformer_reference(m, x), **TOL)
    keep = padding_mask([7, 5], 7)
    x = torch.randn(2, 7, 16)
    torch.testing.assert_close(m(x, mask=keep), linformer_reference(m, x, keep.float()), **TOL)
    # switching away drops the projections
    m.configure_backend("sdpa")
    assert not hasattr(m, "linformer_e") and "linformer_e" not in m.state_dict()


def test_linformer_refuses_causal():
    m = MultiHeadAttention(16, 2, backend="linformer", seq_len=8, proj_dim=4)
    with pytest.raises(ValueError, match=r"linformer cannot be causal.*future tokens would leak"):
        m(torch.randn(1, 8, 16), causal=True)


def test_linformer_errors():
    m = MultiHeadAttention(16, 2, backend="linformer", seq_len=8, proj_dim=4)
    with pytest.raises(ValueError, match="seq_len=8 but got 9 keys"):
        m(torch.randn(1, 9, 16))
    with pytest.raises(
        ValueError,
        match=r"key-padding masks shaped \(B, 1, 1, Lk\); got a mask of shape \(1, 1, 8, 8\)",
    ):
        m(torch.randn(1, 8, 16), mask=torch.ones(1, 1, 8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"backend .linformer. does not support a KV cache"):
        m(torch.randn(1, 8, 16), kv_cache=KVCache())
    with pytest.raises(ValueError, match="backend 'linformer' needs seq_len"):
        MultiHeadAttention(16, 2, backend="linformer")


# --------------------------------------------------------------------------------------------
# timm compatibility
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("dim", "num_heads"), [(32, 4), (24, 3), (16, 1)])
def test_timm_attention_weights_load_strictly(dim, num_heads):
    from timm.layers import Attention

    ref = Attention(dim, num_heads, qkv_bias=True).eval()
    ours = MultiHeadAttention(dim, num_heads).eval()
    assert set(ref.state_dict()) == set(ours.state_dict())
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 9, dim)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), **TOL)
        # and back: our weights drive timm's layer the same way
        fresh = MultiHeadAttention(dim, num_heads).eval()
        ref.load_state_dict(fresh.state_dict(), strict=True)
        torch.testing.assert_close(fresh(x), ref(x), **TOL)


def test_timm_attention_with_qk_norm_loads_strictly():
    from timm.layers import Attention

    ref = Attention(32, 4, qkv_bias=True, qk_norm=True, norm_layer=torch.nn.LayerNorm).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.1 * torch.randn_like(p))
    ours = MultiHeadAttention(32, 4, qk_norm=True).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 5, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), **TOL)


# --------------------------------------------------------------------------------------------
# dropout, positions, grads
# --------------------------------------------------------------------------------------------


def test_dropout_only_in_training():
    m = MultiHeadAttention(16, 2, attn_drop=0.5, proj_drop=0.2)
    x = torch.randn(2, 6, 16)
    m.eval()
    evaluated = m(x)
    torch.testing.assert_close(evaluated, reference_mha(m, x), **TOL)
    m.train()
    assert not torch.allclose(m(x), evaluated)


def test_rotary_positions_are_applied_to_self_attention_only():
    rope = RotaryEmbedding(8)
    m = MultiHeadAttention(16, 2, pos=rope).eval()
    x = torch.randn(2, 6, 16)
    q, k, v = (heads(t, 2) for t in m.qkv(x).split(16, -1))
    out = F.scaled_dot_product_attention(
        rope.rotate_tensor(q, 0), rope.rotate_tensor(k, 0), v, is_causal=True
    )
    expected = m.proj(out.transpose(1, 2).reshape(2, 6, 16))
    torch.testing.assert_close(m(x, causal=True), expected, **TOL)
    ctx = torch.randn(2, 4, 16)
    plain = MultiHeadAttention(16, 2).eval()
    plain.load_state_dict(m.state_dict())
    torch.testing.assert_close(m(x, ctx), plain(x, ctx), **TOL)


BACKEND_CONFIGS = {
    "sdpa": {"backend": "sdpa"},
    "math": {"backend": "math"},
    "flex": {"backend": "flex"},
    "local": {"backend": "local", "window": 2},
    "linear_elu": {"backend": "linear", "chunk_size": 3},
    "linear_favor": {"backend": "linear", "feature_map": "favor", "num_features": 16},
    "linformer": {"backend": "linformer", "seq_len": 8, "proj_dim": 4},
    "gqa_qk_norm": {"backend": "sdpa", "num_kv_heads": 2, "qk_norm": True},
}


@pytest.mark.parametrize("name", [n for n in BACKEND_CONFIGS if n != "flex" or "flex" in EXACT])
def test_every_parameter_gets_a_finite_gradient(name):
    m = MultiHeadAttention(16, 4, **BACKEND_CONFIGS[name])
    x = torch.randn(2, 8, 16, requires_grad=True)
    causal = name not in ("linformer",)
    m(x, causal=causal).square().sum().backward()
    params = dict(m.named_parameters())
    if name == "linformer":
        assert {"linformer_e", "linformer_f"} <= set(params)
    for pname, p in params.items():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
    assert m.proj.weight.grad.abs().sum() > 0 and m.qkv.weight.grad.abs().sum() > 0
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_separate_projection_parameters_get_gradients():
    m = MultiHeadAttention(16, 4, kdim=12, vdim=12)
    m(torch.randn(2, 5, 16), torch.randn(2, 7, 12)).square().sum().backward()
    for pname, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------


def test_num_heads_must_divide_dim():
    with pytest.raises(ValueError, match="num_heads=3 must divide dim=16"):
        MultiHeadAttention(16, 3)
    with pytest.raises(ValueError, match="num_heads=0 must divide dim=16"):
        MultiHeadAttention(16, 0)


def test_num_kv_heads_must_divide_num_heads():
    with pytest.raises(ValueError, match="num_kv_heads=3 must divide num_heads=4"):
        MultiHeadAttention(16, 4, num_kv_heads=3)


def test_unknown_backend_and_options():
    with pytest.raises(ValueError, match=r"unknown attention backend 'fast'; choose one of \["):
        MultiHeadAttention(16, 2, backend="fast")
    m = MultiHeadAttention(16, 2)
    with pytest.raises(ValueError, match="unknown attention backend 'nope'"):
        m.configure_backend("nope")
    with pytest.raises(ValueError, match=r"backend 'sdpa' does not take options \['window'\]"):
        MultiHeadAttention(16, 2, backend="sdpa", window=3)
    with pytest.raises(ValueError, match="backend 'local' needs window="):
        MultiHeadAttention(16, 2, backend="local")
    with pytest.raises(ValueError, match="unknown attention backend 'fast'"):
        set_backend(torch.nn.Sequential(m), "fast")


def test_bad_inputs_name_the_shapes():
    m = MultiHeadAttention(16, 2)
    with pytest.raises(ValueError, match=r"expected x shaped \(B, L, 16\), got \(2, 5, 8\)"):
        m(torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match=r"expected x shaped \(B, L, 16\), got \(5, 16\)"):
        m(torch.randn(5, 16))
    with pytest.raises(
        ValueError, match=r"x \(2, 5, 16\) and context \(3, 4, 16\) have different batch sizes"
    ):
        m(torch.randn(2, 5, 16), torch.randn(3, 4, 16))
    with pytest.raises(
        ValueError, match=r"mask of shape \(2, 1, 1, 4\) does not broadcast to .*\(2, 2, 5, 5\)"
    ):
        m(torch.randn(2, 5, 16), mask=torch.ones(2, 1, 1, 4, dtype=torch.bool))
    lin = MultiHeadAttention(16, 2, backend="linear")
    with pytest.raises(
        ValueError, match=r"key-padding masks shaped \(B, 1, 1, Lk\); got a mask of shape \(5, 5\)"
    ):
        lin(torch.randn(2, 5, 16), mask=torch.ones(5, 5, dtype=torch.bool))
