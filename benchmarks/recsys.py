"""Sequential recommendation on MovieLens 100K and Amazon Beauty: leave-one-out, full ranking.

Every number comes from an ``attnlab recsys fit`` run of a shipped config as a user types it,
its CPU budget included (``budget: {cpu_s: ...}`` in the config: the fit stops there and the
learning rate's cosine runs over it): ``movielens`` (dense, long histories) on ML-100K and
``amazon`` (sparse, short histories) on Beauty. Per dataset:

* SASRec+ (full-softmax cross-entropy): the config as shipped, three seeds (mean ± std);
* BERT4Rec with its own settings: ``--config bert4rec_movielens`` / ``bert4rec_amazon``;
* popularity and last-item co-occurrence: ``--model.model=popularity|cooccurrence``, models of
  the app counted from the training sequences (no optimisation, no randomness: one run each),
  scored by the same evaluation.

Validation runs every epoch inside the budget, and the weights of the best validation epoch
(NDCG@10) are tested. The goal (issue #21): SASRec+ ahead of both baselines on each dataset by
more than its seeds' spread (max - min), and on Beauty NDCG@10 >= .060 and HR@10 >= .095.

``runs("tiny")``: SASRec+ (3 CPU seconds) and co-occurrence on the quick config's generated
sessions, for the test that runs every benchmark end to end.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from benchmarks.common import markdown_table, mean_std
from benchmarks.runner import Benchmark, Run, RunResult

NAME = "recsys"

# dataset -> (label, config of the SASRec runs and the baselines, BERT4Rec's config)
DATASETS: dict[str, tuple[str, str, str]] = {
    "ml-100k": ("ML-100K", "movielens", "bert4rec_movielens"),
    "beauty": ("Beauty", "amazon", "bert4rec_amazon"),
}
# model -> (label, overrides on the dataset's SASRec config); bert4rec takes its own config.
MODELS: dict[str, tuple[str, tuple[str, ...]]] = {
    "popularity": ("popularity", ("--model.model=popularity",)),
    "cooccurrence": ("co-occurrence", ("--model.model=cooccurrence",)),
    "sasrec_ce": ("SASRec+ (CE)", ()),
    "bert4rec": ("BERT4Rec", ()),
}
COUNTED = ("popularity", "cooccurrence")
# The goal rows get three seeds; the other trained models one (each Beauty run is 30 CPU min).
SEEDS: dict[str, tuple[int, ...]] = {"sasrec_ce": (42, 1, 2)}
DEFAULT_SEEDS = (42,)
MIN_SEEDS = 3  # the goal is judged over at least this many seeds
# Beauty's absolute goal (test, mean over seeds).
TARGETS: dict[str, dict[str, float]] = {"beauty": {"ndcg@10": 0.060, "hr@10": 0.095}}
METRICS = ("hr@10", "ndcg@10", "hr@20", "ndcg@20", "mrr")

PROTOCOL = (
    "leave-one-out (last item test, second-to-last validation), full ranking over all items, "
    "history items excluded, ties counted against the model; best-validation weights tested"
)
TINY_PROTOCOL = (
    "the quick config's generated sessions (taste drift over 12 item clusters), SASRec+ for 3 CPU "
    "seconds: a check of the path, not a result"
)

ANCHORS: tuple[dict[str, Any], ...] = (
    {
        "what": "SASRec+ (full-softmax cross-entropy), ML-1M",
        "value": "HR@10 .3152, NDCG@10 .1821",
        "hr@10": 0.3152,
        "ndcg@10": 0.1821,
        "protocol": "leave-one-out, full ranking, max length 200",
        "source": "Klenitskiy & Vasilev, 'Turning Dross Into Gold Loss: is BERT4Rec really better "
        "than SASRec?', RecSys 2023",
    },
    {
        "what": "BERT4Rec, ML-1M",
        "value": "HR@10 .2843, NDCG@10 .1537",
        "hr@10": 0.2843,
        "ndcg@10": 0.1537,
        "protocol": "same",
        "source": "Klenitskiy & Vasilev, RecSys 2023",
    },
    {
        "what": "SASRec (BCE, one negative), ML-1M",
        "value": "HR@10 .2500, NDCG@10 .1341",
        "hr@10": 0.25,
        "ndcg@10": 0.1341,
        "protocol": "same",
        "source": "Klenitskiy & Vasilev, RecSys 2023",
    },
    {
        "what": "gSASRec (256 negatives, gBCE t=.75), ML-1M",
        "value": "HR@10 .3003, NDCG@10 .1726",
        "hr@10": 0.3003,
        "ndcg@10": 0.1726,
        "protocol": "leave-one-out, full ranking",
        "source": "Petrov & Macdonald, 'gSASRec: Reducing Overconfidence in Sequential "
        "Recommendation Trained with Negative Sampling', RecSys 2023",
    },
    {
        "what": "SASRec (BCE, one negative) on a 2-core CPU, Beauty (S3-Rec 5-core)",
        "value": "HR@10 .0565, NDCG@10 .0283 (HR@20 .0887, NDCG@20 .0363)",
        "hr@10": 0.0565,
        "ndcg@10": 0.0283,
        "protocol": "our protocol (full ranking, history excluded, ties against the model); max "
        "length 50, d=50, 2 blocks, dropout .5, 100 epochs in 38 minutes",
        "source": "github.com/pmixer/SASRec.pytorch (Kang & McAuley, ICDM 2018), run by us",
    },
    {
        "what": "SASRec with cross-entropy, Beauty (S3-Rec 5-core)",
        "value": "about HR@10 .085, NDCG@10 .043",
        "hr@10": 0.085,
        "ndcg@10": 0.043,
        "protocol": "leave-one-out, full ranking, max length 50",
        "source": "RecBole-style runs (github.com/RUCAIBox/RecBole, Zhao et al., CIKM 2021)",
    },
)


# --------------------------------------------------------------------------------------------
# runs
# --------------------------------------------------------------------------------------------


def _run(dataset: str, model: str, seed: int) -> Run:
    label, config, bert = DATASETS[dataset]
    configs = (bert,) if model == "bert4rec" else (config,)
    return Run(
        name=f"{model}-{dataset}-s{seed}",
        app="recsys",
        configs=configs,
        overrides=MODELS[model][1],
        seed=seed,
        needs_data=True,
        labels={"dataset": dataset, "data": label, "model": model},
    )


def _tiny(model: str) -> Run:
    return Run(
        name=f"{model}-tiny",
        app="recsys",
        configs=("quick",),
        overrides=(*MODELS[model][1], "--data.synthetic={num_users: 400}", "--figure_every=0"),
        budget={} if model in COUNTED else {"cpu_s": 3},
        labels={"dataset": "synthetic", "data": "generated sessions", "model": model},
    )


def runs(scale: str) -> list[Run]:
    if scale == "tiny":
        return [_tiny("sasrec_ce"), _tiny("cooccurrence")]
    return [
        _run(dataset, model, seed)
        for dataset in DATASETS
        for model in MODELS
        for seed in SEEDS.get(model, DEFAULT_SEEDS)
    ]


# --------------------------------------------------------------------------------------------
# tabulating
# --------------------------------------------------------------------------------------------


def _seed_pattern(command: str, seeds: tuple[int, ...]) -> str:
    """One command for a row of seeds: ``--seed_everything=S`` with S listed."""
    if len(seeds) == 1:
        return command
    pattern = command.replace(f"--seed_everything={seeds[0]}", "--seed_everything=S")
    return f"{pattern} (S = {', '.join(map(str, seeds))})"


def _row(runs: list[RunResult]) -> dict[str, Any]:
    """One model on one dataset: every metric's mean ± std over its seeds."""
    first = runs[0].run
    model = first.labels["model"]
    seeds = tuple(r.run.seed for r in runs)
    row: dict[str, Any] = {
        "dataset": first.labels["dataset"],
        "model": model,
        "label": MODELS[model][0],
        "seeds": list(seeds),
    }
    for m in METRICS:
        values = [r.metric(f"test/{m}") for r in runs]
        mean, std = mean_std(values)
        row[m] = mean
        row[f"{m}_std"] = std
        row[f"{m}_values"] = values
    row.update(
        {
            "best_val_ndcg@10": mean_std(
                (r.metrics.get("best") or {}).get("val/ndcg@10") for r in runs
            )[0],
            "budget_cpu_s": (runs[0].metrics.get("budget") or {}).get("cpu_s"),
            "train_cpu_s": mean_std(r.train.get("cpu_s") for r in runs)[0],
            "epochs": mean_std(r.train.get("epochs") for r in runs)[0],
            "steps": mean_std(r.train.get("steps") for r in runs)[0],
            "stopped_by": sorted({str(r.stopped_by) for r in runs}),
            "command": _seed_pattern(first.command(), seeds),
            "runs": [r.run.name for r in runs],
        }
    )
    return row


