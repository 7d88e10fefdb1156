"""The recsys benchmark's training loop and job runner, on the built-in taste-drift data.

The real run needs ML-100K and Beauty (``ATTNLAB_DATA_DIR``); the pieces it is built from are
exercised here for real, on a few hundred generated sessions and budgets of a few CPU seconds.
"""

from __future__ import annotations

import pytest

from benchmarks import recsys

SMALL = {"dataset": "synthetic", "synthetic": {"num_users": 200}}
SETTINGS = {"max_len": 30, "dim": 16, "dropout": 0.1, "batch_size": 64, "lr": 3e-3}


def _dataset(budget: float, **settings: object) -> dict[str, object]:
    return {"data": SMALL, "settings": {**SETTINGS, **settings}, "budget": budget}


def test_cosine_schedule_anneals_over_the_cpu_budget() -> None:
    dm = recsys._datamodule(SMALL, 64)
    spec = recsys.MODELS["SASRec+ (CE)"]
    constant = recsys._train(dm, SETTINGS, spec, budget=1.5)
    cosine = recsys._train(dm, {**SETTINGS, "lr_schedule": "cosine"}, spec, budget=1.5)
    assert constant["lr_end"] == pytest.approx(3e-3)
    # the last step starts just before the budget runs out, where the cosine is near zero
    assert cosine["lr_end"] < 0.3 * 3e-3
    for row in (constant, cosine):
        assert row["train_time_s"] < 1.5 + 1.0  # stops within a step of the budget
        assert {"val_ndcg@10", "val_hr@10"} <= set(row["curve"][0])


def test_unknown_schedule_is_refused() -> None:
    dm = recsys._datamodule(SMALL, 64)
    with pytest.raises(ValueError, match="lr_schedule"):
        recsys._train(dm, {**SETTINGS, "lr_schedule": "cos"}, recsys.MODELS["SASRec+ (CE)"], 1.0)


def test_worker_processes_train_every_model_on_every_dataset() -> None:
    models = {k: recsys.MODELS[k] for k in ("SASRec+ (CE)", "BERT4Rec")}
    out = recsys.run({"tiny": _dataset(1.0)}, models, threads=1, jobs=2)
    rows = out["tiny"]["results"]
    assert list(rows) == ["popularity", "co-occurrence", "SASRec+ (CE)", "BERT4Rec"]
    for label in models:
        assert rows[label]["epochs"] >= 1
        assert 0.0 <= rows[label]["test"]["ndcg@10"] <= rows[label]["test"]["hr@10"] <= 1.0
    assert out["tiny"]["users"] == 200
