"""Show, Attend and Tell's stochastic hard attention (Xu et al. 2015, §4.1).

At each word the decoder samples one grid location ``s_t ~ Multinoulli(alpha_t)`` and reads only
that location's feature. Sampling has no gradient, so the attention is trained by the paper's
variational lower bound, whose gradient estimate per caption is::

    d log p(y|s) + lambda_r (log p(y|s) - b) d log p(s|a) + lambda_e d H[s]

``b`` a moving average of ``log p(y|s)`` (``b <- 0.9 b + 0.1 log p(y|s)``). As in the paper, with
probability ``expected_context_prob`` (0.5) an image's caption is read with the expected context
``sum_i alpha_ti a_i`` instead (soft attention, trained by backpropagation; no REINFORCE term).
The entropy bonus covers every word of the batch. The first batch's reward starts ``b`` (the
paper leaves it open; starting at 0 would make the first advantages the whole log-likelihood).

Inference (``eval()``) reads the most likely location, ``argmax_i alpha_ti``: the caption is then
produced from one location per word, as half of training was, and the attention figures show
exactly the location each word was generated from (a one-hot map). Reading the expectation
instead would make inference the soft decoder with differently trained weights.

Every loss term is divided by the batch's word count, as the module's cross-entropy is (the
paper sums over a caption's words): the ratio of the terms is the paper's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .decoders import LSTMDecoder, State

__all__ = ["HardAttentionLSTMDecoder", "HardAttentionTrace", "ReinforceTerms"]


@dataclass
class HardAttentionTrace:
    """One teacher-forced pass: what the REINFORCE terms need."""

    logits: Tensor  # (B, T, V)
    weights: Tensor  # (B, T, N) what each context was read with: one-hot, or alpha if expected
    alphas: Tensor  # (B, T, N) the attention distribution alpha_t
    locations: Tensor  # (B, T) the location read: sampled (training) or argmax (eval)
    sampled: Tensor  # (B,) bool: read at the sampled locations (else the expected context)


@dataclass
class ReinforceTerms:
    """The surrogate loss whose gradient is the estimator, and what to log (detached)."""

    # scalar: -lambda_r (R - b) log p(s|a) - lambda_e H, per word; the REINFORCE part's value is
    # 0 (only its gradient counts), so a logged loss reads as the cross-entropy minus the bonus
    loss: Tensor
    reward: Tensor  # scalar: mean log p(y|s) of the sampled captions (R)
    baseline: Tensor  # scalar: b before this batch's update
    entropy: Tensor  # scalar: mean H[alpha_t] over the batch's words


class HardAttentionLSTMDecoder(LSTMDecoder):
    """``LSTMDecoder`` reading one sampled location per word (``lstm_hard_attention``).

    ``expected_context_prob``: per image, the chance its caption is read with the expected
    context instead of samples (the paper's 0.5); ``baseline_decay``: the moving average's
    weight on the old baseline (the paper's 0.9). The baseline is a buffer, so a resumed run
    goes on with it.
    """

    def __init__(
        self,
        vocab_size: int,
        feature_dim: int,
        embed_dim: int = 64,
        hidden_dim: int = 256,
        attention_dim: int = 128,
        dropout: float = 0.3,
        expected_context_prob: float = 0.5,
        baseline_decay: float = 0.9,
    ):
        super().__init__(
            vocab_size, feature_dim, embed_dim, hidden_dim, attention_dim, dropout, attend=True
        )
        check_hard_attention(expected_context_prob, baseline_decay)
        self.expected_context_prob = expected_context_prob
        self.baseline_decay = baseline_decay
        self.register_buffer("reward_baseline", torch.zeros(()))
        self.register_buffer("baseline_updates", torch.zeros((), dtype=torch.long))

    def init_state(self, features: Tensor, use_cache: bool = True) -> State:
        state = super().init_state(features, use_cache)
        if self.training and self.expected_context_prob > 0:
            b = features.shape[0]
            state["expected"] = torch.rand(b, device=features.device) < self.expected_context_prob
        return state

    def read(self, state: State) -> tuple[Tensor, Tensor | None]:
        """The gated context (B, D) and the weights it was read with (B, N): one-hot."""
        context, weights, _, _ = self.read_location(state)
        return context, weights

    def read_location(self, state: State) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Context (B, D), weights (B, N), alpha (B, N) and the location read (B,)."""
        h, features = state["h"], state["features"]
        expected_context, alpha = self.attention(h, features, projected_keys=state["keys"])
        if self.training:
            location = torch.multinomial(alpha.detach(), 1).squeeze(1)  # (B,) s_t ~ alpha_t
        else:
            location = alpha.argmax(-1)  # (B,)
        one_hot = torch.zeros_like(alpha).scatter(1, location[:, None], 1.0)  # (B, N)
        # Constant weights: no gradient reaches alpha through the sampled context.
        context = torch.bmm(one_hot[:, None, :], features).squeeze(1)  # (B, D)
        weights = one_hot
        expected = state.get("expected")
        if expected is not None:
            context = torch.where(expected[:, None], expected_context, context)  # (B, D)
            weights = torch.where(expected[:, None], alpha, one_hot)  # (B, N)
        return self.gated(h, context), weights, alpha, location

    def trace(self, features: Tensor, tokens: Tensor) -> HardAttentionTrace:
        """Teacher forcing: features (B, N, D), input tokens (B, T) -> the pass, step by step."""
        state = self.init_state(features)
        b = features.shape[0]
        expected = state.get("expected", torch.zeros(b, dtype=torch.bool, device=features.device))
        logits, weights, alphas, locations = [], [], [], []
        for t in range(tokens.shape[1]):
            context, step_weights, alpha, location = self.read_location(state)
            step_logits, state = self.advance(tokens[:, t], context, state)
            logits.append(step_logits)
            weights.append(step_weights)
            alphas.append(alpha)
            locations.append(location)
        return HardAttentionTrace(
            torch.stack(logits, 1),  # (B, T, V)
            torch.stack(weights, 1),  # (B, T, N)
            torch.stack(alphas, 1),  # (B, T, N)
            torch.stack(locations, 1),  # (B, T)
            ~expected,
        )

    def forward(self, features: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor | None]:
        """Teacher forcing: features (B, N, D), tokens (B, T) -> logits (B, T, V), the weights
        each context was read with (B, T, N)."""
        out = self.trace(features, tokens)
        return out.logits, out.weights

    def reinforce(
        self,
        trace: HardAttentionTrace,
        targets: Tensor,
        pad_id: int,
        reinforce_weight: float,
        entropy_weight: float,
    ) -> ReinforceTerms:
        """The estimator's REINFORCE and entropy terms for ``trace`` against ``targets`` (B, T),
        to add to the cross-entropy; in training, moves the baseline towards this batch's
        reward (the first batch sets it, so the first advantages are not the whole reward)."""
        real = (targets != pad_id).float()  # (B, T)
        words = real.sum().clamp_min(1.0)
        log_p_words = -F.cross_entropy(
            trace.logits.transpose(1, 2), targets, ignore_index=pad_id, reduction="none"
        )  # (B, T)
        reward = (log_p_words * real).sum(1).detach()  # (B,) log p(y|s) per caption
        log_alpha = trace.alphas.clamp_min(1e-12).log()  # (B, T, N)
        log_p_location = log_alpha.gather(2, trace.locations[..., None]).squeeze(-1)  # (B, T)
        log_p_locations = (log_p_location * real).sum(1)  # (B,) log p(s|a) per caption
        entropy = -(trace.alphas * log_alpha).sum(-1)  # (B, T) H[alpha_t]
        sampled = trace.sampled.float()  # (B,)
        n_sampled = sampled.sum()
        mean_reward = (reward * sampled).sum() / n_sampled.clamp_min(1.0)
        baseline = self.reward_baseline.clone()  # b before this batch
        if self.training and n_sampled > 0:
            if self.baseline_updates == 0:
                baseline = mean_reward  # the first batch sets it
            self._update_baseline(mean_reward)
        advantage = (reward - baseline) * sampled  # (B,), no gradient
        surrogate = -reinforce_weight * (advantage * log_p_locations).sum() / words
        surrogate = surrogate - surrogate.detach()  # its value means nothing: 0, same gradient
        bonus = -entropy_weight * (entropy * real).sum() / words
        return ReinforceTerms(
            loss=surrogate + bonus,
            reward=mean_reward,
            baseline=baseline.detach(),
            entropy=((entropy * real).sum() / words).detach(),
        )

    @torch.no_grad()
    def _update_baseline(self, mean_reward: Tensor) -> None:
        """b <- decay b + (1 - decay) R; the first batch's R starts it."""
        if self.baseline_updates == 0:
            self.reward_baseline.copy_(mean_reward)
        else:
            decay = self.baseline_decay
            self.reward_baseline.mul_(decay).add_((1.0 - decay) * mean_reward)
        self.baseline_updates += 1


def check_hard_attention(expected_context_prob: float, baseline_decay: float) -> None:
    """One-line ``ValueError`` for settings the estimator cannot use."""
    if not 0.0 <= expected_context_prob <= 1.0:
        raise ValueError(
            f"--model.expected_context_prob {expected_context_prob}: a probability, use a value "
            "in [0, 1] (the paper's 0.5; 0 always samples, 1 is soft attention)"
        )
    if not 0.0 <= baseline_decay < 1.0:
        raise ValueError(
            f"--model.baseline_decay {baseline_decay}: use a value in [0, 1) (the paper's 0.9)"
        )
