"""Greedy and batched beam search over any decoder with ``init_state``/``step``/``reorder``.

Both return the same ``Generated``: word ids (``<pad>`` after ``<eos>``), the summed log
probability of each caption, its length and the attention over the grid at every step. Beam
search with one beam is greedy decoding, step for step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["Generated", "beam_search", "generate", "greedy_decode", "length_penalty"]


@dataclass
class Generated:
    tokens: Tensor  # (B, T) ids after <bos>, <pad> after <eos>
    scores: Tensor  # (B,) summed log-probabilities
    lengths: Tensor  # (B,) tokens up to and including <eos>
    attention: Tensor | None  # (B, T, N) attention over the grid when each token was produced


def length_penalty(lengths: Tensor, alpha: float) -> Tensor:
    """GNMT's ((5 + length) / 6) ** alpha; alpha 0 ranks by the raw log-probability."""
    return ((5.0 + lengths.float()) / 6.0) ** alpha


def _force_eos(logp: Tensor, eos_id: int, last: bool) -> Tensor:
    """At the last step (``max_len`` words written) only ``<eos>`` may follow."""
    if not last:
        return logp
    only = torch.full_like(logp, float("-inf"))
    only[..., eos_id] = logp[..., eos_id]
    return only


@torch.no_grad()
def greedy_decode(
    decoder: nn.Module,
    features: Tensor,
    *,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    max_len: int,
    use_cache: bool = True,
    need_attention: bool = True,
) -> Generated:
    """The most likely word at each step, until every caption has ``<eos>`` or ``max_len`` words."""
    b = features.shape[0]
    state = decoder.init_state(features, use_cache=use_cache)
    prev = torch.full((b,), bos_id, dtype=torch.long, device=features.device)
    finished = torch.zeros(b, dtype=torch.bool, device=features.device)
    scores = features.new_zeros(b, dtype=torch.float32)
    lengths = torch.zeros(b, dtype=torch.long, device=features.device)
    out, attn = [], []
    for t in range(max_len + 1):
        logits, alpha, state = decoder.step(prev, state, need_attention=need_attention)
        logp = _force_eos(torch.log_softmax(logits.float(), dim=-1), eos_id, t == max_len)  # (B, V)
        best, word = logp.max(dim=-1)
        word = torch.where(finished, torch.full_like(word, pad_id), word)
        scores = scores + torch.where(finished, torch.zeros_like(best), best)
        lengths = lengths + (~finished).long()
        out.append(word)
        if alpha is not None:
            attn.append(alpha)
        finished = finished | (word == eos_id)
        prev = word
        if bool(finished.all()):
            break
    return Generated(torch.stack(out, 1), scores, lengths, torch.stack(attn, 1) if attn else None)


@torch.no_grad()
def beam_search(
    decoder: nn.Module,
    features: Tensor,
    *,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    max_len: int,
    beam_size: int = 3,
    alpha: float = 0.0,
    use_cache: bool = True,
    need_attention: bool = True,
) -> Generated:
    """``beam_size`` hypotheses per image, all images of the batch at once.

    Finished hypotheses stay in the beam with a frozen score (their only continuation is
    ``<pad>`` at log-probability 0); at the end the best by score / length_penalty(length, alpha)
    is returned with its raw score.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    b, k, dev = features.shape[0], beam_size, features.device
    state = decoder.init_state(features.repeat_interleave(k, dim=0), use_cache=use_cache)
    scores = torch.zeros(b, k, device=dev)
    scores[:, 1:] = float("-inf")  # all beams start as the same empty caption: keep one
    tokens = torch.zeros(b, k, 0, dtype=torch.long, device=dev)
    attn: Tensor | None = None
    finished = torch.zeros(b, k, dtype=torch.bool, device=dev)
    lengths = torch.zeros(b, k, dtype=torch.long, device=dev)
    prev = torch.full((b * k,), bos_id, dtype=torch.long, device=dev)
    rows = torch.arange(b, device=dev)[:, None] * k  # (B, 1)
    for t in range(max_len + 1):
        logits, alpha_t, state = decoder.step(prev, state, need_attention=need_attention)
        v = logits.shape[-1]
        logp = _force_eos(torch.log_softmax(logits.float(), dim=-1), eos_id, t == max_len)
        logp = logp.view(b, k, v)  # (B, K, V)
        done_row = torch.full((v,), float("-inf"), device=dev)
        done_row[pad_id] = 0.0
        logp = torch.where(finished[..., None], done_row, logp)
        cand = scores[..., None] + logp  # (B, K, V)
        scores, flat = cand.view(b, k * v).topk(k, dim=-1)  # (B, K)
        beam, word = flat // v, flat % v
        index = (rows + beam).view(-1)  # (B*K,) rows of the surviving states
        state = decoder.reorder(state, index)
        tokens = torch.cat(
            [tokens.gather(1, beam[..., None].expand(-1, -1, t)), word[..., None]], 2
        )
        if alpha_t is not None:
            a = alpha_t.view(b, k, 1, -1)  # (B, K, 1, N), old beam order
            full = a if attn is None else torch.cat([attn, a], dim=2)  # (B, K, t+1, N)
            attn = full.gather(1, beam[..., None, None].expand(-1, -1, *full.shape[2:]))
        was_done = finished.gather(1, beam)
        lengths = lengths.gather(1, beam) + (~was_done).long()
        finished = was_done | (word == eos_id)
        prev = word.view(-1)
        if bool(finished.all()):
            break
    ranked = scores / length_penalty(lengths.clamp_min(1), alpha)
    best = ranked.argmax(dim=-1)  # (B,)
    pick = torch.arange(b, device=dev)
    return Generated(
        tokens[pick, best],
        scores[pick, best],
        lengths[pick, best],
        None if attn is None else attn[pick, best],
    )


def generate(
    decoder: nn.Module,
    features: Tensor,
    *,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    max_len: int,
    beam_size: int = 1,
    alpha: float = 0.0,
    use_cache: bool = True,
    need_attention: bool = True,
) -> Generated:
    """Greedy for ``beam_size`` 1 (faster, same result), beam search otherwise."""
    kw = dict(
        bos_id=bos_id,
        eos_id=eos_id,
        pad_id=pad_id,
        max_len=max_len,
        use_cache=use_cache,
        need_attention=need_attention,
    )
    if beam_size == 1:
        return greedy_decode(decoder, features, **kw)  # type: ignore[arg-type]
    return beam_search(decoder, features, beam_size=beam_size, alpha=alpha, **kw)  # type: ignore[arg-type]
