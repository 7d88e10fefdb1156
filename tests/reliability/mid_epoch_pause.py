"""A test-only Lightning callback, loaded by `attnlab` subprocesses through ``PYTHONPATH``.

``PauseMidEpoch`` stops a run at a known point inside an epoch (after batch ``batch`` of epoch
``epoch`` has been trained) and says so by writing ``marker``; the test then kills the process.
Waiting for the marker instead of sleeping makes "killed in the middle of an epoch" certain.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl


class PauseMidEpoch(pl.Callback):
    def __init__(self, marker: str, epoch: int = 1, batch: int = 1, wait_s: float = 300.0):
        self.marker = Path(marker)
        self.epoch = epoch
        self.batch = batch
        self.wait_s = wait_s

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if trainer.current_epoch != self.epoch or batch_idx != self.batch:
            return
        self.marker.write_text(f"epoch {trainer.current_epoch} step {trainer.global_step}\n")
        deadline = time.monotonic() + self.wait_s
        while time.monotonic() < deadline:  # the test kills the process here
            time.sleep(0.05)
        raise RuntimeError(f"PauseMidEpoch: nobody killed this run within {self.wait_s:g} s")
