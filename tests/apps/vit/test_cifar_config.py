"""The CIFAR-10 config as a start on a CPU, offline: the data read in place (CIFAR-10's binary
version, plain bytes), no accelerator forced by the config, CCT without the timm invitation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from attnlab_vit import app
from attnlab_vit.data import ImageData
from attnlab_vit.readers import read_cifar10_bin

from .conftest import run_attnlab


def write_cifar10_bin(root: Path, n_train: int = 40, n_test: int = 20) -> Path:
    """CIFAR-10's binary layout: records of one label byte and 3x32x32 pixel bytes."""
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in (("data_batch_1.bin", n_train), ("test_batch.bin", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)[:, None]
        pixels = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)
        (folder / name).write_bytes(np.concatenate([labels, pixels], axis=1).tobytes())
    return folder


def config() -> dict[str, Any]:
    path = next(p for p in app.configs() if p.stem == "cifar10_gpu")
    return yaml.safe_load(path.read_text())


def test_config_leaves_the_device_to_a_preset() -> None:
    cfg = config()
    assert not {"accelerator", "devices", "precision"} & set(cfg["trainer"])
    assert cfg["model"].get("backbone", "attnlab") == "attnlab"
    assert (
        "--model.backbone timm"
        not in next(p for p in app.configs() if p.stem == "cifar10_gpu").read_text()
    )


def test_cifar10_binary_reader(tmp_path: Path) -> None:
    folder = write_cifar10_bin(tmp_path)
    (train_x, train_y), (test_x, _), classes = read_cifar10_bin(folder)
    assert train_x.shape == (40, 32, 32, 3) and test_x.shape == (20, 32, 32, 3)
    assert train_y.tolist()[:3] == [0, 1, 2] and classes[0] == "airplane"
    raw = (folder / "data_batch_1.bin").read_bytes()
    assert train_x[1, 0, 1, 2] == raw[3073 + 1 + 2 * 1024 + 1]  # blue plane, row 0, column 1
    (folder / "test_batch.bin").write_bytes(raw[:-5])
    with pytest.raises(ValueError, match=r"test_batch\.bin: .* not a whole number of CIFAR-10"):
        read_cifar10_bin(folder)


def test_cifar10_read_in_place_from_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_cifar10_bin(tmp_path / "data" / "cifar10")
    monkeypatch.setenv("ATTNLAB_DATA_DIR", str(tmp_path / "data"))
    dm = ImageData(dataset="cifar10", download=False, val_fraction=0.25)
    dm.setup("fit")
    assert dm.state_summary() == {"train": 30, "val": 10, "test": 20}
    assert dm.train_set[0][0].shape == (3, 32, 32)  # type: ignore[index]


def test_cifar10_config_starts_offline_on_a_cpu(tmp_path: Path) -> None:
    """The README's CPU start of the GPU config, on generated CIFAR-10 files, with no network:
    one epoch of CCT-7 with Mixup/CutMix (odd last batch) and EMA."""
    write_cifar10_bin(tmp_path / "data" / "cifar10")
    proc = run_attnlab(
        "vit", "fit", "--config", "cifar10_gpu", "--config", "cpu", "--run_dir", "run",
        "--trainer.max_epochs", "1", "--data.max_train", "15", "--data.batch_size", "8",
        "--data.num_workers", "0", "--data.download", "false", cwd=tmp_path,
        env={"ATTNLAB_DATA_DIR": str(tmp_path / "data")},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "15 of 36 training images" in proc.stdout + proc.stderr
    assert (tmp_path / "run" / "checkpoints" / "best.ckpt").is_file()
