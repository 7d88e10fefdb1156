"""Checkpoints that are written atomically and loaded without executing code.

* ``AtomicCheckpointIO`` writes to a temporary file in the same folder, fsyncs it and renames it
  over the target, so a crash in the middle of a save never leaves a broken ``last.ckpt``.
* ``load_checkpoint`` always uses ``torch.load(weights_only=True)``: a checkpoint holding a pickled
  object (code) is refused with a clear error instead of being run.
* ``check_compatible`` compares a checkpoint with a module before loading it, so loading a
  checkpoint of another app or of a differently shaped model fails with a message that says which.
* A checkpoint is untrusted input: ``load_checkpoint`` checks the type of every entry Lightning and
  attnlab read, and ``check_checkpoint`` builds the model its hyper-parameters describe on the
  meta device (no memory) and compares it with the tensors in the file *before* the real model is
  built, so a small file that claims a huge model, or a mistyped one, is one error naming the file.
* ``RandomStateCallback`` stores the global random generators in every checkpoint and puts them
  back when training resumes, so a resumed run draws the same dropout masks and augmentations as
  an uninterrupted one.
"""

from __future__ import annotations

import inspect
import io
import math
import pickle
import random
from collections import Counter
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from torch import nn
from torch.overrides import TorchFunctionMode

from .runs import atomic_write_bytes

__all__ = [
    "AtomicCheckpointIO",
    "CheckpointError",
    "RandomStateCallback",
    "check_checkpoint",
    "check_compatible",
    "check_hyperparameters",
    "check_resumable",
    "check_structure",
    "load_checkpoint",
    "model_hyperparameters",
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
    except Exception as exc:  # a text file, a truncated zip: torch's errors vary with the damage
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({detail}); is it truncated, or not a .ckpt file?"
        ) from None
    if not isinstance(data, dict):
        raise CheckpointError(
            f"{path} is not a Lightning checkpoint: it holds {type(data).__name__}, "
            "expected a dictionary"
        )
    if "state_dict" not in data:
        raise CheckpointError(f"{path} is not a Lightning checkpoint (no 'state_dict')")
    check_structure(path, data)
    return data


# The entries Lightning and attnlab read from a checkpoint, and the type each must have.
ENTRY_TYPES: dict[str, type | tuple[type, ...]] = {
    "state_dict": dict,
    "hyper_parameters": dict,
    "attnlab": dict,
    "pytorch-lightning_version": str,
    "hparams_name": (str, type(None)),
    "epoch": int,
    "global_step": int,
    "loops": dict,
    "callbacks": dict,
    "optimizer_states": list,
    "lr_schedulers": list,
}
# What resuming training (``fit --ckpt_path``) reads besides the weights.
TRAINING_ENTRIES = ("epoch", "global_step", "loops", "optimizer_states", "lr_schedulers")


