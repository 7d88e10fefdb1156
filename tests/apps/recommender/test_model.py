from pathlib import Path

import pytest
import torch
from attnlab_recommender.model import POSITIONS, RecConfig, SequentialRecommender, last_window

from attnlab.export import export_model


def _model(kind: str = "sasrec", **kw: object) -> SequentialRecommender:
    return SequentialRecommender(RecConfig(num_items=40, kind=kind, max_len=12, dim=16, **kw))  # type: ignore[arg-type]


HIST = torch.tensor([[3, 4, 5, 0, 0, 0], [1, 2, 3, 4, 5, 6], [7, 0, 0, 0, 0, 0]])


def test_item_embeddings_scaled_by_sqrt_dim_before_positions() -> None:
    scaled, plain = _model(dropout=0.0), _model(dropout=0.0, scale_item_embeddings=False)
    plain.load_state_dict(scaled.state_dict())
    seq = HIST[:, :4]  # (3, 4)
    items, pos = scaled.item_embedding(seq), scaled.pos_embedding.weight[:4]  # (3, 4, 16), (4, 16)
    torch.testing.assert_close(scaled.embed(seq), items * 4.0 + pos)  # sqrt(16) = 4
    torch.testing.assert_close(plain.embed(seq), items + pos)


@pytest.mark.parametrize("kind", ["sasrec", "bert4rec"])
def test_shapes_finite_and_gradients(kind: str) -> None:
    model = _model(kind)
    scores = model(HIST)
    assert scores.shape == (3, 41)
    assert torch.isinf(scores[:, 0]).all() and torch.isfinite(scores[:, 1:]).all()
    scores[:, 1:].logsumexp(-1).sum().backward()
    missing = [
        n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert missing == [] or (kind == "sasrec" and missing == []), missing


@pytest.mark.parametrize("kind", ["sasrec", "bert4rec"])
def test_item_cross_entropy_equals_cross_entropy_over_all_scores(kind: str) -> None:
    model = _model(kind)
    hidden = torch.randn(9, 16, requires_grad=True)
    targets = torch.tensor([1, 40, 7, 7, 3, 2, 39, 20, 1])
    fast = model.item_cross_entropy(hidden, targets)
    full = torch.nn.functional.cross_entropy(model.item_scores(hidden), targets)
    torch.testing.assert_close(fast, full)
    (g_fast,) = torch.autograd.grad(fast, hidden)
    (g_full,) = torch.autograd.grad(full, hidden)
    torch.testing.assert_close(g_fast, g_full)


def test_label_smoothing_spreads_over_the_real_items_only() -> None:
    model = _model()  # 40 items; column 0 of item_scores is the pad
    hidden = torch.randn(6, 16)
    targets = torch.tensor([1, 40, 7, 7, 3, 2])
    log_probs = model.item_scores(hidden)[:, 1:].log_softmax(1)  # (6, 40) real items
    nll = -log_probs.gather(1, (targets - 1)[:, None]).squeeze(1)
    expected = (0.8 * nll + 0.2 * -log_probs.mean(1)).sum()
    torch.testing.assert_close(model.item_cross_entropy(hidden, targets, "sum", 0.2), expected)


def test_sampled_label_smoothing_leaves_out_accidental_hits() -> None:
    model = _model()
    hidden = torch.randn(4, 16)
    targets = torch.tensor([5, 9, 5, 30])
    torch.manual_seed(1)
    value = model.sampled_cross_entropy(hidden, targets, 10, label_smoothing=0.25)
    torch.manual_seed(1)
    drawn = torch.randint(1, 41, (10,))
    assert {5, 9} <= set(drawn.tolist())  # three positions' targets were drawn: hits to leave out
    weight = model.item_embedding.weight
    expected = 0.0
    for h, t in zip(hidden, targets):
        others = [int(i) for i in drawn if i != t]
        log_probs = torch.stack([h @ weight[t], *[h @ weight[i] for i in others]]).log_softmax(0)
        expected += 0.75 * -log_probs[0] + 0.25 * -log_probs.mean()
    torch.testing.assert_close(value, expected)
    hidden.requires_grad_(True)
    torch.manual_seed(1)
    model.sampled_cross_entropy(hidden, targets, 10, label_smoothing=0.25).backward()
    assert torch.isfinite(hidden.grad).all()  # the masked -inf columns give no NaN


def test_sampled_cross_entropy_is_the_softmax_over_the_target_and_the_draw() -> None:
    model = _model()  # 40 items
    hidden = torch.randn(5, 16)
    targets = torch.tensor([1, 40, 7, 7, 3])
    torch.manual_seed(3)
    value = model.sampled_cross_entropy(hidden, targets, 12)
    torch.manual_seed(3)
    drawn = torch.randint(1, 41, (12,))  # the same draw, shared by the five positions
    weight = model.item_embedding.weight
    expected = 0.0
    for h, t in zip(hidden, targets):
        others = [int(i) for i in drawn if i != t]  # a draw of the target itself is left out
        logits = torch.stack([h @ weight[t], *[h @ weight[i] for i in others]])
        expected += -torch.log_softmax(logits, 0)[0]
    torch.testing.assert_close(value, expected)
    # drawing every item (with repeats) is at least the full softmax's loss
    full = model.item_cross_entropy(hidden, targets, "sum")
    assert model.sampled_cross_entropy(hidden, targets, 4000) >= full - 1e-4


def test_padding_does_not_change_sasrec_scores() -> None:
    model = _model().eval()
    short = model(torch.tensor([[3, 4, 5]]))
    padded = model(torch.tensor([[3, 4, 5, 0, 0, 0, 0]]))
    torch.testing.assert_close(short, padded)


@pytest.mark.parametrize("pos", POSITIONS)
def test_padding_does_not_change_bert4rec_scores(pos: str) -> None:
    model = _model("bert4rec", attention={"pos": pos}).eval()
    torch.testing.assert_close(
        model(torch.tensor([[3, 4, 5]])), model(torch.tensor([[3, 4, 5, 0, 0]]))
    )


@pytest.mark.parametrize("pos", POSITIONS)
def test_kv_cache_equals_full_recomputation(pos: str) -> None:
    # Positions of cached steps continue where the cache ends (tables, rotations and biases).
    model = _model(attention={"pos": pos}).eval()
    hist = torch.tensor([[5, 9, 2, 7, 30, 11], [1, 2, 3, 4, 5, 6]])
    cache = model.new_cache()
    with torch.no_grad():
        model.extend(hist[:, :2], cache)  # a prefix in one call, then one item at a time
        for t in range(2, hist.shape[1]):
            step = model.extend(hist[:, t : t + 1], cache)
            full = model(hist[:, : t + 1])
            torch.testing.assert_close(step[:, 1:], full[:, 1:], atol=1e-5, rtol=1e-5)


def test_positions_enter_where_they_belong() -> None:
    assert isinstance(_model().pos_embedding, torch.nn.Embedding)  # the default: learned
    assert _model(attention={"pos": "sincos"}).pos_embedding is not None
    for pos in ("none", "rope", "alibi"):
        model = _model(attention={"pos": pos})
        assert model.pos_embedding is None
        assert (model.encoder.blocks[0].attn.pos is None) == (pos == "none")
    assert not any("pos" in n for n, _ in _model(attention={"pos": "sincos"}).named_parameters())


def test_backends_agree() -> None:
    model = _model().eval()
    ref = model(HIST)
    from attention_core import set_backend

    set_backend(model, "math")
    torch.testing.assert_close(model(HIST)[:, 1:], ref[:, 1:], atol=1e-5, rtol=1e-5)


def test_last_window_keeps_the_latest_items() -> None:
    out = last_window(torch.tensor([[1, 2, 3, 4, 5], [6, 7, 0, 0, 0]]), 3)
    assert out.tolist() == [[3, 4, 5], [6, 7, 0]]


def test_long_histories_are_truncated_and_max_len_is_checked() -> None:
    model = _model().eval()
    long = torch.arange(1, 31)[None]
    torch.testing.assert_close(model(long), model(long[:, -12:]))
    with pytest.raises(ValueError, match="max_len"):
        RecConfig(num_items=5, max_len=1)
    big = SequentialRecommender(RecConfig(num_items=5, max_len=1000, dim=8))
    assert big(torch.randint(1, 6, (1, 1000))).shape == (1, 6)


@pytest.mark.parametrize("kind", ["sasrec", "bert4rec"])
@pytest.mark.parametrize("fmt", ["torch-export", "onnx"])
def test_export_parity(tmp_path: Path, fmt: str, kind: str) -> None:
    # sdpa (the default) for both: BERT4Rec's key-padding mask exports too, and matches eager.
    model = _model(kind).eval()
    assert model.encoder.blocks[0].attn.backend == "sdpa"
    diff = export_model(
        model, (HIST,), fmt, tmp_path / f"m.{'pt2' if fmt == 'torch-export' else 'onnx'}"
    )
    assert diff < 1e-4
