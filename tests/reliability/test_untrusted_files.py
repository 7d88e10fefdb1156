"""Files that arrive from elsewhere never run code: a checkpoint (or the vocabulary, item map or
class names stored inside it) holding a pickled object is refused by every command that takes
``--ckpt_path`` and by ``from_checkpoint``, and so is a planted file in the pretrained-weights
cache. (Downloads checked against sha256 and archive extraction that stays inside its folder are
covered in tests/attnlab/test_datasets.py.)"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from reliability_cases import APPS, AppCase

from attnlab.app import get_app
from attnlab.checkpoint import CheckpointError
from attnlab.cli import main


class Payload:
    """Unpickling this runs ``touch <marker>``: proof of code execution if the marker appears."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def _planted_checkpoints(app: AppCase, folder: Path, marker: Path) -> dict[str, Path]:
    """Checkpoints shaped like the app's own, each with the payload in one place."""
    module = get_app(app.command).module
    meta = {"app": app.command, "module": f"{module.__module__}.{module.__qualname__}"}
    places: dict[str, dict[str, Any]] = {
        "weights": {"state_dict": {"w": Payload(marker)}, "attnlab": meta},
        "hyper_parameters": {"state_dict": {}, "hyper_parameters": {"lr": Payload(marker)}},
        "side_data": {
            "state_dict": {},
            "attnlab": {**meta, "extras": {app.side_data or "side_data": Payload(marker)}},
        },
    }
    paths = {}
    for place, content in places.items():
        paths[place] = folder / f"{place}.ckpt"
        torch.save(content, paths[place])
    return paths


@pytest.mark.parametrize("app", APPS, ids=lambda a: a.command)
def test_checkpoint_with_pickled_code_is_refused(
    app: AppCase,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each command gets the payload in another place: in the weights, in the hyper-parameters
    (which Lightning reads first) and in the app's side data. In process (the same ``main`` the
    command runs) to spare interpreter starts."""
    monkeypatch.delenv("ATTNLAB_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["attnlab"])
    marker = tmp_path / "pwned"
    planted = _planted_checkpoints(app, tmp_path, marker)
    for sub, place in (("validate", "weights"), ("test", "hyper_parameters"),
                       ("predict", "side_data")):  # fmt: skip
        ckpt, run_dir = planted[place], tmp_path / sub
        code = main([app.command, sub, "--config", "quick", "--ckpt_path", str(ckpt),
                     "--run_dir", str(run_dir)])  # fmt: skip
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1, f"{sub} accepted {place}.ckpt"
        assert err and err[-1].startswith("error: refusing to load"), err[-3:]
        assert str(ckpt) in err[-1]
        assert not marker.exists(), f"{sub} ran the code in {place}.ckpt"
        assert not (run_dir / "metrics.json").exists()
    for place, ckpt in planted.items():
        with pytest.raises(CheckpointError, match="refusing to load"):
            get_app(app.command).module.from_checkpoint(ckpt)
        assert not marker.exists(), f"from_checkpoint ran the code in {place}.ckpt"


def test_planted_pretrained_weights_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The captioner's ImageNet encoder weights come from torch's download cache: a file planted
    there under the expected name must be refused, not unpickled."""
    from attnlab_captioning.model import (
        TorchvisionResNetEncoder,
        _pretrained_weights,
        load_pretrained_encoder,
    )

    marker = tmp_path / "pwned"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("ATTNLAB_OFFLINE", "1")
    name = Path(_pretrained_weights("resnet18").url).name
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    cache.mkdir(parents=True)
    torch.save({"conv1.weight": Payload(marker)}, cache / name)
    encoder = TorchvisionResNetEncoder("resnet18", stage=2)
    with pytest.raises(RuntimeError, match=f"refusing to load .*{name}"):
        load_pretrained_encoder(encoder)
    assert not marker.exists()
