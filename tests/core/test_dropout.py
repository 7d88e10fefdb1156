"""attention_core's dropout: nn.Dropout's contract with a cheaper mask on CPU."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attention_core import Dropout, Mlp, MultiHeadAttention, dropout


def test_drops_at_rate_p_and_keeps_the_mean():
    torch.manual_seed(0)
    x = torch.ones(200_000)
    y = dropout(x, 0.3)
    zeroed = (y == 0).float().mean().item()
    assert zeroed == pytest.approx(0.3, abs=0.005)
    # survivors are scaled so the expectation is unchanged
    values = torch.unique(y).tolist()
    assert values[0] == 0.0 and values[1:] == [pytest.approx(1 / 0.7)]
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)


def test_gradient_flows_only_through_the_kept_elements_with_the_same_scale():
    torch.manual_seed(1)
    x = torch.randn(64, 33, requires_grad=True)
    y = dropout(x, 0.5)
    y.backward(torch.ones_like(y))
    kept = y != 0
    assert torch.equal(x.grad != 0, kept)
    torch.testing.assert_close(x.grad[kept], torch.full_like(x.grad[kept], 2.0))


def test_identity_in_eval_and_at_zero_and_all_zeros_at_one():
    x = torch.randn(8, 8)
    assert dropout(x, 0.3, training=False) is x
    assert dropout(x, 0.0) is x
    assert torch.count_nonzero(dropout(x, 1.0)) == 0
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\], got 1.5"):
        dropout(x, 1.5)


def test_the_mask_repeats_with_the_seed_and_differs_without_it():
    x = torch.randn(32, 32)
    torch.manual_seed(7)
    a = dropout(x, 0.2)
    torch.manual_seed(7)
    b = dropout(x, 0.2)
    c = dropout(x, 0.2)
    assert torch.equal(a, b)
    assert not torch.equal(b, c)


def test_module_is_a_drop_in_nn_dropout():
    module = Dropout(0.25)
    assert isinstance(module, nn.Dropout)
    assert module.state_dict() == {}
    assert "p=0.25" in repr(module)
    x = torch.randn(16, 16)
    assert module.eval()(x) is x
    assert torch.count_nonzero(module.train()(torch.ones(100, 100))) < 10_000


def test_the_library_blocks_use_it():
    """The dropout sites of the blocks train with the cheaper mask (what a step's profile showed
    as a third of a PatchTST step)."""
    mha = MultiHeadAttention(16, 4, attn_drop=0.1, proj_drop=0.1)
    mlp = Mlp(16, 32, drop=0.1)
    assert isinstance(mha.proj_drop, Dropout) and isinstance(mha.attn_drop, Dropout)
    assert isinstance(mlp.drop1, Dropout) and isinstance(mlp.drop2, Dropout)


def test_compiled_code_falls_back_to_the_functional_dropout(monkeypatch):
    calls = []
    real = nn.functional.dropout
    monkeypatch.setattr(nn.functional, "dropout", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    dropout(torch.randn(4, 4), 0.5)
    assert calls == [1]
