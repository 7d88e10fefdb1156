"""`--model.attention.*` through the real `attnlab vit` command: every valid (backend, pos) pair of
each model trains a step, every invalid one is one `error:` line, the old flags still work, and a
checkpoint carries the setting back."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from attnlab_vit import ViTModule
from attnlab_vit.model import GRID_POSITIONS, mask_backends

from attention_core import list_backends
from attnlab.checkpoint import load_checkpoint
from attnlab.cli import main

# One training and one validation batch of the quick config's smallest model, no figures.
STEP = ("--config", "quick", "--trainer.fast_dev_run=1", "--figure_every", "0")
OPTIONS = {
    "local": ("--model.attention.window", "4"),
    "linformer": ("--model.attention.proj_dim", "8"),
}
SPT_LSA = ("--model.tokenizer", "spt", "--model.lsa", "true")
CCT = ("--model.model", "cct_test")


def attention_args(backend: str, pos: str | None = None) -> list[str]:
    args = ["--model.attention.backend", backend, *OPTIONS.get(backend, ())]
    return args + (["--model.attention.pos", pos] if pos else [])


def fit(tmp_path: Path, *args: str) -> int:
    run = tmp_path / "run"
    return main(["vit", "fit", *STEP, "--run_dir", str(run), *args])


def completed(tmp_path: Path) -> bool:
    return json.loads((tmp_path / "run" / "manifest.json").read_text())["status"] == "completed"


VALID = (
    # The plain ViT: every backend with every position scheme of a token grid.
    [pytest.param((), b, p, id=f"vit-{b}-{p}") for b in list_backends() for p in GRID_POSITIONS]
    # SPT + LSA: the backends that take LSA's masked diagonal; 2-D RoPE inside the temperature.
    + [pytest.param(SPT_LSA, b, None, id=f"lsa-{b}") for b in mask_backends()]
    + [pytest.param(SPT_LSA, "sdpa", p, id=f"lsa-sdpa-{p}") for p in ("rope2d", "sincos2d")]
    # CCT: no class token (sequence pooling), so local has no global token.
    + [pytest.param(CCT, b, None, id=f"cct-{b}") for b in ("local", "linear", "linformer")]
    + [pytest.param(CCT, "sdpa", p, id=f"cct-sdpa-{p}") for p in ("rope2d", "none")]
)


@pytest.mark.parametrize(("model", "backend", "pos"), VALID)
def test_valid_setting_trains_a_step(
    model: tuple[str, ...], backend: str, pos: str | None, tmp_path: Path
) -> None:
    assert fit(tmp_path, *model, *attention_args(backend, pos)) == 0
    assert completed(tmp_path)


INVALID = [
    pytest.param((), ("--model.attention.pos", "alibi"), "pos 'alibi'", id="alibi"),
    pytest.param((), ("--model.attention.pos", "rope"), "pos 'rope'", id="rope-1d"),
    pytest.param((), ("--model.attention.pos", "sincos"), "pos 'sincos'", id="sincos-1d"),
    pytest.param(CCT, ("--model.attention.pos", "alibi"), "pos 'alibi'", id="cct-alibi"),
    pytest.param(
        ("--model.dim", "40"),
        ("--model.attention.pos", "rope2d"),
        "pos 'rope2d'",
        id="rope2d-head-dim",
    ),
    *[
        pytest.param(SPT_LSA, attention_args(b), f"backend '{b}'", id=f"lsa-{b}")
        for b in list_backends()
        if b not in mask_backends()
    ],
    pytest.param(("--model.backbone", "timm"), attention_args("math"), "'math'", id="timm-backend"),
    pytest.param(
        ("--model.backbone", "timm"), attention_args("sdpa", "rope2d"), "'rope2d'", id="timm-pos"
    ),
    pytest.param(
        (), ("--model.attention.backend", "local"), "backend 'local'", id="local-no-window"
    ),
]


@pytest.mark.parametrize(("model", "attention", "named"), INVALID)
def test_invalid_setting_is_one_error_line(
    model: tuple[str, ...],
    attention: tuple[str, ...],
    named: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert fit(tmp_path, *model, *attention) == 1
    out = capsys.readouterr()
    errors = [line for line in (out.out + out.err).splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and named in errors[0], errors
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_old_flag_warns_once_and_still_works(tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert (
            fit(tmp_path, "--model.backend", "local", "--model.backend_kwargs", "{window: 3}") == 0
        )
    old = [
        w for w in caught
        if issubclass(w.category, FutureWarning) and str(w.message).startswith("--model.")
    ]  # fmt: skip
    assert [str(w.message).split(";")[0] for w in old] == [
        "--model.backend is deprecated",
        "--model.backend_kwargs is deprecated",
    ]
    assert "--model.attention.backend" in str(old[0].message)
    assert completed(tmp_path)


def test_checkpoint_round_trips_the_setting(tmp_path: Path) -> None:
    one_step = ("--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1",
                "--trainer.limit_val_batches", "1")  # fmt: skip
    args = [*SPT_LSA, *attention_args("local", "rope2d"), *one_step]
    run = tmp_path / "run"
    assert main(["vit", "fit", "--config", "quick", "--figure_every", "0", "--run_dir", str(run),
                 "--test_after_fit", "false", *args]) == 0  # fmt: skip
    best = run / "checkpoints" / "best.ckpt"
    module = ViTModule.from_checkpoint(best)
    assert isinstance(module, ViTModule)
    cfg = module.model.attention
    assert (cfg.backend, cfg.window, cfg.pos, cfg.global_tokens) == ("local", 4, "rope2d", 1)
    x = torch.randn(2, 1, 8, 8)
    # An old checkpoint: hyper-parameters with `backend`/`pos_embed` and no `attention` block.
    ckpt = load_checkpoint(best)
    hp = ckpt["hyper_parameters"]
    del hp["attention"]
    # ... and the ViT named by `preset`, as before `model` existed.
    hp.update(backend="sdpa", pos_embed="learn", tokenizer=None, lsa=None, preset=hp.pop("model"))
    ckpt["state_dict"] = ViTModule(model=hp["preset"]).state_dict()
    torch.save(ckpt, tmp_path / "old.ckpt")
    with pytest.warns(FutureWarning, match="--model.backend is deprecated"):
        old = ViTModule.from_checkpoint(tmp_path / "old.ckpt")
    assert old.model.attention.backend == "sdpa" and old.model(x).shape == (2, 10)
    # Export of LSA with 2-D RoPE under local attention, parity checked by the command.
    out = tmp_path / "model.pt2"
    assert (
        main(["vit", "export", "--ckpt", str(best), "--format", "torch-export", "--out", str(out)])
        == 0
    )
    assert out.is_file()
