"""What a run prints: Lightning's own chatter kept out of the log unless ``--verbose``, one line
of model size instead of the summary table, the live bar on a terminal, and one error line with
the closest valid names for a mistyped option.

Imported by ``attnlab.lightning_cli`` (it imports Lightning; `attnlab list` never loads it).
"""

from __future__ import annotations

import difflib
import logging
import re
import warnings
from collections.abc import Iterable
from typing import IO, Any

import lightning.pytorch as pl
from lightning.pytorch.utilities.model_summary import get_human_readable_count

__all__ = [
    "ModelSize",
    "option_names",
    "progress_bar_wanted",
    "quiet_lightning",
    "unknown_option_message",
]

# Lightning's info lines ("Seed set to", "GPU available", the cloud-logging tip, "Loading
# `train_dataloader` to estimate ...", "`Trainer.fit` stopped") come through these loggers.
LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning")


def quiet_lightning(verbose: bool) -> None:
    """Without ``verbose``: Lightning's info lines and the deprecation warnings that third-party
    code raises inside Lightning are not printed (a user cannot act on either); warnings about
    the run itself still are."""
    if verbose:
        return
    for name in LIGHTNING_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # Raised inside Lightning's code (torch APIs it uses); our own option renames ("--model.x is
    # deprecated", attnlab.options) are attributed to Lightning's CLI too and stay visible.
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings(
            "ignore", message=r"(?!--)", category=category, module=r"lightning(\.|$)"
        )


def progress_bar_wanted(setting: bool | None, stream: IO[str]) -> bool:
    """The live bar: on a terminal unless ``--trainer.enable_progress_bar false``; never on a
    pipe or file (CI logs get one plain line per epoch instead). LightningCLI stores the unset
    option as None, which means "yes where it fits"."""
    if setting is False:
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class ModelSize(pl.Callback):
    """One line at the start of fit: the model's class and parameter counts (the summary table
    Lightning prints is ``--verbose``)."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        params = list(pl_module.parameters())
        total = sum(p.numel() for p in params)
        trainable = sum(p.numel() for p in params if p.requires_grad)
        inner = getattr(pl_module, "model", None)
        name = type(inner).__name__ if inner is not None else type(pl_module).__name__
        frozen = "" if trainable == total else f", {get_human_readable_count(trainable)} trainable"
        print(
            f"model: {name}, {get_human_readable_count(total)} parameters{frozen} "
            f"({total * 4 / 1e6:.3g} MB in fp32)",
            flush=True,
        )


def unknown_option_message(message: str, valid: Iterable[str], command: str) -> str:
    """One line for a parser error: the options it did not know, each with the closest valid
    names (no prefix matching: ``--trainer.max_epoch`` is not ``--trainer.max_epochs``)."""
    text = " ".join(message.split())
    names = sorted({name for name in valid if name.startswith("--")})
    match = re.search(r"[Uu]nrecognized arguments: (.*)", text)
    bad_value = re.search(r'Parser key "([^"]+)":.*Given value: (.*)$', text)
    if bad_value and not match:
        key, value = bad_value.groups()
        expected = re.findall(r"Expected an? <class '([^']+)'>", text)
        kinds = " or ".join(dict.fromkeys(k.replace("NoneType", "null") for k in expected))
        wanted = f"; expected {kinds}" if kinds else ""
        return f"--{key} {value}: not a valid value{wanted} (see `{command} --help`)"
    if not match:
        return f"{text} (see `{command} --help`)"
    unknown = [token.split("=", 1)[0] for token in match.group(1).split() if token.startswith("-")]
    parts = []
    for option in unknown or [match.group(1)]:
        # --model.dimm: the closest --model.* options, not the group --model itself
        same_depth = [n for n in names if n.count(".") == option.count(".")] or names
        close = difflib.get_close_matches(option, same_depth, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        parts.append(f"unknown option {option}{hint}")
    return "; ".join(parts) + f" (all options: `{command} --help`)"


def option_names(parser: Any) -> list[str]:
    """Every option string a (jsonargparse) parser accepts, nested groups included."""
    return [s for action in getattr(parser, "_actions", []) for s in action.option_strings]
