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

from attention_core import capture_attention
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
    sdpa = create_model("vit_test", backend="sdpa").eval()
    math = create_model("vit_test", backend="math").eval()
    math.load_state_dict(sdpa.state_dict())
    x = torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(sdpa(x), math(x), atol=1e-5, rtol=0)
    # approximate backends run and keep the parameter names
    for backend, kw in (("local", {"window": 3}), ("linear", {})):
        model = create_model("vit_test", backend=backend, backend_kwargs=kw)
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
    with pytest.raises(ValueError, match="Locality Self-Attention"):
        preset_config("vit_test_spt_lsa", backend="linear")


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
    model = create_model("vit_test", pos_embed="sincos")
    assert "pos_embed" not in dict(model.named_parameters())
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("name", ["vit_test_spt_lsa", "cct_test"])
def test_torch_export_parity(name: str, tmp_path: Path) -> None:
    model = create_model(name).eval()
    diff = export_model(model, (torch.randn(2, 1, 8, 8),), "torch-export", tmp_path / "m.pt2")
    assert diff < 1e-5


def test_onnx_export_parity_with_lsa(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    model = create_model("vit_test_spt_lsa").eval()
    diff = export_model(model, (torch.randn(2, 1, 8, 8),), "onnx", tmp_path / "m.onnx")
    assert diff < 1e-4
