"""Sequential recommendation on ML-100K and Amazon Beauty: leave-one-out, full ranking.

SASRec+ (full-softmax cross-entropy), SASRec-BCE (one sampled negative, the original loss) and
BERT4Rec each train for the same CPU-time budget (``time.process_time`` of this process, so a
busy machine slows the run down but does not shrink its compute; wall time is recorded too); popularity and last-item
co-occurrence are scored by the same evaluation. Every epoch is validated (NDCG@10, outside the
budget); the best epoch's weights are tested. Writes results/recsys.json and results/recsys.md.

Environment:

* ``ATTNLAB_DATA_DIR`` (required): holds ``movielens-100k/`` and ``amazon-yelp-s3rec/``.
* ``ATTNLAB_BENCH_BUDGET_S``: training CPU seconds per model on Beauty (default 1800); ML-100K gets
  ``ATTNLAB_BENCH_ML_BUDGET_S`` (default: the same).
* ``ATTNLAB_BENCH_THREADS``: torch threads (default 2).
* ``ATTNLAB_BENCH_DATASETS``: comma-separated subset of ``ml-100k,beauty``.
* ``ATTNLAB_BENCH_MODELS``: comma-separated subset of the trained models' labels (default: all).
"""

from __future__ import annotations

import copy
import os
import resource
import time
from typing import Any

import torch

from benchmarks.common import environment, environment_markdown, markdown_table, write_results

NAME = "recsys"
KS = (1, 5, 10, 20)

# Per-dataset settings shared by every model (max length as in the literature: 200 for
# MovieLens, 50 for Amazon).
SETTINGS: dict[str, dict[str, Any]] = {
    "ml-100k": {"max_len": 200, "dim": 64, "dropout": 0.2, "batch_size": 128},
    "beauty": {"max_len": 50, "dim": 64, "dropout": 0.3, "batch_size": 128},
}
MODELS: dict[str, dict[str, Any]] = {
    "SASRec+ (CE)": {"model": "sasrec", "loss": "ce"},
    "SASRec-BCE": {"model": "sasrec", "loss": "bce", "num_negatives": 1},
    "BERT4Rec": {"model": "bert4rec", "loss": "ce", "mask_prob": 0.2},
}
PUBLISHED = [
    {
        "model": "SASRec (BCE, 1 negative), pmixer/SASRec.pytorch, 100 epochs / 38 min on 2 cores",
        "data": "Beauty (S3-Rec 5-core)",
        "hr@10": 0.0565,
        "ndcg@10": 0.0283,
        "source": "measured locally, shared/docs/ANCHORS.md",
    },
    {
        "model": "SASRec with cross-entropy, max length 50",
        "data": "Beauty (S3-Rec 5-core)",
        "hr@10": 0.085,
        "ndcg@10": 0.043,
        "source": "RecBole-style runs as quoted in shared/docs/ANCHORS.md",
    },
    {
        "model": "SASRec+ (full-softmax CE)",
        "data": "ML-1M",
        "hr@10": 0.3152,
        "ndcg@10": 0.1821,
        "source": "Klenitskiy & Vasilev, RecSys 2023",
    },
]


def _evaluate(score_fn: Any, loader: Any) -> dict[str, float]:
    from attnlab_recommender.metrics import exclude_history, rank_metrics, target_ranks

    sums: dict[str, float] = {}
    n = 0
    with torch.no_grad():
        for batch in loader:
            history, target = batch["history"], batch["target"]
            scores = exclude_history(score_fn(history), history, target)
            for key, values in rank_metrics(target_ranks(scores, target), KS).items():
                sums[key] = sums.get(key, 0.0) + float(values.sum())
            n += target.shape[0]
    return {k: v / n for k, v in sums.items()}


