"""ViT on Fashion-MNIST: our best preset against timm's ViT of the same size, same wall clock.

Both models get the same data (the 60,000 training images, random 2-pixel shifts and horizontal
flips done on whole batches), the same recipe (AdamW, lr 1e-3, weight decay 0.05, label
smoothing 0.1, batch 128, warmup then cosine decay driven by elapsed time, so that each run ends
its schedule exactly at the budget) and the same number of threads. The two trainings take turns
in 30-second slices, so a change in background load hits both alike. After the budget each is
scored on the 10,000 test images. Reported: test top-1, training images/s, their ratios
(ours / timm), parameters, and the peak RSS of a short training run of our preset.

Environment:

* ``ATTNLAB_DATA_DIR``: folder holding ``fashion-mnist/`` (IDX .gz files); required.
* ``ATTNLAB_BENCH_BUDGET_S``: training seconds per model (default 600).
* ``ATTNLAB_BENCH_VIT_PRESET``: our preset (default ``vit_mini_patch4_28``; the timm reference
  is built from the same configuration, so it must be a plain ViT).
* ``ATTNLAB_BENCH_VIT_OURS``: extra ``ViTConfig`` overrides for our model only, as JSON
  (default ``{}``), e.g. ``{"tokenizer": "spt", "lsa": true}`` for the small-data variant.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.common import (
    environment,
    environment_markdown,
    markdown_table,
    peak_memory,
    write_results,
)

NAME = "vit"
BATCH = 128
LR = 1e-3
WEIGHT_DECAY = 0.05
SMOOTHING = 0.1
WARMUP = 0.05
SLICE_S = 30.0  # the models take turns in slices of this many seconds of training


def _data() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    from attnlab_vit.data import STATS, read_idx_folder

    from attnlab.datasets import data_root

    root = data_root(None, "fashion-mnist")
    if root is None:
        raise SystemExit("error: set ATTNLAB_DATA_DIR to a folder holding fashion-mnist/")
    (mean,), (std,) = STATS["fashion_mnist"]
    out = {}
    for split, (x, y) in read_idx_folder(root).items():
        images = (torch.from_numpy(x.copy()).float().div(255).sub(mean).div(std)).unsqueeze(1)
        out[split] = (images, torch.from_numpy(y))  # (N, 1, 28, 28), (N,)
    return out


def _augment(x: torch.Tensor, gen: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Random shift by up to ``pad`` pixels (one per batch) and a random flip per image."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), value=float(x.min()))
    dy, dx = torch.randint(0, 2 * pad + 1, (2,), generator=gen).tolist()
    x = padded[:, :, dy : dy + h, dx : dx + w]
    flip = torch.rand(b, generator=gen) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def _build(backbone: str, preset: str, overrides: dict[str, Any]) -> torch.nn.Module:
    from attnlab_vit.model import VisionTransformer, preset_config, timm_vit

    torch.manual_seed(0)
    cfg = preset_config(preset, **(overrides if backbone == "attnlab" else {}))
    return VisionTransformer(cfg) if backbone == "attnlab" else timm_vit(cfg)


def _lr_factor(frac: float) -> float:
    if frac < WARMUP:
        return max(frac / WARMUP, 1e-3)
    progress = min(1.0, (frac - WARMUP) / (1 - WARMUP))
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def _evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(y), 500):
        correct += (model(x[i : i + 500]).argmax(-1) == y[i : i + 500]).sum().item()
    return correct / len(y)


class BudgetedTraining:
    """One model's training run, advanced in slices of wall-clock time.

    The two models take turns (``advance``), so a change in background load during the
    benchmark hits both alike instead of whichever ran second; each model's budget and schedule
    count only its own training time.
    """

    def __init__(
        self, model: torch.nn.Module, data: dict[str, Any], budget_s: float, seed: int = 0
    ) -> None:
        from attnlab.module import param_groups

        self.model, self.data, self.budget_s = model, data, budget_s
        self.opt = torch.optim.AdamW(param_groups(model, WEIGHT_DECAY), lr=LR)
        self.gen = torch.Generator().manual_seed(seed)
        self.order = torch.empty(0, dtype=torch.long)
        self.cursor = 0
        self.images = self.steps = 0
        self.elapsed = 0.0
        self.losses: list[float] = []

    @property
    def done(self) -> bool:
        return self.elapsed >= self.budget_s

    def _next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.data["train"]
        if self.cursor + BATCH > len(self.order):  # a new epoch: reshuffle, drop the remainder
            self.order, self.cursor = torch.randperm(len(y), generator=self.gen), 0
        idx = self.order[self.cursor : self.cursor + BATCH]
        self.cursor += BATCH
        return _augment(x[idx], self.gen), y[idx]

    def advance(self, slice_s: float) -> None:
        """Train until this run's own clock reaches ``elapsed + slice_s`` (or the budget)."""
        stop = min(self.budget_s, self.elapsed + slice_s)
        self.model.train()
        start = time.perf_counter() - self.elapsed
        while self.elapsed < stop:
            for group in self.opt.param_groups:
                group["lr"] = LR * _lr_factor(self.elapsed / self.budget_s)
            xb, yb = self._next_batch()
            loss = F.cross_entropy(self.model(xb), yb, label_smoothing=SMOOTHING)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.images += len(yb)
            self.steps += 1
            self.losses.append(loss.item())
            self.elapsed = time.perf_counter() - start

    def result(self) -> dict[str, Any]:
        top1 = _evaluate(self.model, *self.data["test"])
        last = self.losses[-50:]
        return {
            "train_seconds": round(self.elapsed, 1),
            "steps": self.steps,
            "images_seen": self.images,
            "epochs": round(self.images / len(self.data["train"][1]), 3),
            "train_images_per_s": round(self.images / max(self.elapsed, 1e-9), 1),
            "final_train_loss_avg_last_50": round(sum(last) / max(1, len(last)), 4),
            "test_top1": round(top1, 4),
        }


