"""The live progress bar on a terminal, plain lines on a pipe (issue 23): the command run under
a pseudo-terminal, as a user at a shell runs it."""

from __future__ import annotations

import os
import pty
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from attnlab.console import progress_bar_wanted

PLAIN_LINE = re.compile(r"^epoch \d+/\d+ step 8 ", re.M)  # PlainProgress, one per epoch


class Stream:
    def __init__(self, tty: bool):
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def run_in_terminal(command: Any, cwd: Path, *args: str, timeout: float = 300) -> str:
    """Everything ``attnlab *args`` wrote to its terminal (stdout and stderr on one pty)."""
    main, child = pty.openpty()
    env = dict(command.env, TERM="xterm-256color", COLUMNS="120")
    proc = subprocess.Popen(
        command.argv(*args), cwd=cwd, env=env, stdin=child, stdout=child, stderr=child
    )
    os.close(child)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    assert proc.wait(timeout=timeout) == 0, b"".join(chunks).decode(errors="replace")[-3000:]
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.parametrize(
    ("setting", "tty", "wanted"),
    [(None, True, True), (True, True, True), (False, True, False), (None, False, False)],
)
def test_bar_only_on_a_terminal_unless_switched_off(
    setting: bool | None, tty: bool, wanted: bool
) -> None:
    """LightningCLI stores the unset option as None: that means "yes where it fits"."""
    assert progress_bar_wanted(setting, Stream(tty)) is wanted


def test_terminal_shows_the_live_bar_and_verbose_the_summary(attnlab, tmp_path: Path) -> None:
    out = run_in_terminal(attnlab, tmp_path, "toy", "fit", "--config", "quick",
                          "--trainer.max_epochs", "1", "--figure_every", "100", "--verbose",
                          "--run_dir", "r")  # fmt: skip
    assert "Epoch 0/0" in out and "━" in out and "8/8" in out, out[-2000:]
    assert not PLAIN_LINE.search(out), "plain epoch lines beside the bar"
    assert "Total params" in out  # --verbose: Lightning's model summary
    assert (tmp_path / "r" / "metrics.json").is_file()
    # the same run on a pipe: plain lines, no bar and no summary table
    piped = attnlab("toy", "fit", "--config", "quick", "--trainer.max_epochs", "1",
                    "--figure_every", "100", "--run_dir", "p")  # fmt: skip
    assert PLAIN_LINE.search(piped.stdout) and "━" not in piped.stdout + piped.stderr
    assert "Total params" not in piped.stdout
