"""Checkpoints that are written atomically and loaded without executing code.

* ``AtomicCheckpointIO`` writes to a temporary file in the same folder, fsyncs it and renames it
  over the target, so a crash in the middle of a save never leaves a broken ``last.ckpt``.
* ``load_checkpoint`` always uses ``torch.load(weights_only=True)``: a checkpoint holding a pickled
  object (code) is refused with a clear error instead of being run.
* ``check_compatible`` compares a checkpoint with a module before loading it, so loading a
  checkpoint of another app or of a differently shaped model fails with a message that says which.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from torch import nn

from .runs import atomic_write_bytes

__all__ = [
    "AtomicCheckpointIO",
    "CheckpointError",
    "check_compatible",
    "load_checkpoint",
    "module_identity",
]


class CheckpointError(ValueError):
    """A checkpoint that cannot be used here; the message names the file and the reason."""


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None
    ) -> None:
        buf = io.BytesIO()
        torch.save(checkpoint, buf)
        atomic_write_bytes(Path(path), buf.getvalue())

    def load_checkpoint(
        self, path: Any, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        return load_checkpoint(path, map_location=map_location or "cpu")


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint as plain data (tensors, numbers, strings, containers) only."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass the path of a .ckpt file")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsupported object"
        raise CheckpointError(
            f"refusing to load {path}: it holds objects other than plain data and tensors "
            f"({first}); only load checkpoints you trust, and re-save them as plain data"
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({exc}); is it truncated?"
        ) from None
    if not isinstance(data, dict) or "state_dict" not in data:
        raise CheckpointError(f"{path} is not a Lightning checkpoint (no 'state_dict')")
    return data


def module_identity(module: nn.Module) -> str:
    cls = type(module)
    return f"{cls.__module__}.{cls.__qualname__}"


def check_compatible(
    checkpoint: dict[str, Any], module: nn.Module, source: str = "checkpoint"
) -> None:
    """Raise ``CheckpointError`` if ``checkpoint`` was written by another app or model shape."""
    meta = checkpoint.get("attnlab") or {}
    expected = module_identity(module)
    written_by = meta.get("module")
    if written_by and written_by != expected:
        raise CheckpointError(
            f"{source} was written by {written_by} (app {meta.get('app', '?')!r}), not {expected}; "
            "use the app that trained it"
        )
    own = module.state_dict()
    theirs = checkpoint.get("state_dict", {})
    missing = [k for k in own if k not in theirs]
    unexpected = [k for k in theirs if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(theirs[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in theirs
        and hasattr(theirs[k], "shape")
        and tuple(theirs[k].shape) != tuple(own[k].shape)
    ]
    if shapes or missing or unexpected:
        parts = []
        if shapes:
            parts.append(f"{len(shapes)} shape mismatch(es), e.g. {shapes[0]}")
        if missing:
            parts.append(f"{len(missing)} missing key(s), e.g. {missing[0]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[0]}")
        raise CheckpointError(
            f"{source} does not fit this model ({'; '.join(parts)}); build the model with the "
            "configuration it was trained with (its run folder holds config.yaml)"
        )
