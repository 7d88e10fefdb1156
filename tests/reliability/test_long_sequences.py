"""The long-sequence paths run end to end on a CPU: forecasting from 4,096-step inputs with local
attention and recommending from 1,000-item histories with linear attention, each for a few
training steps and a validation pass. The peak memory of the run is printed (``-s`` shows it)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from reliability_cases import epoch_rows

STEPS = 3
CASES = [
    pytest.param("forecast", "long_input", "val/mse", ("--model.attention.backend", "local"), id="forecast-4096-local"),
    pytest.param("recsys", "long_history", "val/ndcg@10", ("--model.attention.backend", "linear"), id="recsys-1000-linear"),
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.xdist_group("rel-long")
@pytest.mark.parametrize(("command", "config", "metric", "backend"), CASES)
def test_long_inputs_train_and_validate(
    command: str,
    config: str,
    metric: str,
    backend: tuple[str, ...],
    tmp_path: Path,
    attnlab_command: Callable[..., Any],
) -> None:
    run = tmp_path / "run"
    args = [command, "fit", "--config", config, *backend,
            "--trainer.max_epochs", "1", "--trainer.limit_train_batches", str(STEPS),
            "--trainer.limit_val_batches", "2", "--test_after_fit", "false",
            "--run_dir", str(run)]  # fmt: skip
    log = tmp_path / "fit.log"
    with open(log, "w") as out:
        proc = attnlab_command(tmp_path).start(*args, stdout=out)
        # wait4, not wait: the resource usage of this one child, whatever ran before it.
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, log.read_text()[-3000:]
    peak_mib = usage.ru_maxrss / 1024  # Linux reports KiB
    print(f"\n{command} --config {config}: peak RSS {peak_mib:.0f} MiB")
    rows = epoch_rows(run)
    assert [int(r["step"]) for r in rows] == [STEPS]
    assert math.isfinite(float(rows[0][metric])) and math.isfinite(float(rows[0]["train/loss"]))
    config_text = (run / "config.yaml").read_text()
    assert f"backend: {backend[1]}" in config_text
    assert ("seq_len: 4096" if command == "forecast" else "max_len: 1000") in config_text
