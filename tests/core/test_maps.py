"""capture_attention under any backend, and attention rollout."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from attention_core import (
    ALiBi,
    AttentionMaps,
    KVCache,
    MultiHeadAttention,
    TransformerEncoder,
    attention,
    attention_layers,
    attention_rollout,
    capture_attention,
    set_backend,
)

TOL = {"atol": 1e-5, "rtol": 1e-5}


def record_attention_inputs(model: nn.Module) -> tuple[dict[str, Tensor], list]:
    """Pre-hooks that keep the input of every MultiHeadAttention (the normed tokens)."""
    inputs: dict[str, Tensor] = {}
    handles = []
    for name, m in attention_layers(model):

        def hook(mod, args, name=name):
            inputs[name] = args[0].detach()

        handles.append(m.register_forward_pre_hook(hook))
    return inputs, handles


def maps_from_weights(m: MultiHeadAttention, x: Tensor, mask=None, causal=False) -> Tensor:
    """softmax(q k^T / sqrt(d) + mask), with q and k recomputed from the layer's qkv weights."""
    b, n, _ = x.shape
    d = m.head_dim
    w, bias = m.qkv.weight, m.qkv.bias
    q = (x @ w[: m.dim].T + bias[: m.dim]).view(b, n, m.num_heads, d).transpose(1, 2)
    k = x @ w[m.dim : m.dim + m.kv_dim].T + bias[m.dim : m.dim + m.kv_dim]
    k = k.view(b, n, m.num_kv_heads, d).transpose(1, 2)
    k = k.repeat_interleave(m.num_heads // m.num_kv_heads, 1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)
    if causal:
        scores = scores.masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(), float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, -1)


def make_encoder(**kw) -> TransformerEncoder:
    enc = TransformerEncoder(16, 3, 2, init_values=0.5, **kw).eval()
    with torch.no_grad():
        for p in enc.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return enc


@pytest.mark.parametrize("backend", ["sdpa", "math", "auto"])
@pytest.mark.parametrize("num_kv_heads", [None, 1])
def test_captured_maps_are_the_softmax_of_each_layer(backend, num_kv_heads):
    enc = make_encoder(backend=backend, num_kv_heads=num_kv_heads)
    x = torch.randn(2, 7, 16)
    mask = (torch.arange(7)[None, :] < torch.tensor([7, 5])[:, None]).view(2, 1, 1, 7)
    inputs, handles = record_attention_inputs(enc)
    with capture_attention(enc) as maps:
        enc(x, mask=mask)
    for h in handles:
        h.remove()
    assert isinstance(maps, AttentionMaps)
    assert len(maps) == 3 and maps.layers == ["blocks.0.attn", "blocks.1.attn", "blocks.2.attn"]
    for i, (name, layer) in enumerate(attention_layers(enc)):
        got = maps[i]
        assert got.shape == (2, 2, 7, 7) and not got.requires_grad
        torch.testing.assert_close(got.sum(-1), torch.ones(2, 2, 7), **TOL)
        assert (got[1, :, :, 5:] == 0).all()
        expected = maps_from_weights(layer, inputs[name], mask)
        torch.testing.assert_close(got, expected, **TOL)
        assert torch.equal(maps[name], got)
    assert [t.shape for t in maps] == [(2, 2, 7, 7)] * 3


def test_maps_equal_the_math_backend_weights():
    enc = make_encoder()
    x = torch.randn(2, 6, 16)
    inputs, handles = record_attention_inputs(enc)
    with capture_attention(enc) as maps:
        enc(x, causal=True)
    for h in handles:
        h.remove()
    for name, layer in attention_layers(enc):
        q, k, _ = layer.qkv(inputs[name]).split(16, -1)
        q, k = (t.view(2, 6, 2, 8).transpose(1, 2) for t in (q, k))
        _, weights = attention(q, k, k, causal=True, backend="math", return_weights=True)
        torch.testing.assert_close(maps[name], weights, **TOL)
        assert (maps[name].triu(1) == 0).all()


def test_output_is_bit_identical_with_and_without_capture():
    enc = make_encoder(backend="sdpa")
    x = torch.randn(2, 9, 16)
    plain = enc(x, causal=True)
    with capture_attention(enc) as maps:
        captured = enc(x, causal=True)
    assert len(maps) == 3
    assert torch.equal(plain, captured)
    # and gradients still flow through a captured forward
    with capture_attention(enc):
        enc(x).sum().backward()
    assert all(p.grad is not None for p in enc.parameters())


