"""ETTh1 long-horizon forecasting under a CPU budget: PatchTST-style, iTransformer-style, DLinear.

Protocol (ANCHORS.md): ETTh1, task M (7 variates to 7), split by rows [0, 8640),
[8640 - L, 11520), [11520 - L, 14400), z-scored with the training rows' statistics, MSE/MAE on the
normalized scale over every test window (no drop_last). Horizons 96/192/336/720. Each run trains
with AdamW and a cosine learning rate over its CPU-time budget, validates after every epoch and
is tested with the weights of its best validation epoch (validation runs after every full
epoch; a run whose budget ends inside its first epoch is tested as it stands).

The budget is CPU time of this process (``time.process_time``), not wall-clock time, so runs on
a shared machine get the same compute whatever else is running; both times are recorded.

Environment:
    ATTNLAB_DATA_DIR          folder holding ett/ETTh1.csv (required)
    ATTNLAB_BENCH_BUDGET_S    training CPU seconds per run: one number for every model, or
                              per model as 'patchtst=600,itransformer=300' (the others keep
                              theirs). Default per model, DEFAULT_BUDGETS_S: PatchTST 1680, the
                              28 minutes that PatchTST's own code took for 30 epochs on a 2-core
                              machine; the smaller models less, as they stop improving long
                              before
    ATTNLAB_BENCH_RECIPES     JSON merged into RECIPES, e.g. '{"dlinear": {"seq_len": 720}}'
                              (recorded in the results)
    ATTNLAB_BENCH_MODELS      comma list (default patchtst,itransformer,dlinear,dlinear_revin)
    ATTNLAB_BENCH_HORIZONS    comma list (default 96,192,336,720)
    ATTNLAB_BENCH_THREADS     torch threads (default: all usable cores)
"""

from __future__ import annotations

import copy
import json
import math
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.common import environment, environment_markdown, markdown_table, write_results

NAME = "forecast"

# Published MSE / MAE on ETTh1 (ANCHORS.md), full test set unless noted.
PUBLISHED: dict[str, dict[int, float]] = {
    "PatchTST/42 re-run, full test set (L=336)": {96: 0.385, 192: 0.413, 336: 0.440, 720: 0.456},
    "FITS, full test set (L=720)": {96: 0.372, 192: 0.404, 336: 0.427, 720: 0.424},
    "DLinear, full test set (L=336)": {96: 0.384, 192: 0.443, 336: 0.446, 720: 0.504},
    "iTransformer, paper (L=96)": {96: 0.386, 192: 0.441, 336: 0.487, 720: 0.503},
}
LOCAL_PATCHTST_96 = 0.3794  # PatchTST's own code, 30 epochs in 28 min on a 2-core machine

# Settings close to each model's published ETTh1 recipe, with learning rates raised for short
# CPU budgets.
RECIPES: dict[str, dict[str, Any]] = {
    "patchtst": dict(
        seq_len=336,
        batch_size=128,
        lr=1e-3,
        model=dict(
            dim=16,
            depth=3,
            num_heads=4,
            mlp_ratio=8.0,
            dropout=0.3,
            head_dropout=0.0,
            patch_len=16,
            stride=8,
            norm="batch",
            revin=True,
        ),
    ),
    "itransformer": dict(
        seq_len=96,
        batch_size=32,
        lr=2e-4,
        model=dict(dim=128, depth=2, num_heads=8, mlp_ratio=1.0, dropout=0.1, revin=True),
    ),
    "dlinear": dict(
        seq_len=336,
        batch_size=32,
        lr=5e-3,
        model=dict(kernel_size=25, revin=False),
    ),
    # DLinear with reversible instance normalization (RevIN), as RLinear (Li et al. 2023) pairs
    # a linear map with it: each window is forecast in its own scale, which the distribution
    # shift between ETTh1's training and test months rewards.
    # Its learning rate is chosen per horizon on the validation split from two candidates (one
    # run each, each with the full budget): DLinear's 5e-3 and 1e-3.
    "dlinear_revin": dict(
        arch="dlinear",
        seq_len=336,
        batch_size=32,
        lr=[1e-3, 5e-3],
        model=dict(kernel_size=25, revin=True),
    ),
}


