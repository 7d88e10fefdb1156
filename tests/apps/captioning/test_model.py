"""Every encoder x decoder: shapes, finite outputs, a gradient on every parameter; pretrained
weights fail fast and clearly offline."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import torch
from attnlab_captioning.model import (
    DECODERS,
    CaptionerConfig,
    TorchvisionResNetEncoder,
    build_captioner,
    load_pretrained_encoder,
)

SMALL = dict(
    encoder_width=8,
    vit_dim=32,
    vit_depth=1,
    vit_heads=2,
    word_dim=16,
    hidden_dim=32,
    attention_dim=16,
    dec_dim=32,
    dec_depth=2,
    dec_heads=2,
    max_len=8,
    dropout=0.0,
)


@pytest.mark.parametrize("decoder", sorted(DECODERS))
@pytest.mark.parametrize("encoder", ["small_resnet", "vit", "resnet18"])
def test_shapes_and_gradients(encoder: str, decoder: str) -> None:
    cfg = CaptionerConfig(encoder=encoder, decoder=decoder, encoder_stages=2, **SMALL)  # type: ignore[arg-type]
    model = build_captioner(cfg, vocab_size=11)
    images = torch.randn(2, 3, 32, 32)
    tokens = torch.randint(0, 11, (2, 5))
    logits, alphas = model(images, tokens)
    assert logits.shape == (2, 5, 11) and torch.isfinite(logits).all()
    features, grid = model.encode(images)
    n = grid[0] * grid[1]
    assert features.shape[:2] == (2, n)
    if decoder in ("lstm_attention", "lstm_hard_attention"):
        assert alphas is not None and alphas.shape == (2, 5, n)
        torch.testing.assert_close(alphas.sum(-1), torch.ones(2, 5))
        logits = logits + alphas.sum()  # the regularizer's path
    else:
        assert alphas is None
    if decoder == "lstm_hard_attention":  # sampled reads reach the attention by REINFORCE only
        trace = model.decoder.trace(features, tokens)
        logits = logits + model.decoder.reinforce(trace, tokens, -100, 1.0, 1.0).loss
    logits.sum().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert not missing, missing


@pytest.mark.parametrize("decoder", ["lstm_attention", "lstm_pooled"])
def test_lstm_context_reaches_the_words_directly(decoder: str) -> None:
    """Show-Attend-Tell's deep output layer: the context feeds the logits, not only the LSTM
    gates. With the gates' context weights and the initial state cut off from the image, the
    first word still depends on the image (without this path the image never reached the words
    of an encoder trained from scratch)."""
    torch.manual_seed(0)
    cfg = CaptionerConfig(decoder=decoder, encoder_stages=2, **SMALL)  # type: ignore[arg-type]
    model = build_captioner(cfg, vocab_size=11).eval()
    lstm = model.decoder
    with torch.no_grad():
        lstm.cell.weight_ih[:, lstm.embed.embedding_dim :] = 0.0  # context -> gates
        for init in (lstm.init_h, lstm.init_c):
            init.weight.zero_()
    tokens = torch.zeros(2, 1, dtype=torch.long)
    image = torch.randn(1, 3, 32, 32)
    logits, _ = model(torch.cat([image, torch.randn(1, 3, 32, 32)]), tokens)  # (2, 1, V)
    assert (logits[0] - logits[1]).abs().max() > 1e-4
    with torch.no_grad():
        lstm.out_z.weight.zero_()  # and with the direct path cut too, the image is invisible
    logits, _ = model(torch.cat([image, torch.randn(1, 3, 32, 32)]), tokens)
    torch.testing.assert_close(logits[0], logits[1])


def test_unknown_names_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown decoder 'gru'"):
        build_captioner(CaptionerConfig(decoder="gru"), 10)
    with pytest.raises(ValueError, match="unknown encoder"):
        build_captioner(CaptionerConfig(encoder="vgg"), 10)


def test_pretrained_offline_fails_fast_and_clearly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No network: a RuntimeError naming the URL and the way out, within seconds."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty weight cache

    def offline(*args: object, **kwargs: object) -> socket.socket:
        raise OSError("Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", offline)
    encoder = TorchvisionResNetEncoder("resnet18", stage=2)
    start = time.monotonic()
    with pytest.raises(
        RuntimeError,
        match=r"cannot download ImageNet weights for resnet18 from https://download\.pytorch\.org.*--model\.encoder_pretrained false",
    ):
        load_pretrained_encoder(encoder, timeout=2.0)
    assert time.monotonic() - start < 10


def test_pretrained_needs_a_torchvision_resnet() -> None:
    model = build_captioner(CaptionerConfig(encoder="small_resnet"), 10)
    with pytest.raises(ValueError, match="needs a torchvision ResNet"):
        load_pretrained_encoder(model.encoder)


def test_pretrained_weights_map_onto_the_cut_resnet(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With the file in the cache, torchvision's state dict loads strictly into our stages."""
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    full = torchvision.models.resnet18(weights=None)
    ckpt = Path(torch.hub.get_dir()) / "checkpoints" / "resnet18-f37072fd.pth"
    ckpt.parent.mkdir(parents=True)
    torch.save(full.state_dict(), ckpt)
    encoder = TorchvisionResNetEncoder("resnet18", stage=3)
    from torchvision.models import ResNet18_Weights

    monkeypatch.setattr(
        ResNet18_Weights.IMAGENET1K_V1.__class__,
        "get_state_dict",
        lambda self, progress=False, **kw: torch.load(ckpt, weights_only=True),
    )
    load_pretrained_encoder(encoder)
    torch.testing.assert_close(encoder.layers[2][0].conv1.weight, full.layer3[0].conv1.weight)
    torch.testing.assert_close(encoder.stem[0].weight, full.conv1.weight)
