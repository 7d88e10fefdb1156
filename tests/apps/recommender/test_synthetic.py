import numpy as np
import pytest
import torch
from attnlab_recommender.synthetic import TasteDrift


def test_oracle_is_a_distribution_over_unseen_items() -> None:
    gen = TasteDrift(num_users=50, seed=1)
    hist = torch.tensor([[1, 5, 40, 0], [100, 101, 102, 103]])
    p = gen.oracle_scores(hist)
    torch.testing.assert_close(p.sum(1), torch.ones(2))
    assert p[0, [0, 1, 5, 40]].abs().sum() == 0


def test_oracle_matches_generator_frequencies() -> None:
    gen = TasteDrift(
        num_users=3000, num_clusters=4, items_per_cluster=12, min_len=3, max_len=3, seed=2
    )
    seqs = gen.generate()
    # empirical P(second item | first item) for first item 1 vs the oracle
    follow = [s[1] for s in seqs if s[0] == 1]
    emp = np.bincount(follow, minlength=gen.num_items + 1) / len(follow)
    oracle = gen.oracle_scores(torch.tensor([[1]]))[0].numpy()
    assert len(follow) > 200
    assert np.abs(emp - oracle).max() < 0.06


def test_bad_generator_settings() -> None:
    with pytest.raises(ValueError, match="items_per_cluster"):
        TasteDrift(max_len=40, items_per_cluster=30)
