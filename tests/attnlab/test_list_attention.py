"""`attnlab list-attention`: what `--model.attention.*` takes, read from the core's registry."""

from __future__ import annotations

import pytest

from attention_core import (
    Backend,
    BackendOption,
    list_backends,
    register_backend,
    unregister_backend,
)
from attnlab.cli import main


def _math_copy(q, k, v, *, mask, causal, dropout_p, scale, return_weights, module, sharpness):
    from attention_core import attention

    return attention(
        q, k, v, mask=mask, causal=causal, scale=scale * sharpness, backend="math"
    ), None


@pytest.fixture
def sharp_backend():
    register_backend(
        Backend(
            "sharp",
            _math_copy,
            doc="a test backend",
            options=(BackendOption("sharpness", float, 1.0),),
        )
    )
    yield
    unregister_backend("sharp")


def test_lists_every_backend_its_options_and_the_positions(capsys, sharp_backend):
    assert main(["list-attention"]) == 0
    out = capsys.readouterr().out
    for name in list_backends():
        assert f"\n{name} " in out
    assert "sharp" in out and "sharpness=1.0" in out
    assert "window, block_size=None, global_tokens=0" in out
    assert "none, learned, sincos, sincos2d, rope, rope2d, alibi" in out
