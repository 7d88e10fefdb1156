"""The training recipe's EMA warm-up (short runs evaluate recent weights) and Mixup / CutMix on
odd-sized batches (mixed, not silently skipped)."""

from __future__ import annotations

import pytest
import torch
from attnlab_vit.module import ViTModule, ema_with_warmup


def test_ema_follows_the_weights_in_a_short_run() -> None:
    """0.9998 without warm-up would still hold 96% of the initial weights after 200 steps."""
    module = ViTModule(model="vit_test", ema_decay=0.9998)
    module.ema.update_parameters(module.model)  # the first update copies the weights
    with torch.no_grad():
        for p in module.model.parameters():
            p.add_(1.0)
    for _ in range(200):
        module.ema.update_parameters(module.model)
    for averaged, trained in zip(module.ema.module.parameters(), module.model.parameters()):
        assert (averaged - trained).abs().max() < 0.01


def test_ema_warmup_reaches_the_configured_decay_in_long_runs() -> None:
    update = ema_with_warmup(0.9998)
    for step, decay in ((1, 1 - 2**-0.75), (15, 1 - 16**-0.75), (10**8, 0.9998)):
        averaged, current = [torch.zeros(3)], [torch.ones(3)]
        update(averaged, current, torch.tensor(step))  # 0 -> 1 - decay of the way to 1
        torch.testing.assert_close(averaged[0], torch.full((3,), 1 - decay))


@pytest.mark.parametrize("batch", [5, 1])
def test_mixup_handles_odd_batches(batch: int) -> None:
    torch.manual_seed(0)
    module = ViTModule(model="vit_test", mixup=0.8, label_smoothing=0.1)
    x, y = torch.randn(batch, 1, 8, 8), torch.arange(batch) % 10
    logits, target = module.training_logits(x.clone(), y)
    assert logits.shape == (batch, 10) and target.shape == (batch, 10)
    torch.testing.assert_close(target.sum(-1), torch.ones(batch))
    own = torch.full((10,), 0.01)
    own[y[-1]] = 0.91  # the odd sample keeps its own label-smoothed target
    torch.testing.assert_close(target[-1], own)
    if batch > 1:  # the rest are mixed pairs: two classes share each target
        assert ((target[:-1] > 0.05).sum(-1) == 2).all()
