import json
from pathlib import Path

import pytest
import torch
from attnlab_recommender import RecModule
from attnlab_recommender.baselines import CoOccurrence, Popularity
from attnlab_recommender.metrics import exclude_history, rank_metrics, target_ranks

from attnlab.app import get_app
from attnlab.cli import main

SEQS = [[1, 2, 3], [1, 2, 4], [2, 3], [4, 1, 2]]


def test_popularity_counts() -> None:
    pop = Popularity(4).fit(SEQS)
    assert pop.counts.tolist() == [0, 3, 4, 2, 2]
    assert pop(torch.zeros(3, 2, dtype=torch.long)).shape == (3, 5)


def test_cooccurrence_follows_last_item() -> None:
    cooc = CoOccurrence(4).fit(SEQS)
    scores = cooc(torch.tensor([[3, 1, 0], [4, 2, 0]]))  # last items 1 and 2
    assert scores[0].argmax().item() == 2  # 1 -> 2 three times
    assert scores[1].argmax().item() == 3  # 2 -> 3 twice, 2 -> 4 once
    assert scores[1, 3] > scores[1, 4] > scores[1, 1]


# ---------------------------------------------------------------- baselines as models of the app
SMALL = ("--data.synthetic", "{num_users: 80}")


@pytest.mark.parametrize("model", ["popularity", "cooccurrence"])
def test_baseline_fits_through_the_command_and_reloads(model: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["recsys", "fit", "--config", "quick", "--model.model", model, *SMALL]
    assert main([*args, "--run_dir", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 1 and metrics["stopped_by"] == "should_stop"
    assert metrics["test_checkpoint"] == "best"
    # The same numbers as scoring the counts by hand with the app's metrics, over the test split.
    module, dm = get_app("recsys").build(["quick"], ["--model.model", model, *SMALL])
    fresh = (Popularity if model == "popularity" else CoOccurrence)(dm.num_items).fit(
        dm.splits.train
    )
    ndcg, hr, n = 0.0, 0.0, 0
    for batch in dm.test_dataloader():
        history, target = batch["history"], batch["target"]
        scores = exclude_history(fresh(history), history, target)
        values = rank_metrics(target_ranks(scores, target), (10,))
        ndcg += float(values["ndcg@10"].sum())
        hr += float(values["hr@10"].sum())
        n += len(target)
    assert metrics["test"]["test/ndcg@10"] == pytest.approx(ndcg / n, abs=1e-6)
    assert metrics["test"]["test/hr@10"] == pytest.approx(hr / n, abs=1e-6)
    # The counts travel in the checkpoint: a reloaded baseline scores like a fresh one.
    loaded = RecModule.from_checkpoint(run / "checkpoints" / "best.ckpt")
    history = torch.tensor([[3, 4, 5, 0], [7, 0, 0, 0]])
    torch.testing.assert_close(loaded(history), fresh(history))
    torch.testing.assert_close(module(history), fresh(history))


def test_baseline_is_not_exportable_and_has_no_network() -> None:
    module = RecModule(model="cooccurrence", num_items=5)
    with pytest.raises(NotImplementedError, match="baseline"):
        module.export_model()
    with pytest.raises(ValueError, match="baseline"):
        _ = module.net
