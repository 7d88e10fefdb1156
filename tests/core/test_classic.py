"""Bahdanau (additive) and Luong (dot / general) attention."""

from __future__ import annotations

import pytest
import torch

from attention_core import AdditiveAttention, DotProductAttention

TOL = {"atol": 1e-5, "rtol": 1e-5}


def key_mask(lengths: list[int], n: int) -> torch.Tensor:
    return torch.arange(n)[None, :] < torch.tensor(lengths)[:, None]  # (B, N), True = real


MODULES = {
    "additive": lambda: AdditiveAttention(6, 5, 7),
    "general": lambda: DotProductAttention(6, 5, mode="general"),
    "dot": lambda: DotProductAttention(5, 5, mode="dot"),
}


def expected_scores(m, query, keys):
    if isinstance(m, AdditiveAttention):
        hidden = torch.tanh(m.key_proj(keys) + m.query_proj(query)[:, None, :])
        return (hidden @ m.score.weight[0]).squeeze(-1)
    if m.mode == "general":
        return torch.einsum("bnk,bk->bn", keys, query @ m.weight.weight.T)
    return torch.einsum("bnk,bk->bn", keys, query)


@pytest.mark.parametrize("name", list(MODULES))
@pytest.mark.parametrize("masked", [False, True])
def test_weights_context_and_scores(name, masked):
    m = MODULES[name]()
    query = torch.randn(3, m.query_dim)
    keys = torch.randn(3, 8, m.key_dim)
    mask = key_mask([8, 5, 1], 8) if masked else None
    context, weights = m(query, keys, key_mask=mask)
    assert context.shape == (3, m.key_dim) and weights.shape == (3, 8)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3), **TOL)
    assert (weights >= 0).all()
    torch.testing.assert_close(context, torch.einsum("bn,bnk->bk", weights, keys), **TOL)
    scores = expected_scores(m, query, keys)
    if masked:
        assert (weights[~mask] == 0).all()
        assert weights[2, 0] == 1.0  # a single real key takes all the weight
        scores = scores.masked_fill(~mask, float("-inf"))
    torch.testing.assert_close(weights, torch.softmax(scores, -1), **TOL)


@pytest.mark.parametrize("name", list(MODULES))
def test_every_key_masked_gives_zero_weights(name):
    m = MODULES[name]()
    query, keys = torch.randn(2, m.query_dim), torch.randn(2, 4, m.key_dim)
    mask = key_mask([4, 0], 4)
    context, weights = m(query, keys, key_mask=mask)
    assert torch.isfinite(weights).all() and torch.isfinite(context).all()
    assert (weights[1] == 0).all() and (context[1] == 0).all()
    torch.testing.assert_close(weights[0].sum(), torch.tensor(1.0))
    query.requires_grad_()
    context, weights = m(query, keys, key_mask=mask)
    (context.sum() + weights.square().sum()).backward()
    assert torch.isfinite(query.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters())


def test_additive_projected_keys_are_reused():
    m = AdditiveAttention(6, 5, 7)
    query, keys = torch.randn(2, 6), torch.randn(2, 4, 5)
    pk = m.project_keys(keys)
    assert pk.shape == (2, 4, 7)
    a = m(query, keys)
    b = m(query, keys, projected_keys=pk)
    torch.testing.assert_close(a[0], b[0])
    torch.testing.assert_close(a[1], b[1])


@pytest.mark.parametrize("name", ["additive", "general"])
def test_every_parameter_gets_a_gradient(name):
    m = MODULES[name]()
    query = torch.randn(3, m.query_dim, requires_grad=True)
    keys = torch.randn(3, 6, m.key_dim, requires_grad=True)
    context, weights = m(query, keys, key_mask=key_mask([6, 4, 2], 6))
    (context.square().sum() + weights.square().sum()).backward()
    for pname, p in m.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname
    assert torch.isfinite(query.grad).all() and torch.isfinite(keys.grad).all()


def test_dot_mode_needs_equal_dims():
    with pytest.raises(ValueError, match="mode='dot' needs query_dim == key_dim, got 4 and 6"):
        DotProductAttention(4, 6, mode="dot")
    with pytest.raises(ValueError, match="mode must be 'general' or 'dot', got 'concat'"):
        DotProductAttention(4, 4, mode="concat")
    assert DotProductAttention(4, 4, mode="dot").weight is None


@pytest.mark.parametrize("name", list(MODULES))
def test_bad_shapes_name_the_shapes(name):
    m = MODULES[name]()
    dq, dk = m.query_dim, m.key_dim
    with pytest.raises(ValueError, match=rf"got query \(2, {dq + 1}\), keys \(2, 4, {dk}\)"):
        m(torch.randn(2, dq + 1), torch.randn(2, 4, dk))
    with pytest.raises(ValueError, match=rf"got query \(2, {dq}\), keys \(2, 4, {dk + 2}\)"):
        m(torch.randn(2, dq), torch.randn(2, 4, dk + 2))
    with pytest.raises(ValueError, match=rf"got query \(1, 2, {dq}\), keys"):
        m(torch.randn(1, 2, dq), torch.randn(2, 4, dk))
    with pytest.raises(
        ValueError, match=rf"batch sizes differ: query \(3, {dq}\), keys \(2, 4, {dk}\)"
    ):
        m(torch.randn(3, dq), torch.randn(2, 4, dk))
    with pytest.raises(ValueError, match=r"key_mask must be \(B, N\) = \(2, 4\), got \(2, 5\)"):
        m(
            torch.randn(2, dq),
            torch.randn(2, 4, dk),
            key_mask=torch.ones(2, 5, dtype=torch.bool),
        )


@pytest.mark.parametrize("cls", [AdditiveAttention, DotProductAttention])
def test_key_padding_mask_has_torchs_meaning(cls):
    """``key_padding_mask`` is True where a key is padding (torch's meaning); ``key_mask`` is
    True where a key is real. The same padding given either way gives the same result, and
    padded keys get zero weight."""
    torch.manual_seed(0)
    m = cls(8, 8, 16) if cls is AdditiveAttention else cls(8, 8)
    query, keys = torch.randn(2, 8), torch.randn(2, 5, 8)
    padding = torch.tensor([[False, False, False, True, True], [False] * 5])
    ctx_a, w_a = m(query, keys, key_padding_mask=padding)
    ctx_b, w_b = m(query, keys, key_mask=~padding)
    torch.testing.assert_close(w_a, w_b)
    torch.testing.assert_close(ctx_a, ctx_b)
    assert w_a[0, 3:].abs().max() == 0 and w_a[0, :3].sum() > 0.99
    with pytest.raises(ValueError, match="not both"):
        m(query, keys, key_mask=~padding, key_padding_mask=padding)
