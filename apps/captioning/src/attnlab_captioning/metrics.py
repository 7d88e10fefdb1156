"""Caption metrics: corpus BLEU-1..4 (torchmetrics), CIDEr-D (written here), METEOR (when the
optional pycocoevalcap and a Java runtime are installed) and attention localization on digit
scenes."""

from __future__ import annotations

import math
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from torch import Tensor
from torchmetrics.functional.text import bleu_score

__all__ = ["DIGIT_WORDS", "CiderDScorer", "cider_d", "corpus_bleu", "localization_hits", "meteor"]

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


def meteor(preds: Sequence[str], refs: Sequence[Sequence[str]]) -> float | None:
    """Corpus METEOR 1.5 (English, normalised) as the COCO caption evaluation computes it, as a
    fraction in [0, 1]; None when the optional ``pycocoevalcap`` or ``java`` is not installed.

    pycocoevalcap's package holds the METEOR jar and its English paraphrase table: nothing is
    downloaded. The jar runs in its line protocol (``-stdio``): one ``SCORE ||| refs ||| hyp``
    line per caption gives its statistics, one ``EVAL ||| stats ...`` line the per-caption and
    corpus scores. Starting the JVM and loading the table takes about 10 s: test only.
    """
    try:
        import pycocoevalcap.meteor.meteor as wrapper  # beside the jar
    except ImportError:
        return None
    java = shutil.which("java")
    if java is None or not preds:
        return None
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} captions but {len(refs)} reference sets")
    jar = Path(wrapper.__file__).parent / "meteor-1.5.jar"
    command = [java, "-Xmx2G", "-jar", jar.name, "-", "-", "-stdio", "-l", "en", "-norm"]

    def clean(text: str) -> str:  # "|||" separates the fields
        return " ".join(text.replace("|||", " ").split())

    proc = subprocess.Popen(
        command,
        cwd=jar.parent,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        stats = []
        for pred, caption_refs in zip(preds, refs):
            fields = ["SCORE", *(clean(r) for r in caption_refs), clean(pred)]
            proc.stdin.write(" ||| ".join(fields) + "\n")
            proc.stdin.flush()
            stats.append(proc.stdout.readline().strip())
        proc.stdin.write(" ||| ".join(["EVAL", *stats]) + "\n")
        proc.stdin.flush()
        for _ in preds:
            proc.stdout.readline()  # each caption's own score
        line = proc.stdout.readline().strip()
    finally:
        proc.kill()
        proc.wait()
    try:
        return float(line)
    except ValueError:
        raise RuntimeError(f"METEOR ({jar}) gave no score: {line!r}") from None


def _ngrams(words: Sequence[str], n_max: int) -> Counter[tuple[str, ...]]:
    counts: Counter[tuple[str, ...]] = Counter()
    for n in range(1, n_max + 1):
        for i in range(len(words) - n + 1):
            counts[tuple(words[i : i + n])] += 1
    return counts


class CiderDScorer:
    """CIDEr-D (Vedantam et al., 2015) of single captions, with document frequencies fixed
    from a corpus of reference sets.

    For each n-gram order n, captions become tf-idf vectors: the count of an n-gram times
    ``log(#images) - log(max(1, df))``, where df is the number of the corpus's images whose
    references hold it. The score of a candidate against one reference is, per n, the sum over
    n-grams of ``min(c, r) * r`` (clipped) divided by both vector norms, times the Gaussian
    length penalty ``exp(-(len_c - len_r)^2 / (2 sigma^2))``; orders are averaged, references
    averaged, and the result times 10. ``cider_d`` takes the corpus from the scored set itself
    (the evaluation's definition); self-critical training fixes it to the training references,
    so a caption's reward does not depend on the batch it is in.
    """

    def __init__(
        self, corpus: Iterable[Sequence[Sequence[str]]], n_max: int = 4, sigma: float = 6.0
    ):
        self.n_max, self.sigma = n_max, sigma
        self.df: Counter[tuple[str, ...]] = Counter()
        images = 0
        for image_refs in corpus:
            images += 1
            self.df.update({g for r in image_refs for g in _ngrams(r, n_max)})
        if images == 0:
            raise ValueError("CIDEr-D document frequencies need at least one reference set")
        self.log_n = math.log(float(images))

    def _vectors(
        self, words: Sequence[str]
    ) -> tuple[list[dict[tuple[str, ...], float]], list[float]]:
        vecs: list[dict[tuple[str, ...], float]] = [{} for _ in range(self.n_max)]
        for gram, tf in _ngrams(words, self.n_max).items():
            idf = self.log_n - math.log(max(1.0, float(self.df[gram])))
            vecs[len(gram) - 1][gram] = tf * idf
        return vecs, [math.sqrt(sum(x * x for x in v.values())) for v in vecs]

    def score(self, candidate: Sequence[str], references: Sequence[Sequence[str]]) -> float:
        """CIDEr-D (x10) of one tokenized caption against its image's references."""
        if not references:
            raise ValueError("every image needs at least one reference caption for CIDEr-D")
        c_vec, c_norm = self._vectors(candidate)
        total = 0.0
        for ref in references:
            r_vec, r_norm = self._vectors(ref)
            penalty = math.exp(-((len(candidate) - len(ref)) ** 2) / (2 * self.sigma**2))
            per_n = 0.0
            for n in range(self.n_max):
                if c_norm[n] == 0 or r_norm[n] == 0:
                    continue
                dot = sum(
                    min(v, r_vec[n][g]) * r_vec[n][g] for g, v in c_vec[n].items() if g in r_vec[n]
                )
                per_n += dot / (c_norm[n] * r_norm[n]) * penalty
            total += per_n / self.n_max
        return 10.0 * total / len(references)


def cider_d(
    preds: Sequence[Sequence[str]],
    refs: Sequence[Sequence[Sequence[str]]],
    n_max: int = 4,
    sigma: float = 6.0,
) -> tuple[float, list[float]]:
    """CIDEr-D of tokenized captions against their references, document frequencies from the
    scored images' references (``CiderDScorer``). Returns the corpus mean and each image's."""
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} candidates but {len(refs)} reference sets")
    if not preds:
        return 0.0, []
    scorer = CiderDScorer(refs, n_max, sigma)
    scores = [scorer.score(cand, image_refs) for cand, image_refs in zip(preds, refs)]
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
