"""``--model.attention.*`` in recsys: every valid (model, backend, pos) trains, every invalid one is
one `error:` line, the old ``--model.backend`` still works with a warning, and the setting
survives a checkpoint."""

from __future__ import annotations

import warnings
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from attnlab_recommender import RecDataModule, RecModule
from attnlab_recommender.model import POSITIONS

from attention_core import AttentionConfig, get_backend, list_backends
from attnlab.cli import main

TINY = {"max_len": 10, "dim": 16, "depth": 1, "dropout": 0.0, "attn_dropout": 0.0}
OPTIONS = {"local": {"window": 2}}  # the backends that need an option to exist
SMALL = ("--data.synthetic", "{num_users: 64}", "--model.dim", "16", "--model.depth", "1")


def _valid(model: str, backend: str, pos: str) -> bool:
    """What the app promises: SASRec is causal (no linformer); ALiBi is a bias on the scores,
    which the kernelized backends cannot add."""
    if model == "sasrec" and backend == "linformer":
        return False
    return not (pos == "alibi" and backend in ("linear", "linformer"))


COMBOS = [(m, b, p) for m in ("sasrec", "bert4rec") for b in list_backends() for p in POSITIONS]
VALID = [c for c in COMBOS if _valid(*c)]
INVALID = [c for c in COMBOS if not _valid(*c)]


def _fit(tmp_path: Path, *args: str) -> int:
    return main(
        ["recsys", "fit", "--config", "quick", "--trainer.fast_dev_run=1",
         "--run_dir", str(tmp_path / "run"), *SMALL, *args]
    )  # fmt: skip


def _flags(model: str, backend: str, pos: str) -> list[str]:
    args = ["--model.model", model, "--model.attention.backend", backend,
            "--model.attention.pos", pos]  # fmt: skip
    for key, value in OPTIONS.get(backend, {}).items():
        args += [f"--model.attention.{key}", str(value)]
    if not get_backend(backend).dropout:  # linear: no attention matrix to drop out
        args += ["--model.attn_dropout", "0"]
    return args


@pytest.mark.parametrize(("model", "backend", "pos"), VALID)
def test_every_valid_combination_trains_through_the_command(
    model: str, backend: str, pos: str, tmp_path: Path
) -> None:
    assert _fit(tmp_path, *_flags(model, backend, pos)) == 0
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert f"backend: {backend}" in config and f"pos: {pos}" in config
    assert (tmp_path / "run" / "metrics.json").is_file()


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--model.attention.backend", "linformer"), "linformer"),
        (("--model.attention.backend", "linear", "--model.attention.pos", "alibi"), "alibi"),
        (("--model.model", "bert4rec", "--model.attention.backend", "linformer",
          "--model.attention.pos", "alibi"), "alibi"),
        (("--model.attention.pos", "sincos2d"), "sincos2d"),
        (("--model.attention.pos", "rope2d"), "rope2d"),
        (("--model.attention.backend", "local"), "local"),  # no window
        (("--model.attention.backend", "sdpa", "--model.attention.window", "4"), "sdpa"),
        (("--model.attention.backend", "linear"), "linear"),  # quick's attn_dropout .1
        (("--model.model", "popularity", "--model.attention.pos", "rope"), "popularity"),
    ],
    ids=["sasrec-linformer", "linear-alibi", "bert4rec-linformer-alibi", "sincos2d", "rope2d",
         "local-no-window", "sdpa-window", "linear-attn-dropout", "baseline"],
)  # fmt: skip
def test_invalid_combination_is_one_error_line(
    args: tuple[str, ...], named: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _fit(tmp_path, *args) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and named in lines[0], err[-2000:]
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_invalid_combinations_are_refused_by_the_module() -> None:
    for model, backend, pos in INVALID:
        with pytest.raises(ValueError, match=f"{backend}|{pos}"):
            RecModule(model=model, attention=AttentionConfig(backend=backend, pos=pos))


def test_old_backend_flag_warns_once_and_still_works(tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _fit(tmp_path, "--model.backend", "math") == 0
    future = [w for w in caught if "--model.backend" in str(w.message)]
    assert len(future) == 1 and "--model.attention.backend" in str(future[0].message)
    with pytest.warns(FutureWarning, match="attention.backend"):
        module = RecModule(backend="math", num_items=9)
    assert module.net.encoder.blocks[0].attn.backend == "math"
    assert module.hparams["attention"]["backend"] == "math" and "backend" not in module.hparams


def _trainer(tmp_path: Path) -> pl.Trainer:
    return pl.Trainer(
        default_root_dir=str(tmp_path), accelerator="cpu", logger=False, max_steps=1,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
    )  # fmt: skip


def test_setting_round_trips_through_a_checkpoint(seq_file: Path, tmp_path: Path) -> None:
    cfg = AttentionConfig(backend="local", window=2, pos="rope")
    module = RecModule(attention=cfg, **TINY)
    trainer = _trainer(tmp_path)
    trainer.fit(module, datamodule=RecDataModule(dataset="sequences", path=str(seq_file)))
    ckpt = tmp_path / "m.ckpt"
    trainer.save_checkpoint(ckpt)
    saved = torch.load(ckpt, weights_only=True)["hyper_parameters"]["attention"]
    assert saved == {**cfg.to_dict(), "global_tokens": 0}  # plain data, the model's defaults in
    loaded = RecModule.from_checkpoint(ckpt)
    assert loaded.net.cfg.attention == module.net.cfg.attention
    hist = torch.tensor([[1, 2, 3], [4, 5, 0]])
    torch.testing.assert_close(loaded(hist), module.eval()(hist))


def test_checkpoint_with_the_old_backend_hparam_loads(seq_file: Path, tmp_path: Path) -> None:
    module = RecModule(**TINY)
    trainer = _trainer(tmp_path)
    trainer.fit(module, datamodule=RecDataModule(dataset="sequences", path=str(seq_file)))
    ckpt = tmp_path / "old.ckpt"
    trainer.save_checkpoint(ckpt)
    state = torch.load(ckpt, weights_only=True)
    del state["hyper_parameters"]["attention"]  # as written before the setting existed
    state["hyper_parameters"]["backend"] = "sdpa"
    torch.save(state, ckpt)
    with pytest.warns(FutureWarning):
        loaded = RecModule.from_checkpoint(ckpt)
    assert loaded.net.cfg.attention.backend == "sdpa" and loaded.net.cfg.attention.pos == "learned"
    hist = torch.tensor([[1, 2, 3]])
    torch.testing.assert_close(loaded(hist), module.eval()(hist))
