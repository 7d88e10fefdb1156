"""Atomic saves, safe loads and compatibility checks of checkpoints (in process)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from attnlab import runs
from attnlab.checkpoint import (
    AtomicCheckpointIO,
    CheckpointError,
    check_compatible,
    load_checkpoint,
)


def _ckpt(value: float) -> dict:
    return {"state_dict": {"w": torch.full((4,), value)}, "epoch": int(value)}


def test_crash_in_the_middle_of_a_save_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint(_ckpt(1.0), path)

    def crash(fd: int) -> None:
        raise OSError("simulated power loss before the data reached the disk")

    monkeypatch.setattr(runs.os, "fsync", crash)
    with pytest.raises(OSError, match="simulated"):
        io.save_checkpoint(_ckpt(2.0), path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["state_dict"]["w"], torch.full((4,), 1.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temp file left
    io.save_checkpoint(_ckpt(3.0), path)
    assert load_checkpoint(path)["epoch"] == 3


def test_truncated_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "x.ckpt"
    torch.save(_ckpt(1.0), path)
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(CheckpointError, match=r"x\.ckpt"):
        load_checkpoint(path)


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.ckpt")


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"state_dict": {}, "x": Payload()}, tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_checkpoint(tmp_path / "evil.ckpt")
    assert not marker.exists()


def test_shape_mismatch_names_the_parameter(toy_module_cls: type) -> None:
    small, big = toy_module_cls(dim=16), toy_module_cls(dim=32)
    ckpt = {
        "state_dict": small.state_dict(),
        "attnlab": {"module": "toy_app.ToyModule", "app": "toy"},
    }
    with pytest.raises(
        CheckpointError,
        match=r"shape mismatch.*model\.embed\.weight: checkpoint \(16, 4\) vs model \(32, 4\)",
    ):
        check_compatible(ckpt, big)
    check_compatible(ckpt, small)  # the same shape passes


def test_module_round_trip_from_checkpoint(toy_module_cls: type, tmp_path: Path) -> None:
    module = toy_module_cls(dim=16)
    ckpt = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    module.on_save_checkpoint(ckpt)
    torch.save(ckpt, tmp_path / "m.ckpt")
    loaded = toy_module_cls.from_checkpoint(tmp_path / "m.ckpt")
    x = module.example_inputs()[0]
    module.eval()
    torch.testing.assert_close(loaded(x), module(x))
    assert ckpt["attnlab"]["app"] == "toy"
