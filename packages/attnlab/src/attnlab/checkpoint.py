"""Checkpoints that are written atomically and loaded without executing code.

* ``AtomicCheckpointIO`` writes to a temporary file in the same folder, fsyncs it and renames it
  over the target, so a crash in the middle of a save never leaves a broken ``last.ckpt``.
* ``load_checkpoint`` always uses ``torch.load(weights_only=True)``: a checkpoint holding a pickled
  object (code) is refused with a clear error instead of being run.
* ``check_compatible`` compares a checkpoint with a module before loading it, so loading a
  checkpoint of another app or of a differently shaped model fails with a message that says which.
* ``RandomStateCallback`` stores the global random generators in every checkpoint and puts them
  back when training resumes, so a resumed run draws the same dropout masks and augmentations as
  an uninterrupted one.
"""

from __future__ import annotations

import io
import pickle
import random
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from torch import nn

from .runs import atomic_write_bytes

__all__ = [
    "AtomicCheckpointIO",
    "CheckpointError",
    "RandomStateCallback",
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


def capture_random_state() -> dict[str, Any]:
    """The global generators (torch, CUDA, numpy, random) as plain data a weights-only load reads."""
    kind, keys, pos, has_gauss, cached_gauss = np.random.get_state(legacy=True)  # type: ignore[misc]
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gauss": float(cached_gauss),
        },
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_random_state(state: dict[str, Any]) -> None:
    """Put back what ``capture_random_state`` returned."""
    torch.set_rng_state(state["torch"])
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["kind"], keys, npy["pos"], npy["has_gauss"], npy["cached_gauss"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class RandomStateCallback(pl.Callback):
    """Carries the global random state through checkpoints.

    Lightning's checkpoints hold the weights, optimizer, scheduler and loop counters but not the
    random generators: a run resumed with ``--ckpt_path`` would restart them from the seed and
    draw other dropout masks and augmentations than the uninterrupted run. The state at the moment
    a checkpoint is written is stored in it and restored when training starts from it.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return capture_random_state()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict or None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # After the sanity check and any setup that drew numbers, just before the first batch.
        if self._pending is not None:
            restore_random_state(self._pending)
            self._pending = None
