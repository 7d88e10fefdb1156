import math

import torch
from attnlab_recommender.metrics import exclude_history, rank_metrics, sampled_ranks, target_ranks


def test_ranks_hand_worked_with_pessimistic_ties() -> None:
    # items 1..5 (col 0 = pad). User 0: target 2 scores 0.5, item 4 ties it, item 1 beats it.
    scores = torch.tensor(
        [
            [0.0, 0.9, 0.5, 0.1, 0.5, 0.2],
            [0.0, 0.3, 0.3, 0.3, 0.3, 0.3],
            [0.0, 0.1, 0.2, 0.3, 0.4, 0.9],
        ]
    )
    history = torch.tensor([[3, 0], [0, 0], [5, 0]])
    target = torch.tensor([2, 1, 4])
    s = exclude_history(scores, history, target)
    ranks = target_ranks(s, target)
    # user 0: item1 > and item4 tie -> rank 2; user 1: all five tie -> last (rank 4);
    # user 2: item 5 scores higher but is in the history -> rank 0
    assert ranks.tolist() == [2, 4, 0]
    m = rank_metrics(ranks, (1, 5))
    assert m["hr@1"].tolist() == [0.0, 0.0, 1.0]
    assert m["hr@5"].tolist() == [1.0, 1.0, 1.0]
    torch.testing.assert_close(m["ndcg@5"], torch.tensor([1 / math.log2(4), 1 / math.log2(6), 1.0]))
    torch.testing.assert_close(m["mrr"], torch.tensor([1 / 3, 1 / 5, 1.0]))


def test_constant_scores_rank_last_not_first() -> None:
    scores = torch.zeros(2, 101)
    target = torch.tensor([5, 50])
    s = exclude_history(scores, torch.zeros(2, 1, dtype=torch.long), target)
    assert target_ranks(s, target).tolist() == [99, 99]


def test_target_in_history_stays_rankable() -> None:
    scores = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    s = exclude_history(scores, torch.tensor([[3, 2]]), torch.tensor([3]))
    assert target_ranks(s, torch.tensor([3])).item() == 0
    assert torch.isinf(s[0, 2]) and torch.isinf(s[0, 0])


def test_sampled_ranks_only_count_unseen_negatives() -> None:
    scores = torch.arange(12, dtype=torch.float).repeat(2, 1)  # item i scores i
    history = torch.tensor([[11, 10], [0, 0]])
    target = torch.tensor([9, 9])
    g = torch.Generator().manual_seed(0)
    r = sampled_ranks(exclude_history(scores, history, target), target, history, 100, g)
    # user 0: every unseen item scores below 9 -> rank 0; user 1: items 10 and 11 beat it
    assert r.tolist() == [0, 2]
