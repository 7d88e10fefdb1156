"""Self-critical sequence training (Rennie et al., CVPR 2017, "Self-critical Sequence Training
for Image Captioning").

Cross-entropy trains each word given the reference's previous words; the metric scores whole
captions the model wrote itself. SCST optimises the metric directly with REINFORCE: sample a
caption ``w^s`` from the model, score it with CIDEr-D against the image's references, and use the
score of the model's own greedy caption ``w^g`` as the baseline, so the gradient per image is

    -(r(w^s) - r(w^g)) * d/dtheta sum_t log p(w^s_t | w^s_<t, image)

(the captions that beat what the model does at test time are made more likely, the others less).
The CIDEr-D document frequencies come from the training references, as in the paper
(``metrics.CiderDScorer``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .decoding import greedy_decode
from .metrics import CiderDScorer

__all__ = [
    "SampledCaptions",
    "sample_captions",
    "self_critical_loss",
    "self_critical_step",
]


@dataclass
class SampledCaptions:
    tokens: Tensor  # (B, T) sampled word ids after <bos>, <pad> after <eos>
    log_probs: Tensor  # (B, T) log p of each sampled word (with gradients), 0 after <eos>


def sample_captions(
    decoder: nn.Module,
    features: Tensor,
    *,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    max_len: int,
    generator: torch.Generator | None = None,
) -> SampledCaptions:
    """One caption per image drawn word by word from the decoder's distribution, keeping the
    graph of each drawn word's log-probability; at most ``max_len`` words, then ``<eos>``."""
    b = features.shape[0]
    state = decoder.init_state(features, use_cache=True)
    prev = torch.full((b,), bos_id, dtype=torch.long, device=features.device)
    finished = torch.zeros(b, dtype=torch.bool, device=features.device)
    words, log_probs = [], []
    for t in range(max_len + 1):
        logits, _, state = decoder.step(prev, state, need_attention=False)
        logp = torch.log_softmax(logits.float(), dim=-1)  # (B, V)
        if t == max_len:  # only <eos> may follow the last word
            word = torch.full_like(prev, eos_id)
        else:
            word = torch.multinomial(logp.detach().exp(), 1, generator=generator).squeeze(1)
        word_logp = logp.gather(1, word[:, None]).squeeze(1)  # (B,)
        words.append(torch.where(finished, torch.full_like(word, pad_id), word))
        log_probs.append(torch.where(finished, torch.zeros_like(word_logp), word_logp))
        finished = finished | (word == eos_id)
        prev = word
        if bool(finished.all()):
            break
    return SampledCaptions(torch.stack(words, 1), torch.stack(log_probs, 1))


def self_critical_loss(
    sampled: SampledCaptions, sampled_rewards: Tensor, greedy_rewards: Tensor
) -> Tensor:
    """Mean over images of ``-(r_sample - r_greedy) * sum_t log p(sampled word t)``.

    sampled_rewards, greedy_rewards (B,) -> a scalar whose gradient is the SCST estimate."""
    advantage = (sampled_rewards - greedy_rewards).to(sampled.log_probs)  # (B,), no gradient
    return -(advantage * sampled.log_probs.sum(1)).mean()


def self_critical_step(
    decoder: nn.Module,
    features: Tensor,
    references: Sequence[Sequence[Sequence[str]]],
    scorer: CiderDScorer,
    decode_words: Callable[[Sequence[int]], list[str]],
    *,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    max_len: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """The SCST loss of a batch and the mean rewards of the sampled and the greedy captions.

    ``features`` (B, N, D) from the encoder (with gradients); ``references`` each image's
    tokenized references; ``decode_words`` turns ids into words (stopping at ``<eos>``)."""
    ids = dict(bos_id=bos_id, eos_id=eos_id, pad_id=pad_id, max_len=max_len)
    was_training = decoder.training
    decoder.eval()  # the baseline is the caption the model would write at test time
    greedy = greedy_decode(decoder, features.detach(), **ids, need_attention=False)  # type: ignore[arg-type]
    decoder.train(was_training)
    sampled = sample_captions(decoder, features, **ids)  # type: ignore[arg-type]
    r_sample = torch.tensor(
        [
            scorer.score(decode_words(row.tolist()), refs)
            for row, refs in zip(sampled.tokens, references)
        ]
    )
    r_greedy = torch.tensor(
        [
            scorer.score(decode_words(row.tolist()), refs)
            for row, refs in zip(greedy.tokens, references)
        ]
    )
    return self_critical_loss(sampled, r_sample, r_greedy), r_sample.mean(), r_greedy.mean()
