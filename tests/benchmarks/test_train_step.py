"""``benchmarks/train_step.py``: the two variants it times are the same model with the two
dropouts, and its table is built from what it measured (quick shapes)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `benchmarks` is a folder of the checkout, not an installed package
    sys.path.insert(0, str(ROOT))

from attention_core import Dropout  # noqa: E402
from benchmarks import train_step  # noqa: E402


@pytest.mark.parametrize("label", list(train_step.MODELS))
def test_the_before_variant_is_the_same_model_with_torch_dropout(label: str) -> None:
    ours, loss, _ = train_step.MODELS[label](True)
    before = train_step.with_torch_dropout(ours)
    drops = [m for m in ours.modules() if isinstance(m, nn.Dropout)]
    assert drops and all(type(m) is Dropout for m in drops)
    swapped = [m for m in before.modules() if isinstance(m, nn.Dropout)]
    assert len(swapped) == len(drops) and all(type(m) is nn.Dropout for m in swapped)
    assert [m.p for m in swapped] == [m.p for m in drops]
    for a, b in zip(ours.state_dict().values(), before.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # Without dropout (eval) the two compute the same loss.
    ours.eval(), before.eval()
    assert torch.equal(loss(ours), loss(before))


def test_sasrec_is_timed_at_the_shipped_movielens_sizes() -> None:
    """The timed SASRec follows the config users run, not a copy of its sizes that can drift."""
    import yaml

    config = ROOT / "apps" / "recommender" / "configs" / "movielens.yaml"
    shipped = yaml.safe_load(config.read_text())["model"]
    model, _, shape = train_step.MODELS["sasrec (recsys, movielens)"](False)
    assert shape["length"] == shipped["max_len"] and shape["dim"] == shipped["dim"]
    assert shape["label smoothing"] == shipped.get("label_smoothing", 0.0)
    assert model.cfg.depth == shipped["depth"] and model.cfg.num_heads == shipped["num_heads"]
    assert model.cfg.dropout == shipped["dropout"]


def test_quick_measurement_and_table() -> None:
    rows = train_step.measure(quick=True)
    assert [r["model"] for r in rows] == list(train_step.MODELS)
    for r in rows:
        assert r["torch_cpu_ms"] > 0 and r["ours_cpu_ms"] > 0 and r["rounds"] >= 3
        # The mask op each variant draws with shows up in its own profile only.
        assert r["mask_share_torch"]["aten::bernoulli_"] > 0
        assert r["mask_share_ours"]["aten::uniform_"] > 0
    data = {
        "title": "t",
        "command": "python -m benchmarks train_step",
        "quick": True,
        "headline": train_step.headline(rows),
        "rows": rows,
        "environment": {"torch": torch.__version__},
    }
    markdown = train_step.build_markdown(data)
    assert f"{rows[0]['torch_cpu_ms']:.1f}" in markdown and "QUICK" in markdown
