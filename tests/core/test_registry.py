"""The backend registry: one entry per backend, read by attention(), MultiHeadAttention and the
config; a third-party backend registers with one call and runs everywhere."""

from __future__ import annotations

import importlib

import pytest
import torch

from attention_core import (
    AttentionConfig,
    Backend,
    BackendOption,
    MultiHeadAttention,
    TransformerEncoder,
    attention,
    backend_table,
    capture_attention,
    get_backend,
    list_backends,
    register_backend,
    unregister_backend,
)


def _scaled_math(q, k, v, *, mask, causal, dropout_p, scale, return_weights, module, temperature):
    """Exact attention at a temperature: a toy backend with one option."""
    out, w = attention(
        q,
        k,
        v,
        mask=mask,
        causal=causal,
        scale=scale / temperature,
        backend="math",
        return_weights=True,
    )
    return out, (w if return_weights else None)


@pytest.fixture
def toy_backend():
    backend = register_backend(
        Backend(
            "toy_temperature",
            _scaled_math,
            doc="math attention at a temperature",
            options=(BackendOption("temperature", float, 1.0, minimum=1e-3),),
        )
    )
    yield backend
    unregister_backend(backend.name)


def test_builtins_are_registered_with_their_capabilities():
    names = list_backends()
    assert names[:2] == ["sdpa", "math"]
    assert {"local", "linear", "linformer"} <= set(names)
    assert get_backend("auto") is get_backend("sdpa")
    assert get_backend("sdpa").exact and not get_backend("local").exact
    linformer = get_backend("linformer")
    assert linformer.learned and not linformer.causal and not linformer.kv_cache
    assert get_backend("linear").masks == "key_padding" and not get_backend("linear").dropout
    assert get_backend("local").option("window").required
    table = backend_table()
    for name in names:
        assert name in table
    assert "window" in table and "global_tokens=0" in table


def test_unknown_backend_and_option_name_what_exists():
    with pytest.raises(
        ValueError, match=r"unknown attention backend 'nope'; choose one of \['sdpa'"
    ):
        get_backend("nope")
    with pytest.raises(ValueError, match=r"backend 'math' does not take options \['window'\]"):
        MultiHeadAttention(8, 2, backend="math", window=3)
    with pytest.raises(ValueError, match="already registered"):
        register_backend(Backend("sdpa", _scaled_math))


def test_third_party_backend_runs_through_attention_and_the_module(toy_backend):
    assert "toy_temperature" in list_backends()
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 5, 4) for _ in range(3))
    out = attention(q, k, v, backend="toy_temperature", temperature=2.0)
    ref = attention(q, k, v, backend="math", scale=0.5 / 2.0)
    torch.testing.assert_close(out, ref)
    with pytest.raises(ValueError, match=r"temperature must be >= 0\.001"):
        attention(q, k, v, backend="toy_temperature", temperature=0.0)

    cfg = AttentionConfig(backend="toy_temperature", options={"temperature": 1.0})
    mha = MultiHeadAttention(8, 2, attention=cfg)
    ref_mha = MultiHeadAttention(8, 2, backend="math")
    ref_mha.load_state_dict(mha.state_dict())
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(mha(x), ref_mha(x))
    # Attention maps work for it too (it is exact, so the math weights are its weights).
    enc = TransformerEncoder(8, 1, 2, attention=cfg)
    with capture_attention(enc) as maps:
        enc(x)
    assert maps[0].shape == (2, 2, 5, 5)


def test_flex_on_cpu_training_says_it_runs_math():
    if "flex" not in list_backends():
        pytest.skip("this torch build has no FlexAttention")
    impl = importlib.import_module("attention_core.attention")

    impl._FLEX_FALLBACK_WARNED = False
    q = torch.randn(1, 2, 6, 4, requires_grad=True)
    with pytest.warns(UserWarning, match="backend 'flex' ran the math backend"):
        attention(q, q, q, backend="flex")


def test_flex_runs_flex_for_inference_on_cpu(monkeypatch):
    """Where FlexAttention really runs (no gradient), the flex kernel is what is called."""
    if "flex" not in list_backends():
        pytest.skip("this torch build has no FlexAttention")
    impl = importlib.import_module("attention_core.attention")

    calls = []
    real = impl._flex
    monkeypatch.setattr(impl, "_flex", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    q, k, v = (torch.randn(1, 2, 6, 8) for _ in range(3))
    with torch.no_grad():
        out = attention(q, k, v, backend="flex", causal=True)
    assert calls == [1]
    torch.testing.assert_close(out, attention(q, k, v, backend="math", causal=True))
