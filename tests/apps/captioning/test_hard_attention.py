"""Stochastic hard attention (``hard_attention.py``): the estimator learns a known best location,
the attention gets its gradient only from the REINFORCE term when sampling, the baseline moves
as the paper's, inference reads the argmax location, and the command trains and draws with it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from attnlab_captioning.decoding import generate
from attnlab_captioning.hard_attention import HardAttentionLSTMDecoder, HardAttentionTrace
from attnlab_captioning.model import CaptionerConfig
from attnlab_captioning.module import CaptionModule

from attnlab.cli import main

VOCAB, GRID, DIM = 8, 9, 16  # toy words, grid locations, feature width
BOS, PAD = VOCAB + 1, VOCAB + 2


def _decoder(**kw: float) -> HardAttentionLSTMDecoder:
    return HardAttentionLSTMDecoder(VOCAB + 3, DIM, 16, 32, 16, dropout=0.0, **kw)  # type: ignore[arg-type]


def _toy_batch(
    best: int, word_code: torch.Tensor, place_code: torch.Tensor, batch: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every location holds a random word's code plus its own place code; the target word is
    the one at ``best``: only reading that location predicts it."""
    words = torch.randint(0, VOCAB, (batch, GRID))  # (B, N)
    features = word_code[words] + place_code  # (B, N, D)
    tokens = torch.stack([torch.full((batch,), BOS), words[:, best]], 1)  # (B, 2): <bos>, word
    return features, tokens


def _train_toy(reinforce_weight: float, steps: int = 300) -> float:
    """Train on the toy task, always sampling; the mean attention on the best location after."""
    torch.manual_seed(0)
    best = 4
    word_code, place_code = torch.randn(VOCAB, DIM), torch.randn(GRID, DIM)
    decoder = _decoder(expected_context_prob=0.0)
    opt = torch.optim.Adam(decoder.parameters(), lr=1e-2)
    for _ in range(steps):
        features, tokens = _toy_batch(best, word_code, place_code)
        trace = decoder.trace(features, tokens[:, :1])
        xent = F.cross_entropy(trace.logits.flatten(0, 1), tokens[:, 1])
        terms = decoder.reinforce(trace, tokens[:, 1:], PAD, reinforce_weight, 0.0)
        opt.zero_grad()
        (xent + terms.loss).backward()
        opt.step()
    decoder.eval()
    features, tokens = _toy_batch(best, word_code, place_code, batch=256)
    with torch.no_grad():
        trace = decoder.trace(features, tokens[:, :1])
    return trace.alphas[:, 0, best].mean().item()


def test_the_estimator_learns_the_one_location_that_predicts_the_word() -> None:
    """Sampling every location (no expected context), REINFORCE with the moving baseline puts
    over 0.9 of the attention on the only informative location; without the REINFORCE term the
    attention has no signal at all and stays near uniform (1/9)."""
    assert _train_toy(reinforce_weight=1.0) > 0.9
    assert _train_toy(reinforce_weight=0.0) < 0.3


def test_trace_shapes_and_sampled_reads_are_one_hot() -> None:
    torch.manual_seed(0)
    decoder = _decoder(expected_context_prob=0.5).train()
    features, tokens = torch.randn(64, GRID, DIM), torch.randint(0, VOCAB, (64, 5))
    trace = decoder.trace(features, tokens)
    assert trace.logits.shape == (64, 5, VOCAB + 3) and torch.isfinite(trace.logits).all()
    assert trace.alphas.shape == trace.weights.shape == (64, 5, GRID)
    assert trace.locations.shape == (64, 5) and trace.sampled.shape == (64,)
    torch.testing.assert_close(trace.alphas.sum(-1), torch.ones(64, 5))
    one_hot = F.one_hot(trace.locations, GRID).float()  # (B, T, N)
    sampled = trace.sampled
    assert 0 < int(sampled.sum()) < 64  # about half the images read the expected context
    torch.testing.assert_close(trace.weights[sampled], one_hot[sampled])
    torch.testing.assert_close(trace.weights[~sampled], trace.alphas[~sampled])


def _attention_grads(decoder: HardAttentionLSTMDecoder) -> list[torch.Tensor | None]:
    assert decoder.attention is not None
    return [p.grad for p in decoder.attention.parameters()]