def _kind(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def check_structure(path: str | Path, data: dict[str, Any]) -> None:
    """Raise ``CheckpointError`` naming ``path`` and the entry if an entry has the wrong type.

    ``torch.load(weights_only=True)`` guarantees plain data, not the right plain data: a crafted
    file with ``state_dict`` a list or ``epoch`` a string would otherwise end in a ``KeyError``
    or ``AttributeError`` deep inside Lightning."""

    def refuse(what: str) -> CheckpointError:
        return CheckpointError(f"{path} is not a usable checkpoint: {what}")

    for key, kind in ENTRY_TYPES.items():
        if key not in data:
            continue
        value = data[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise refuse(f"'{key}' is {_kind(value)}, expected {names}")
        if isinstance(value, int) and value < 0:
            raise refuse(f"'{key}' is {value}, not a count >= 0")
    for name, tensor in data["state_dict"].items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise refuse(f"'state_dict' entry {name!r} is {_kind(tensor)}, expected a tensor")
    for name in data.get("hyper_parameters") or {}:
        if not isinstance(name, str):
            raise refuse(f"hyper-parameter name {name!r} is not a string")
    if "pytorch-lightning_version" in data:
        from packaging.version import InvalidVersion, Version

        try:
            Version(data["pytorch-lightning_version"])
        except InvalidVersion:
            raise refuse(
                f"'pytorch-lightning_version' is {data['pytorch-lightning_version']!r}, "
                "not a version"
            ) from None
    meta = data.get("attnlab") or {}
    for key in ("app", "module", "attnlab_version"):
        if key in meta and not isinstance(meta[key], str):
            raise refuse(f"'attnlab.{key}' is {_kind(meta[key])}, expected str")
    if not isinstance(meta.get("extras") or {}, dict):
        raise refuse(f"'attnlab.extras' is {_kind(meta['extras'])}, expected dict")
    for key in ("optimizer_states", "lr_schedulers"):
        for i, entry in enumerate(data.get(key) or []):
            if not isinstance(entry, dict):
                raise refuse(f"'{key}[{i}]' is {_kind(entry)}, expected dict")


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


# A checkpoint's hyper-parameters may describe at most this many numbers beyond those in its file
# (buffers such as position tables are rebuilt, not stored), and no integer hyper-parameter may
# exceed the file's count by more: a 1 MB file cannot hold the weights of a 10 GB model.
SIZE_SLACK = 1 << 20


class _ModelTooLarge(Exception):
    def __init__(self, numel: int):
        super().__init__(numel)
        self.numel = numel


class _AllocateOnMeta(TorchFunctionMode):
    """Puts the tensors a constructor allocates (parameters, buffers) on the meta device, where
    they cost no memory, and stops once they add up to more than ``limit`` elements. Small
    computations in a constructor (``torch.linspace(...).tolist()``) still run on the CPU."""

    ALLOCATORS = frozenset(
        {torch.empty, torch.zeros, torch.ones, torch.full, torch.rand, torch.randn, torch.randint}
    )

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit
        self.allocated = 0

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        kwargs = dict(kwargs or {})
        if func not in self.ALLOCATORS or kwargs.get("device") is not None:
            return func(*args, **kwargs)
        kwargs["device"] = "meta"
        out = func(*args, **kwargs)
        self.allocated += out.numel()
        if self.allocated > self.limit:
            raise _ModelTooLarge(self.allocated)
        return out


def model_hyperparameters(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The constructor arguments stored in a checkpoint (Lightning's private ``_`` keys dropped)."""
    return {
        k: v for k, v in (checkpoint.get("hyper_parameters") or {}).items() if not k.startswith("_")
    }


def _numbers(value: Any) -> list[int | float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [value]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list | tuple):
        return [n for v in value for n in _numbers(v)]
    return []


def _type_matches(value: Any, default: Any) -> bool:
    """Whether ``value`` has the kind of the constructor's default (no default, None: any)."""
    if default is inspect.Parameter.empty or default is None or value is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, list | tuple):
        return isinstance(value, list | tuple)
    return True


def check_hyperparameters(
    path: str | Path, hparams: dict[str, Any], module_cls: type, file_numel: int
) -> None:
    """Names, types and ranges of a checkpoint's hyper-parameters against ``module_cls``'s
    constructor, before anything is built from them."""
    params = {
        name: p for name, p in inspect.signature(module_cls).parameters.items() if name != "self"
    }
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    limit = file_numel + SIZE_SLACK
    for name, value in hparams.items():
        if name not in params and not takes_any:
            raise CheckpointError(
                f"{path}: hyper-parameter {name!r} is not an option of {module_cls.__name__}; "
                "use the app that trained it"
            )
        default = params[name].default if name in params else inspect.Parameter.empty
        if not _type_matches(value, default):
            raise CheckpointError(
                f"{path}: hyper-parameter {name}={value!r} is {_kind(value)}, but "
                f"{module_cls.__name__} expects {type(default).__name__} (default {default!r})"
            )
        for number in _numbers(value):
            if not math.isfinite(number) or abs(number) > limit:
                raise CheckpointError(
                    f"{path}: hyper-parameter {name}={number!r} is out of range for a model whose "
                    f"file holds {file_numel:,} numbers"
                )


def check_checkpoint(
    path: str | Path,
    module_cls: type,
    app_name: str | None = None,
    resume: bool = False,
    checkpoint: dict[str, Any] | None = None,
    lightning: bool = False,
) -> dict[str, Any]:
    """Check an untrusted checkpoint against the module that is about to be built from it.

    Loads it as plain data; refuses another app's checkpoint naming both apps; checks the
    hyper-parameters' names, types and ranges; builds the module they describe on the meta device
    (no memory; stopped once it needs far more numbers than the file holds), restores its extras
    and compares every key and shape with the file's tensors; with ``resume`` also checks what
    Lightning reads to continue training; with ``lightning`` (the trainer restores it, as in
    ``validate``) its Lightning version is required. Every problem is a ``CheckpointError`` naming
    ``path``. Returns the checkpoint."""
    checkpoint = load_checkpoint(path) if checkpoint is None else checkpoint
    if (lightning or resume) and "pytorch-lightning_version" not in checkpoint:
        raise CheckpointError(
            f"{path} is not a usable checkpoint: it names no 'pytorch-lightning_version'"
        )
    meta = checkpoint.get("attnlab") or {}
    written_app, written_by = meta.get("app"), meta.get("module")
    expected = f"{module_cls.__module__}.{module_cls.__qualname__}"
    if (app_name and written_app and written_app != app_name) or (
        written_by and written_by != expected
    ):
        raise CheckpointError(
            f"{path} was written by {written_by or '?'} (app {written_app!r}), not by "
            f"{expected} (app {app_name!r}); use `attnlab {written_app or '<app>'}` with it"
        )
    hparams = model_hyperparameters(checkpoint)
    file_numel = sum(t.numel() for t in checkpoint["state_dict"].values())
    check_hyperparameters(path, hparams, module_cls, file_numel)
    try:
        with _AllocateOnMeta(limit=2 * file_numel + SIZE_SLACK):
            module = module_cls(**hparams)
            # Extras first (a vocabulary sizes the output layer), then keys and shapes.
            module.on_load_checkpoint(checkpoint)
    except _ModelTooLarge as exc:
        raise CheckpointError(
            f"{path}: its hyper-parameters describe a model of more than {exc.numel:,} numbers, "
            f"but the file holds {file_numel:,}; refusing to build it"
        ) from None
    except Exception as exc:  # any failure here comes from the file's contents
        message = " ".join(str(exc).split()) or type(exc).__name__
        if str(path) in message:
            raise CheckpointError(message) from None
        raise CheckpointError(
            f"{path} does not describe a {module_cls.__name__} that can be loaded: {message}"
        ) from None
    if resume:
        check_resumable(path, checkpoint, module)
    return checkpoint


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# Numbers an optimizer's parameter group and a scheduler's state hold, which a step computes with.
GROUP_NUMBERS = ("lr", "initial_lr", "weight_decay", "eps", "momentum", "dampening")
GROUP_FLAGS = ("amsgrad", "maximize", "foreach", "capturable", "differentiable", "fused")
SCHEDULER_LISTS = ("base_lrs", "_last_lr")
SCHEDULER_COUNTS = ("last_epoch", "_step_count")


def _trained_order(module: nn.Module) -> tuple[list[torch.Tensor], bool]:
    """The trained parameters and whether they are in the order the optimizer numbers them:
    ``param_groups``' order when the module keeps AttnlabModule's optimizer; otherwise the
    module's own order, only comparable as a set of shapes."""
    from .module import AttnlabModule, param_groups

    if getattr(type(module), "configure_optimizers", None) is AttnlabModule.configure_optimizers:
        return [p for group in param_groups(module, 0.0) for p in group["params"]], True
    return [p for p in module.parameters() if p.requires_grad], False


def check_resumable(path: str | Path, checkpoint: dict[str, Any], module: nn.Module) -> None:
    """What ``fit --ckpt_path`` restores besides the weights: loop counters, optimizer states
    that match the model's trainable parameters in number and shape, and the numbers that the
    optimizer and the learning-rate schedule compute with."""

    def refuse(what: str) -> CheckpointError:
        return CheckpointError(f"{path} cannot resume training: {what}")

    missing = [k for k in TRAINING_ENTRIES if k not in checkpoint]
    if missing:
        raise refuse(
            f"it holds no {', '.join(repr(k) for k in missing)} (weights only?); evaluate it with "
            "validate/test/predict instead"
        )
    trained, exact = _trained_order(module)
    shapes = Counter(tuple(p.shape) for p in trained)
    group_counts = []
    for i, optimizer in enumerate(checkpoint["optimizer_states"]):
        where = f"optimizer_states[{i}]"
        if not optimizer and not trained:
            continue  # a baseline without parameters: Lightning stores an empty state
        groups, state = optimizer.get("param_groups"), optimizer.get("state")
        if not isinstance(groups, list) or not isinstance(state, dict):
            raise refuse(f"{where} has no 'param_groups' list and 'state' dict")
        group_counts.append(len(groups))
        ids: list[Any] = []
        for group in groups:
            if not isinstance(group, dict) or not isinstance(group.get("params"), list):
                raise refuse(f"a parameter group of {where} lists no 'params'")
            bad = [k for k in GROUP_NUMBERS if k in group and not _is_number(group[k])]
            bad += [k for k in GROUP_FLAGS if group.get(k) not in (None, True, False)]
            betas = group.get("betas", (0.9, 0.999))
            if not isinstance(betas, list | tuple) or not all(map(_is_number, betas)):
                bad.append("betas")
            if bad:
                raise refuse(f"{where} has a parameter group whose {bad[0]!r} is mistyped")
            ids += group["params"]
        if sorted(map(str, ids)) != sorted(map(str, range(len(trained)))):
            raise refuse(f"{where} covers {len(ids)} parameters, the model trains {len(trained)}")
        seen: Counter[tuple[int, ...]] = Counter()
        for key, entry in state.items():
            if key not in ids or not isinstance(entry, dict):
                raise refuse(f"{where} holds state for unknown parameter {key!r}")
            values = {name: v for name, v in entry.items() if name != "step"}
            if not all(isinstance(v, torch.Tensor) or v is None for v in values.values()):
                raise refuse(f"{where} state {key!r} holds something other than tensors")
            entry_shapes = {tuple(v.shape) for v in values.values() if v is not None and v.ndim}
            if len(entry_shapes) > 1:
                raise refuse(f"{where} state {key!r} mixes shapes {sorted(entry_shapes)}")
            if exact and isinstance(key, int) and entry_shapes:
                wanted = tuple(trained[key].shape)
                if entry_shapes != {wanted}:
                    raise refuse(
                        f"{where} state of parameter {key} has shape {entry_shapes.pop()}, the "
                        f"parameter {wanted}"
                    )
            seen.update(entry_shapes)
        extra = [s for s in seen if seen[s] > shapes[s]]
        if extra:
            raise refuse(f"{where} holds state of shape {extra[0]}, which no parameter has")
    for i, scheduler in enumerate(checkpoint["lr_schedulers"]):
        where = f"lr_schedulers[{i}]"
        n_groups = group_counts[min(i, len(group_counts) - 1)] if group_counts else 0
        for key in SCHEDULER_LISTS:
            value = scheduler.get(key, [1.0] * n_groups)
            if (
                not isinstance(value, list)
                or len(value) != n_groups
                or not all(map(_is_number, value))
            ):
                raise refuse(f"{where} {key!r} is not {n_groups} numbers, one per parameter group")
        lambdas = scheduler.get("lr_lambdas", [None] * n_groups)
        if not isinstance(lambdas, list) or len(lambdas) != n_groups:
            raise refuse(f"{where} 'lr_lambdas' is not one entry per parameter group")
        if not all(v is None or isinstance(v, dict) for v in lambdas):
            raise refuse(f"{where} 'lr_lambdas' holds something other than states")
        for key in SCHEDULER_COUNTS:
            value = scheduler.get(key, 0)
            if not isinstance(value, int) or isinstance(value, bool):
                raise refuse(f"{where} {key!r} is {_kind(value)}, expected a count")


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
