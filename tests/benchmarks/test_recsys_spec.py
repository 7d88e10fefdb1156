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

from benchmarks.recsys import BENCHMARK, DATASETS, MODELS  # noqa: E402
from benchmarks.runner import execute  # noqa: E402


def test_full_runs_are_the_shipped_configs() -> None:
    runs = {r.name: r for r in BENCHMARK.planned("full")}
    assert len(runs) == len(DATASETS) * len(MODELS)
    assert all(r.needs_data and r.app == "recsys" for r in runs.values())
    sasrec = runs["sasrec_ce-beauty"]
    assert sasrec.configs == ("beauty",) and sasrec.overrides == ()
    assert sasrec.budget == {"cpu_s": 1800.0}
    assert runs["sasrec_ce-ml-100k"].budget == {"cpu_s": 150.0}
    assert "--model.loss=bce" in runs["sasrec_bce-ml-100k"].overrides
    assert runs["bert4rec-beauty"].configs == ("bert4rec_beauty",)
    assert runs["bert4rec-ml-100k"].overrides == ("--model.model=bert4rec",)
    cooc = runs["cooccurrence-beauty"]
    assert cooc.budget == {} and cooc.command().startswith(
        "attnlab recsys fit --config beauty --model.model=cooccurrence"
    )


def test_tiny_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATTNLAB_DATA_DIR", raising=False)
    results = execute(BENCHMARK, scale="tiny", threads=1, runs_root=tmp_path)
    assert [r.status for r in results] == ["ok", "ok"], [r.log_tail for r in results]
    payload, markdown = BENCHMARK.tabulate(results)
    json.dumps(payload)  # plain data
    rows = {row["model"]: row for row in payload["rows"]}
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
    assert sasrec["budget_cpu_s"] == 3 and sasrec["stopped_by"] == "cpu_budget"
    assert sasrec["steps"] > 1 and sasrec["train_cpu_s"] >= 3
    assert cooc["steps"] == 1 and cooc["budget_cpu_s"] is None
    best = payload["datasets"]["synthetic"]["best"]
    assert best["ndcg@10"] == max(sasrec["ndcg@10"], cooc["ndcg@10"])
    assert f"{best['ndcg@10']:.4f}" in BENCHMARK.headline(payload)