def _num(value: Any, digits: int = 4) -> str:
    return "" if value is None else f"{float(value):.{digits}f}"


def _mean_pm(row: Mapping[str, Any], metric: str) -> str:
    if row[metric] is None:
        return ""
    if len(row["seeds"]) == 1:
        return _num(row[metric])
    return f"{_num(row[metric])} ± {_num(row[f'{metric}_std'])}"


def _spread(row: Mapping[str, Any], metric: str) -> float:
    values = [v for v in row[f"{metric}_values"] if v is not None]
    return max(values) - min(values) if values else 0.0


def _ahead(row: Mapping[str, Any] | None, rows: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Is ``row`` ahead of every baseline on NDCG@10 by more than its seeds' spread?"""
    baselines = [rows[b] for b in COUNTED if b in rows and rows[b]["ndcg@10"] is not None]
    if row is None or row["ndcg@10"] is None or not baselines:
        return {"ahead": None}
    best = max(baselines, key=lambda b: b["ndcg@10"])
    margin = row["ndcg@10"] - best["ndcg@10"]
    spread = _spread(row, "ndcg@10")
    return {
        "ndcg@10": row["ndcg@10"],
        "seeds": row["seeds"],
        "best_baseline": best["label"],
        "best_baseline_ndcg@10": best["ndcg@10"],
        "margin": margin,
        "spread": spread,
        "ahead": margin > spread,
    }


def tabulate(results: list[RunResult]) -> tuple[dict[str, Any], str]:
    order = {m: i for i, m in enumerate(MODELS)}
    present = {r.run.labels["dataset"] for r in results}
    datasets = [d for d in (*DATASETS, "synthetic") if d in present]
    tiny = datasets == ["synthetic"]
    payload: dict[str, Any] = {
        "protocol": TINY_PROTOCOL if tiny else PROTOCOL,
        "budget_cpu_s": {},
        "datasets": {},
        "rows": [],
    }
    lines = [f"Protocol: {payload['protocol']}.", ""]
    goal_rows = []
    for dataset in datasets:
        groups: dict[str, list[RunResult]] = {}
        for r in results:
            if r.run.labels["dataset"] == dataset:
                groups.setdefault(r.run.labels["model"], []).append(r)
        rows = {m: _row(groups[m]) for m in sorted(groups, key=order.__getitem__)}
        payload["rows"] += list(rows.values())
        budgets = {
            rows[m]["label"]: rows[m]["budget_cpu_s"]
            for m in rows
            if m not in COUNTED and rows[m]["budget_cpu_s"] is not None
        }
        payload["budget_cpu_s"][dataset] = budgets
        best = max(
            (row for row in rows.values() if row["ndcg@10"] is not None),
            key=lambda row: row["ndcg@10"],
            default=None,
        )
        block: dict[str, Any] = {
            "rows": [name for row in rows.values() for name in row["runs"]],
            "best": None if best is None else {"model": best["label"], "ndcg@10": best["ndcg@10"],
                                               "hr@10": best["hr@10"]},
            "sasrec_ce": _ahead(rows.get("sasrec_ce"), rows),
            "bert4rec": _ahead(rows.get("bert4rec"), rows),
        }  # fmt: skip
        targets = TARGETS.get(dataset, {})
        sasrec = rows.get("sasrec_ce")
        if targets and sasrec is not None:
            block["targets"] = {m: {"target": t, "mean": sasrec[m]} for m, t in targets.items()}
        ahead = block["sasrec_ce"]["ahead"]
        block["goal_met"] = (
            None
            if ahead is None
            else bool(ahead)
            and len(sasrec["seeds"]) >= MIN_SEEDS
            and all(sasrec[m] is not None and sasrec[m] >= t for m, t in targets.items())
        )
        payload["datasets"][dataset] = block
        title = "generated sessions" if dataset == "synthetic" else DATASETS[dataset][0]
        lines += [f"## {title}", ""]
        if budgets:
            lines += [
                "CPU budget per trained model (the config's): "
                + ", ".join(f"{k} {v:.0f} s" for k, v in budgets.items())
                + "; popularity and co-occurrence are counted.",
                "",
            ]
        lines += [
            markdown_table(
                ["model", "seeds", *[m.upper() for m in METRICS], "train CPU s", "epochs",
                 "command"],
                [
                    [row["label"], len(row["seeds"]), *[_mean_pm(row, m) for m in METRICS],
                     _num(row["train_cpu_s"], 0), _num(row["epochs"], 1), f"`{row['command']}`"]
                    for row in rows.values()
                ],
                ["l", "r", *["r"] * len(METRICS), "r", "r", "l"],
            ),
            "",
        ]  # fmt: skip
        for model in ("sasrec_ce", "bert4rec"):
            g, row = block[model], rows.get(model)
            if row is None or g["ahead"] is None:
                continue
            if model == "sasrec_ce":
                target_text = ", ".join(
                    f"{m.upper()} {row[m]:.4f} (target {t:.3f})" for m, t in targets.items()
                )
                verdict = "met" if block["goal_met"] else "NOT met"
            else:  # the issue asks BERT4Rec to be ahead of the baselines, or why not
                target_text = ""
                verdict = "ahead" if g["ahead"] else "behind"
            goal_rows.append(
                [
                    title,
                    row["label"],
                    len(row["seeds"]),
                    _mean_pm(row, "ndcg@10"),
                    f"{g['best_baseline']} {g['best_baseline_ndcg@10']:.4f}",
                    f"{g['margin']:+.4f}",
                    f"{g['spread']:.4f}",
                    target_text or "-",
                    verdict,
                ]
            )
    if goal_rows and not tiny:
        lines += [
            "## Goal",
            "",
            f"SASRec+ over at least {MIN_SEEDS} seeds ahead of popularity and co-occurrence by "
            "more than its seeds' spread (max - min of test NDCG@10); on Beauty also the mean "
            "NDCG@10 and HR@10 at their targets. BERT4Rec: ahead of both baselines or not.",
            "",
            markdown_table(
                ["data", "model", "seeds", "test NDCG@10", "best baseline", "margin",
                 "seeds' spread", "targets", "goal"],
                goal_rows,
                ["l", "l", "r", "r", "l", "r", "r", "l", "l"],
            ),
            "",
        ]  # fmt: skip
    if not tiny:
        lines += [
            "## Published full-ranking numbers",
            "",
            markdown_table(
                ["model, data", "HR@10", "NDCG@10", "protocol", "source"],
                [
                    [a["what"], a["hr@10"], a["ndcg@10"], a["protocol"], a["source"]]
                    for a in ANCHORS
                ],
            ),
        ]
    return payload, "\n".join(lines)


def headline(payload: Mapping[str, Any]) -> str:
    parts = []
    for dataset, block in payload["datasets"].items():
        name = "generated sessions" if dataset == "synthetic" else DATASETS[dataset][0]
        sasrec = block.get("sasrec_ce") or {}
        if sasrec.get("ahead") is not None:
            seeds = len(sasrec["seeds"])
            parts.append(
                f"{name} SASRec+ NDCG@10 {sasrec['ndcg@10']:.4f} (mean of {seeds} seed"
                f"{'s' if seeds > 1 else ''}) vs {sasrec['best_baseline']} "
                f"{sasrec['best_baseline_ndcg@10']:.4f}"
            )
        elif block["best"] is not None:
            best = block["best"]
            parts.append(
                f"{name} {best['model']} NDCG@10 {best['ndcg@10']:.4f}, HR@10 {best['hr@10']:.4f}"
            )
    return f"recsys, test NDCG@10 by full ranking: {'; '.join(parts)}"


BENCHMARK = Benchmark(
    name=NAME,
    title="Sequential recommendation: ML-100K and Beauty, full ranking",
    runs=runs,
    tabulate=tabulate,
    headline=headline,
    anchors=ANCHORS,
)
