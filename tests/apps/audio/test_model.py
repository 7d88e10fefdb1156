"""Model shapes, gradients, backends, the patch grid and the rollout-to-pixels mapping."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from attnlab_audio.draw import patch_map_to_pixels
from attnlab_audio.model import AudioSpectrogramTransformer, create_model, patch_grid
from attnlab_audio.module import AudioModule

from attention_core import AttentionConfig, capture_attention

TINY_AST = dict(
    n_mels=24,
    n_frames=20,
    num_classes=5,
    patch_size=6,
    patch_stride=4,
    embed_dim=32,
    depth=2,
    num_heads=4,
)
TINY_CNN = dict(n_mels=24, n_frames=20, num_classes=5, channels=[8, 16])


@pytest.mark.parametrize("arch,kwargs", [("ast", TINY_AST), ("cnn", TINY_CNN)])
def test_shapes_finite_and_every_parameter_gets_a_gradient(arch: str, kwargs: dict) -> None:
    model = create_model(arch, **kwargs)
    x = torch.randn(3, 1, 24, 20) * 10 - 30
    logits = model(x)
    assert logits.shape == (3, 5) and torch.isfinite(logits).all()
    logits.square().mean().backward()
    missing = [
        n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert not missing


def test_ast_grid_tokens_and_positions() -> None:
    model = AudioSpectrogramTransformer(create_model("ast", **TINY_AST).cfg)
    assert model.grid_size == ((24 - 6) // 4 + 1, (20 - 6) // 4 + 1) == (5, 4)
    assert model.pos_embed.shape == (1, 1 + 20, 32)
    tokens = model.tokens(torch.randn(2, 1, 24, 20))
    assert tokens.shape == (2, 21, 32)


@pytest.mark.parametrize(
    "attention",
    [
        AttentionConfig("math"),
        AttentionConfig("linformer", proj_dim=8),
        AttentionConfig("linear"),
        AttentionConfig("local", window=2),
    ],
    ids=lambda a: a.backend,
)
def test_backends_are_selectable(attention: AttentionConfig) -> None:
    model = create_model("ast", **TINY_AST, attention=attention)
    assert model.encoder.blocks[0].attn.backend == attention.backend
    assert model(torch.randn(2, 1, 24, 20)).shape == (2, 5)


def test_linformer_projects_every_token_and_local_makes_the_class_token_global() -> None:
    model = create_model("ast", **TINY_AST, attention=AttentionConfig("linformer"))
    assert model.encoder.blocks[0].attn.backend_kwargs["seq_len"] == 1 + 20  # class + 5x4 grid
    local = create_model("ast", **TINY_AST, attention=AttentionConfig("local", window=2))
    assert local.attention.global_tokens == 1 and local.attention.pos == "learned"
    window_only = AttentionConfig("local", window=2, global_tokens=0)
    assert create_model("ast", **TINY_AST, attention=window_only).attention.global_tokens == 0


@pytest.mark.parametrize("pos", ["none", "sincos2d", "rope2d"])
def test_positions_replace_the_learned_table(pos: str) -> None:
    model = create_model("ast", **TINY_AST, attention=AttentionConfig(pos=pos))
    assert model.pos_embed is None
    in_attention = model.encoder.blocks[0].attn.pos
    assert (in_attention is not None) == (pos == "rope2d")
    assert (model.pos_add is not None) == (pos == "sincos2d")
    x = torch.randn(2, 1, 24, 20)
    assert torch.isfinite(model(x)).all()


@pytest.mark.parametrize("pos", ["alibi", "rope", "sincos"])
def test_one_dimensional_positions_are_refused_on_the_grid(pos: str) -> None:
    with pytest.raises(ValueError, match=f"pos '{pos}' is not available here"):
        create_model("ast", **TINY_AST, attention=AttentionConfig(pos=pos))


def test_sdpa_matches_math_backend() -> None:
    torch.manual_seed(0)
    a = create_model("ast", **TINY_AST, attention=AttentionConfig("sdpa")).eval()
    b = create_model("ast", **TINY_AST, attention=AttentionConfig("math")).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 1, 24, 20)
    torch.testing.assert_close(a(x), b(x), atol=1e-5, rtol=1e-5)


def test_normalization_buffers_are_applied_and_saved() -> None:
    model = create_model("cnn", **TINY_CNN).eval()
    x = torch.randn(2, 1, 24, 20)
    model.normalize.set_stats(-40.0, 12.0)
    torch.testing.assert_close(model.normalize(x * 12 - 40), x)
    state = model.state_dict()
    assert float(state["normalize.mean"]) == -40.0 and float(state["normalize.std"]) == 12.0
    with pytest.raises(ValueError, match="std must be positive"):
        model.normalize.set_stats(0.0, 0.0)


def test_frame_patches_span_every_band() -> None:
    """[n_mels, k] patches: one token per stretch of frames, a (1, gt) grid, pixels mapped back."""
    model = create_model(
        "ast", **{**TINY_AST, "patch_size": [24, 4], "patch_stride": [24, 2]}
    ).eval()
    assert model.grid_size == (1, (20 - 4) // 2 + 1) == (1, 9)
    assert model.patch_embed.kernel_size == (24, 4) and model.patch_embed.stride == (24, 2)
    assert model.tokens(torch.randn(2, 1, 24, 20)).shape == (2, 1 + 9, 32)
    w = torch.zeros(1, 9)
    w[0, 1] = 1.0  # the second token: frames 2-5, shared with its neighbours on 2-3 and 4-5
    px = patch_map_to_pixels(w, (1, 9), (24, 20), (24, 4), (24, 2))
    assert px[0, :, 2:4].eq(0.5).all() and px[0, :, 4:6].eq(0.5).all()
    assert px[0, :, :2].eq(0).all() and px[0, :, 6:].eq(0).all()
    with pytest.raises(ValueError, match="smaller than one 25x4 patch"):
        patch_grid((24, 20), [25, 4], [1, 2])
    with pytest.raises(ValueError, match=r"--model.patch_size must be a positive int"):
        patch_grid((24, 20), [24, 4, 1], 2)


def test_fsdd_config_builds_and_matches_its_data() -> None:
    """The shipped FSDD configs (the benchmark reads the same files) build a model whose input
    geometry matches the front end they configure."""
    import yaml
    from attnlab_audio.features import FrontEndConfig

    configs = Path(__file__).resolve().parents[3] / "apps" / "audio" / "configs"
    for name in ("fsdd.yaml", "fsdd_cnn.yaml"):
        cfg = yaml.safe_load((configs / name).read_text(encoding="utf-8"))
        data = cfg["data"]
        front = FrontEndConfig(
            sample_rate=data["sample_rate"], duration=data["duration"],
            hop_length=data["hop_length"], n_mels=data["n_mels"],
        )  # fmt: skip
        assert (cfg["model"]["n_mels"], cfg["model"]["n_frames"]) == (
            front.n_mels,
            front.num_frames,
        ), name
        module = AudioModule(**cfg["model"])
        logits = module(torch.randn(2, 1, front.n_mels, front.num_frames))
        assert logits.shape == (2, 10), name


def test_bad_geometry_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="smaller than one 8x8 patch"):
        patch_grid((6, 50), 8, 6)
    with pytest.raises(ValueError, match="patch_stride"):
        patch_grid((40, 50), 8, 10)
    with pytest.raises(ValueError, match=r"unknown --model.model"):
        create_model("rnn")


def test_capture_and_rollout_map_cover_the_spectrogram() -> None:
    model = create_model("ast", **TINY_AST).eval()
    with capture_attention(model) as maps:
        model(torch.randn(2, 1, 24, 20))
    assert len(maps) == 2 and maps[0].shape == (2, 4, 21, 21)
    # one patch weighted 1, the rest 0: its footprint (shared pixels averaged) lights up
    w = torch.zeros(1, 20)
    w[0, 0] = 1.0
    px = patch_map_to_pixels(w, (5, 4), (24, 20), 6, 4)
    assert px.shape == (1, 24, 20)
    assert px[0, :4, :4].eq(1).all()  # covered by patch 0 only
    assert px[0, 4:6, :4].eq(0.5).all()  # shared with the patch below
    assert px[0, 6:, :].eq(0).all() and px[0, :, 6:].eq(0).all()