def test_sampled_attention_gets_its_gradient_only_from_the_reinforce_term() -> None:
    torch.manual_seed(0)
    decoder = _decoder(expected_context_prob=0.0).train()
    features = torch.randn(8, GRID, DIM, requires_grad=True)
    tokens = torch.randint(0, VOCAB, (8, 4))
    trace = decoder.trace(features, tokens[:, :-1])
    xent = F.cross_entropy(trace.logits.flatten(0, 1), tokens[:, 1:].flatten())
    xent.backward(retain_graph=True)
    assert all(g is None or not g.any() for g in _attention_grads(decoder))
    assert features.grad is not None and features.grad.abs().sum() > 0  # the read feature
    decoder.reward_baseline.fill_(-10.0)  # a baseline far from the reward: a large advantage
    decoder.baseline_updates.fill_(1)
    decoder.reinforce(trace, tokens[:, 1:], PAD, 1.0, 0.0).loss.backward()
    assert all(g is not None and g.abs().sum() > 0 for g in _attention_grads(decoder))
    # Reading the expected context instead, the cross-entropy reaches the attention itself.
    decoder.zero_grad()
    decoder.expected_context_prob = 1.0
    trace = decoder.trace(features, tokens[:, :-1])
    F.cross_entropy(trace.logits.flatten(0, 1), tokens[:, 1:].flatten()).backward()
    assert all(g is not None and g.abs().sum() > 0 for g in _attention_grads(decoder))


_WEIGHTS = {"reinforce_weight": 0.5, "entropy_weight": 0.1}


def test_reinforce_terms_on_a_hand_worked_trace() -> None:
    """Two one-word captions over a 2-location grid, uniform word logits (log p(y|s) = log 1/2
    each), baseline 0: the surrogate -lambda_r sum_b (R_b - 0) log alpha_b[s_b] / 2 words has
    that gradient (its value is 0), the bonus is -lambda_e sum_b H[alpha_b] / 2."""
    decoder = _decoder().train()
    decoder.baseline_updates.fill_(1)  # b = 0 is the current baseline, not a fresh one
    scores = torch.tensor([[[0.0, 0.0]], [[0.0, math.log(3.0)]]], requires_grad=True)
    alphas = scores.softmax(-1)  # (B=2, T=1, N=2): (1/2, 1/2) and (1/4, 3/4)
    trace = HardAttentionTrace(
        logits=torch.zeros(2, 1, 2),
        weights=alphas,
        alphas=alphas,
        locations=torch.tensor([[0], [1]]),
        sampled=torch.tensor([True, True]),
    )
    terms = decoder.reinforce(trace, torch.tensor([[0], [1]]), pad_id=-100, **_WEIGHTS)
    r = math.log(0.5)
    entropy = [math.log(2.0), -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))]
    assert terms.loss.item() == pytest.approx(-0.1 * sum(entropy) / 2, rel=1e-5)
    # d/d scores of -lambda_r R log softmax(scores)[s] / 2 = -lambda_r R (onehot(s) - alpha) / 2;
    # the entropy bonus at the uniform first row has zero gradient, at the second row:
    # d(-H)/d score_j = alpha_j (log alpha_j + H).
    terms.loss.backward()
    assert scores.grad is not None
    h2 = entropy[1]
    reinforce = [[-0.5 * r * (1 - 0.5) / 2, -0.5 * r * (0 - 0.5) / 2],
                 [-0.5 * r * (0 - 0.25) / 2, -0.5 * r * (1 - 0.75) / 2]]  # fmt: skip
    bonus = [[0.0, 0.0], [0.1 * a * (math.log(a) + h2) / 2 for a in (0.25, 0.75)]]
    expected = torch.tensor([[[reinforce[b][j] + bonus[b][j] for j in range(2)]] for b in range(2)])
    torch.testing.assert_close(scores.grad, expected, rtol=1e-5, atol=1e-6)
    assert terms.reward.item() == pytest.approx(r)
    assert terms.entropy.item() == pytest.approx(sum(entropy) / 2)
    assert terms.baseline.item() == 0.0  # the advantage used b before this batch
    assert decoder.reward_baseline.item() == pytest.approx(0.1 * r)  # 0.9 * 0 + 0.1 * R


def test_the_baseline_starts_at_the_first_reward_and_moves_by_the_decay() -> None:
    torch.manual_seed(0)
    decoder = _decoder(expected_context_prob=0.0, baseline_decay=0.9).train()
    features, tokens = torch.randn(8, GRID, DIM), torch.randint(0, VOCAB, (8, 4))
    first = decoder.reinforce(decoder.trace(features, tokens[:, :-1]), tokens[:, 1:], PAD, 1, 0)
    assert first.baseline.item() == pytest.approx(first.reward.item())  # zero mean advantage
    second = decoder.reinforce(decoder.trace(features, tokens[:, :-1]), tokens[:, 1:], PAD, 1, 0)
    assert second.baseline.item() == pytest.approx(first.reward.item())
    moved = 0.9 * first.reward.item() + 0.1 * second.reward.item()
    assert decoder.reward_baseline.item() == pytest.approx(moved, rel=1e-5)
    decoder.eval()  # evaluation never moves it
    decoder.reinforce(decoder.trace(features, tokens[:, :-1]), tokens[:, 1:], PAD, 1, 0)
    assert decoder.reward_baseline.item() == pytest.approx(moved, rel=1e-5)