def test_layer_selection_by_index_and_name():
    enc = make_encoder()
    x = torch.randn(1, 5, 16)
    with capture_attention(enc) as every:
        enc(x)
    with capture_attention(enc, layers=[-1]) as last:
        enc(x)
    assert last.layers == ["blocks.2.attn"] and len(last) == 1
    assert torch.equal(last[0], every[2])
    with capture_attention(enc, layers=["blocks.1.attn", 0]) as chosen:
        enc(x)
    assert set(chosen.layers) == {"blocks.0.attn", "blocks.1.attn"}
    assert torch.equal(chosen["blocks.1.attn"], every[1])
    assert torch.equal(chosen["blocks.0.attn"], every[0])


def test_bad_layer_selection_raises():
    enc = make_encoder()
    with (
        pytest.raises(ValueError, match="layer index 3 out of range: model has 3"),
        capture_attention(enc, layers=[3]),
    ):
        pass
    with (
        pytest.raises(ValueError, match="layer index -4 out of range: model has 3"),
        capture_attention(enc, layers=[-4]),
    ):
        pass
    with (
        pytest.raises(
            ValueError,
            match=r"no attention layer named 'blocks.9.attn'; layers are \['blocks.0.attn'",
        ),
        capture_attention(enc, layers=["blocks.9.attn"]),
    ):
        pass
    with (
        pytest.raises(ValueError, match="Linear has no MultiHeadAttention layer to capture"),
        capture_attention(nn.Linear(2, 2)),
    ):
        pass


def test_capture_stops_after_the_block():
    enc = make_encoder()
    x = torch.randn(1, 4, 16)
    with capture_attention(enc) as maps:
        enc(x)
    assert all(m._attention_sink is None for _, m in attention_layers(enc))
    enc(x)
    assert all(len(maps.calls(n)) == 1 for n in maps.layers)
    maps.clear()
    assert len(maps) == 0
    # an error inside the block still restores the layers
    with pytest.raises(RuntimeError), capture_attention(enc):
        raise RuntimeError("boom")
    assert all(m._attention_sink is None for _, m in attention_layers(enc))


def test_one_map_per_decoding_step():
    m = MultiHeadAttention(16, 2).eval()
    x = torch.randn(1, 4, 16)
    cache = KVCache()
    with capture_attention(m) as maps:
        for t in range(4):
            m(x[:, t : t + 1], causal=True, kv_cache=cache)
    calls = maps.calls("")
    assert [c.shape for c in calls] == [(1, 2, 1, t + 1) for t in range(4)]
    with capture_attention(m) as full:
        m(x, causal=True)
    for t, c in enumerate(calls):
        torch.testing.assert_close(c[:, :, 0], full[0][:, :, t, : t + 1], **TOL)


@pytest.mark.parametrize(
    ("backend", "kw"),
    [("local", {"window": 1}), ("linear", {}), ("flex", {})],
)
def test_capture_under_other_backends(backend, kw):
    enc = make_encoder()
    x = torch.randn(2, 6, 16)
    with capture_attention(enc) as exact:
        enc(x)
    set_backend(enc, backend, **kw)
    with capture_attention(enc) as maps:
        enc(x)
    for got in maps:
        torch.testing.assert_close(got.sum(-1), torch.ones(2, 2, 6), **TOL)
    if backend == "local":
        outside = (torch.arange(6)[:, None] - torch.arange(6)[None, :]).abs() > 1
        assert all((got[..., outside] == 0).all() for got in maps)
    if backend == "flex":  # an exact backend: the same maps as sdpa
        for a, b in zip(maps, exact):
            torch.testing.assert_close(a, b, **TOL)


def test_capture_includes_alibi_bias():
    m = MultiHeadAttention(16, 4, pos=ALiBi(4)).eval()
    x = torch.randn(1, 5, 16)
    with capture_attention(m) as maps:
        m(x)
    q, k, _ = (t.view(1, 5, 4, 4).transpose(1, 2) for t in m.qkv(x).split(16, -1))
    scores = q @ k.transpose(-1, -2) / 2 + ALiBi(4).bias(5, 5, 0, x.device)
    torch.testing.assert_close(maps[0], torch.softmax(scores, -1).detach(), **TOL)


# --------------------------------------------------------------------------------------------
# rollout
# --------------------------------------------------------------------------------------------


def random_maps(b, h, n, layers, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.softmax(torch.randn(b, h, n, n, generator=gen), -1) for _ in range(layers)]


