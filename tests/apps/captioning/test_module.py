"""The LightningModule without the command: tiny overfit, checkpoints with the vocabulary,
export of the encoder and a greedy step with parity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from attnlab_captioning.data import CaptionData, collate
from attnlab_captioning.module import CaptionModule, doubly_stochastic_penalty
from attnlab_captioning.vocab import Vocab
from torch import Tensor, nn

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
@pytest.mark.parametrize("decoder", ["lstm_attention", "lstm_hard_attention", "transformer"])
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
        loss = module._loss(batch)["loss"]
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


@pytest.mark.parametrize("decoder", ["lstm_attention", "lstm_hard_attention", "transformer"])
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


# A hand-worked doubly stochastic penalty on a 2x2 grid (N = 4), two captions, three steps.
# Caption "a 1": 3 real steps (a, 1, <eos>); caption "a": 2 real steps (a, <eos>) and a pad.
HAND_ALPHAS = torch.tensor(
    [
        [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5]],
        [[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]],  # last: padding
    ]
)  # (B=2, T=3, N=4)
HAND_REAL = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])  # (B, T)
# Caption 1: sum_t alpha = (1, 1, .5, .5) -> (1-1)^2 + (1-1)^2 + .5^2 + .5^2 = 0.5.
# Caption 2, real steps only: (2, 0, 0, 0) -> 1 + 1 + 1 + 1 = 4 (with the pad step counted it
# would be (2, 1, 0, 0) -> 3). Summed over locations per caption, averaged over the batch:
# (0.5 + 4) / 2 = 2.25. (Averaged over locations as well, as before: 4.5 / 8 = 0.5625.)
HAND_PENALTY = 2.25


def test_doubly_stochastic_penalty_sums_over_locations_and_skips_padding() -> None:
    value = doubly_stochastic_penalty(HAND_ALPHAS, HAND_REAL)
    assert value.item() == pytest.approx(HAND_PENALTY)


class _FixedOutputs(nn.Module):
    """A captioner whose teacher-forced pass returns given logits and attention."""

    def __init__(self, logits: Tensor, alphas: Tensor):
        super().__init__()
        self.decoder = nn.Identity()
        self.logits, self.alphas = logits, alphas

    def forward(self, images: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
        assert tokens.shape == self.logits.shape[:2]
        return self.logits, self.alphas


def test_training_loss_adds_alpha_c_times_the_per_caption_penalty() -> None:
    """The module's loss is xent + alpha_c * sum_i (1 - sum_t alpha_ti)^2, averaged over the
    captions, with the caption's padding (from its own tokens) left out."""
    vocab = Vocab(["a", "1"])
    module = CaptionModule(alpha_c=0.1)
    module.vocab = vocab
    logits = torch.zeros(2, 3, len(vocab))  # uniform words: xent = log V
    module.model = _FixedOutputs(logits, HAND_ALPHAS)  # type: ignore[assignment]
    batch = {"caption": ["a 1", "a"], "image": torch.zeros(2, 3, 8, 8)}
    module.train()
    losses = module._loss(batch)
    assert losses["xent"].item() == pytest.approx(torch.log(torch.tensor(len(vocab))).item())
    assert (losses["loss"] - losses["xent"]).item() == pytest.approx(0.1 * HAND_PENALTY)
    assert losses["coverage_penalty"].item() == pytest.approx(HAND_PENALTY)


def test_meteor_joins_the_metrics_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Test metrics add METEOR where it can be computed (the optional pycocoevalcap and
    java); validation, every epoch, does not start the JVM."""
    import attnlab_captioning.module as module_file

    calls: list[tuple[list[str], list[list[str]]]] = []

    def fake_meteor(preds: list[str], refs: list[list[str]]) -> float:
        calls.append((list(preds), [list(r) for r in refs]))
        return 0.25

    monkeypatch.setattr(module_file, "meteor", fake_meteor)
    module = CaptionModule()
    row = {"pred": ["a", "1"], "refs": [["a", "1"], ["a", "2"]]}
    module._outputs = [dict(row)]
    assert "meteor" not in module.compute_metrics() and not calls
    module._outputs = [dict(row)]
    assert module.compute_metrics(with_meteor=True)["meteor"] == 0.25
    assert calls == [(["a 1"], [["a 1", "a 2"]])]
    monkeypatch.setattr(module_file, "meteor", lambda preds, refs: None)  # not installed
    module._outputs = [dict(row)]
    assert "meteor" not in module.compute_metrics(with_meteor=True)
