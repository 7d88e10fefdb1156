"""BLEU and CIDEr-D against values worked out by hand, attention localization, and METEOR
(optional: pycocoevalcap and java) against the COCO caption evaluation."""

from __future__ import annotations

import math
import shutil
import sys

import pytest
import torch
from attnlab_captioning.metrics import cider_d, corpus_bleu, localization_hits, meteor

LN2 = math.log(2.0)


def test_bleu_by_hand_two_captions() -> None:
    # Candidate 1 against two references: clipped precisions p1 = 6/6, p2 = 5/5,
    # p3 = 3/4 ("a cat sat" is in neither), p4 = 2/3 (two of its three 4-grams match).
    # Candidate 2 "the dog" vs "the dog runs fast": p1 2/2, p2 1/1, no 3- or 4-grams.
    # Corpus: p1 = 8/8, p2 = 6/6, p3 = 3/4, p4 = 2/3; c = 8, r = 6 + 4 = 10, BP = exp(1 - 10/8).
    preds = ["a cat sat on the mat", "the dog"]
    refs = [["the cat sat on the mat", "a cat is on the mat"], ["the dog runs fast"]]
    got = corpus_bleu(preds, refs)
    bp = math.exp(1 - 10 / 8)
    assert got["bleu1"] == pytest.approx(bp * 1.0, abs=1e-6)
    assert got["bleu2"] == pytest.approx(bp * 1.0, abs=1e-6)
    assert got["bleu3"] == pytest.approx(bp * (0.75) ** (1 / 3), abs=1e-6)
    assert got["bleu4"] == pytest.approx(bp * (0.75 * 2 / 3) ** (1 / 4), abs=1e-6)


def test_bleu_perfect_and_disjoint() -> None:
    assert corpus_bleu(["a b c d"], [["a b c d"]])["bleu4"] == pytest.approx(1.0)
    assert corpus_bleu(["x y z w"], [["a b c d"]])["bleu1"] == 0.0


def test_cider_d_exact_and_partial_match() -> None:
    # Two images, log(#images) = ln 2; every n-gram has df 1 (or 0), so every idf is ln 2.
    # Image 1: candidate == reference: cosine 1 for n = 1, 2; n = 3, 4 are empty -> (1 + 1) / 4 * 10 = 5.
    # Image 2: "c e" vs "c d": unigram cosine (ln2^2) / (sqrt2 ln2 * sqrt2 ln2) = 1/2, bigram 0
    #   -> 0.5 / 4 * 10 = 1.25.
    mean, per = cider_d([["a", "b"], ["c", "e"]], [[["a", "b"]], [["c", "d"]]])
    assert per == pytest.approx([5.0, 1.25])
    assert mean == pytest.approx(3.125)


def test_cider_d_clipping_idf_and_length_penalty() -> None:
    # Image 1 refs "a a b" and "a b"; image 2 ref "b c". df(b) = 2 -> idf(b) = ln2 - ln2 = 0.
    # Candidate "a a a": unigram vec a = 3 ln2; bigram (a a) = 2 ln2; trigram (a a a) unseen.
    # vs "a a b" (same length): n=1: min(3,2)*2 ln2^2 / (3 ln2 * 2 ln2) = 4/6;
    #   n=2: min(2,1)*1 / (2 * sqrt 2) ; n=3: 0 -> (2/3 + 1/(2 sqrt 2)) / 4.
    # vs "a b" (length 3 vs 2: penalty exp(-1/72)): n=1: min(3,1)*1 / (3 * 1) = 1/3; n=2: 0.
    # Image 1 = 10 * mean of the two; image 2 "b c" == its reference: unigram b has weight 0,
    # so the unigram cosine is c.c/(|c||c|) = 1, bigram 1 -> 5.
    s1 = (2 / 3 + 1 / (2 * math.sqrt(2))) / 4
    s2 = (1 / 3) * math.exp(-1 / 72) / 4
    expected_1 = 10 * (s1 + s2) / 2
    mean, per = cider_d(
        [["a", "a", "a"], ["b", "c"]], [[["a", "a", "b"], ["a", "b"]], [["b", "c"]]]
    )
    assert per[0] == pytest.approx(expected_1, abs=1e-9)
    assert per[1] == pytest.approx(5.0, abs=1e-9)
    assert mean == pytest.approx((expected_1 + 5.0) / 2, abs=1e-9)


def test_cider_d_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="2 candidates but 1"):
        cider_d([["a"], ["b"]], [[["a"]]])


def test_localization_hits_peak_inside_box() -> None:
    # 64x64 image, 8x8 grid of 8-pixel cells; a "3" in box x 16..32, y 0..16.
    attention = torch.zeros(3, 64)
    attention[0, 0] = 1.0  # word "a": not a digit, ignored
    attention[1, 0 * 8 + 2] = 1.0  # "3": cell (row 0, col 2), centre (20, 4) -> inside
    attention[2, 7 * 8 + 7] = 1.0  # "7": cell (7, 7), centre (60, 60): the 7's box is elsewhere
    boxes = [(3, 16, 0, 32, 16), (7, 0, 40, 16, 56)]
    assert localization_hits(["a", "3", "7"], attention, (8, 8), (64, 64), boxes) == (1, 2)
    # a digit not in the scene counts as a miss
    assert localization_hits(["5"], attention[1:], (8, 8), (64, 64), boxes) == (0, 1)


METEOR_PREDS = ["a dog running on grass", "a 3 above a 5"]
METEOR_REFS = [["a dog runs on the grass", "the dog is running"], ["a 3 above a 5"]]


def test_meteor_is_none_without_pycocoevalcap_or_java(monkeypatch: pytest.MonkeyPatch) -> None:
    """METEOR is optional: without the package (or without java) there is no score, and
    nothing is downloaded to get one."""
    monkeypatch.setitem(sys.modules, "pycocoevalcap.meteor.meteor", None)  # import fails
    assert meteor(METEOR_PREDS, METEOR_REFS) is None
    monkeypatch.undo()
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert meteor(METEOR_PREDS, METEOR_REFS) is None


@pytest.mark.slow
def test_meteor_equals_the_coco_caption_evaluation() -> None:
    """Where pycocoevalcap and java are installed: the same corpus score as the COCO caption
    evaluation's own wrapper, 1 for a caption equal to its reference."""
    coco = pytest.importorskip("pycocoevalcap.meteor.meteor")
    if shutil.which("java") is None:
        pytest.skip("METEOR needs java")
    score = meteor(METEOR_PREDS, METEOR_REFS)
    reference, _ = coco.Meteor().compute_score(
        dict(enumerate(METEOR_REFS)), {i: [p] for i, p in enumerate(METEOR_PREDS)}
    )
    assert score == pytest.approx(reference) and 0.3 < score < 1.0
    assert meteor(["a 3 above a 5"], [["a 3 above a 5"]]) == pytest.approx(1.0)
