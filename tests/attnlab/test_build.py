"""``App.build`` (the module and datamodule `fit` would train, nothing else),
``AttnlabModule.configure_from_data``, ``AttnlabDataModule.eval_batch_size`` and the ``App``
fields other tools read."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch.utils.data import TensorDataset

from attnlab import App
from attnlab.data import AttnlabDataModule


@pytest.fixture
def learning_app(toy: Any) -> App:
    """The toy app with a module that learns the training-set size from its data."""

    class Learns(toy.ToyModule):
        def __init__(self, **kwargs: Any):
            super().__init__(**kwargs)
            self.seen: list[int] = []

        def configure_from_data(self, datamodule: Any) -> None:
            self.seen.append(len(datamodule.train_set))

    return App(
        name="toy",
        module=Learns,
        datamodule=toy.ToyData,
        config_dir=toy.app.config_dir,
        monitor="val/acc",
        mode="max",
    )


def test_build_parses_like_fit_and_writes_nothing(
    learning_app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ATTNLAB_RUNS", raising=False)
    module, datamodule = learning_app.build(
        ("quick",), ["--model.dim=24", "--data.n_train", "96", "--data.batch_size", "8"]
    )
    assert module.hparams.dim == 24 and module.model.embed.out_features == 24
    assert datamodule.batch_size == 8 and len(datamodule.train_set) == 96  # set up for fit
    assert module.seen == [96]  # configure_from_data ran once, on the set-up data
    assert next(iter(datamodule.train_dataloader()))[0].shape == (8, 8, 4)
    assert list(tmp_path.iterdir()) == []  # no run folder, no logs
    # seeded like fit: the same arguments build the same weights
    again, _ = learning_app.build(("quick",), ["--model.dim=24"])
    torch.testing.assert_close(again.state_dict(), module.state_dict())


def test_build_errors_are_value_errors(learning_app: App) -> None:
    with pytest.raises(ValueError, match=r"'nosuch' is neither a file nor one of: .*quick"):
        learning_app.build(["nosuch"])
    with pytest.raises(ValueError, match=r"unknown option --model\.nosuch; did you mean"):
        learning_app.build(overrides=["--model.nosuch=1"])
    with pytest.raises(ValueError, match=r"--budget\.cpu_s must be a positive number"):
        learning_app.build(overrides=["--budget.cpu_s", "-1"])
    with pytest.raises(ValueError, match="sequences of strings"):
        learning_app.build("quick")  # type: ignore[arg-type]


def test_setup_calls_configure_from_data_with_the_trainers_datamodule(learning_app: App) -> None:
    module = learning_app.module()
    datamodule = learning_app.datamodule(n_train=40)
    datamodule.setup("fit")
    module.setup("fit")  # no trainer attached: nothing to learn from
    module._trainer = SimpleNamespace(datamodule=datamodule)
    module.setup("fit")
    assert module.seen == [40]


def test_setup_is_safe_when_an_app_still_overrides_it(toy: Any) -> None:
    """Apps that configure themselves in their own ``setup`` keep working, calling super or not."""
    calls: list[str] = []

    class CallsSuper(toy.ToyModule):
        def setup(self, stage: str) -> None:
            calls.append("own")
            super().setup(stage)

    class Alone(toy.ToyModule):
        def setup(self, stage: str) -> None:
            calls.append("alone")

    dm = toy.ToyData()
    dm.setup("fit")
    for cls in (CallsSuper, Alone):
        module = cls()
        module._trainer = SimpleNamespace(datamodule=dm)
        module.setup("fit")
    assert calls == ["own", "alone"]


class Numbers(AttnlabDataModule):
    def setup(self, stage: str | None = None) -> None:
        data = TensorDataset(torch.arange(20.0))
        self.train_set = self.val_set = self.test_set = self.predict_set = data


def test_eval_batch_size_is_used_by_evaluation_loaders() -> None:
    dm = Numbers(batch_size=4, eval_batch_size=10)
    dm.setup()
    assert dm.train_dataloader().batch_size == 4
    for loader in (dm.val_dataloader(), dm.test_dataloader(), dm.predict_dataloader()):
        assert loader.batch_size == 10
        assert [len(b[0]) for b in loader] == [10, 10]
    default = Numbers(batch_size=4)
    default.setup()
    assert default.eval_batch_size is None and default.val_dataloader().batch_size == 4
    with pytest.raises(
        ValueError, match=r"--data\.eval_batch_size must be a positive integer, got 0"
    ):
        Numbers(eval_batch_size=0)


def test_app_has_a_bench_order(toy: Any) -> None:
    assert toy.app.bench_order == 100
    apps = [App(name=n, module=toy.ToyModule, datamodule=toy.ToyData, config_dir=".",
                bench_order=o) for n, o in (("b", 2), ("a", 1))]  # fmt: skip
    assert [a.name for a in sorted(apps, key=lambda a: a.bench_order)] == ["a", "b"]
