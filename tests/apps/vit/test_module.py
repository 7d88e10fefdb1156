"""The LightningModule: recipe pieces, the timm reference, figures, checkpoints, learning."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from attnlab_vit import ImageData, ViTModule
from attnlab_vit.draw import draw

from attention_core import AttentionConfig, capture_attention
from attnlab import FigureContext
from attnlab.checkpoint import CheckpointError


def _batch(n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(n, 1, 8, 8), torch.arange(n) % 10


def test_overrides_reach_the_model_and_are_saved() -> None:
    module = ViTModule(
        preset="vit_test", depth=3, num_classes=7, attention=AttentionConfig("math", pos="rope2d")
    )
    assert len(module.model.blocks) == 3 and module.model.head.out_features == 7
    assert module.hparams.depth == 3 and module.hparams.model == "vit_test"
    assert module.hparams.attention["backend"] == "math"  # plain data for the checkpoint
    assert module.hparams.attention["pos"] == "rope2d"
    assert all(b.attn.backend == "math" for b in module.model.blocks)


def test_conv_tokenizer_stages_and_width_are_options() -> None:
    """--model.conv_layers / --model.conv_hidden shape CCT's tokenizer: two stages of 16
    channels halve an 8x8 image twice, to a 2x2 token grid."""
    module = ViTModule(model="cct_test", conv_layers=2, conv_hidden=16)
    convs = [m for m in module.model.patch_embed.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(1, 16), (16, 32)]
    assert module.model.grid_size == (2, 2) and module.hparams.conv_hidden == 16
    tokens = module.model.forward_features(torch.zeros(3, 1, 8, 8))
    assert tokens.shape == (3, 4, 32)  # (B, 2x2 tokens, dim), no class token


def test_mixup_cutmix_and_ema_train_step() -> None:
    module = ViTModule(model="vit_test", mixup=0.8, cutmix=1.0, ema_decay=0.9)
    loss = module.classification_loss(module.model(_batch()[0]), module.mixer(*_batch())[1])
    assert torch.isfinite(loss)
    before = [p.clone() for p in module.ema.module.parameters()]
    with torch.no_grad():
        for p in module.model.parameters():
            p.add_(1.0)
    module.ema.update_parameters(module.model)
    module.ema.update_parameters(module.model)
    assert any(not torch.equal(a, b) for a, b in zip(before, module.ema.module.parameters()))
    assert module.eval_model is module.ema.module and module.attention_prefix == "ema.module."


def test_timm_backbone_figures_through_probes() -> None:
    module = ViTModule(model="vit_test", backbone="timm").eval()
    assert type(module.model).__module__.startswith("timm")
    batch = _batch()
    with torch.no_grad(), capture_attention(module) as maps:
        out = module.figure_forward(batch)
    assert len(maps) == 2 and maps[0].shape == (4, 2, 17, 17)
    figures = draw(FigureContext(module, batch, out, maps, "t"))
    assert [name for name, _ in figures] == [
        "attention_rollout", "last_layer_heads", "last_layer_matrices"
    ]  # fmt: skip
    with pytest.raises(ValueError, match="timm's VisionTransformer has no SPT"):
        ViTModule(model="vit_test_spt_lsa", backbone="timm")


@pytest.mark.parametrize("preset", ["vit_test", "cct_test"])
def test_draw_on_our_models(preset: str) -> None:
    module = ViTModule(model=preset).eval()
    batch = _batch()
    with torch.no_grad(), capture_attention(module) as maps:
        out = module.figure_forward(batch)
    figures = draw(FigureContext(module, batch, out, maps, "t"))
    assert len(figures) == 3


def test_checkpoint_with_another_class_count_is_refused() -> None:
    ten = ViTModule(model="vit_test", num_classes=10)
    checkpoint = {
        "state_dict": ten.state_dict(),
        "attnlab": {"module": "attnlab_vit.module.ViTModule"},
    }
    five = ViTModule(model="vit_test", num_classes=5)
    with pytest.raises(
        CheckpointError, match=r"model\.head\.weight: checkpoint \(10, 32\) vs model \(5, 32\)"
    ):
        five.on_load_checkpoint(checkpoint)


def test_model_and_data_must_agree() -> None:
    module = ViTModule(model="vit_test", num_classes=5)
    dm = ImageData()
    dm.setup("fit")
    with pytest.raises(ValueError, match=r"the data has 10 classes but the model has 5"):
        module.configure_from_data(dm)
    ten = ViTModule(model="vit_test")
    ten.configure_from_data(dm)
    assert ten.class_names == dm.class_names


def test_old_attention_flags_map_into_attention_and_warn() -> None:
    with pytest.warns(
        FutureWarning, match=r"--model\.backend is deprecated; use --model\.attention\.backend"
    ):
        module = ViTModule(model="vit_test", backend="local", backend_kwargs={"window": 2})
    assert module.model.attention.backend == "local" and module.model.attention.window == 2
    assert module.hparams.backend is None and module.hparams.attention["window"] == 2
    with pytest.warns(FutureWarning, match=r"--model\.pos_embed is deprecated"):
        module = ViTModule(model="vit_test", pos_embed="sincos")
    assert module.model.attention.pos == "sincos2d"
    with pytest.raises(ValueError, match="disagree"):
        ViTModule(model="vit_test", backend="math", attention=AttentionConfig("linear"))


def test_old_option_names_map_to_the_shared_vocabulary() -> None:
    """``preset``/``embed_dim``/``drop_rate``/``attn_drop_rate`` are ``model``/``dim``/
    ``dropout``/``attn_dropout`` now: the old names build the same model, with a warning, and
    the checkpoint's hyper-parameters carry only the new names."""
    new = ViTModule(model="vit_test", dim=40, dropout=0.1, attn_dropout=0.2)
    with pytest.warns(FutureWarning, match=r"--model\.embed_dim is deprecated; use --model\.dim"):
        old = ViTModule(preset="vit_test", embed_dim=40, drop_rate=0.1, attn_drop_rate=0.2)
    assert (old.config.embed_dim, old.config.drop_rate, old.config.attn_drop_rate) == (40, 0.1, 0.2)
    assert old.config == new.config
    assert (old.hparams.model, old.hparams.dim, old.hparams.preset) == ("vit_test", 40, None)
    with pytest.raises(ValueError, match=r"--model\.embed_dim=40 .* --model\.dim=48 disagree"):
        ViTModule(model="vit_test", dim=48, embed_dim=40)


@pytest.mark.slow
def test_tiny_overfit_64_digits() -> None:
    """64 training images memorized: the loss must fall below 0.1."""
    dm = ImageData(max_train=64, batch_size=64)
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert len(y) == 64
    module = ViTModule(model="vit_test", label_smoothing=0.0)
    opt = torch.optim.AdamW(module.parameters(), lr=3e-3)
    for _ in range(300):
        loss = F.cross_entropy(module.model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 0.05:
            break
    assert loss.item() < 0.1