def _train(
    dm: Any, settings: dict[str, Any], spec: dict[str, Any], budget: float
) -> dict[str, Any]:
    from attnlab_recommender.module import RecModule

    torch.manual_seed(0)
    module = RecModule(
        num_items=dm.num_items,
        max_len=settings["max_len"],
        dim=settings["dim"],
        dropout=settings["dropout"],
        attn_dropout=settings["dropout"],
        **spec,
    )
    net = module.net
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = module._bert4rec_loss if spec["model"] == "bert4rec" else module._sasrec_loss
    train_time = 0.0  # CPU seconds: the budget
    train_wall = 0.0
    eval_time = 0.0
    best: tuple[float, int, dict[str, torch.Tensor]] = (-1.0, -1, {})
    epoch = 0
    curve = []
    while train_time < budget:
        net.train()
        start, start_wall = time.process_time(), time.perf_counter()
        losses = []
        for batch in dm.train_dataloader():
            loss = loss_fn(batch["seq"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            if train_time + time.process_time() - start > budget:
                break
        train_time += time.process_time() - start
        train_wall += time.perf_counter() - start_wall
        net.eval()
        start = time.perf_counter()
        val = _evaluate(net, dm.val_dataloader())
        eval_time += time.perf_counter() - start
        curve.append(
            {
                "epoch": epoch,
                "loss": sum(losses) / max(1, len(losses)),
                "val_ndcg@10": val["ndcg@10"],
            }
        )
        print(
            f"  epoch {epoch}: loss {curve[-1]['loss']:.4f} val NDCG@10 {val['ndcg@10']:.4f} ({train_time:.0f}s)",
            flush=True,
        )
        if val["ndcg@10"] > best[0]:
            best = (val["ndcg@10"], epoch, copy.deepcopy(net.state_dict()))
        epoch += 1
    net.load_state_dict(best[2])
    net.eval()
    start = time.perf_counter()
    test = _evaluate(net, dm.test_dataloader())
    eval_time += time.perf_counter() - start
    return {
        "test": test,
        "best_epoch": best[1],
        "epochs": epoch,
        "train_time_s": round(train_time, 1),
        "train_wall_s": round(train_wall, 1),
        "eval_time_s": round(eval_time, 1),
        "val_ndcg@10": best[0],
        "curve": curve,
        "params": sum(p.numel() for p in net.parameters()),
    }


def main() -> None:
    from attnlab_recommender.baselines import CoOccurrence, Popularity
    from attnlab_recommender.data import RecDataModule
    from attnlab_recommender.metrics import PROTOCOL

    if not os.environ.get("ATTNLAB_DATA_DIR"):
        raise SystemExit(
            "recsys benchmark: set ATTNLAB_DATA_DIR to the folder with movielens-100k/ and amazon-yelp-s3rec/"
        )
    threads = int(os.environ.get("ATTNLAB_BENCH_THREADS", "2"))
    torch.set_num_threads(threads)
    budget = float(os.environ.get("ATTNLAB_BENCH_BUDGET_S", "1800"))
    ml_budget = float(os.environ.get("ATTNLAB_BENCH_ML_BUDGET_S", str(budget)))
    names = os.environ.get("ATTNLAB_BENCH_DATASETS", "ml-100k,beauty").split(",")
    wanted_models = [m for m in os.environ.get("ATTNLAB_BENCH_MODELS", "").split(",") if m]
    unknown = sorted(set(wanted_models) - set(MODELS))
    if unknown:
        raise SystemExit(
            f"recsys benchmark: unknown ATTNLAB_BENCH_MODELS {unknown}; known: {list(MODELS)}"
        )
    env = environment()
    results: dict[str, Any] = {
        "protocol": PROTOCOL,
        "budgets_s": {"beauty": budget, "ml-100k": ml_budget},
        "threads": threads,
        "settings": SETTINGS,
        "published": PUBLISHED,
        "datasets": {},
        "environment": env,
    }
    for name in names:
        settings = SETTINGS[name]
        dm = RecDataModule(dataset=name, batch_size=settings["batch_size"], eval_batch_size=512)
        dm.setup("fit")
        data = dm.load()
        rows: dict[str, Any] = {}
        print(f"{name}: {len(data.sequences)} users, {data.num_items} items", flush=True)
        for label, cls in (("popularity", Popularity), ("co-occurrence", CoOccurrence)):
            start = time.perf_counter()
            scorer = cls(dm.num_items).fit(dm.splits.train)
            fit_s = time.perf_counter() - start
            rows[label] = {
                "test": _evaluate(scorer, dm.test_dataloader()),
                "train_time_s": round(fit_s, 2),
            }
            print(f"  {label}: NDCG@10 {rows[label]['test']['ndcg@10']:.4f}", flush=True)
        for label, spec in MODELS.items():
            if wanted_models and label not in wanted_models:
                continue
            print(f" {label} on {name}", flush=True)
            rows[label] = _train(dm, settings, spec, ml_budget if name == "ml-100k" else budget)
            print(
                f"  {label}: test NDCG@10 {rows[label]['test']['ndcg@10']:.4f} HR@10 {rows[label]['test']['hr@10']:.4f}",
                flush=True,
            )
        results["datasets"][name] = {
            "users": len(data.sequences),
            "items": data.num_items,
            "interactions": sum(map(len, data.sequences)),
            "results": rows,
        }
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    write_results(NAME, results, _markdown(results, env))


def _markdown(results: dict[str, Any], env: dict[str, Any]) -> str:
    lines = [
        "# Sequential recommendation (recsys)",
        "",
        f"Protocol: {results['protocol']}. Same training budget in CPU seconds per model "
        f"(Beauty {results['budgets_s']['beauty']:.0f} s, ML-100K {results['budgets_s']['ml-100k']:.0f} s, "
        f"{results['threads']} torch threads); validation every epoch outside the budget, best epoch tested.",
        "",
    ]
    for name, block in results["datasets"].items():
        lines += [
            f"## {name} ({block['users']} users, {block['items']} items, {block['interactions']} interactions)",
            "",
        ]
        rows = []
        for label, r in block["results"].items():
            t = r["test"]
            rows.append(
                [
                    label,
                    f"{t['hr@10']:.4f}",
                    f"{t['ndcg@10']:.4f}",
                    f"{t['hr@20']:.4f}",
                    f"{t['ndcg@20']:.4f}",
                    f"{t['mrr']:.4f}",
                    f"{r['train_time_s']}",
                    str(r.get("epochs", "-")),
                ]
            )
        lines.append(
            markdown_table(
                ["model", "HR@10", "NDCG@10", "HR@20", "NDCG@20", "MRR", "train CPU s", "epochs"],
                rows,
                ["l", "r", "r", "r", "r", "r", "r", "r"],
            )
        )
        lines.append("")
    lines += ["## Published full-ranking numbers", ""]
    lines.append(
        markdown_table(
            ["model", "data", "HR@10", "NDCG@10", "source"],
            [
                [p["model"], p["data"], p["hr@10"], p["ndcg@10"], p["source"]]
                for p in results["published"]
            ],
        )
    )
    lines += [
        "",
        f"Peak RSS of the benchmark process: {results['peak_rss_mb']} MiB.",
        "",
        "## Environment",
        "",
    ]
    lines.append(environment_markdown(env))
    return "\n".join(lines) + "\n"
