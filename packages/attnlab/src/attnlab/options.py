"""Renamed ``--model.*`` options: the old names keep working for a release, with a warning.

Every app names the same idea the same way: ``model`` (which model to build), ``dim`` (the
transformer's width), ``dropout`` / ``attn_dropout``, ``attention`` (``--model.attention.*``, the
settings of every self-attention layer). Apps that used other names (``preset``, ``arch``,
``embed_dim``, ``drop_rate``, ``backend``, ...) keep them as parameters defaulting to ``None``;
``renamed`` and ``attention_from_old_flags`` map a given old name onto the new one with one
``FutureWarning``, so old command lines, configs and checkpoints still work. Modules then store
their hyper-parameters under the new names only (old names ``None``), so new checkpoints carry
one vocabulary.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

from attention_core import AttentionConfig

__all__ = ["attention_from_old_flags", "renamed"]

T = TypeVar("T")

# Backend options that AttentionConfig holds as fields; any other old backend_kwargs key is an
# entry of its ``options``.
_OPTION_FIELDS = frozenset(f.name for f in fields(AttentionConfig)) - {"backend", "pos", "options"}


def _warn(old: str, new: str) -> None:
    warnings.warn(
        f"--model.{old} is deprecated; use {new} (mapped there for now; the old name goes in "
        "the next release)",
        FutureWarning,
        stacklevel=4,
    )


def renamed(old: str, old_value: T | None, new: str, new_value: T, default: T) -> T:
    """The value of ``--model.<new>``, taking ``--model.<old>`` when that was given (with a
    ``FutureWarning``). Both given with different values is an error: which one was meant is
    not ours to guess. ``default`` is the new option's default, i.e. "not given"."""
    if old_value is None:
        return new_value
    _warn(old, f"--model.{new}")
    if new_value != default and new_value != old_value:
        raise ValueError(
            f"--model.{old}={old_value!r} (the old name of --model.{new}) and "
            f"--model.{new}={new_value!r} disagree; give only --model.{new}"
        )
    return old_value


def attention_from_old_flags(
    attention: AttentionConfig | Mapping[str, Any] | str | None,
    backend: str | None = None,
    backend_kwargs: Mapping[str, Any] | None = None,
    pos: str | None = None,
) -> AttentionConfig:
    """``attention`` with the former flags folded in (``--model.backend``,
    ``--model.backend_kwargs``, and an old position flag already translated to a
    ``--model.attention.pos`` name), each with one ``FutureWarning``. A former flag that
    contradicts a ``--model.attention.*`` value given too is an error."""
    cfg = AttentionConfig.coerce(attention)
    values = cfg.to_dict()
    default = AttentionConfig().to_dict()
    mapped: dict[str, Any] = {}
    if backend is not None:
        _warn("backend", "--model.attention.backend")
        mapped["backend"] = "sdpa" if backend == "auto" else backend
    if backend_kwargs:
        _warn("backend_kwargs", "--model.attention.<option> (window, feature_map, proj_dim, ...)")
        options = dict(values["options"])
        for key, value in backend_kwargs.items():
            if key == "seq_len":  # linformer's: the model fills it in
                continue
            if key in _OPTION_FIELDS:
                mapped[key] = value
            else:
                options[key] = value
        if options != values["options"]:
            mapped["options"] = options
    if pos is not None:
        mapped["pos"] = pos
    for key, value in mapped.items():
        if key != "options" and values[key] not in (default[key], value):
            raise ValueError(
                f"--model.attention.{key}={values[key]!r} and the old flag's {value!r} disagree; "
                f"give only --model.attention.{key}"
            )
        values[key] = value
    return AttentionConfig.coerce(values)
