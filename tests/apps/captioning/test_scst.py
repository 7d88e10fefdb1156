"""Self-critical sequence training: the fixed-frequency CIDEr-D, sampling, and a toy problem on
which the estimator must learn the caption the reward prefers."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import torch
from attnlab_captioning.metrics import CiderDScorer, cider_d
from attnlab_captioning.scst import (
    SampledCaptions,
    sample_captions,
    self_critical_loss,
    self_critical_step,
)
from torch import Tensor, nn

from .conftest import run_cli
from .test_cli import SMALL

PAD, BOS, EOS = 0, 1, 2
WORDS = ["<pad>", "<bos>", "<eos>", "a", "dog", "cat", "runs"]


def words_of(ids: list[int]) -> list[str]:
    out = []
    for i in ids:
        if i == EOS:
            break
        if i != PAD:
            out.append(WORDS[i])
    return out


class FreeDecoder(nn.Module):
    """Logits that depend only on the previous word: one learnable row per word."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.zeros(len(WORDS), len(WORDS)))

    def init_state(self, features: Tensor, use_cache: bool = True) -> dict[str, Any]:
        return {}

    def step(
        self, tokens: Tensor, state: dict[str, Any], need_attention: bool = True
    ) -> tuple[Tensor, None, dict[str, Any]]:
        logits = self.table[tokens].clone()  # (B, V)
        logits[:, BOS] = -1e4  # never <bos> or <pad>
        logits[:, PAD] = -1e4
        return logits, None, state


def test_fixed_frequency_cider_equals_the_corpus_cider_on_the_same_references() -> None:
    refs = [
        [["a", "dog", "runs"], ["a", "dog"]],
        [["a", "cat", "runs"], ["the", "cat"]],
        [["dog", "runs"]],
    ]
    preds = [["a", "dog", "runs"], ["a", "cat"], ["a", "dog"]]
    corpus_mean, per_image = cider_d(preds, refs)
    scorer = CiderDScorer(refs)
    mine = [scorer.score(p, r) for p, r in zip(preds, refs)]
    assert mine == pytest.approx(per_image)
    assert sum(mine) / 3 == pytest.approx(corpus_mean)
    with pytest.raises(ValueError, match="at least one reference set"):
        CiderDScorer([])


def test_samples_end_at_eos_and_carry_their_log_probabilities() -> None:
    torch.manual_seed(0)
    decoder = FreeDecoder()
    features = torch.zeros(16, 1, 1)
    out = sample_captions(decoder, features, bos_id=BOS, eos_id=EOS, pad_id=PAD, max_len=4)
    assert out.tokens.shape == out.log_probs.shape and out.tokens.shape[1] <= 5
    for row, logp in zip(out.tokens.tolist(), out.log_probs):
        assert EOS in row  # the last step forces <eos>
        end = row.index(EOS)
        assert all(t == PAD for t in row[end + 1 :])
        assert torch.all(logp[end + 1 :] == 0)
        assert torch.all(logp[: end + 1] < 0)  # uniform over 5 words: log(1/5) each
    out.log_probs.sum().backward()
    assert decoder.table.grad is not None and decoder.table.grad.abs().sum() > 0


def test_loss_pushes_up_captions_that_beat_the_greedy_one() -> None:
    log_probs = torch.tensor([[-1.0, -1.0], [-2.0, -0.5]], requires_grad=True)
    sampled = SampledCaptions(torch.zeros(2, 2, dtype=torch.long), log_probs)
    loss = self_critical_loss(sampled, torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0]))
    # -(1 * -2 + -1 * -2.5) / 2 = -0.25
    assert loss.item() == pytest.approx(-0.25)
    loss.backward()
    assert log_probs.grad is not None
    assert torch.all(log_probs.grad[0] < 0)  # better than greedy: its words made more likely
    assert torch.all(log_probs.grad[1] > 0)  # worse: less likely


def test_scst_learns_the_caption_the_reward_prefers() -> None:
    """Every image's references say "a dog runs"; from a uniform start, SCST alone must make
    the greedy caption exactly that."""
    torch.manual_seed(0)
    decoder = FreeDecoder()
    refs = [[["a", "dog", "runs"]]] * 32
    corpus = [*refs, [["a", "cat"]], [["cat", "runs"]]]  # some idf for every n-gram
    scorer = CiderDScorer(corpus)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=0.1)
    features = torch.zeros(32, 1, 1)
    ids = dict(bos_id=BOS, eos_id=EOS, pad_id=PAD, max_len=5)
    for _ in range(150):
        loss, _, _ = self_critical_step(decoder, features, refs, scorer, words_of, **ids)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    _, sampled_reward, greedy_reward = self_critical_step(
        decoder, features, refs, scorer, words_of, **ids
    )
    state: dict[str, Any] = {}
    prev, greedy = torch.tensor([BOS]), []
    for _ in range(6):
        logits, _, state = decoder.step(prev, state)
        prev = logits.argmax(-1)
        if int(prev) == EOS:
            break
        greedy.append(WORDS[int(prev)])
    assert greedy == ["a", "dog", "runs"]
    assert greedy_reward > 1.0
    assert sampled_reward > 0.5 * greedy_reward


def test_the_last_share_of_a_run_trains_self_critically(tmp_path: Path) -> None:
    """`--model.scst_fraction 0.5`: the first epoch is cross-entropy, the second SCST (its
    rewards logged); a share of 1 or more is one error line."""
    proc = run_cli(
        "caption",
        "fit",
        "--config",
        "quick",
        "--trainer.max_epochs",
        "2",
        *SMALL,
        "--model.scst_fraction",
        "0.5",
        "--figure_every",
        "0",
        "--run_dir",
        "run",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    with open(tmp_path / "run" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["train/xent"] and not rows[0].get("train/scst_reward")
    assert rows[-1]["train/scst_reward"] and rows[-1]["train/scst_greedy_reward"]
    bad = run_cli("caption", "fit", "--config", "quick", "--model.scst_fraction", "1", cwd=tmp_path)
    assert bad.returncode != 0
    errors = [line for line in bad.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "scst_fraction" in errors[0], bad.stderr[-2000:]
