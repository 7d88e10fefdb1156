"""`--model.attention` / `--model.cross_attention` through the real command (in-process): every
valid (backend, pos) pair of the Transformer decoder trains a step, every invalid one is one
`error:` line, the LSTM decoders warn that the setting does not reach them, and a checkpoint
trained with a setting loads back with it."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from attnlab_captioning.model import DECODER_POSITIONS, TransformerCaptionDecoder
from attnlab_captioning.module import CaptionModule

from attention_core import AttentionConfig, list_backends
from attnlab.cli import main

# The quick config at its smallest: one 8-image batch, a one-block decoder, no figures.
TINY = [
    "--model.encoder_width", "8",
    "--model.hidden_dim", "16",
    "--model.attention_dim", "8",
    "--model.word_dim", "8",
    "--model.dec_dim", "16",
    "--model.dec_depth", "1",
    "--model.dec_heads", "2",
    "--data.n_train", "8",
    "--data.n_val", "4",
    "--data.n_test", "4",
    "--data.batch_size", "8",
    "--figure_every", "0",
]  # fmt: skip

# Options each backend needs (a window shorter than the captions, chunks shorter than them).
OPTIONS = {
    "local": ["--model.attention.window", "2"],
    "linear": ["--model.attention.chunk_size", "4"],
}
BACKENDS = [b for b in list_backends() if b != "linformer"]
INVALID_PAIRS = {("linear", "alibi")}  # ALiBi is a bias on the scores linear attention never forms


def _fit(tmp_path: Path, *extra: str, decoder: str = "transformer") -> int:
    return main(
        ["caption", "fit", "--config", "quick", "--trainer.fast_dev_run=1", *TINY,
         "--model.decoder", decoder, "--run_dir", str(tmp_path / "run"), *extra]
    )  # fmt: skip


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(
    ("backend", "pos"),
    [(b, p) for b in BACKENDS for p in DECODER_POSITIONS if (b, p) not in INVALID_PAIRS],
)
def test_every_valid_backend_and_position_trains_a_step(
    backend: str, pos: str, tmp_path: Path
) -> None:
    args = ["--model.attention.backend", backend, *OPTIONS.get(backend, []),
            "--model.attention.pos", pos]  # fmt: skip
    assert _fit(tmp_path, *args) == 0
    assert (tmp_path / "run" / "metrics.json").is_file()


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--model.attention.backend", "linformer"], "linformer"),
        (["--model.attention.backend", "linear", "--model.attention.pos", "alibi"], "alibi"),
        (["--model.attention.pos", "rope2d"], "rope2d"),
        (["--model.attention.pos", "sincos2d"], "sincos2d"),
        (["--model.attention.backend", "nope"], "nope"),
        (["--model.attention.backend", "local"], "window"),
        (["--model.attention.pos", "spiral"], "spiral"),
        (["--model.cross_attention.backend", "linformer"], "linformer"),
        (["--model.cross_attention.pos", "rope"], "rope"),
    ],
    ids=lambda v: "-".join(v) if isinstance(v, list) else v,
)
def test_invalid_settings_are_one_error_line(
    args: list[str], names: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _fit(tmp_path, *args) == 1
    assert names in _one_error_line(capsys)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_cross_attention_is_set_apart_from_self_attention(tmp_path: Path) -> None:
    args = ["--model.attention.backend", "local", "--model.attention.window", "2",
            "--model.cross_attention.backend", "math", "--model.attention.pos", "rope"]  # fmt: skip
    assert _fit(tmp_path, *args) == 0
    module = CaptionModule(
        decoder="transformer",
        attention=AttentionConfig(backend="local", window=2, pos="rope"),
        cross_attention=AttentionConfig(backend="math"),
    )
    module.build(_vocab())
    assert module.model is not None
    block = module.model.decoder.decoder.blocks[0]
    assert (block.self_attn.backend, block.cross_attn.backend) == ("local", "math")
    assert block.self_attn.pos is not None and block.cross_attn.pos is None


def test_vit_encoder_takes_the_backend(tmp_path: Path) -> None:
    args = ["--model.encoder", "vit", "--model.vit_dim", "16", "--model.vit_depth", "1",
            "--model.vit_heads", "2", "--model.attention.backend", "local",
            "--model.attention.window", "3"]  # fmt: skip
    assert _fit(tmp_path, *args) == 0
    # With an LSTM decoder the encoder is the only dot-product attention: linformer is valid
    # there (its seq_len is the patch count of the data's image size).
    args = [*args[:-4], "--model.attention.backend", "linformer", "--model.attention.proj_dim", "4"]
    assert _fit(tmp_path / "lin", *args, decoder="lstm_attention") == 0


@pytest.mark.parametrize("decoder", ["lstm_attention", "lstm_hard_attention", "lstm_pooled"])
def test_lstm_decoders_warn_that_the_setting_does_not_reach_them(decoder: str) -> None:
    with pytest.warns(UserWarning, match="transformer decoder") as record:
        CaptionModule(decoder=decoder, attention=AttentionConfig(backend="math", pos="rope"))
    assert len([w for w in record if "transformer decoder" in str(w.message)]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CaptionModule(decoder=decoder)  # the default setting: nothing to say


def test_default_position_is_the_learned_table() -> None:
    module = CaptionModule(decoder="transformer")
    module.build(_vocab())
    assert module.model is not None
    decoder = module.model.decoder
    assert isinstance(decoder, TransformerCaptionDecoder)
    assert "pos.weight" in dict(decoder.named_parameters())


def test_checkpoint_round_trips_the_setting(tmp_path: Path) -> None:
    run = tmp_path / "run"
    setting = ["--model.attention.backend", "local", "--model.attention.window", "2",
               "--model.attention.pos", "alibi", "--model.cross_attention.backend", "math"]  # fmt: skip
    rc = main(
        ["caption", "fit", "--config", "quick", *TINY, "--model.decoder", "transformer",
         "--trainer.max_steps=1", "--trainer.limit_val_batches=1", "--trainer.limit_test_batches=1",
         "--run_dir", str(run), *setting]
    )  # fmt: skip
    assert rc == 0
    ckpt = run / "checkpoints" / "best.ckpt"
    hparams = torch.load(ckpt, weights_only=True)["hyper_parameters"]
    assert (
        hparams["attention"]["pos"] == "alibi" and hparams["cross_attention"]["backend"] == "math"
    )
    again = CaptionModule.from_checkpoint(ckpt)
    assert isinstance(again, CaptionModule) and again.config.attention.window == 2
    rc = main(["caption", "test", "--config", str(run / "config.yaml"), "--ckpt_path", str(ckpt),
               "--run_dir", str(tmp_path / "test")])  # fmt: skip
    assert rc == 0


def test_checkpoint_without_a_setting_loads_with_the_defaults(tmp_path: Path) -> None:
    module = CaptionModule(decoder="transformer", dec_dim=16, dec_heads=2, encoder_width=8)
    module.data_info = {"image_size": 32}
    module.build(_vocab())
    hparams = {
        k: v for k, v in module.hparams.items() if "attention" not in k or k == "attention_dim"
    }
    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": hparams}
    module.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "old.ckpt")
    again = CaptionModule.from_checkpoint(tmp_path / "old.ckpt")
    assert isinstance(again, CaptionModule)
    assert again.hparams["attention"] == AttentionConfig().to_dict()


def _vocab():  # type: ignore[no-untyped-def]
    from attnlab_captioning.vocab import Vocab

    return Vocab(["a", "1", "2", "left", "of", "above", "and"])