# Training CPU seconds per run. DLinear (a few thousand weights) and iTransformer (input 96)
# reach their best validation error within a fraction of PatchTST's budget.
DEFAULT_BUDGETS_S: dict[str, float] = {
    "patchtst": 1680.0,
    "itransformer": 600.0,
    "dlinear": 120.0,
    "dlinear_revin": 120.0,
}


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``extra``, nested dicts merged key by key."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(out.get(key), dict) else value
    return out


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@torch.no_grad()
def _evaluate(model: torch.nn.Module, loader: Any) -> tuple[float, float, int]:
    """MSE and MAE over every window of the loader (sums, then one division)."""
    model.eval()
    sq = ab = 0.0
    count = n = 0
    for batch in loader:
        err = (model(batch["x"]) - batch["y"]).double()
        sq += float(err.square().sum())
        ab += float(err.abs().sum())
        count += err.numel()
        n += len(err)
    return sq / count, ab / count, n


def run_one(
    name: str, horizon: int, root: Path, budget_s: float, seed: int = 2021
) -> dict[str, Any]:
    """Train and test one model at one horizon. A recipe whose ``lr`` is a list trains once per
    learning rate (each with ``budget_s``) and keeps the run with the lowest validation MSE; its
    CPU and wall times are the sums over the candidates."""
    lrs = RECIPES[name]["lr"]
    if not isinstance(lrs, list):
        return _run_lr(name, horizon, root, budget_s, float(lrs), seed)
    runs = [_run_lr(name, horizon, root, budget_s, float(lr), seed) for lr in lrs]
    best = min(runs, key=lambda r: math.inf if r["best_val_mse"] is None else r["best_val_mse"])
    totals = {
        key: round(sum(r[key] for r in runs), 1)
        for key in ("train_cpu_seconds", "train_wall_seconds", "total_seconds")
    }
    candidates = [{"lr": r["lr"], "best_val_mse": r["best_val_mse"]} for r in runs]
    return {**best, **totals, "lr_candidates": candidates}


