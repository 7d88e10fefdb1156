"""`--model.attention`: every backend with every position the AST takes trains through the real
command; invalid settings are one `error:` line; the old `--model.backend` flags warn once and
still work; under `local` the class token is global unless told otherwise."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from attnlab_audio import AudioModule
from attnlab_audio.model import AST_POSITIONS

from attention_core import AttentionConfig, capture_attention, list_backends
from attnlab.cli import main

# The quick config, shrunk: 48 generated clips, one step, no figures.
ONE_STEP = ("--trainer.fast_dev_run=1", "--data.n_synthetic", "48", "--figure_every", "0")
# What a backend needs besides its name (local: a window of 2 patches on each side).
NEEDS = {"local": ("--model.attention.window", "2")}


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATTNLAB_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)


def fit(run_dir: Path, *args: str) -> int:
    return main(["audio", "fit", "--config", "quick", "--run_dir", str(run_dir), *args])


def error_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize("pos", AST_POSITIONS)
@pytest.mark.parametrize("backend", list_backends())
def test_every_backend_and_position_trains_a_step(tmp_path: Path, backend: str, pos: str) -> None:
    code = fit(
        tmp_path / "run", *ONE_STEP, "--model.attention.backend", backend,
        "--model.attention.pos", pos, *NEEDS.get(backend, ()),
    )  # fmt: skip
    assert code == 0


@pytest.mark.parametrize(
    "args,named",
    [
        (("--model.attention.pos", "alibi"), "'alibi'"),
        (("--model.attention.pos", "rope"), "'rope'"),
        (("--model.attention.pos", "sincos"), "'sincos'"),
        (("--model.attention.backend", "local"), "'local' needs window"),
        (("--model.attention.backend", "sdpa", "--model.attention.window", "4"), "'sdpa'"),
        (("--model.attention.backend", "nope"), "'nope'"),
        (("--model.model", "cnn", "--model.attention.backend", "linear"), "backend='linear'"),
    ],
    ids=["alibi", "rope-1d", "sincos-1d", "local-no-window", "sdpa-window", "unknown", "cnn"],
)
def test_invalid_settings_are_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], named: str
) -> None:
    assert fit(tmp_path / "run", *ONE_STEP, *args) == 1
    errors = error_lines(capsys)
    assert len(errors) == 1 and named in errors[0], errors
    if "pos" in args:  # the message lists what works on the grid
        assert "['learned', 'none', 'sincos2d', 'rope2d']" in errors[0]


def test_old_flags_warn_once_and_still_work(tmp_path: Path) -> None:
    run = tmp_path / "old"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = fit(
            run, "--trainer.max_steps", "1", "--trainer.limit_val_batches", "1",
            "--data.n_synthetic", "48", "--figure_every", "0", "--test_after_fit", "false",
            "--model.backend", "local", "--model.backend_kwargs", "{window: 3}",
        )  # fmt: skip
    assert code == 0
    ours = [
        w
        for w in caught
        if issubclass(w.category, FutureWarning) and "--model.backend" in str(w.message)
    ]
    # One warning per old flag, each naming its replacement.
    assert sorted(str(w.message).split(" is deprecated")[0] for w in ours) == [
        "--model.backend",
        "--model.backend_kwargs",
    ]
    assert "--model.attention.backend" in " ".join(str(w.message) for w in ours)
    # The checkpoint holds the new setting, as plain data, and no old key.
    ckpt = run / "checkpoints" / "last.ckpt"
    hparams = torch.load(ckpt, weights_only=True)["hyper_parameters"]
    assert hparams["attention"]["backend"] == "local" and hparams["attention"]["window"] == 3
    assert hparams["attention"]["global_tokens"] == 1 and hparams["attention"]["pos"] == "learned"
    assert "backend" not in hparams and "backend_kwargs" not in hparams
    module = AudioModule.from_checkpoint(ckpt)
    attn = module.model.encoder.blocks[0].attn
    assert attn.backend == "local" and attn.backend_kwargs["window"] == 3


def test_old_checkpoint_with_backend_hparams_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A checkpoint written before `attention` existed (`backend: sdpa`, `backend_kwargs: {}`)
    and before the shared vocabulary (`arch`, `embed_dim`) loads through from_checkpoint and
    through `test --ckpt_path`."""
    run = tmp_path / "new"
    assert fit(
        run, "--trainer.max_steps", "1", "--trainer.limit_val_batches", "1",
        "--data.n_synthetic", "48", "--figure_every", "0", "--test_after_fit", "false",
    ) == 0  # fmt: skip
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    hparams = checkpoint["hyper_parameters"]
    hparams.pop("attention")
    hparams.update(
        backend="sdpa", backend_kwargs={}, arch=hparams.pop("model"), embed_dim=hparams.pop("dim")
    )
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    with pytest.warns(FutureWarning, match="--model.attention.backend"):
        module = AudioModule.from_checkpoint(old)
    assert module.hparams["attention"]["backend"] == "sdpa"
    assert (module.hparams["model"], module.hparams["dim"]) == ("ast", 48)
    assert "arch" not in module.hparams and "embed_dim" not in module.hparams
    code = main([
        "audio", "test", "--config", "quick", "--data.n_synthetic", "48", "--ckpt_path", str(old),
        "--trainer.limit_test_batches", "1", "--run_dir", str(tmp_path / "test"),
    ])  # fmt: skip
    assert code == 0, error_lines(capsys)


@pytest.mark.parametrize("global_tokens,covered", [(None, 35), (0, 1)])
def test_local_class_token_is_global_by_default(global_tokens: int | None, covered: int) -> None:
    """The quick config's 7x5 grid under `local` with a window of 1: by default the class token
    reads every patch in the first layer; with `global_tokens 0` only its neighbour."""
    attention = AttentionConfig(backend="local", window=1, global_tokens=global_tokens)
    module = AudioModule(n_mels=48, n_frames=32, num_classes=12, dim=48, depth=2,
                         attention=attention).eval()  # fmt: skip
    assert module.model.grid_size == (7, 5)
    with capture_attention(module.model, layers=[0]) as maps:
        module(torch.randn(2, 1, 48, 32))
    cls_row = maps[0][:, :, 0, 1:]  # (B, H, N): what the class token reads
    assert int((cls_row > 0).all(dim=(0, 1)).sum()) == covered


@pytest.mark.slow
def test_local_with_global_class_token_learns(tmp_path: Path) -> None:
    """100 steps of the quick config under `local` (window 1): with the class token global the
    training loss falls far below chance (ln 12 = 2.48); with the window alone the class token
    sees two patches at the bottom of the spectrogram, away from the tones, and stays at chance."""
    common = (
        "--trainer.max_steps", "100", "--trainer.limit_val_batches", "0", "--test_after_fit",
        "false", "--data.n_synthetic", "480", "--figure_every", "0", "--model.freq_masks", "0",
        "--model.time_masks", "0", "--model.label_smoothing", "0", "--model.lr", "0.005",
        "--model.attention.backend", "local", "--model.attention.window", "1",
    )  # fmt: skip
    losses = {}
    for name, extra in (("global", ()), ("window", ("--model.attention.global_tokens", "0"))):
        assert fit(tmp_path / name, *common, *extra) == 0
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        losses[name] = metrics["last"]["train/loss"]
    assert losses["global"] < 1.8 and losses["window"] > 2.2, losses
