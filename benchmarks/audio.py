"""Audio benchmark: the Audio Spectrogram Transformer against the CNN baseline on FSDD, and the
AST under sliding-window (``local``) attention, each trained for the same CPU time.

Every number comes from one ``attnlab audio fit`` run of a shipped config (``fsdd`` for the AST,
``fsdd_cnn`` for the CNN; both need ``ATTNLAB_DATA_DIR`` with an ``fsdd/`` folder) with
``--budget.cpu_s`` bounding the training; fit then tests its best checkpoint on the official
test split (recordings with index 0-4, 300 clips). The ``local`` run is the ``fsdd`` config with
``--model.attention.backend local --model.attention.window 6``: the config's frame patches make a
1 x 24 grid of tokens (40 ms each, hop 20 ms), so a window of 6 patches on each side covers about a
quarter of a clip; the class token stays global (the AST's default under ``local``).

Goals: AST test accuracy >= 97 %, and the AST with ``local`` within 2 points of ``sdpa`` at the
same budget. ``python -m benchmarks audio`` (``nox -s bench -- audio``) writes
``results/audio.json`` and ``.md``.
"""

from __future__ import annotations

from typing import Any

from benchmarks.runner import Benchmark, Run, RunResult, results_table

BUDGET_CPU_S = 300  # training CPU seconds per run, as in the published table
LOCAL_WINDOW = 6  # patches on each side of a query, of the fsdd config's 24
GOAL_AST = 0.97
GOAL_LOCAL_GAP_POINTS = 2.0
# The smoke scale: the quick config (generated DTMF clips) for 3 CPU seconds.
TINY_BUDGET_CPU_S = 3
TINY_OVERRIDES = ("--data.n_synthetic=240", "--figure_every=0")

MODELS = {
    "ast": "Audio Spectrogram Transformer",
    "cnn": "CNN baseline (no attention)",
}


def runs(scale: str) -> list[Run]:
    if scale == "tiny":
        return [
            Run(
                name=f"quick-{arch}",
                app="audio",
                configs=("quick",),
                overrides=(*TINY_OVERRIDES, f"--model.model={arch}"),
                budget={"cpu_s": TINY_BUDGET_CPU_S},
                labels={
                    "dataset": "quick",
                    "model": arch,
                    "attention": "sdpa" if arch == "ast" else None,
                },
            )
            for arch in ("ast", "cnn")
        ]
    local = (
        "--model.attention.backend=local",
        f"--model.attention.window={LOCAL_WINDOW}",
    )
    return [
        Run(
            name="fsdd-ast",
            app="audio",
            configs=("fsdd",),
            budget={"cpu_s": BUDGET_CPU_S},
            needs_data=True,
            labels={"dataset": "fsdd", "model": "ast", "attention": "sdpa"},
        ),
        Run(
            name="fsdd-cnn",
            app="audio",
            configs=("fsdd_cnn",),
            budget={"cpu_s": BUDGET_CPU_S},
            needs_data=True,
            labels={"dataset": "fsdd", "model": "cnn", "attention": None},
        ),
        Run(
            name="fsdd-ast-local",
            app="audio",
            configs=("fsdd",),
            overrides=local,
            budget={"cpu_s": BUDGET_CPU_S},
            needs_data=True,
            labels={
                "dataset": "fsdd",
                "model": "ast",
                "attention": f"local (window {LOCAL_WINDOW})",
            },
        ),
    ]


def _row(result: RunResult) -> dict[str, Any]:
    train = result.train
    return {
        "run": result.run.name,
        **result.run.labels,
        "command": result.run.command(),
        "test_acc": result.metric("test/acc"),
        "val_acc": (result.metrics.get("best") or {}).get("val/acc"),
        "samples_per_cpu_s": train.get("samples_per_cpu_s"),
        "train_cpu_s": train.get("cpu_s"),
        "steps": train.get("steps"),
        "epochs": train.get("epochs"),
        "stopped_by": result.stopped_by,
    }


def _find(rows: list[dict[str, Any]], model: str, sdpa: bool) -> dict[str, Any] | None:
    """The run of ``model`` with (``sdpa``) or without the default attention."""
    for row in rows:
        if row["model"] == model and (row.get("attention") in ("sdpa", None)) == sdpa:
            return row
    return None


