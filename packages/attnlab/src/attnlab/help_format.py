"""The help formatter of `attnlab <app> fit --help`: lists in an option's help stay one item a line.

argparse joins every line of a help text into one paragraph, so a DataModule's list of datasets
("folder: ...; idx: ...; digits: ...") came out as one block in which no name could be found by
eye. An argument's docstring may instead write its choices as a list, one item per ``- ``::

    dataset: where the images come from:
        - folder: your own images, one sub-folder per class ...
        - digits: scikit-learn's 8x8 digits, built in.

and ``--help`` prints each item on a line of its own (the marker dropped, the item's wrapped lines
indented two spaces), the text before the list and jsonargparse's ``(type: ..., default: ...)``
after it wrapped as usual. Help without such a list is formatted exactly as jsonargparse does.

Imported by ``attnlab.lightning_cli`` (jsonargparse comes with Lightning's CLI).
"""

from __future__ import annotations

import re
import textwrap

from jsonargparse import DefaultHelpFormatter

__all__ = ["ListHelpFormatter"]

# A line of a help text that starts a list item: "- " at its start, after any indentation.
LIST_ITEM = re.compile(r"\n[ \t]*- ")
# jsonargparse's suffix of every option's help: " (type: str, default: digits)".
TYPE_SUFFIX = re.compile(r"\s+(\((?:required|type: |default: )[^\n]*\))\s*$")
ITEM_INDENT = "  "


def _wrap(text: str, width: int, indent: str = "") -> list[str]:
    """``text`` with its whitespace collapsed, wrapped to ``width`` (later lines ``indent``ed)."""
    return textwrap.wrap(
        " ".join(text.split()), max(width, 10), subsequent_indent=indent, break_on_hyphens=False
    )


class ListHelpFormatter(DefaultHelpFormatter):
    """jsonargparse's formatter, with the ``- `` items of an option's help one item a line."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        head, *items = LIST_ITEM.split(text)
        if not items:
            return super()._split_lines(text, width)
        suffix = TYPE_SUFFIX.search(items[-1])
        if suffix is not None:
            items[-1] = items[-1][: suffix.start()]
        lines = _wrap(head, width)
        for item in items:
            lines += _wrap(item, width, ITEM_INDENT)
        if suffix is not None:
            lines += _wrap(suffix.group(1), width)
        return lines
