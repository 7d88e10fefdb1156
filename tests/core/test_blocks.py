"""Transformer blocks: the pre-norm formulas, timm compatibility, stochastic depth, gradients."""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attention_core import (
    DropPath,
    LayerScale,
    Mlp,
    MultiHeadAttention,
    RotaryEmbedding,
    TransformerDecoder,
    TransformerDecoderBlock,
    TransformerEncoder,
    TransformerEncoderBlock,
    drop_path,
)

TOL = {"atol": 1e-5, "rtol": 1e-5}


def randomize(module: nn.Module, std: float = 0.1) -> nn.Module:
    """Move every parameter off its init, so LayerScale and norms are not identities."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(std * torch.randn_like(p))
    return module


def padding(lengths: list[int], n: int) -> torch.Tensor:
    return (torch.arange(n)[None, :] < torch.tensor(lengths)[:, None]).view(len(lengths), 1, 1, n)


# --------------------------------------------------------------------------------------------
# small pieces
# --------------------------------------------------------------------------------------------


def test_mlp():
    mlp = Mlp(8, 20, 6)
    x = torch.randn(2, 3, 8)
    torch.testing.assert_close(mlp(x), mlp.fc2(F.gelu(mlp.fc1(x))))
    assert mlp.fc1.out_features == 20 and mlp.fc2.out_features == 6
    assert Mlp(8).fc1.out_features == 8 and Mlp(8).fc2.out_features == 8
    assert Mlp(8, bias=False).fc1.bias is None
    relu = Mlp(8, 16, act_layer=nn.ReLU)
    torch.testing.assert_close(relu(x), relu.fc2(F.relu(relu.fc1(x))))


def test_layer_scale():
    ls = LayerScale(4, init_values=0.5)
    torch.testing.assert_close(ls.gamma, torch.full((4,), 0.5))
    x = torch.randn(2, 3, 4)
    with torch.no_grad():
        ls.gamma.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    torch.testing.assert_close(ls(x), x * torch.tensor([1.0, 2.0, 3.0, 4.0]))


def test_drop_path():
    x = torch.randn(64, 3, 4) + 5
    assert drop_path(x, 0.5, training=False) is x
    assert drop_path(x, 0.0, training=True) is x
    y = drop_path(x, 0.25, training=True)
    kept = (y != 0).flatten(1).all(1)
    dropped = (y == 0).flatten(1).all(1)
    assert bool((kept | dropped).all())  # whole samples, never parts of one
    assert 0 < int(dropped.sum()) < 64
    torch.testing.assert_close(y[kept], x[kept] / 0.75)
    module = DropPath(0.25)
    module.eval()
    assert module(x) is x
    assert "drop_prob=0.25" in repr(module)
    with pytest.raises(ValueError, match=r"drop_prob must be in \[0, 1\), got 1.0"):
        DropPath(1.0)


# --------------------------------------------------------------------------------------------
# blocks against their formulas
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("init_values", [None, 0.3])
def test_encoder_block_formula(init_values):
    blk = randomize(TransformerEncoderBlock(16, 2, mlp_ratio=2.0, init_values=init_values)).eval()
    assert isinstance(blk.ls1, LayerScale if init_values else nn.Identity)
    assert blk.mlp.fc1.out_features == 32
    x = torch.randn(2, 5, 16)
    mask = padding([5, 3], 5)
    h = x + blk.ls1(blk.attn(blk.norm1(x), mask=mask, causal=True))
    expected = h + blk.ls2(blk.mlp(blk.norm2(h)))
    torch.testing.assert_close(blk(x, mask=mask, causal=True), expected, **TOL)


def test_encoder_block_accepts_a_custom_attention():
    attn = MultiHeadAttention(16, 4, backend="local", window=1)
    blk = TransformerEncoderBlock(16, 2, attn=attn)
    assert blk.attn is attn


@pytest.mark.parametrize("memory_dim", [None, 12])
def test_decoder_block_formula(memory_dim):
    blk = randomize(TransformerDecoderBlock(16, 2, memory_dim=memory_dim, init_values=0.2)).eval()
    assert blk.cross_attn.fused == (memory_dim is None)
    x, memory = torch.randn(2, 5, 16), torch.randn(2, 7, memory_dim or 16)
    mmask = padding([7, 2], 7)
    h = x + blk.ls1(blk.self_attn(blk.norm1(x), causal=True))
    h = h + blk.ls2(blk.cross_attn(blk.norm2(h), memory, mask=mmask))
    expected = h + blk.ls3(blk.mlp(blk.norm3(h)))
    torch.testing.assert_close(blk(x, memory, memory_mask=mmask), expected, **TOL)
    # causal by default: the first output does not see later tokens
    x2 = x.clone()
    x2[:, 3:] += 1.0
    torch.testing.assert_close(blk(x2, memory)[:, :3], blk(x, memory)[:, :3], **TOL)
    assert not torch.allclose(blk(x2, memory, causal=False)[:, :3], blk(x, memory)[:, :3])


def test_decoder_block_cross_attention_keeps_an_exact_backend():
    blk = TransformerDecoderBlock(16, 2, backend="local", window=2)
    assert blk.self_attn.backend == "local"
    assert blk.cross_attn.backend == "auto"


def test_stacks_are_blocks_then_norm():
    enc = randomize(TransformerEncoder(16, 3, 2, init_values=0.1)).eval()
    x = torch.randn(2, 6, 16)
    h = x
    for blk in enc.blocks:
        h = blk(h, causal=True)
    torch.testing.assert_close(enc(x, causal=True), enc.norm(h), **TOL)
    assert isinstance(TransformerEncoder(16, 1, 2, final_norm=False).norm, nn.Identity)

    dec = randomize(TransformerDecoder(16, 2, 2, memory_dim=8)).eval()
    memory = torch.randn(2, 4, 8)
    h = x
    for blk in dec.blocks:
        h = blk(h, memory)
    torch.testing.assert_close(dec(x, memory), dec.norm(h), **TOL)


def test_stochastic_depth_rises_linearly():
    enc = TransformerEncoder(8, 5, 2, drop_path_rate=0.4)
    rates = [
        b.drop_path1.drop_prob if isinstance(b.drop_path1, DropPath) else 0.0 for b in enc.blocks
    ]
    assert rates == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert TransformerEncoder(8, 1, 2, drop_path_rate=0.2).blocks[0].drop_path1.drop_prob == 0.2
    dec = TransformerDecoder(8, 3, 2, drop_path_rate=0.2)
    assert isinstance(dec.blocks[0].drop_path3, nn.Identity)
    assert dec.blocks[2].drop_path3.drop_prob == pytest.approx(0.2)


def test_depth_must_be_positive():
    with pytest.raises(ValueError, match="depth must be >= 1, got 0"):
        TransformerEncoder(8, 0, 2)
    with pytest.raises(ValueError, match="depth must be >= 1, got 0"):
        TransformerDecoder(8, 0, 2)


def test_block_kwargs_reach_every_attention():
    enc = TransformerEncoder(16, 2, 2, backend="local", window=3, pos=RotaryEmbedding(8))
    assert all(
        b.attn.backend == "local" and b.attn.backend_kwargs == {"window": 3} for b in enc.blocks
    )
    assert all(isinstance(b.attn.pos, RotaryEmbedding) for b in enc.blocks)


# --------------------------------------------------------------------------------------------
# timm compatibility
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("init_values", [None, 1e-5, 0.5])
@pytest.mark.parametrize("timm_norm", ["timm_default", "torch_layernorm"])
def test_timm_block_state_dict_loads_strictly(init_values, timm_norm):
    from timm.models.vision_transformer import Block

    if timm_norm == "timm_default":
        # timm's Block defaults to LayerNorm(eps=1e-6), as its ViTs do
        ref = Block(32, 4, qkv_bias=True, init_values=init_values)
        ours = TransformerEncoderBlock(
            32, 4, init_values=init_values, norm_layer=partial(nn.LayerNorm, eps=1e-6)
        )
    else:
        ref = Block(32, 4, qkv_bias=True, init_values=init_values, norm_layer=nn.LayerNorm)
        ours = TransformerEncoderBlock(32, 4, init_values=init_values)
    randomize(ref).eval()
    ours.eval()
    assert set(ref.state_dict()) == set(ours.state_dict())
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 10, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), **TOL)


def test_timm_vit_blocks_load_into_an_encoder():
    from timm.models.vision_transformer import VisionTransformer

    vit = VisionTransformer(
        img_size=16, patch_size=8, embed_dim=32, depth=2, num_heads=4, num_classes=0
    ).eval()
    randomize(vit)
    enc = TransformerEncoder(32, 2, 4, norm_layer=partial(nn.LayerNorm, eps=1e-6)).eval()
    state = {k: v for k, v in vit.state_dict().items() if k.startswith(("blocks.", "norm."))}
    enc.load_state_dict(state, strict=True)
    tokens = torch.randn(2, 5, 32)
    with torch.no_grad():
        torch.testing.assert_close(enc(tokens), vit.norm(vit.blocks(tokens)), **TOL)


# --------------------------------------------------------------------------------------------
# every parameter learns
# --------------------------------------------------------------------------------------------


def assert_all_grads_finite(module: nn.Module) -> None:
    names = []
    for name, p in module.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        names.append(name)
    assert names, "module has no parameters"
    total = sum(p.grad.abs().sum() for p in module.parameters())
    assert total > 0


@pytest.mark.parametrize(
    "block_kwargs",
    [
        {},
        {"init_values": 0.1, "qk_norm": True},
        {"num_kv_heads": 1, "backend": "math", "pos": "rope"},
        {"backend": "local", "window": 2},
        {"backend": "linear", "feature_map": "favor", "num_features": 8},
    ],
    ids=["plain", "layerscale_qknorm", "gqa_rope", "local", "favor"],
)
def test_encoder_block_and_stack_gradients(block_kwargs):
    kw = dict(block_kwargs)
    if kw.get("pos") == "rope":
        kw["pos"] = RotaryEmbedding(8)
    x = torch.randn(2, 6, 16)
    mask = None if kw.get("backend") == "linear" else padding([6, 4], 6)
    blk = TransformerEncoderBlock(16, 2, **kw)
    blk(x, mask=mask, causal=True).square().sum().backward()
    assert_all_grads_finite(blk)
    enc = TransformerEncoder(16, 2, 2, **kw)
    enc(x, mask=mask).square().sum().backward()
    assert_all_grads_finite(enc)


@pytest.mark.parametrize("memory_dim", [None, 12])
def test_decoder_block_and_stack_gradients(memory_dim):
    x, memory = torch.randn(2, 5, 16), torch.randn(2, 7, memory_dim or 16, requires_grad=True)
    mmask = padding([7, 3], 7)
    blk = TransformerDecoderBlock(16, 2, memory_dim=memory_dim, init_values=0.1, qkv_bias=True)
    blk(x, memory, memory_mask=mmask).square().sum().backward()
    assert_all_grads_finite(blk)
    dec = TransformerDecoder(16, 2, 2, memory_dim=memory_dim, num_kv_heads=1)
    dec(x, memory, memory_mask=mmask).square().sum().backward()
    assert_all_grads_finite(dec)
    assert memory.grad is not None and memory.grad.abs().sum() > 0


def test_mlp_and_layer_scale_gradients():
    mlp = Mlp(8, 16, 4)
    mlp(torch.randn(3, 8)).square().sum().backward()
    assert_all_grads_finite(mlp)
    ls = LayerScale(8)
    ls(torch.randn(3, 8)).square().sum().backward()
    assert_all_grads_finite(ls)
