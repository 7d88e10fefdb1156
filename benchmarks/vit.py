"""ViT on Fashion-MNIST: the shipped config against timm's plain ViT of equal parameter count.

Two runs of the shipped ``fashion_mnist`` config, one at a time with two threads (the whole
machine), each stopped by the config's own budget of 600 wall seconds (``budget.wall_s``, the
warmup + cosine schedule stretched over it; validation inside the loop counted):

* ours: ``attnlab vit fit --config fashion_mnist``, nothing else on the command line (the
  config's model, ``cct_2_3x3_28``: a convolutional tokenizer and two transformer blocks built
  from ``attention_core``, sequence pooling);
* timm: the same command with ``--model.backbone timm --model.model vit_pico_patch4_28``, timm's
  own ``VisionTransformer`` (patch 4) with as many parameters, trained with the same recipe, data
  pipeline, seed and budget.

Goal (the issue's): ours >= 91 % test top-1 and >= 5 points above timm. The best-validation
checkpoint is tested on the 10,000 test images.

Reported per run, all read from its folder: test top-1, training images per CPU second and per
wall second (the ``train`` block), epochs and steps, trainable parameters (the manifest's count),
the validation-accuracy curve against training wall seconds (one ``metrics.csv`` row per epoch),
and the ours / timm ratios.
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import markdown_table
from benchmarks.runner import Benchmark, Run, RunResult, results_table

TINY_CPU_S = 3.0
GOAL_TOP1, GOAL_MARGIN = 0.91, 0.05
# timm's plain ViT with the parameter count of the config's model (96,747 vs 95,174).
TIMM = ("--model.backbone=timm", "--model.model=vit_pico_patch4_28")
# Ours with sliding-window attention on the 4 x 4 token grid: a window of one grid row each side.
# Full scale only (the tiny test keeps two runs).
LOCAL = ("ours_local", ("--model.attention.backend=local", "--model.attention.window=4"))
DATA = {
    "fashion_mnist": "Fashion-MNIST (54,000 train / 6,000 validation / 10,000 test)",
    "quick": "scikit-learn digits (quick config)",
}


def runs(scale: str) -> list[Run]:
    if scale == "full":  # the config's budget: nothing added to its command
        config, budget, extra, timm = "fashion_mnist", {}, (), TIMM
    else:  # tiny: seconds on the built-in digits (a plain ViT preset), no figures
        config, budget, extra = "quick", {"cpu_s": TINY_CPU_S}, ("--figure_every=0",)
        timm = ("--model.backbone=timm",)
    models = [("ours", ()), ("timm", timm)] + ([LOCAL] if scale == "full" else [])
    return [
        Run(
            name=name,
            app="vit",
            configs=(config,),
            overrides=(*overrides, *extra),
            budget=budget,
            needs_data=config != "quick",
            labels={"model": name, "data": DATA[config]},
        )
        for name, overrides in models
    ]


# --------------------------------------------------------------------------------------------
# reading the run folders
# --------------------------------------------------------------------------------------------


def _num(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None  # NaN -> None


def _parameters(r: RunResult) -> int | None:
    """Trainable parameters (an EMA copy, when a config keeps one, is not trained)."""
    for key in ("num_trainable_parameters", "num_parameters"):
        value = _num(r.manifest.get(key))
        if value is not None:
            return round(value)
    return None


def _curve(r: RunResult) -> list[dict[str, Any]]:
    """One point per epoch (``metrics.csv`` row): validation top-1 against the training CPU and
    wall seconds used by the end of that epoch."""
    points = []
    for row in r.epochs:
        top1, step = _num(row.get("val/top1")), _num(row.get("step"))
        if top1 is None or step is None:
            continue
        points.append(
            {
                "epoch": int(_num(row.get("epoch")) or 0),
                "step": int(step),
                "cpu_s": _num(row.get("train_cpu_s")),
                "wall_s": _num(row.get("train_wall_s")),
                "val_top1": round(top1, 4),
            }
        )
    return points


def _model(r: RunResult) -> dict[str, Any]:
    train = r.train
    samples, cpu, wall = (_num(train.get(k)) for k in ("samples", "cpu_s", "wall_s"))
    top1 = _num(r.metric("test/top1"))
    return {
        "run": r.run.name,
        "command": r.run.command(),
        "data": r.run.labels.get("data"),
        "test_top1": None if top1 is None else round(top1, 4),
        "train_samples_per_cpu_s": _num(train.get("samples_per_cpu_s")),
        "train_samples_per_s": round(samples / wall, 1) if samples and wall else None,
        "train_cpu_s": cpu,
        "train_wall_s": wall,
        "steps": train.get("steps"),
        "epochs": _num(train.get("epochs")),
        "num_parameters": _parameters(r),
        "stopped_by": r.stopped_by,
        "budget": {k: v for k, v in (r.metrics.get("budget") or r.run.budget).items() if v},
        "curve": _curve(r),
    }


def _ratio(ours: dict[str, Any] | None, timm: dict[str, Any] | None, key: str) -> float | None:
    a, b = (None if m is None else _num(m.get(key)) for m in (ours, timm))
    return round(a / b, 4) if a is not None and b else None


def tabulate(results: list[RunResult]) -> tuple[dict[str, Any], str]:
    models = {r.run.labels["model"]: _model(r) for r in results}
    ours, timm = models.get("ours"), models.get("timm")
    ratios = {
        key: _ratio(ours, timm, key)
        for key in ("test_top1", "train_samples_per_cpu_s", "train_samples_per_s", "num_parameters")
    }
    payload = {"models": models, "ratios": ratios}

    def cell(r: RunResult, key: str, fmt: str) -> str:
        value = models[r.run.labels["model"]].get(key)
        return "" if value is None else format(value, fmt)

    table = results_table(
        results,
        {
            "model": lambda r: r.run.labels["model"],
            "parameters": lambda r: cell(r, "num_parameters", ","),
            "test top-1": lambda r: cell(r, "test_top1", ".4f"),
            "train img/CPU-s": lambda r: cell(r, "train_samples_per_cpu_s", ".1f"),
            "train img/s": lambda r: cell(r, "train_samples_per_s", ".1f"),
            "epochs": lambda r: cell(r, "epochs", ".2f"),
            "steps": lambda r: cell(r, "steps", "d"),
            "stopped by": lambda r: r.stopped_by or "",
        },
        ["l", "r", "r", "r", "r", "r", "r", "l"],
    )
    data = next((m["data"] for m in models.values() if m.get("data")), "")
    budget: dict[str, float] = next((m["budget"] for m in models.values()), {})
    clocks = {"cpu_s": "CPU s", "wall_s": "wall s"}
    shown = ", ".join(f"{v:g} {clocks.get(k, k)}" for k, v in budget.items())
    ratio_text = ", ".join(
        f"{label} {ratios[key]}" if ratios[key] is not None else f"{label} n/a"
        for key, label in (
            ("test_top1", "test top-1"),
            ("train_samples_per_cpu_s", "training images per CPU second"),
            ("num_parameters", "parameters"),
        )
    )
    curve_rows = [
        [
            name,
            p["epoch"],
            p["step"],
            "" if p["wall_s"] is None else f"{p['wall_s']:.0f}",
            "" if p["cpu_s"] is None else f"{p['cpu_s']:.0f}",
            f"{p['val_top1']:.4f}",
        ]
        for name, m in models.items()
        for p in m["curve"]
    ]
    payload["goal"] = _goal(ours, timm)
    body = "\n\n".join(
        [
            f"{data}; {shown} of training per model (validation included), one run at a time; "
            "ours is the shipped config as it is, timm's plain `VisionTransformer` has the same "
            "parameter count and is trained by the same command with "
            f"`{' '.join(TIMM)}`; test top-1 of the best-validation checkpoint.",
            table,
            f"Ratios (ours / timm): {ratio_text}.",
            payload["goal"]["text"],
            _local_line(models),
            "Validation top-1 at the end of each epoch, against the training wall and CPU "
            "seconds used:",
            markdown_table(
                ["model", "epoch", "step", "train wall s", "train CPU s", "val top-1"],
                curve_rows,
                ["l", "r", "r", "r", "r", "r"],
            ),
        ]
    )
    return payload, body


def _goal(ours: dict[str, Any] | None, timm: dict[str, Any] | None) -> dict[str, Any]:
    """The issue's goal: ours >= 91 % test top-1 and >= 5 points above timm's."""
    top1 = (ours or {}).get("test_top1")
    other = (timm or {}).get("test_top1")
    if top1 is None or other is None:
        return {"met": None, "text": "Goal (ours >= 91 % and >= 5 points above timm): n/a."}
    margin = top1 - other
    met = top1 >= GOAL_TOP1 and margin >= GOAL_MARGIN
    return {
        "met": met,
        "margin": round(margin, 4),
        "text": f"Goal (ours >= {100 * GOAL_TOP1:.0f} % and >= {100 * GOAL_MARGIN:.0f} points "
        f"above timm): ours {100 * top1:.1f} %, {100 * margin:+.1f} points: "
        + ("met." if met else "NOT met."),
    }


def _local_line(models: dict[str, dict[str, Any]]) -> str:
    """Sliding-window attention (class token global) against full attention, same budget."""
    ours, local = models.get("ours") or {}, models.get("ours_local") or {}
    if ours.get("test_top1") is None or local.get("test_top1") is None:
        return ""
    gap = 100 * (ours["test_top1"] - local["test_top1"])
    verdict = "within" if abs(gap) <= 1.0 else "outside"
    return (
        f"Local attention (window 4): test top-1 {local['test_top1']:.4f}, "
        f"{abs(gap):.1f} points {'below' if gap >= 0 else 'above'} full attention ({verdict} "
        "the 1-point goal; one seed each)."
    )


def headline(payload: dict[str, Any]) -> str:
    models = payload["models"]

    def part(name: str, label: str) -> str:
        m = models.get(name) or {}
        top1, speed = m.get("test_top1"), m.get("train_samples_per_cpu_s")
        text = f"{label} test top-1 " + ("n/a" if top1 is None else f"{100 * top1:.1f} %")
        return text + ("" if speed is None else f", {speed:.0f} train img/CPU-s")

    goal = payload.get("goal") or {}
    verdict = {True: " (goal: met)", False: " (goal: NOT met)"}.get(goal.get("met"), "")
    return (
        f"{part('ours', 'CCT (fashion_mnist config)')}; "
        f"{part('timm', 'timm plain ViT, same parameters and budget:')}{verdict}"
    )


BENCHMARK = Benchmark(
    name="vit",
    title="ViT on Fashion-MNIST: the shipped config vs timm's plain ViT, same parameters and "
    "budget",
    runs=runs,
    tabulate=tabulate,
    headline=headline,
    default_threads=2,  # wall-clock budgets: one run at a time on the whole machine
    anchors=(
        {
            "what": "timm VisionTransformer d128 / depth 6 / 4 heads / patch 4 (0.8M parameters) "
            "on Fashion-MNIST, test top-1",
            "value": "79.8 % after 10 min (2.8 epochs, 280 img/s)",
            "protocol": "60,000 train / 10,000 test images, AdamW + cosine, label smoothing, "
            "shift and flip, 10 min wall clock on a 2-core CPU",
            "source": "huggingface/pytorch-image-models (timm), measured by this project",
        },
        {
            "what": "ViT from scratch (0.2-0.8M parameters) on Fashion-MNIST, test top-1",
            "value": "92.3 %",
            "protocol": "trained to convergence (many epochs), not under a 10-minute budget",
            "source": "s-chh/PyTorch-Scratch-Vision-Transformer-ViT (README)",
        },
    ),
)