def _run_lr(
    name: str, horizon: int, root: Path, budget_s: float, lr: float, seed: int
) -> dict[str, Any]:
    from attnlab_forecasting.data import ForecastData
    from attnlab_forecasting.model import build_model, count_parameters

    recipe = {**RECIPES[name], "lr": lr}
    torch.manual_seed(seed)
    dm = ForecastData(
        dataset="etth1",
        root=str(root),
        seq_len=recipe["seq_len"],
        pred_len=horizon,
        batch_size=recipe["batch_size"],
        eval_batch_size=256,
        seed=seed,
    )
    dm.setup("fit")
    model = build_model(
        recipe.get("arch", name),
        seq_len=recipe["seq_len"],
        pred_len=horizon,
        channels=7,
        **recipe["model"],
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe["lr"], weight_decay=0.0)
    train_loader, val_loader = dm.train_dataloader(), dm.val_dataloader()
    start, cpu0 = time.perf_counter(), time.process_time()
    best = (math.inf, copy.deepcopy(model.state_dict()), 0)
    epochs = steps = 0
    done = False
    while not done:
        model.train()
        for batch in train_loader:
            elapsed = time.process_time() - cpu0
            if elapsed >= budget_s:
                done = True
                break
            for group in optimizer.param_groups:  # cosine over the CPU budget
                group["lr"] = recipe["lr"] * 0.5 * (1 + math.cos(math.pi * elapsed / budget_s))
            loss = F.mse_loss(model(batch["x"]), batch["y"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
        else:
            epochs += 1
        if epochs == 0:  # stopped inside the first epoch: nothing to choose between
            best = (math.nan, model.state_dict(), 0)
            break
        val_mse, _, _ = _evaluate(model, val_loader)
        if val_mse < best[0]:
            best = (val_mse, copy.deepcopy(model.state_dict()), epochs)
        print(
            f"  {name} H={horizon}: epoch {epochs} step {steps} val MSE {val_mse:.4f} "
            f"(cpu {time.process_time() - cpu0:.0f}s)",
            flush=True,
        )
    train_s = time.perf_counter() - start
    train_cpu = time.process_time() - cpu0
    model.load_state_dict(best[1])
    mse, mae, windows = _evaluate(model, dm.test_dataloader())
    return {
        "model": name,
        "horizon": horizon,
        "seq_len": recipe["seq_len"],
        "lr": lr,
        "test_mse": round(mse, 4),
        "test_mae": round(mae, 4),
        "test_windows": windows,
        "expected_windows": (14400 - (11520 - recipe["seq_len"])) - recipe["seq_len"] - horizon + 1,
        "best_val_mse": None if math.isnan(best[0]) else round(best[0], 4),
        "epochs_completed": epochs,
        "steps": steps,
        "train_cpu_seconds": round(train_cpu, 1),
        "train_wall_seconds": round(train_s, 1),
        "total_seconds": round(time.perf_counter() - start, 1),
        "parameters": count_parameters(model),
        "recipe": {k: v for k, v in recipe.items()},
        "peak_rss_mb_so_far": round(_peak_rss_mb(), 1),
    }


def _markdown(results: list[dict[str, Any]], meta: dict[str, Any], env: dict[str, Any]) -> str:
    horizons = sorted({r["horizon"] for r in results})
    rows = []
    for r in results:
        rows.append(
            [
                r["model"],
                r["seq_len"],
                r["horizon"],
                f"{r['lr']:g}" + ("*" if r.get("lr_candidates") else ""),
                f"{r['test_mse']:.4f}",
                f"{r['test_mae']:.4f}",
                r["test_windows"],
                r["epochs_completed"],
                r["steps"],
                f"{r['train_cpu_seconds']:.0f}",
                f"{r['train_wall_seconds']:.0f}",
            ]
        )
    ours = markdown_table(
        [
            "model",
            "L",
            "H",
            "lr",
            "MSE",
            "MAE",
            "test windows",
            "epochs",
            "steps",
            "train CPU s",
            "wall s",
        ],
        rows,
        ["l", "r", "r", "r", "r", "r", "r", "r", "r", "r", "r"],
    )
    chosen = [r for r in results if r.get("lr_candidates")]
    if chosen:
        picks = "; ".join(
            f"{r['model']} H={r['horizon']}: "
            + ", ".join(f"{c['lr']:g} -> {c['best_val_mse']}" for c in r["lr_candidates"])
            for r in chosen
        )
        ours += (
            "\n\n\\* learning rate chosen on the validation split, one full-budget run per "
            f"candidate (train CPU s and wall s are their sums). Validation MSE: {picks}."
        )
    pub_rows = [[k, *(f"{v[h]:.3f}" for h in horizons)] for k, v in PUBLISHED.items()]
    best_rows = []
    for h in horizons:
        got = [r for r in results if r["horizon"] == h]
        if got:
            b = min(got, key=lambda r: r["test_mse"])
            best_rows.append(
                f"H={h}: best here {b['model']} {b['test_mse']:.4f} vs PatchTST "
                f"re-run {PUBLISHED['PatchTST/42 re-run, full test set (L=336)'][h]:.3f}"
            )
    budgets = ", ".join(f"{m} {b:.0f} s" for m, b in meta["budget_s_per_model"].items())
    lines = [
        "# Forecasting: ETTh1 under a CPU budget",
        "",
        f"Protocol: {meta['protocol']}",
        "",
        f"**Budget: CPU seconds of training per run: {budgets}** (PatchTST's own code, the "
        f"ANCHORS.md reference, ran 28 minutes on 2 cores). {meta['budget_note']}",
        *(
            [f"Recipe overrides (ATTNLAB_BENCH_RECIPES): `{json.dumps(meta['recipe_overrides'])}`"]
            if meta.get("recipe_overrides")
            else []
        ),
        "",
        "## Results (normalized scale, every test window)"
        + (
            "" if meta["complete"] else f" — partial: {len(results)} of {meta['runs_planned']} runs"
        ),
        "",
        ours,
        "",
        "## Published (ANCHORS.md)",
        "",
        markdown_table(["source", *(f"MSE @{h}" for h in horizons)], pub_rows),
        "",
        f"PatchTST's own code on a 2-core machine, H=96, 28 min: MSE {LOCAL_PATCHTST_96}.",
        "",
        *[f"- {b}" for b in best_rows],
        "",
        f"Peak RSS of the whole benchmark process: {meta['peak_rss_mb']:.0f} MiB.",
        "",
        "## Environment",
        "",
        environment_markdown(env),
    ]
    return "\n".join(lines)


def _budgets(spec: str, models: list[str]) -> dict[str, float]:
    """CPU seconds per model from ``ATTNLAB_BENCH_BUDGET_S``: empty (the defaults), one number
    (every model) or ``name=seconds`` pairs (those models; the rest keep their defaults)."""
    budgets = {m: DEFAULT_BUDGETS_S[m] for m in models if m in DEFAULT_BUDGETS_S}
    spec = spec.strip()

    def seconds(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not value > 0:  # also refuses nan
            raise SystemExit(
                f"forecast benchmark: ATTNLAB_BENCH_BUDGET_S={spec!r}: {text.strip()!r} is not a "
                "positive number of seconds; use e.g. 600 or patchtst=600,itransformer=300"
            )
        return value

    if not spec:
        return budgets
    if "=" not in spec:
        return {m: seconds(spec) for m in budgets}
    for item in spec.split(","):
        name, _, text = (part.strip() for part in item.partition("="))
        if name not in DEFAULT_BUDGETS_S:
            raise SystemExit(
                f"forecast benchmark: ATTNLAB_BENCH_BUDGET_S names unknown model {name!r}; "
                f"known: {list(DEFAULT_BUDGETS_S)}"
            )
        value = seconds(text)
        if name in budgets:  # a model left out by ATTNLAB_BENCH_MODELS is not run
            budgets[name] = value
    return budgets


def main() -> None:
    root_env = os.environ.get("ATTNLAB_DATA_DIR")
    if not root_env or not (Path(root_env) / "ett" / "ETTh1.csv").is_file():
        print("error: set ATTNLAB_DATA_DIR to a folder holding ett/ETTh1.csv", file=sys.stderr)
        raise SystemExit(2)
    root = Path(root_env) / "ett"
    budget_env = os.environ.get("ATTNLAB_BENCH_BUDGET_S")
    models = os.environ.get(
        "ATTNLAB_BENCH_MODELS", "patchtst,itransformer,dlinear,dlinear_revin"
    ).split(",")
    budgets = _budgets(budget_env or "", models)
    overrides = json.loads(os.environ.get("ATTNLAB_BENCH_RECIPES", "{}") or "{}")
    unknown = sorted(set(models) - set(RECIPES)) + sorted(set(overrides) - set(RECIPES))
    if unknown:
        raise SystemExit(f"forecast benchmark: unknown models {unknown}; known: {list(RECIPES)}")
    for name, extra in overrides.items():
        RECIPES[name] = _merge(RECIPES[name], extra)
    horizons = [
        int(h) for h in os.environ.get("ATTNLAB_BENCH_HORIZONS", "96,192,336,720").split(",")
    ]
    threads = os.environ.get("ATTNLAB_BENCH_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    env = environment()
    reduced = [m for m in models if budgets[m] < DEFAULT_BUDGETS_S[m]]
    note = (
        f"Reduced budgets for {', '.join(reduced)} (ATTNLAB_BENCH_BUDGET_S): short of what these "
        "models reach with the default."
        if reduced
        else "The default budgets."
    )
    planned = [(h, name.strip()) for h in horizons for name in models]
    results: list[dict[str, Any]] = []
    for h, name in planned:
        print(f"== {name} H={h} (budget {budgets[name]:.0f} CPU s)", flush=True)
        results.append(run_one(name, h, root, budgets[name]))
        r = results[-1]
        print(
            f"   test MSE {r['test_mse']:.4f} MAE {r['test_mae']:.4f} over "
            f"{r['test_windows']} windows",
            flush=True,
        )
        # Written after every run, so an interrupted benchmark still leaves what it measured.
        meta = {
            "dataset": "ETTh1 (ett/ETTh1.csv under ATTNLAB_DATA_DIR)",
            "protocol": "task M, rows [0, 8640) / [8640-L, 11520) / [11520-L, 14400), z-score "
            "with train statistics, MSE/MAE on the normalized scale, every test window scored "
            "(no drop_last), best-validation weights tested",
            "budget_s_per_model": budgets,
            "recipe_overrides": overrides,
            "budget_kind": "CPU seconds (time.process_time) of training per run",
            "budget_note": note,
            "complete": len(results) == len(planned),
            "runs_planned": len(planned),
            "peak_rss_mb": round(_peak_rss_mb(), 1),
            "published_mse": {k: {str(h): v for h, v in d.items()} for k, d in PUBLISHED.items()},
            "patchtst_local_2core_h96_mse": LOCAL_PATCHTST_96,
        }
        data = {"benchmark": NAME, "environment": env, **meta, "results": results}
        json_path, md_path = write_results(NAME, data, _markdown(results, meta, env))
    print(f"wrote {json_path} and {md_path}", flush=True)


if __name__ == "__main__":
    main()
