"""The models: every preset, timm parity, backends, LSA, tokenizers and export."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from attnlab_vit.model import (
    PRESETS,
    VisionTransformer,
    ViTConfig,
    create_model,
    list_presets,
    preset_config,
    timm_vit,
)

from attention_core import AttentionConfig, capture_attention
from attnlab.export import export_model


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_shapes_and_gradients(name: str) -> None:
    model = create_model(name)
    cfg = model.cfg
    x = torch.randn(2, cfg.in_chans, cfg.img_size, cfg.img_size)
    logits = model(x)
    assert logits.shape == (2, cfg.num_classes)
    assert torch.isfinite(logits).all()
    logits.square().sum().backward()
    missing = [
        n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert not missing, f"{name}: no gradient for {missing}"


def test_registry_holds_the_named_presets() -> None:
    for name in ("vit_tiny_patch4_32", "vit_small_patch4_32", "cct_7_3x1_32", "vit_test"):
        assert name in PRESETS
    assert 3.5e6 < sum(p.numel() for p in create_model("cct_7_3x1_32").parameters()) < 4.0e6
    with pytest.raises(ValueError, match="unknown ViT preset"):
        preset_config("vit_huge_nope")


@pytest.mark.parametrize("pool", ["token", "avg"])
def test_timm_loads_our_weights_strictly_and_agrees(pool: str) -> None:
    cfg = preset_config("vit_test", global_pool=pool, init_values=0.5, depth=3)
    ours = VisionTransformer(cfg).eval()
    ref = timm_vit(cfg).eval()
    assert set(ours.state_dict()) == set(ref.state_dict())
    ref.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=0)


def test_timm_names_are_the_documented_ones() -> None:
    keys = set(create_model("vit_test", init_values=0.1).state_dict())
    for key in ("patch_embed.proj.weight", "cls_token", "pos_embed", "blocks.1.attn.qkv.weight",
                "blocks.0.ls1.gamma", "blocks.0.mlp.fc2.bias", "norm.weight", "head.weight"):  # fmt: skip
        assert key in keys


def test_patch_size_must_divide_image_size() -> None:
    with pytest.raises(ValueError, match="image size 28 is not divisible by patch size 5"):
        VisionTransformer(ViTConfig(img_size=28, patch_size=5, in_chans=1))


def test_wrong_input_size_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"expected images shaped \(B, 1, 8, 8\)"):
        create_model("vit_test")(torch.randn(1, 1, 16, 16))


def test_backends_agree_on_exact_attention() -> None:
    sdpa = create_model("vit_test", attention=AttentionConfig("sdpa")).eval()
    math = create_model("vit_test", attention={"backend": "math"}).eval()
    math.load_state_dict(sdpa.state_dict())
    x = torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(sdpa(x), math(x), atol=1e-5, rtol=0)
    # approximate backends run and keep the parameter names
    for attention in (AttentionConfig("local", window=3), AttentionConfig("linear")):
        model = create_model("vit_test", attention=attention)
        assert set(model.state_dict()) == set(sdpa.state_dict())
        assert model(x).shape == (3, 10)


def test_lsa_masks_the_diagonal_and_learns_a_temperature() -> None:
    model = create_model("vit_test_spt_lsa").eval()
    with capture_attention(model) as maps:
        model(torch.randn(2, 1, 8, 8))
    for attn in maps:  # (B, H, L, L)
        assert torch.diagonal(attn, dim1=-2, dim2=-1).abs().max() == 0
        torch.testing.assert_close(attn.sum(-1), torch.ones_like(attn.sum(-1)))
    scales = [n for n, _ in model.named_parameters() if n.endswith("pos.log_scale")]
    assert len(scales) == model.cfg.depth
    with pytest.raises(ValueError, match=r"Locality Self-Attention .* backend 'linear'"):
        preset_config("vit_test_spt_lsa", attention=AttentionConfig("linear"))


def test_shifted_patch_tokens_see_their_neighbours() -> None:
    model = create_model("vit_test_spt_lsa")
    x = torch.zeros(1, 1, 8, 8)
    x[..., 3, 3] = 1.0  # one pixel in the patch at grid (1, 1)
    base = model.patch_embed(torch.zeros_like(x))
    changed = (model.patch_embed(x) - base).abs().sum(-1)[0].reshape(4, 4) > 0
    assert changed[1, 1] and changed.sum() > 1  # shifted copies reach the neighbouring patches


def test_cct_sequence_pooling_and_tokens() -> None:
    model = create_model("cct_test")
    assert model.grid_size == (4, 4)
    assert not hasattr(model, "cls_token") and hasattr(model, "attn_pool")


def test_sincos_positions_are_fixed() -> None:
    model = create_model("vit_test", attention=AttentionConfig(pos="sincos2d"))
    assert "pos_embed" not in dict(model.named_parameters())
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_rope2d_rotates_inside_attention_and_leaves_the_class_token() -> None:
    model = create_model("vit_test", attention=AttentionConfig(pos="rope2d")).eval()
    assert "pos_embed" not in model.state_dict()
    rope = model.blocks[0].attn.pos
    assert rope.num_prefix_tokens == 1 and tuple(rope.grid_size) == model.grid_size
    q = torch.randn(1, 2, 17, 16)
    rotated, _ = rope.rotate(q, q, 0, 0)
    torch.testing.assert_close(rotated[:, :, 0], q[:, :, 0])  # the class token is not rotated
    assert not torch.allclose(rotated[:, :, 1:], q[:, :, 1:])


def test_local_backend_makes_the_class_token_global() -> None:
    model = create_model("vit_test", attention=AttentionConfig("local", window=1))
    assert model.attention.global_tokens == 1 and model.attention.pos == "learned"
    assert model.blocks[0].attn.backend_kwargs["global_tokens"] == 1
    cct = create_model("cct_test", attention=AttentionConfig("local", window=1))
    assert cct.attention.global_tokens == 0  # sequence pooling: no class token
    explicit = create_model(
        "vit_test", attention=AttentionConfig("local", window=1, global_tokens=0)
    )
    assert explicit.attention.global_tokens == 0


@pytest.mark.parametrize(
    ("attention", "message"),
    [
        (AttentionConfig(pos="alibi"), "pos 'alibi' is not available here; choose one of"),
        (AttentionConfig(pos="rope"), "pos 'rope' is not available here"),
        (AttentionConfig(pos="sincos"), "pos 'sincos' is not available here"),
    ],
)
def test_one_dimensional_positions_are_refused_on_the_grid(
    attention: AttentionConfig, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        create_model("vit_test", attention=attention)


def test_lsa_keeps_rope2d_inside_its_temperature() -> None:
    model = create_model("vit_test_spt_lsa", attention=AttentionConfig(pos="rope2d")).eval()
    with capture_attention(model) as maps:
        model(torch.randn(2, 1, 8, 8))
    assert all(torch.diagonal(a, dim1=-2, dim2=-1).abs().max() == 0 for a in maps)
    assert model.blocks[0].attn.pos.inner is not None


def test_timm_reference_refuses_an_attention_setting() -> None:
    with pytest.raises(ValueError, match="timm's own attention, which does not take"):
        timm_vit(preset_config("vit_test", attention=AttentionConfig("local", window=2)))
    assert timm_vit(preset_config("vit_test", attention=AttentionConfig(pos="learned")))


@pytest.mark.parametrize(
    ("name", "attention"),
    [
        ("vit_test_spt_lsa", AttentionConfig()),  # LSA's masked diagonal, no special export path
        ("vit_test_spt_lsa", AttentionConfig("math", pos="rope2d")),
        ("cct_test", AttentionConfig()),
    ],
)
def test_torch_export_parity(name: str, attention: AttentionConfig, tmp_path: Path) -> None:
    model = create_model(name, attention=attention).eval()
    diff = export_model(model, (torch.randn(2, 1, 8, 8),), "torch-export", tmp_path / "m.pt2")
    assert diff < 1e-5


def test_onnx_export_parity_with_lsa(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    model = create_model("vit_test_spt_lsa").eval()
    diff = export_model(model, (torch.randn(2, 1, 8, 8),), "onnx", tmp_path / "m.onnx")
    assert diff < 1e-4
