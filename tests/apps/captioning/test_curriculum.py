"""The digit-scene curriculum: which scenes each epoch trains on, resumable order, and that the
Lightning loop moves it forward (``set_epoch``)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from attnlab_captioning.curriculum import CurriculumSampler
from attnlab_captioning.data import CaptionData, make_digit_scenes


def test_ceiling_rises_one_level_per_equal_share_of_the_epochs() -> None:
    sampler = CurriculumSampler([1, 2, 3, 4], epochs=12, generator=torch.Generator())
    assert [sampler.ceiling(e) for e in range(14)] == [1] * 3 + [2] * 3 + [3] * 3 + [4] * 5
    # Fewer epochs than levels: still starts at the easiest and ends with everything.
    short = CurriculumSampler([1, 2, 3, 4], epochs=2, generator=torch.Generator())
    assert [short.ceiling(e) for e in range(3)] == [1, 3, 4]


def test_each_epoch_draws_only_scenes_at_or_below_its_ceiling() -> None:
    levels = [1, 2, 3, 4] * 25
    sampler = CurriculumSampler(levels, epochs=4, generator=torch.Generator().manual_seed(0))
    for epoch in range(4):
        sampler.set_epoch(epoch)
        drawn = list(sampler)
        assert len(drawn) == len(levels)  # every epoch has the same number of steps
        assert max(levels[i] for i in drawn) == epoch + 1
    sampler.set_epoch(4)
    assert sorted(sampler) == list(range(len(levels)))  # after it: a plain permutation


def test_without_set_epoch_each_pass_counts_as_an_epoch() -> None:
    levels = [1, 2] * 10
    sampler = CurriculumSampler(levels, epochs=4, generator=torch.Generator().manual_seed(0))
    assert [max(levels[i] for i in sampler) for _ in range(3)] == [1, 1, 2]  # epochs 0, 1, 2
    list(sampler)  # epoch 3
    assert sorted(sampler) == list(range(len(levels)))  # epoch 4: the curriculum is over


def test_the_order_continues_from_the_generator_state() -> None:
    """A resumed run restores the data module's generator: the same draws follow."""
    generator = torch.Generator().manual_seed(3)
    first = CurriculumSampler([1, 2, 3] * 5, epochs=3, generator=generator)
    list(first)
    state = generator.get_state()
    expected = list(first)
    generator.set_state(state)
    resumed = CurriculumSampler([1, 2, 3] * 5, epochs=3, generator=generator)
    resumed.set_epoch(1)
    assert list(resumed) == expected


def test_bad_settings_are_one_line_and_other_datasets_ignore_the_curriculum() -> None:
    with pytest.warns(UserWarning, match="orders digit scenes by glyph count"):
        assert CaptionData(dataset="flickr8k", curriculum_epochs=3).curriculum_epochs == 0
    with pytest.raises(ValueError, match="curriculum_epochs must be >= 0"):
        CaptionData(curriculum_epochs=-1)
    with pytest.raises(ValueError, match=r"max_digits must be 1\.\.4"):
        CaptionData(max_digits=5)


def test_max_digits_bounds_the_glyphs_per_scene() -> None:
    scenes = make_digit_scenes(40, "train", seed=0, canvas=32, max_digits=2)
    assert Counter(len(s.boxes) for s in scenes).keys() <= {1, 2}
    assert all(x1 - x0 == 8 for s in scenes for _, x0, _, x1, _ in s.boxes)  # 32 px: glyphs 8 px


class _GlyphCounter(pl.LightningModule):
    """Records the largest glyph count of each training epoch's batches."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.most_glyphs: dict[int, int] = {}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        glyphs = int((batch["boxes"][..., 0] >= 0).sum(1).max())
        epoch = self.current_epoch
        self.most_glyphs[epoch] = max(self.most_glyphs.get(epoch, 0), glyphs)
        return self.weight.pow(2).sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_lightning_moves_the_curriculum_forward(tmp_path: Any) -> None:
    data = CaptionData(
        image_size=32, n_train=64, n_val=4, n_test=4, batch_size=16, curriculum_epochs=4
    )
    module = _GlyphCounter()
    trainer = pl.Trainer(
        max_epochs=5,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=data)
    assert module.most_glyphs == {0: 1, 1: 2, 2: 3, 3: 4, 4: 4}
