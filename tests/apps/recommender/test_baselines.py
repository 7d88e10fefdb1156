import torch
from attnlab_recommender.baselines import CoOccurrence, Popularity

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