def test_inference_reads_the_argmax_location_and_reports_it_one_hot() -> None:
    torch.manual_seed(0)
    decoder = _decoder().eval()
    features = torch.randn(3, GRID, DIM)
    out = generate(decoder, features, bos_id=BOS, eos_id=0, pad_id=PAD, max_len=5)
    assert out.attention is not None
    rows = out.attention.flatten(0, 1)  # (B*T, N)
    assert set(rows.unique().tolist()) <= {0.0, 1.0} and (rows.sum(-1) == 1).all()
    again = generate(decoder, features, bos_id=BOS, eos_id=0, pad_id=PAD, max_len=5)
    assert torch.equal(out.tokens, again.tokens)  # deterministic: no sampling at inference
    trace = decoder.trace(features, torch.full((3, 1), BOS))
    assert torch.equal(trace.locations[:, 0], trace.alphas[:, 0].argmax(-1))


def test_bad_settings_are_one_line_errors() -> None:
    with pytest.raises(ValueError, match=r"--model\.expected_context_prob 1\.5: a probability"):
        CaptionModule(decoder="lstm_hard_attention", expected_context_prob=1.5)
    with pytest.raises(ValueError, match=r"--model\.baseline_decay 1\.0: use a value in \[0, 1\)"):
        CaptionerConfig(baseline_decay=1.0)


def test_fit_trains_logs_the_reinforce_terms_and_draws_one_location_per_word(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    rc = main(
        ["caption", "fit", "--config", "quick", "--model.decoder", "lstm_hard_attention",
         "--model.encoder_width", "8", "--model.hidden_dim", "16", "--model.attention_dim", "8",
         "--model.word_dim", "8", "--data.n_train", "16", "--data.n_val", "4",
         "--data.n_test", "4", "--data.batch_size", "8", "--trainer.max_epochs", "1",
         "--figure_every", "1", "--run_dir", str(run)]
    )  # fmt: skip
    assert rc == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"test/bleu4", "test/loc"} <= set(metrics["test"])
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/reward", "train/baseline", "train/attention_entropy"} <= set(header)
    assert (run / "figures" / "caption_attention_final.png").stat().st_size > 1000
    module = CaptionModule.from_checkpoint(run / "checkpoints" / "best.ckpt")
    assert isinstance(module, CaptionModule)
    decoder = module._net().decoder
    assert isinstance(decoder, HardAttentionLSTMDecoder) and decoder.baseline_updates > 0
    out = module.eval().figure_forward({"image": torch.randn(2, 3, 64, 64)})
    assert out["hard"] and set(out["attention"].unique().tolist()) <= {0.0, 1.0}


def test_figures_draw_the_location_read_as_a_box() -> None:
    """The per-word figure draws a hard map as a box around its grid cell (a soft map as a
    heat map), and the atlas says the map is the location read."""
    from types import SimpleNamespace

    from attnlab_captioning.draw import atlas, word_attention_figure

    image = torch.rand(3, 16, 16)
    one_hot = F.one_hot(torch.tensor([3, 0]), 4).float()  # (T=2, N=4): "a", then <eos>
    sample = (image.permute(1, 2, 0).numpy(), ["a"], one_hot, (2, 2), "a")
    fig = word_attention_figure([sample], hard=True)
    word_panel = fig.axes[1]
    assert len(word_panel.images) == 1  # the image, no heat map
    (box,) = word_panel.patches
    assert box.get_xy() == (8.0, 8.0) and box.get_width() == box.get_height() == 8.0  # cell 3
    fig = word_attention_figure([sample], hard=False)
    assert len(fig.axes[1].images) == 2 and not fig.axes[1].patches
    output = {"words": [["a"]], "attention": one_hot[None], "grid": (2, 2), "hard": True}
    ctx = SimpleNamespace(
        output={**output, "mean": None, "std": None}, batch={"image": image[None]}
    )
    (panel,) = atlas(ctx)  # type: ignore[arg-type]
    assert "location" in panel.note and "read from" in panel.note
