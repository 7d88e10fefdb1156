"""AttentionConfig: one setting for every block and app; invalid combinations fail at once."""

from __future__ import annotations

import pytest
import torch

from attention_core import (
    POSITIONS,
    AttentionConfig,
    MultiHeadAttention,
    TransformerDecoderBlock,
    TransformerEncoder,
    build_position,
)
from attention_core.positional import ALiBi, RotaryEmbedding, RotaryEmbedding2D


def test_options_reach_the_module():
    cfg = AttentionConfig(backend="local", window=3, block_size=16)
    mha = MultiHeadAttention(16, 2, attention=cfg)
    assert mha.backend == "local" and mha.backend_kwargs == {"window": 3, "block_size": 16}
    lin = MultiHeadAttention(
        16, 2, attention=AttentionConfig(backend="linformer", proj_dim=4), seq_len=10
    )
    assert lin.linformer_e.shape == (4, 10)
    favor = MultiHeadAttention(
        16, 2, attention=AttentionConfig(backend="linear", feature_map="favor", num_features=12)
    )
    assert favor.favor_features.shape == (12, 8)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backend": "local"}, "backend 'local' needs window="),
        ({"backend": "local", "window": -2}, "window must be >= 0, got -2"),
        ({"backend": "sdpa", "window": 4}, r"'sdpa' does not take \['window'\]"),
        ({"backend": "sdpa", "global_tokens": 1}, "'sdpa' already attends globally"),
        ({"backend": "linear", "feature_map": "relu"}, r"feature_map='relu' is not one of"),
        ({"backend": "warp"}, "unknown attention backend 'warp'"),
        ({"pos": "spiral"}, r"pos 'spiral' is not one of \['none', 'learned'"),
    ],
)
def test_invalid_settings_fail_at_construction_with_one_line(kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        AttentionConfig(**kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("cfg", "check", "message"),
    [
        (AttentionConfig(backend="linformer"), {"causal": True}, "linformer' cannot be causal"),
        (AttentionConfig(backend="linformer"), {"kv_cache": True}, "no KV cache"),
        (AttentionConfig(pos="alibi"), {"grid": True}, "2-D grid of tokens does not have"),
        (AttentionConfig(pos="rope2d"), {}, "needs tokens on a 2-D grid"),
        (AttentionConfig(backend="linear", pos="alibi"), {}, "additive bias on the scores"),
        (AttentionConfig(pos="rope"), {"positions": ("none", "learned")}, "choose one of"),
    ],
)
def test_combinations_a_model_cannot_run_are_refused(cfg, check, message):
    with pytest.raises(ValueError, match=message):
        cfg.check(where="encoder", **check)


def test_resolved_fills_the_models_defaults_only_where_they_apply():
    local = AttentionConfig(backend="local", window=2).resolved(pos="learned", global_tokens=1)
    assert (local.pos, local.global_tokens) == ("learned", 1)
    assert AttentionConfig().resolved(pos="sincos2d", global_tokens=1).global_tokens is None
    chosen = AttentionConfig(backend="local", window=2, global_tokens=0, pos="rope")
    assert chosen.resolved(pos="learned", global_tokens=1) == chosen


def test_round_trips_through_plain_data():
    cfg = AttentionConfig(backend="local", window=5, pos="rope", global_tokens=1)
    assert AttentionConfig.coerce(cfg.to_dict()) == cfg
    assert AttentionConfig.coerce("math").backend == "math"
    assert AttentionConfig.coerce(None) == AttentionConfig()
    with pytest.raises(ValueError, match=r"unknown; known"):
        AttentionConfig.coerce({"backend": "sdpa", "windw": 3})


def test_decoder_block_sets_self_and_cross_attention_apart():
    block = TransformerDecoderBlock(
        16,
        2,
        attention=AttentionConfig(backend="local", window=2),
        cross_attention=AttentionConfig(backend="math"),
    )
    assert block.self_attn.backend == "local" and block.cross_attn.backend == "math"
    with pytest.raises(
        ValueError, match="decoder self-attention: backend 'linformer' cannot be causal"
    ):
        TransformerDecoderBlock(16, 2, attention=AttentionConfig(backend="linformer", proj_dim=2))


@pytest.mark.parametrize("pos", POSITIONS)
def test_every_position_builds_for_the_shape_it_needs(pos):
    grid = (2, 3) if pos in ("sincos2d", "rope2d") else None
    added, inside = build_position(
        pos,
        dim=16,
        num_heads=2,
        max_len=7 if grid is None else None,
        grid=grid,
        num_prefix_tokens=1,
    )
    x = torch.randn(2, 7, 16)  # (B, L, dim): 1 class token + 2 x 3 patches on a grid
    if added is not None:
        assert added(x).shape == x.shape
    enc = TransformerEncoder(16, 1, 2, pos=inside)
    assert torch.isfinite(enc(x)).all()
    expected = {"rope": RotaryEmbedding, "rope2d": RotaryEmbedding2D, "alibi": ALiBi}.get(pos)
    assert (inside is None) if expected is None else isinstance(inside, expected)


def test_positions_refuse_the_wrong_shape():
    with pytest.raises(ValueError, match="alibi' biases by 1-D distance"):
        build_position("alibi", dim=16, num_heads=2, grid=(2, 3))
    with pytest.raises(ValueError, match="needs a 2-D token grid"):
        build_position("rope2d", dim=16, num_heads=2)
    with pytest.raises(ValueError, match="needs max_len"):
        build_position("learned", dim=16, num_heads=2)
