"""Caption metrics: corpus BLEU-1..4 (torchmetrics), CIDEr-D (written here) and attention
localization on digit scenes."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from torch import Tensor
from torchmetrics.functional.text import bleu_score

__all__ = ["DIGIT_WORDS", "cider_d", "corpus_bleu", "localization_hits"]

DIGIT_WORDS = tuple(str(d) for d in range(10))


def corpus_bleu(preds: Sequence[str], refs: Sequence[Sequence[str]]) -> dict[str, float]:
    """BLEU-1..4 over the corpus (clipped n-gram counts summed over all captions, every
    reference of an image counted, one brevity penalty), as fractions in [0, 1]."""
    if not preds:
        return {f"bleu{n}": 0.0 for n in range(1, 5)}
    return {
        f"bleu{n}": float(bleu_score(list(preds), [list(r) for r in refs], n_gram=n))
        for n in range(1, 5)
    }


def _ngrams(words: Sequence[str], n_max: int) -> Counter[tuple[str, ...]]:
    counts: Counter[tuple[str, ...]] = Counter()
    for n in range(1, n_max + 1):
        for i in range(len(words) - n + 1):
            counts[tuple(words[i : i + n])] += 1
    return counts


def cider_d(
    preds: Sequence[Sequence[str]],
    refs: Sequence[Sequence[Sequence[str]]],
    n_max: int = 4,
    sigma: float = 6.0,
) -> tuple[float, list[float]]:
    """CIDEr-D (Vedantam et al., 2015) of tokenized captions against their references.

    For each n-gram order n, captions become tf-idf vectors: the count of an n-gram times
    ``log(#images) - log(max(1, df))``, where df is the number of images whose references hold
    it. The score of a candidate against one reference is, per n, the sum over n-grams of
    ``min(c, r) * r`` (clipped) divided by both vector norms, times the Gaussian length penalty
    ``exp(-(len_c - len_r)^2 / (2 sigma^2))``; orders are averaged, references averaged, and the
    result times 10. Returns the corpus mean and each image's score.
    """
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} candidates but {len(refs)} reference sets")
    if not preds:
        return 0.0, []
    df: Counter[tuple[str, ...]] = Counter()
    for image_refs in refs:
        df.update({g for r in image_refs for g in _ngrams(r, n_max)})
    log_n = math.log(float(len(refs)))

    def vectors(words: Sequence[str]) -> tuple[list[dict[tuple[str, ...], float]], list[float]]:
        vecs: list[dict[tuple[str, ...], float]] = [{} for _ in range(n_max)]
        for gram, tf in _ngrams(words, n_max).items():
            vecs[len(gram) - 1][gram] = tf * (log_n - math.log(max(1.0, float(df[gram]))))
        norms = [math.sqrt(sum(x * x for x in v.values())) for v in vecs]
        return vecs, norms

    scores = []
    for cand, image_refs in zip(preds, refs):
        if not image_refs:
            raise ValueError("every image needs at least one reference caption for CIDEr-D")
        c_vec, c_norm = vectors(cand)
        total = 0.0
        for ref in image_refs:
            r_vec, r_norm = vectors(ref)
            penalty = math.exp(-((len(cand) - len(ref)) ** 2) / (2 * sigma**2))
            per_n = 0.0
            for n in range(n_max):
                if c_norm[n] == 0 or r_norm[n] == 0:
                    continue
                dot = sum(
                    min(v, r_vec[n][g]) * r_vec[n][g] for g, v in c_vec[n].items() if g in r_vec[n]
                )
                per_n += dot / (c_norm[n] * r_norm[n]) * penalty
            total += per_n / n_max
        scores.append(10.0 * total / len(image_refs))
    return sum(scores) / len(scores), scores


def localization_hits(
    words: Sequence[str],
    attention: Tensor,
    grid: tuple[int, int],
    image_size: tuple[int, int],
    boxes: Sequence[Sequence[int]],
) -> tuple[int, int]:
    """(hits, digit words): a generated digit word is a hit when the grid cell with its peak
    attention has its centre inside a box of that digit. ``attention`` is (T, N) for the T
    generated tokens; ``boxes`` rows are (digit, x0, y0, x1, y1) in pixels, x1/y1 exclusive."""
    gh, gw = grid
    height, width = image_size
    hits = total = 0
    for t, word in enumerate(words):
        if word not in DIGIT_WORDS or t >= attention.shape[0]:
            continue
        total += 1
        cell = int(attention[t].argmax())
        cy = (cell // gw + 0.5) * height / gh
        cx = (cell % gw + 0.5) * width / gw
        digit = int(word)
        if any(d == digit and x0 <= cx < x1 and y0 <= cy < y1 for d, x0, y0, x1, y1 in boxes):
            hits += 1
    return hits, total