def train_interleaved(
    runs: dict[str, BudgetedTraining], slice_s: float = SLICE_S
) -> dict[str, dict[str, Any]]:
    """Advance every run in turn by ``slice_s`` seconds until all budgets are spent."""
    while not all(run.done for run in runs.values()):
        for label, run in runs.items():
            if not run.done:
                run.advance(slice_s)
                print(
                    f"  {label}: {run.elapsed:.0f}/{run.budget_s:.0f} s, {run.steps} steps, "
                    f"loss {sum(run.losses[-20:]) / max(1, len(run.losses[-20:])):.3f}",
                    flush=True,
                )
    return {label: run.result() for label, run in runs.items()}


def memory_case(preset: str, overrides: dict[str, Any], steps: int = 20) -> Any:
    """For ``peak_memory``: a model and a batch; the callable trains ``steps`` steps."""
    model = _build("attnlab", preset, overrides)
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    x = torch.randn(BATCH, 1, 28, 28)
    y = torch.randint(0, 10, (BATCH,))

    def run() -> dict[str, Any]:
        for _ in range(steps):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return {"steps": steps, "batch": BATCH}

    return run


def main() -> None:
    budget = float(os.environ.get("ATTNLAB_BENCH_BUDGET_S", "600"))
    preset = os.environ.get("ATTNLAB_BENCH_VIT_PRESET", "vit_mini_patch4_28")
    overrides = json.loads(os.environ.get("ATTNLAB_BENCH_VIT_OURS", "{}") or "{}")
    env = environment()
    data = _data()
    trainings: dict[str, BudgetedTraining] = {}
    models: dict[str, torch.nn.Module] = {}
    for label, backbone in (("ours", "attnlab"), ("timm", "timm")):
        models[label] = _build(backbone, preset, overrides)
        params = sum(p.numel() for p in models[label].parameters())
        print(
            f"{label}: {type(models[label]).__module__} {params:,} parameters, {budget:.0f} s",
            flush=True,
        )
        trainings[label] = BudgetedTraining(models[label], data, budget)
    runs: dict[str, Any] = train_interleaved(trainings)
    for label, model in models.items():
        runs[label]["parameters"] = sum(p.numel() for p in model.parameters())
        runs[label]["model"] = f"{type(model).__module__}.{type(model).__qualname__}"
        print(f"{label}: {runs[label]}", flush=True)
    ours, ref = runs["ours"], runs["timm"]
    ratios = {
        "test_top1_ours_over_timm": round(ours["test_top1"] / max(ref["test_top1"], 1e-9), 4),
        "train_images_per_s_ours_over_timm": round(
            ours["train_images_per_s"] / max(ref["train_images_per_s"], 1e-9), 4
        ),
    }
    memory = peak_memory("benchmarks.vit:memory_case", {"preset": preset, "overrides": overrides})
    results = {
        "benchmark": NAME,
        "dataset": "Fashion-MNIST (60,000 train / 10,000 test, IDX from ATTNLAB_DATA_DIR)",
        "budget_s_per_model": budget,
        "preset": preset,
        "ours_overrides": overrides,
        "recipe": {
            "batch": BATCH,
            "lr": LR,
            "weight_decay": WEIGHT_DECAY,
            "label_smoothing": SMOOTHING,
            "warmup_fraction_of_budget": WARMUP,
            "schedule": "warmup + cosine over each model's own training time",
            "interleaving": f"the models take turns in {SLICE_S:.0f} s slices of training",
            "augmentation": "random shift <= 2 px (per batch), horizontal flip (per image)",
        },
        "runs": runs,
        "ratios": ratios,
        "peak_rss_ours_20_training_steps": memory.to_dict(),
        "environment": env,
    }
    rows = [
        [
            label,
            f"{r['parameters']:,}",
            f"{r['test_top1']:.4f}",
            f"{r['train_images_per_s']:.1f}",
            r["epochs"],
            r["steps"],
        ]
        for label, r in runs.items()
    ]
    md = [
        "# ViT on Fashion-MNIST: ours vs timm, same wall-clock budget",
        "",
        f"Preset `{preset}` (ours, overrides {json.dumps(overrides)}) vs timm's "
        f"`VisionTransformer` of the same configuration; **{budget:.0f} s of training each** on "
        "this CPU (the two take turns in "
        f"{SLICE_S:.0f} s slices, so background load hits both alike), then the full 10,000-image "
        "test set.",
        "",
        markdown_table(
            ["model", "parameters", "test top-1", "train img/s", "epochs", "steps"],
            rows,
            ["l", "r", "r", "r", "r", "r"],
        ),
        "",
        f"Ratios (ours / timm): test top-1 {ratios['test_top1_ours_over_timm']}, training "
        f"images/s {ratios['train_images_per_s_ours_over_timm']}.",
        "",
        f"Peak RSS increase, 20 training steps of ours at batch {BATCH}: "
        f"{memory.increase_mb} MiB (peak {memory.peak_mb} MiB).",
        "",
        "Reference (ANCHORS.md): timm d128/depth 6/4 heads/patch 4 reached 79.8% after 10 min "
        "(2.8 epochs, 280 img/s) on a 2-core machine like ours.",
        "",
        "## Environment",
        "",
        environment_markdown(env),
    ]
    write_results(NAME, results, "\n".join(md))
    print(json.dumps({"runs": runs, "ratios": ratios}, indent=2))
