"""``benchmarks/recsys.py`` as a spec of runs: the published runs are the shipped configs with
overrides, and the tiny runs go through the runner and tabulate from their run folders."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `benchmarks` is a folder of the checkout, not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks.recsys import BENCHMARK, DATASETS, METRICS, MODELS  # noqa: E402
from benchmarks.runner import Run, RunResult, execute  # noqa: E402


def test_full_runs_are_the_shipped_configs_as_typed() -> None:
    runs = {r.name: r for r in BENCHMARK.planned("full")}
    assert len(runs) == len(DATASETS) * (len(MODELS) + 2)  # SASRec+ has three seeds
    assert all(r.needs_data and r.app == "recsys" for r in runs.values())
    # nothing added: the config's own budget, only the seed
    assert all(r.budget == {} for r in runs.values())
    for seed in (42, 1, 2):
        sasrec = runs[f"sasrec_ce-beauty-s{seed}"]
        assert sasrec.command() == f"attnlab recsys fit --config amazon --seed_everything={seed}"
    assert runs["sasrec_ce-ml-100k-s1"].configs == ("movielens",)
    assert runs["bert4rec-beauty-s42"].command() == (
        "attnlab recsys fit --config bert4rec_amazon --seed_everything=42"
    )
    assert runs["bert4rec-ml-100k-s42"].configs == ("bert4rec_movielens",)
    assert runs["cooccurrence-beauty-s42"].command() == (
        "attnlab recsys fit --config amazon --model.model=cooccurrence --seed_everything=42"
    )


def _fake(name: str, model: str, seed: int, ndcg: float) -> RunResult:
    run = Run(name=name, app="recsys", configs=("amazon",), seed=seed,
              labels={"dataset": "beauty", "data": "Beauty", "model": model})  # fmt: skip
    test = {f"test/{m}": ndcg * (2 if "hr" in m else 1) for m in METRICS}
    metrics = {"test": test, "train": {"cpu_s": 10.0, "epochs": 2.0, "steps": 5}}
    return RunResult(run, Path("."), metrics, {}, [], 0, "")


@pytest.mark.parametrize(
    ("sasrec", "met"),
    [
        ((0.064, 0.062, 0.063), True),  # ahead by .018, spread .002, targets reached
        ((0.070, 0.046, 0.050), False),  # mean above the baseline, but not by the spread
        ((0.058, 0.057, 0.059), False),  # ahead, but NDCG@10 below .060
        ((0.064, 0.063), False),  # two seeds are not enough
    ],
)
def test_the_goal_needs_the_margin_over_the_spread_and_the_targets(
    sasrec: tuple[float, ...], met: bool
) -> None:
    results = [_fake("cooc", "cooccurrence", 42, 0.044), _fake("pop", "popularity", 42, 0.005)]
    seeds = (42, 1, 2)[: len(sasrec)]
    results += [_fake(f"s{i}", "sasrec_ce", seed, v) for i, (seed, v) in
                enumerate(zip(seeds, sasrec))]  # fmt: skip
    results.append(_fake("b4r", "bert4rec", 42, 0.030))
    payload, markdown = BENCHMARK.tabulate(results)
    block = payload["datasets"]["beauty"]
    assert block["goal_met"] is met
    goal = block["sasrec_ce"]
    assert goal["best_baseline"] == "co-occurrence"
    assert goal["spread"] == pytest.approx(max(sasrec) - min(sasrec))
    assert goal["ndcg@10"] == pytest.approx(sum(sasrec) / len(sasrec))
    assert ("| met |" in markdown) is met
    assert f"--seed_everything=S (S = {', '.join(map(str, seeds))})" in markdown
    assert block["bert4rec"]["ahead"] is False and "| behind |" in markdown


def test_tiny_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATTNLAB_DATA_DIR", raising=False)
    results = execute(BENCHMARK, scale="tiny", threads=1, runs_root=tmp_path)
    assert [r.status for r in results] == ["ok", "ok"], [r.log_tail for r in results]
    payload, markdown = BENCHMARK.tabulate(results)
    json.dumps(payload)  # plain data
    rows = {row["model"]: row for row in payload["rows"]}
    assert all(row["seeds"] == [42] for row in rows.values())
    assert list(rows) == ["cooccurrence", "sasrec_ce"]  # the table's order: baselines first
    for r in results:
        row, test = rows[r.run.labels["model"]], r.metrics["test"]
        # The numbers are the run folder's test metrics (best checkpoint), not validation's.
        assert row["ndcg@10"] == test["test/ndcg@10"] and row["hr@10"] == test["test/hr@10"]
        assert row["mrr"] == test["test/mrr"] and row["hr@20"] == test["test/hr@20"]
        assert row["ndcg@10"] != r.metrics["best"]["val/ndcg@10"]
        assert 0 < row["ndcg@10"] <= row["hr@10"] <= row["hr@20"] <= 1
        assert row["command"] == r.run.command() and row["command"] in markdown
    sasrec, cooc = rows["sasrec_ce"], rows["cooccurrence"]
    assert sasrec["budget_cpu_s"] == 3 and sasrec["stopped_by"] == ["cpu_budget"]
    assert sasrec["steps"] > 1 and sasrec["train_cpu_s"] >= 3
    assert cooc["steps"] == 1 and cooc["budget_cpu_s"] is None
    best = payload["datasets"]["synthetic"]["best"]
    assert best["ndcg@10"] == max(sasrec["ndcg@10"], cooc["ndcg@10"])
    assert f"{best['ndcg@10']:.4f}" in BENCHMARK.headline(payload)