def tabulate(results: list[RunResult]) -> tuple[dict[str, Any], str]:
    rows = [_row(r) for r in results]
    ast, local = _find(rows, "ast", True), _find(rows, "ast", False)
    ast_acc = ast["test_acc"] if ast else None
    goal = {
        "metric": "ast test accuracy",
        "target": GOAL_AST,
        "value": ast_acc,
        "met": None if ast_acc is None else ast_acc >= GOAL_AST,
    }
    gap = None
    if ast_acc is not None and local is not None and local["test_acc"] is not None:
        gap = round(100.0 * (ast_acc - local["test_acc"]), 2)
    local_goal = {
        "metric": "points of test accuracy the AST loses with local attention",
        "target": GOAL_LOCAL_GAP_POINTS,
        "value": gap,
        "met": None if gap is None else gap <= GOAL_LOCAL_GAP_POINTS,
    }
    datasets = {row["dataset"] for row in rows}
    payload = {
        "dataset": "FSDD" if datasets == {"fsdd"} else ", ".join(sorted(datasets)),
        "rows": rows,
        "goal": goal,
        "local_goal": local_goal,
    }

    def pct(value: Any) -> str:
        return "" if value is None else f"{100 * float(value):.1f} %"

    def num(value: Any, digits: int = 0) -> str:
        return "" if value is None else f"{float(value):.{digits}f}"

    by_name = {r.run.name: row for r, row in zip(results, rows)}
    table = results_table(
        results,
        {
            "run": lambda r: r.run.name,
            "model": lambda r: MODELS.get(str(r.run.labels.get("model")), "?"),
            "attention": lambda r: r.run.labels.get("attention") or "none",
            "test acc": lambda r: pct(by_name[r.run.name]["test_acc"]),
            "best val acc": lambda r: pct(by_name[r.run.name]["val_acc"]),
            "samples / CPU s": lambda r: num(by_name[r.run.name]["samples_per_cpu_s"]),
            "train CPU s": lambda r: num(by_name[r.run.name]["train_cpu_s"]),
            "epochs": lambda r: num(by_name[r.run.name]["epochs"], 1),
            "stopped by": lambda r: by_name[r.run.name]["stopped_by"] or "",
        },
        ["l", "l", "l", "r", "r", "r", "r", "r", "l"],
    )
    notes = [
        "Test accuracy of the best checkpoint (by validation accuracy) on the test split; "
        "FSDD: the official split, recordings 0-4 of every speaker and digit (300 clips).",
        f"Goal: AST test accuracy >= {100 * GOAL_AST:.0f} % ({_verdict(goal['met'])}); AST with "
        f"`local` attention within {GOAL_LOCAL_GAP_POINTS:g} points of `sdpa` at the same budget "
        f"({_verdict(local_goal['met'])}" + ("" if gap is None else f", {gap:+.1f} points") + ").",
    ]
    return payload, "\n\n".join([table, *notes])


def _verdict(met: bool | None) -> str:
    return "not measured" if met is None else ("met" if met else "not met")


def headline(payload: dict[str, Any]) -> str:
    parts = []
    for row in payload["rows"]:
        name = str(row["model"])
        if row.get("attention") not in ("sdpa", None):
            name += f" {row['attention']}"
        if row.get("test_acc") is not None:
            parts.append(f"{name} {100 * row['test_acc']:.1f} %")
    goal, local = payload["goal"], payload["local_goal"]
    text = f"{payload['dataset']} test accuracy: " + ", ".join(parts)
    text += f" (goal AST >= {100 * goal['target']:.0f} %: {_verdict(goal['met'])}"
    if local["value"] is not None:
        text += f"; local within {local['target']:g} points of sdpa: {_verdict(local['met'])}"
    return text + ")"


BENCHMARK = Benchmark(
    name="audio",
    title="audio: AST vs CNN on FSDD, and the AST with local attention, at the same CPU budget",
    runs=runs,
    tabulate=tabulate,
    headline=headline,
    anchors=(
        {
            "what": "our goal for the AST (no published AST result on FSDD)",
            "value": f">= {100 * GOAL_AST:.0f} % test accuracy",
            "protocol": "FSDD official split (recordings 0-4 test), trained from scratch, "
            f"{BUDGET_CPU_S} CPU s",
            "source": "attnlab",
        },
    ),
)
