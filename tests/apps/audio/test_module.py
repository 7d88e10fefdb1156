"""The LightningModule: tiny overfit, data/model mismatch, checkpoint round trip, export parity."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from attnlab_audio import AudioData, AudioModule

from attnlab.export import export_model

DATA = dict(
    dataset="synthetic", duration=0.25, n_mels=24, hop_length=128, n_synthetic=64, batch_size=16
)
FRAMES = 2000 // 128 + 1
MODEL = dict(
    n_mels=24,
    n_frames=FRAMES,
    num_classes=12,
    patch_size=6,
    patch_stride=4,
    dim=32,
    depth=1,
    num_heads=2,
)


def _trainer(tmp_path: Path, **kw: object) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path), **kw,
    )  # fmt: skip


def test_fit_sets_the_feature_statistics(tmp_path: Path) -> None:
    dm = AudioData(**DATA)
    module = AudioModule(**MODEL)
    _trainer(tmp_path, fast_dev_run=True).fit(module, datamodule=dm)
    mean, std = dm.feature_stats  # type: ignore[misc]
    assert float(module.model.normalize.mean) == pytest.approx(mean)
    assert float(module.model.normalize.std) == pytest.approx(std)


def test_model_and_data_disagree(tmp_path: Path) -> None:
    module = AudioModule(**{**MODEL, "n_mels": 32})
    with pytest.raises(ValueError, match=r"data has 24 mel bands but --model.n_mels is 32"):
        _trainer(tmp_path, fast_dev_run=True).fit(module, datamodule=AudioData(**DATA))


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["ast", "cnn"])
def test_tiny_overfit(tmp_path: Path, arch: str) -> None:
    """32 clips, no augmentation: the training loss must fall far below chance (ln 12 = 2.48)."""
    pl.seed_everything(0)
    dm = AudioData(**{**DATA, "n_synthetic": 36, "max_train": 32, "batch_size": 32})
    module = AudioModule(
        **MODEL, model=arch, cnn_channels=[8, 16], freq_masks=0, time_masks=0, label_smoothing=0.0,
        lr=5e-3, weight_decay=0.0, warmup_fraction=0.0, drop_path_rate=0.0,
    )  # fmt: skip
    dm.setup("fit")
    dm.train_set.dataset.train = False  # type: ignore[union-attr]  # no time shift: memorize
    trainer = _trainer(tmp_path, max_epochs=120, num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(module, datamodule=dm)
    module.eval()
    x, y = next(iter(torch.utils.data.DataLoader(dm.train_set, batch_size=32)))
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(module(x), y)
    assert loss < 0.3, f"{arch}: loss {loss:.3f} after overfitting 32 clips"


@pytest.mark.parametrize("arch", ["ast", "cnn"])
def test_checkpoint_round_trip_and_export_parity(tmp_path: Path, arch: str) -> None:
    module = AudioModule(**MODEL, model=arch, cnn_channels=[8, 16]).eval()
    module.model.normalize.set_stats(-30.0, 15.0)
    module.class_names = [f"k{i}" for i in range(12)]
    trainer = _trainer(tmp_path, max_epochs=0)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    again = AudioModule.from_checkpoint(tmp_path / "m.ckpt")
    assert again.class_names == module.class_names
    assert float(again.model.normalize.std) == 15.0
    (x,) = module.example_inputs()
    torch.testing.assert_close(again(x), module(x))
    for fmt, name in (("torch-export", "m.pt2"), ("onnx", "m.onnx")):
        diff = export_model(again.export_model(), (x,), fmt, tmp_path / name)
        assert diff < 1e-4