@pytest.mark.parametrize("head_fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("discard_ratio", [0.0, 0.5])
def test_rollout_rows_sum_to_one(head_fusion, residual, discard_ratio):
    result = attention_rollout(
        random_maps(2, 3, 6, 4),
        head_fusion=head_fusion,
        residual=residual,
        discard_ratio=discard_ratio,
    )
    assert result.shape == (2, 6, 6)
    torch.testing.assert_close(result.sum(-1), torch.ones(2, 6), **TOL)
    assert (result >= 0).all()


@pytest.mark.parametrize("residual", [True, False])
def test_rollout_of_identity_attention_is_identity(residual):
    eye = torch.eye(5).expand(2, 3, 5, 5)
    torch.testing.assert_close(
        attention_rollout([eye], residual=residual), torch.eye(5).expand(2, 5, 5)
    )
    torch.testing.assert_close(
        attention_rollout([eye, eye, eye], residual=residual), torch.eye(5).expand(2, 5, 5)
    )


def test_rollout_single_layer_residual():
    (a,) = random_maps(2, 3, 4, 1)
    fused = a.mean(1)
    torch.testing.assert_close(attention_rollout([a], residual=False), fused, **TOL)
    torch.testing.assert_close(attention_rollout([a]), (fused + torch.eye(4)) / 2, **TOL)


def test_rollout_head_fusion():
    a = torch.tensor([[[[0.8, 0.2], [0.4, 0.6]], [[0.2, 0.8], [0.9, 0.1]]]])  # (1, 2, 2, 2)
    mx = torch.tensor([[0.8, 0.8], [0.9, 0.6]])
    mn = torch.tensor([[0.2, 0.2], [0.4, 0.1]])
    norm = lambda m: m / m.sum(-1, keepdim=True)  # noqa: E731
    torch.testing.assert_close(
        attention_rollout([a], head_fusion="max", residual=False)[0], norm(mx)
    )
    torch.testing.assert_close(
        attention_rollout([a], head_fusion="min", residual=False)[0], norm(mn)
    )
    torch.testing.assert_close(
        attention_rollout([a], head_fusion="mean", residual=False)[0],
        torch.tensor([[0.5, 0.5], [0.65, 0.35]]),
    )


def test_rollout_discard_ratio_spares_the_diagonal():
    a = torch.tensor([[[[0.7, 0.3], [0.1, 0.9]]]])
    # the weakest quarter of the entries (0.1, off the diagonal) is zeroed, rows renormalized
    got = attention_rollout([a], discard_ratio=0.25, residual=False)[0]
    torch.testing.assert_close(got, torch.tensor([[0.7, 0.3], [0.0, 1.0]]))
    # the weakest entry sits on the diagonal: nothing is dropped
    b = torch.tensor([[[[0.05, 0.95], [0.5, 0.5]]]])
    torch.testing.assert_close(
        attention_rollout([b], discard_ratio=0.25, residual=False)[0], b[0, 0]
    )
    # a ratio too small to drop a whole entry changes nothing
    torch.testing.assert_close(
        attention_rollout([a], discard_ratio=0.2, residual=False)[0], a[0, 0]
    )


def test_rollout_two_layers_by_hand():
    a1 = torch.tensor([[[[1.0, 0.0], [0.5, 0.5]]]])
    a2 = torch.tensor([[[[0.5, 0.5], [0.0, 1.0]]]])
    # with residual: R1 = (A1 + I)/2 = [[1, 0], [.25, .75]], R2 = [[.75, .25], [0, 1]];
    # rollout multiplies later layers on the left: R2 @ R1
    expected = torch.tensor([[0.8125, 0.1875], [0.25, 0.75]])
    torch.testing.assert_close(attention_rollout([a1, a2])[0], expected)
    torch.testing.assert_close(
        attention_rollout([a2, a1])[0], torch.tensor([[0.75, 0.25], [0.1875, 0.8125]])
    )
    # without residual: A2 @ A1
    torch.testing.assert_close(attention_rollout([a1, a2], residual=False)[0], (a2 @ a1)[0, 0])


def test_rollout_from_captured_maps():
    enc = make_encoder()
    with capture_attention(enc) as maps:
        enc(torch.randn(2, 5, 16))
    result = attention_rollout(maps)
    torch.testing.assert_close(result, attention_rollout([maps[0], maps[1], maps[2]]))
    torch.testing.assert_close(result.sum(-1), torch.ones(2, 5), **TOL)


def test_rollout_errors():
    with pytest.raises(ValueError, match="at least one attention map"):
        attention_rollout([])
    with pytest.raises(ValueError, match=r"discard_ratio must be in \[0, 1\), got 1.0"):
        attention_rollout(random_maps(1, 1, 3, 1), discard_ratio=1.0)
    with pytest.raises(ValueError, match=r"layer 1 is \(1, 1, 3, 4\)"):
        attention_rollout([torch.ones(1, 1, 3, 3), torch.ones(1, 1, 3, 4)])
    with pytest.raises(ValueError, match="head_fusion must be 'mean', 'max' or 'min', got 'sum'"):
        attention_rollout(random_maps(1, 1, 3, 1), head_fusion="sum")
