"""FSDD test accuracy of the Audio Spectrogram Transformer and the CNN baseline at the same CPU budget.

Both models train from ``apps/audio/configs/fsdd.yaml`` / ``fsdd_cnn.yaml`` (same features,
augmentation and recipe) for as many epochs as fit the budget, counted in CPU seconds of this
process (``time.process_time``), so a busy machine slows a run down without shrinking its compute:
a few training steps estimate the CPU time of an epoch, the epoch count is set from it (so the
cosine schedule completes), and a wall-clock ``max_time`` of three budgets stops a runaway run. The last weights are tested on
the official test split (recording index 0-4). Goal: >= 97 % for the AST.

Environment:

* ``ATTNLAB_DATA_DIR``: folder holding ``fsdd/`` (required).
* ``ATTNLAB_BENCH_BUDGET_S``: training CPU seconds per model (default 1800).
* ``ATTNLAB_BENCH_THREADS``: torch threads (default: torch's default).
* ``ATTNLAB_BENCH_MAX_EPOCHS``: cap on the epochs (default: the config's ``max_epochs``).

Writes ``results/audio.json`` and ``results/audio.md``; ``peak_rss_mb`` is the process's peak
RSS after training and testing the default (AST) configuration.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, environment, environment_markdown, markdown_table, write_results

CONFIGS = {"ast": "fsdd.yaml", "cnn": "fsdd_cnn.yaml"}


def _config(name: str) -> dict[str, Any]:
    import yaml

    return yaml.safe_load((ROOT / "apps" / "audio" / "configs" / name).read_text(encoding="utf-8"))


def _run(arch: str, budget_s: float, max_epochs_cap: int | None) -> dict[str, Any]:
    import lightning.pytorch as pl
    import torch
    from attnlab_audio import AudioData, AudioModule

    cfg = _config(CONFIGS[arch])
    pl.seed_everything(0, verbose=False)
    dm = AudioData(**cfg["data"])
    t0 = time.perf_counter()
    dm.setup("fit")
    setup_s = time.perf_counter() - t0
    module = AudioModule(**cfg["model"])
    module.model.normalize.set_stats(*dm.feature_stats)  # type: ignore[misc,operator]

    # calibration: a few optimizer steps on real batches (features included), then discarded
    probe = AudioModule(**cfg["model"])
    opt = torch.optim.AdamW(probe.parameters(), lr=1e-4)
    loader = dm.train_dataloader()
    it = iter(loader)
    times = []
    for i in range(4):
        t = time.process_time()
        x, y = next(it)
        loss = torch.nn.functional.cross_entropy(probe.model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:
            times.append(time.process_time() - t)
    step_s = sorted(times)[len(times) // 2]
    epoch_s = step_s * len(loader) * 1.15  # + validation, logging
    epochs = max(1, int(budget_s // epoch_s))
    cap = max_epochs_cap or int(cfg["trainer"].get("max_epochs", 40))
    epochs = min(epochs, cap)
    trainer = pl.Trainer(
        # the module writes its test report and figures here; keep them out of the checkout
        default_root_dir=tempfile.mkdtemp(prefix=f"attnlab-bench-audio-{arch}-"),
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,
        max_time={"seconds": int(budget_s * 3)},
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
        num_sanity_val_steps=0,
    )
    t0, cpu0 = time.perf_counter(), time.process_time()
    trainer.fit(module, datamodule=dm)
    train_s, train_cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    val = trainer.callback_metrics.get("val/acc")
    test = trainer.test(module, datamodule=dm, verbose=False)[0]
    return {
        "arch": arch,
        "config": f"apps/audio/configs/{CONFIGS[arch]}",
        "params": sum(p.numel() for p in module.model.parameters()),
        "epochs_planned": epochs,
        "epochs_run": trainer.current_epoch,
        "step_s_calibrated": round(step_s, 4),
        "train_s": round(train_s, 1),
        "train_cpu_s": round(train_cpu_s, 1),
        "feature_setup_s": round(setup_s, 1),
        "val_acc": None if val is None else round(float(val), 4),
        "test_acc": round(float(test["test/acc"]), 4),
        "test_loss": round(float(test["test/loss"]), 4),
        "splits": dm.state_summary(),
    }


def main() -> None:
    import torch

    data = os.environ.get("ATTNLAB_DATA_DIR")
    if not data or not (Path(data) / "fsdd").is_dir():
        raise SystemExit("benchmark audio: set ATTNLAB_DATA_DIR to a folder holding fsdd/")
    budget = float(os.environ.get("ATTNLAB_BENCH_BUDGET_S", "1800"))
    cap = os.environ.get("ATTNLAB_BENCH_MAX_EPOCHS")
    threads = os.environ.get("ATTNLAB_BENCH_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    runs = []
    peak = None
    for arch in ("ast", "cnn"):
        print(f"audio benchmark: training {arch} for at most {budget:.0f} s", flush=True)
        runs.append(_run(arch, budget, int(cap) if cap else None))
        if arch == "ast":  # the default configuration's high-water mark
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"  {arch}: test acc {runs[-1]['test_acc']:.4f} in {runs[-1]['train_s']} s", flush=True
        )
    ast = runs[0]
    result = {
        "benchmark": "audio",
        "task": "FSDD spoken digits, official split (index 0-4 test), 10 classes",
        "budget_s_per_model": budget,
        "default_budget_s": 1800,
        "reduced_budget": budget < 1800,
        "goal": {"metric": "ast test_acc", "target": 0.97, "met": ast["test_acc"] >= 0.97},
        "runs": runs,
        "peak_rss_mb": None if peak is None else round(peak, 1),
        "environment": environment(),
    }
    rows = [
        [r["arch"], r["params"], f"{r['epochs_run']}/{r['epochs_planned']}", r["train_cpu_s"],
         r["train_s"], r["val_acc"], r["test_acc"]]
        for r in runs
    ]  # fmt: skip
    note = (
        f"Same training budget per model: {budget:.0f} CPU seconds (epochs planned from it)"
        + (
            " (reduced from the default 1800 s; see ATTNLAB_BENCH_BUDGET_S)"
            if budget < 1800
            else ""
        )
        + f". Goal: AST test accuracy >= 97 % ({'met' if result['goal']['met'] else 'not met'})."
    )
    md = "\n\n".join(
        [
            "# audio: AST vs CNN on FSDD at the same CPU budget",
            note,
            markdown_table(
                [
                    "model",
                    "params",
                    "epochs run/planned",
                    "train CPU s",
                    "wall s",
                    "val acc",
                    "test acc",
                ],
                rows,
                align=["l", "r", "r", "r", "r", "r", "r"],
            ),
            f"Peak RSS after the AST run: {result['peak_rss_mb']} MiB.",
            "## Environment",
            environment_markdown(result["environment"]),
        ]
    )
    write_results("audio", result, md)
    print(md)


if __name__ == "__main__":
    main()
