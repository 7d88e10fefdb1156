"""Models: shapes, gradients, RevIN, channel independence, long inputs, export."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from attnlab_forecasting.model import MODELS, MovingAverage, RevIN, build_model

from attention_core import AttentionConfig
from attnlab.export import export_model

TINY = dict(
    seq_len=48,
    pred_len=12,
    channels=3,
    dim=16,
    depth=1,
    num_heads=2,
    dropout=0.0,
    patch_len=8,
    stride=4,
    label_len=24,
    period=24,
)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("num_quantiles", [1, 3])
def test_shapes_finite_and_gradients(name: str, num_quantiles: int) -> None:
    model = build_model(name, num_quantiles=num_quantiles, **TINY)
    x = torch.randn(4, 48, 3)
    marks = torch.rand(4, 60, 4) - 0.5
    y = model(x, marks)
    expected = (4, 12, 3) if num_quantiles == 1 else (4, 12, 3, num_quantiles)
    assert y.shape == expected
    assert torch.isfinite(y).all()
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:  # naive baselines have nothing to learn
        assert name in ("last_value", "seasonal_naive")
        return
    y.square().mean().backward()
    for n, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n
        assert p.grad.abs().sum() > 0, f"{name}: no gradient reaches {n}"


@pytest.mark.parametrize("affine", [False, True])
def test_revin_inverts_exactly(affine: bool) -> None:
    revin = RevIN(3, affine=affine)
    if affine:
        with torch.no_grad():
            revin.weight.copy_(torch.tensor([0.5, 2.0, 1.5]))
            revin.bias.copy_(torch.tensor([0.1, -0.3, 0.0]))
    x = torch.randn(5, 40, 3, dtype=torch.float64) * 7 + 3
    z, stats = revin.normalize(x)
    if not affine:
        torch.testing.assert_close(z.mean(1), torch.zeros(5, 3, dtype=torch.float64))
    torch.testing.assert_close(revin.denormalize(z, stats), x, rtol=1e-9, atol=1e-9)
    zq = z.unsqueeze(-1).expand(-1, -1, -1, 2)  # quantile layout (B, L, C, Q)
    torch.testing.assert_close(revin.denormalize(zq, stats)[..., 1], x, rtol=1e-9, atol=1e-9)


def test_revin_makes_patchtst_shift_equivariant() -> None:
    model = build_model("patchtst", **TINY).eval()
    x = torch.randn(2, 48, 3)
    torch.testing.assert_close(model(x + 100.0), model(x) + 100.0, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("name", ["patchtst", "itransformer", "dlinear"])
def test_permuting_channels_permutes_outputs(name: str) -> None:
    model = build_model(name, **TINY).eval()
    x = torch.randn(2, 48, 3)
    perm = torch.tensor([2, 0, 1])
    torch.testing.assert_close(model(x[..., perm]), model(x)[..., perm], rtol=1e-5, atol=1e-5)


def test_patchtst_is_channel_independent() -> None:
    """Changing one channel's input leaves every other channel's forecast unchanged."""
    model = build_model("patchtst", **TINY).eval()
    x = torch.randn(2, 48, 3)
    x2 = x.clone()
    x2[..., 0] = torch.randn(2, 48)
    a, b = model(x), model(x2)
    torch.testing.assert_close(a[..., 1:], b[..., 1:])
    assert not torch.allclose(a[..., 0], b[..., 0])


def test_itransformer_mixes_channels() -> None:
    model = build_model("itransformer", **TINY).eval()
    x = torch.randn(2, 48, 3)
    x2 = x.clone()
    x2[..., 0] = torch.randn(2, 48)
    assert not torch.allclose(model(x)[..., 1], model(x2)[..., 1])


def test_naive_baselines() -> None:
    x = torch.arange(48.0).reshape(1, 48, 1).expand(2, 48, 3)
    last = build_model("last_value", **TINY)(x)
    assert (last == 47).all()
    seasonal = build_model("seasonal_naive", **TINY)(x)
    assert seasonal[0, :, 0].tolist() == [float(v) for v in range(24, 36)]


def test_moving_average_keeps_a_constant() -> None:
    x = torch.full((2, 30, 3), 4.0)
    torch.testing.assert_close(MovingAverage(25)(x), x)


@pytest.mark.parametrize(
    "attention", [AttentionConfig("local", window=16), AttentionConfig("linear")], ids=str
)
def test_patchtst_runs_4096_step_inputs(attention: AttentionConfig) -> None:
    model = build_model(
        "patchtst",
        seq_len=4096,
        pred_len=96,
        channels=2,
        dim=16,
        depth=1,
        num_heads=2,
        patch_len=16,
        stride=8,
        attention=attention,
    )
    x = torch.randn(2, 4096, 2)
    y = model(x)
    assert y.shape == (2, 96, 2)
    y.square().mean().backward()
    assert model.embed.weight.grad is not None and torch.isfinite(model.embed.weight.grad).all()
    assert model.num_patches == 512  # (4096 - 16) // 8 + 2


def test_bad_options_are_clear() -> None:
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        build_model("nope")
    with pytest.raises(ValueError, match=r"unknown model options \['bogus'\]"):
        build_model("dlinear", bogus=1)
    with pytest.raises(ValueError, match="num_heads=3 must divide dim=16"):
        build_model("patchtst", dim=16, num_heads=3)
    with pytest.raises(ValueError, match="period=100"):
        build_model("seasonal_naive", seq_len=48, period=100)


@pytest.mark.parametrize("name", ["patchtst", "itransformer", "dlinear"])
def test_export_parity_torch_export(name: str, tmp_path: Path) -> None:
    model = build_model(name, **TINY).eval()
    diff = export_model(model, (torch.randn(2, 48, 3),), "torch-export", tmp_path / "m.pt2")
    assert diff < 1e-4
