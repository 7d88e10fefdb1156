"""`--model.attention.*` through the real command: every valid (backend, pos) of each model
trains a step, every invalid one is one `error:` line, the former flags still work (warned), and
the setting survives a checkpoint."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from attnlab_forecasting.model import build_model
from attnlab_forecasting.module import ForecastModule

from attention_core import ALiBi, AttentionConfig, RotaryEmbedding
from attnlab.checkpoint import load_checkpoint
from attnlab.cli import main

# The quick config at its smallest: one block, a short series, no figures.
QUICK = ["--config", "quick", "--model.depth", "1", "--data.n_steps", "1200", "--figure_every", "0"]
BACKENDS = ("sdpa", "math", "flex", "local", "linear", "linformer")
NO_BIAS = ("linear", "linformer")  # key-padding masks only: no ALiBi


def _fit(tmp_path: Path, *args: str, name: str = "run", fast: bool = True) -> int:
    limit = ["--trainer.fast_dev_run=1"] if fast else []
    return main(["forecast", "fit", *QUICK, *limit, "--run_dir", str(tmp_path / name), *args])


def _attention(backend: str, pos: str | None = None, flag: str = "attention") -> list[str]:
    """``--model.<flag>.backend B`` with the options B needs, and ``pos`` when given."""
    args = [f"--model.{flag}.backend", backend]
    if backend == "local":
        args += [f"--model.{flag}.window", "4"]
    return args + ([f"--model.{flag}.pos", pos] if pos else [])


def _valid() -> list[tuple[str, str, str | None, str]]:
    """(model, backend, pos, cross-attention backend) that must train."""
    patchtst = [
        ("patchtst", b, p, "sdpa")
        for b in BACKENDS
        for p in ("learned", "none", "sincos", "rope", "alibi")
        if not (p == "alibi" and b in NO_BIAS)
    ]
    itransformer = [("itransformer", b, "none", "sdpa") for b in BACKENDS if b != "local"]
    transformer = [("transformer", b, None, "sdpa") for b in BACKENDS if b != "linformer"]
    transformer += [
        ("transformer", "sdpa", p, "sdpa") for p in ("none", "learned", "rope", "alibi")
    ]
    transformer += [("transformer", "sdpa", None, b) for b in ("math", "local", "linear")]
    return patchtst + itransformer + transformer


@pytest.mark.parametrize(
    ("model", "backend", "pos", "cross"), _valid(), ids=lambda v: str(v).replace("/", "")
)
def test_valid_settings_train_one_step(
    model: str, backend: str, pos: str | None, cross: str, tmp_path: Path
) -> None:
    args = ["--model.model", model, *_attention(backend, pos)]
    if cross != "sdpa":
        args += _attention(cross, flag="cross_attention")
    assert _fit(tmp_path, *args) == 0


INVALID = [
    pytest.param(["--model.attention.backend", "linear", "--model.attention.pos", "alibi"], "'alibi'", id="linear-alibi"),
    pytest.param(["--model.attention.backend", "linformer", "--model.attention.pos", "alibi"], "'alibi'", id="linformer-alibi"),
    pytest.param(["--model.attention.pos", "sincos2d"], "'sincos2d'", id="patchtst-sincos2d"),
    pytest.param(["--model.attention.pos", "rope2d"], "'rope2d'", id="patchtst-rope2d"),
    pytest.param(["--model.attention.pos", "spiral"], "'spiral'", id="unknown-pos"),
    pytest.param(["--model.attention.backend", "bogus"], "'bogus'", id="unknown-backend"),
    pytest.param(["--model.attention.backend", "local"], "'local' needs window", id="local-no-window"),
    pytest.param(["--model.attention.backend", "sdpa", "--model.attention.window", "4"], "'sdpa'", id="sdpa-window"),
    pytest.param(["--model.model", "itransformer", "--model.attention.pos", "rope"], "'rope'", id="itransformer-rope"),
    pytest.param(["--model.model", "itransformer", *_attention("local")], "'local'", id="itransformer-local"),
    pytest.param(["--model.model", "transformer", "--model.attention.backend", "linformer"], "'linformer'", id="transformer-linformer"),
    pytest.param(["--model.model", "transformer", "--model.attention.pos", "sincos2d"], "'sincos2d'", id="transformer-sincos2d"),
    pytest.param(["--model.model", "transformer", "--model.cross_attention.backend", "linformer"], "'linformer'", id="cross-linformer"),
    pytest.param(["--model.model", "transformer", "--model.cross_attention.pos", "rope"], "'rope'", id="cross-rope"),
    pytest.param(["--model.cross_attention.backend", "math"], "cross-attention", id="patchtst-cross"),
    pytest.param(["--model.model", "dlinear", *_attention("local")], "'local'", id="dlinear-local"),
    pytest.param(["--model.model", "last_value", "--model.attention.pos", "rope"], "'rope'", id="naive-rope"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "named"), INVALID)
def test_invalid_settings_are_one_error_line(
    args: list[str], named: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _fit(tmp_path, *args) == 1
    errors = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert len(errors) == 1 and errors[0].startswith("error: ") and named in errors[0], errors
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_model_applies_the_setting() -> None:
    """What each setting builds: the backend in every layer, the position where it belongs."""
    small = dict(seq_len=48, pred_len=12, channels=3, dim=16, depth=2, num_heads=2)
    learned = build_model("patchtst", **small)
    assert learned.pos_embed is not None and learned.pos_table is None
    rope = build_model(
        "patchtst", attention=AttentionConfig("local", window=3, pos="rope"), **small
    )
    layers = [b.attn for b in rope.encoder.blocks]
    assert rope.pos_embed is None and rope.pos_table is None
    assert all(a.backend == "local" and a.backend_kwargs["window"] == 3 for a in layers)
    assert all(isinstance(a.pos, RotaryEmbedding) for a in layers)
    linformer = build_model("patchtst", attention=AttentionConfig("linformer"), **small)
    assert linformer.encoder.blocks[0].attn.backend_kwargs["seq_len"] == linformer.num_patches
    inverted = build_model("itransformer", attention=AttentionConfig("linformer"), **small)
    assert inverted.encoder.blocks[0].attn.backend_kwargs["seq_len"] == 3  # one token a variate
    alibi = build_model(
        "transformer",
        attention=AttentionConfig("math", pos="alibi"),
        cross_attention=AttentionConfig("linear"),
        label_len=24,
        **small,
    )
    block = alibi.decoder.blocks[0]
    assert alibi.pos_table is None and isinstance(block.self_attn.pos, ALiBi)
    assert block.self_attn.backend == "math" and block.cross_attn.backend == "linear"
    assert block.cross_attn.pos is None
    x = torch.randn(2, 48, 3)
    for model in (learned, rope, linformer, inverted, alibi):
        assert torch.isfinite(model(x)).all()


def test_former_flags_warn_once_and_map_to_attention(tmp_path: Path) -> None:
    """`--model.backend local --model.window 4` still trains local attention, with one warning;
    its checkpoint holds the new setting as plain data and loads back."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc = _fit(
            tmp_path,
            "--model.backend",
            "local",
            "--model.window",
            "4",
            "--trainer.max_steps",
            "1",
            "--trainer.limit_val_batches",
            "1",
            "--test_after_fit",
            "false",
            fast=False,
        )
    assert rc == 0
    future = [
        str(w.message)
        for w in caught
        if issubclass(w.category, FutureWarning) and "--model." in str(w.message)
    ]
    assert len(future) == 1 and "--model.attention.backend" in future[0], future
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    hparams = load_checkpoint(ckpt)["hyper_parameters"]
    assert hparams["attention"]["backend"] == "local" and hparams["attention"]["window"] == 4
    assert "backend" not in hparams and "window" not in hparams
    loaded = ForecastModule.from_checkpoint(ckpt)
    attn = loaded.model.encoder.blocks[0].attn
    assert attn.backend == "local" and attn.backend_kwargs["window"] == 4


def test_a_checkpoint_with_the_former_hparams_loads(tmp_path: Path) -> None:
    """Checkpoints written before `attention` existed hold `backend: sdpa, window: null`."""
    assert _fit(tmp_path, "--trainer.max_steps", "1", "--test_after_fit", "false", fast=False) == 0
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    checkpoint = load_checkpoint(ckpt)
    hparams = checkpoint["hyper_parameters"]
    del hparams["attention"], hparams["cross_attention"]
    hparams.update(backend="sdpa", window=None)
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    with pytest.warns(FutureWarning, match="--model.attention.backend"):
        loaded = ForecastModule.from_checkpoint(old)
    assert loaded.hparams["attention"]["backend"] == "sdpa"
    x = torch.randn(2, 168, 5)
    fresh = ForecastModule.from_checkpoint(ckpt)
    torch.testing.assert_close(loaded(x), fresh(x))
