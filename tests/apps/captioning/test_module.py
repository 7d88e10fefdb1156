"""The LightningModule without the command: tiny overfit, checkpoints with the vocabulary,
export of the encoder and a greedy step with parity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from attnlab_captioning.data import CaptionData, collate
from attnlab_captioning.module import CaptionModule

from attnlab.export import export_model

TINY = dict(
    encoder_width=8,
    word_dim=32,
    hidden_dim=64,
    attention_dim=32,
    dec_dim=32,
    dec_depth=1,
    dec_heads=2,
    dropout=0.0,
    max_len=12,
    alpha_c=0.0,
)


def _module(decoder: str, data: CaptionData, **kw: object) -> CaptionModule:
    module = CaptionModule(decoder=decoder, **{**TINY, **kw})  # type: ignore[arg-type]
    module.data_info = {"image_size": 64, "mean": [0.5] * 3, "std": [0.5] * 3}
    module.build(data.vocab if data.vocab is not None else data.build_vocab())
    return module


@pytest.fixture(scope="module")
def scenes() -> CaptionData:
    dm = CaptionData(n_train=6, n_val=4, n_test=4, batch_size=6)
    dm.setup("fit")
    return dm


@pytest.mark.slow
@pytest.mark.parametrize("decoder", ["lstm_attention", "transformer"])
def test_tiny_overfit_captions_a_handful_of_images_exactly(
    decoder: str, scenes: CaptionData
) -> None:
    torch.manual_seed(0)
    module = _module(decoder, scenes)
    batch = collate([scenes.train_set[i] for i in range(6)])
    opt = torch.optim.Adam(module.parameters(), lr=3e-3)
    module.train()
    assert module.vocab is not None
    greedy: list[str] = []
    beam: list[str] = []
    for step in range(1, 401):
        module.train()
        loss, _ = module._loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 0:
            module.eval()
            out, _ = module.caption(batch["image"], beam_size=1)
            greedy = [" ".join(module.vocab.decode(t.tolist())) for t in out.tokens]
            out3, _ = module.caption(batch["image"], beam_size=3)
            beam = [" ".join(module.vocab.decode(t.tolist())) for t in out3.tokens]
            if greedy == beam == batch["caption"]:
                break
    assert greedy == batch["caption"], (loss.item(), greedy)
    assert beam == batch["caption"], (loss.item(), beam)


def test_checkpoint_round_trip_restores_the_vocabulary(scenes: CaptionData, tmp_path: Path) -> None:
    module = _module("transformer", scenes).eval()
    checkpoint: dict = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    module.on_save_checkpoint(checkpoint)
    extras = checkpoint["attnlab"]["extras"]
    assert json.loads(json.dumps(extras)) == extras  # plain data only
    assert extras["vocab"]["words"] == scenes.vocab.to_dict()["words"]  # type: ignore[union-attr]
    torch.save(checkpoint, tmp_path / "c.ckpt")
    again = CaptionModule.from_checkpoint(tmp_path / "c.ckpt")
    assert isinstance(again, CaptionModule) and again.vocab == module.vocab
    images = collate([scenes.val_set[i] for i in range(3)])["image"]
    a, _ = module.caption(images, 2)
    b, _ = again.caption(images, 2)
    assert torch.equal(a.tokens, b.tokens)


def test_no_vocabulary_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="no vocabulary yet"):
        CaptionModule().caption(torch.zeros(1, 3, 64, 64))


@pytest.mark.parametrize("decoder", ["lstm_attention", "transformer"])
def test_export_parity_torch_export(decoder: str, scenes: CaptionData, tmp_path: Path) -> None:
    module = _module(decoder, scenes).eval()
    inputs = module.example_inputs()
    _features, logits = module.export_model()(*inputs)
    assert logits.shape == (2, len(module.vocab))  # type: ignore[arg-type]
    diff = export_model(module.export_model(), inputs, "torch-export", tmp_path / "m.pt2")
    assert diff < 1e-4


@pytest.mark.slow
def test_export_parity_onnx(scenes: CaptionData, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    module = _module("lstm_attention", scenes).eval()
    diff = export_model(module.export_model(), module.example_inputs(), "onnx", tmp_path / "m.onnx")
    assert diff < 1e-4


def test_embed_dim_is_the_old_name_of_word_dim() -> None:
    """``--model.embed_dim`` (the LSTM's word embeddings) is ``word_dim`` now; the old name
    still builds the same model, with a warning, and is not stored."""
    with pytest.warns(
        FutureWarning, match=r"--model\.embed_dim is deprecated; use --model\.word_dim"
    ):
        old = CaptionModule(embed_dim=24)
    assert old.config.word_dim == 24 and old.hparams["word_dim"] == 24
    assert "embed_dim" not in old.hparams
    assert CaptionModule(word_dim=24).config == old.config
