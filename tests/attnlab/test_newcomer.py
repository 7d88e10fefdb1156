"""What a newcomer sees from the `attnlab` command (issue 23): a short log, one error line for
a mistyped option, failed runs that say why, the smoke preset, the atlas's place and its
--data.root, and a mistyped ATTNLAB_DATA_DIR named by its value. Real subprocesses with the toy
app."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from attnlab.atlas.build import _datamodule, default_out
from attnlab.checkpoint import load_checkpoint
from attnlab.paths import data_root, data_root_hint, shared_dir


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_fit_log_is_short_and_epochs_count_from_zero_everywhere(attnlab, tmp_path: Path) -> None:
    proc = attnlab("toy", "fit", "--config", "quick", "--trainer.max_epochs", "2",
                   "--figure_every", "100", "--run_dir", "r")  # fmt: skip
    log = proc.stdout + proc.stderr
    for noise in ("Tip:", "litlogger", "deprecated", "Total params", "Seed set", "GPU available"):
        assert noise not in log, f"{noise!r} in the log:\n{log}"
    assert "model: ToyModel, 3.4 K parameters" in proc.stdout
    assert "┏" not in log  # no summary table
    # one counting of epochs (from 0, Lightning's): metrics.csv, metrics.json, the checkpoint
    run = tmp_path / "r"
    metrics = json.loads((run / "metrics.json").read_text())
    rows = _rows(run / "metrics.csv")
    best = max(rows, key=lambda r: float(r["val/acc"]))
    assert metrics["best_epoch"] == int(best["epoch"])
    assert load_checkpoint(run / "checkpoints" / "best.ckpt")["epoch"] == metrics["best_epoch"]


def test_option_typo_is_one_line_naming_the_closest_options(attnlab) -> None:
    proc = attnlab("toy", "fit", "--config", "quick", "--trainer.max_epoch", "2",
                   "--print_config", check=False)  # fmt: skip
    assert proc.returncode != 0
    assert "max_epochs: 2" not in proc.stdout, "a prefix was taken for the full option name"
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        "error: unknown option --trainer.max_epoch; did you mean --trainer.max_epochs or "
        "--trainer.min_epochs or --trainer.max_steps? (all options: `attnlab toy fit --help`)"
    ], proc.stderr
    proc = attnlab("toy", "fit", "--config", "quick", "--trainer.max_epochs", "three", check=False)
    assert proc.returncode != 0 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "error: --trainer.max_epochs three: not a valid value; expected int or null "
        "(see `attnlab toy fit --help`)"
    ]


def test_failed_fit_leaves_a_manifest_saying_why_or_no_folder(attnlab, tmp_path: Path) -> None:
    # bad data: the datamodule's setup fails before Lightning's callbacks run
    proc = attnlab("toy", "fit", "--config", "quick", "--data.n_train", "-1", "--run_dir", "bad",
                   check=False)  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: Trying to create tensor with negative dimension -1: [-1, 8, 4]"
    ]
    manifest = json.loads((tmp_path / "bad" / "manifest.json").read_text())
    assert manifest["status"].startswith("failed: RuntimeError: Trying to create tensor")
    assert manifest["app"] == "toy" and manifest["end_time"] is not None
    # a trainer that cannot be built: the folder this command made is not left behind empty
    proc = attnlab("toy", "fit", "--config", "quick", "--trainer.accelerator", "nosuch",
                   "--run_dir", "empty", check=False)  # fmt: skip
    assert proc.returncode == 1 and "nosuch" in proc.stderr
    assert not (tmp_path / "empty").exists()


def test_smoke_preset_limits_every_loop(attnlab, tmp_path: Path) -> None:
    shared = shared_dir()
    assert shared is not None
    preset = yaml.safe_load((shared / "configs" / "trainer" / "smoke.yaml").read_text())
    trainer = preset["trainer"]
    assert trainer["max_epochs"] == 1
    for loop in ("train", "val", "test", "predict"):
        assert isinstance(trainer[f"limit_{loop}_batches"], int), loop
    # 1024 samples = 32 batches of 32: the preset stops training at its limit
    attnlab("toy", "fit", "--config", "quick", "--config", "smoke", "--data.n_train", "1024",
            "--run_dir", "s")  # fmt: skip
    rows = _rows(tmp_path / "s" / "metrics.csv")
    assert len(rows) == 1 and int(rows[0]["step"]) == trainer["limit_train_batches"]


def test_atlas_lands_in_the_run_folder_and_takes_a_data_root(
    attnlab, trained_run: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("atlas.html"))
    proc = attnlab("atlas", "run", "--samples", "1", "--data.root", str(tmp_path))
    assert f"atlas: {Path('run') / 'atlas.html'} (1 run(s)" in proc.stdout
    assert (run / "atlas.html").is_file() and not (tmp_path / "atlas.html").exists()
    assert default_out(["a", "b"]) == Path("a") / "atlas.html"
    # --data.root replaces the data folder the run's config.yaml names
    config = tmp_path / "config.yaml"
    config.write_text("data:\n  root: /moved/away\n  batch_size: 8\n")
    app = SimpleNamespace(datamodule=lambda **kwargs: kwargs)
    assert _datamodule(app, config, "/new/place") == {"root": "/new/place", "batch_size": 8}
    assert _datamodule(app, config)["root"] == "/moved/away"


def test_a_mistyped_data_dir_is_named_by_its_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    typo = tmp_path / "dataa"
    monkeypatch.setenv("ATTNLAB_DATA_DIR", str(typo))
    assert data_root(None, "ett") is None
    warning = capsys.readouterr().err.strip()
    assert warning == (
        f"warning: ATTNLAB_DATA_DIR={typo} is not a folder (looked for {typo / 'ett'}); "
        "check its spelling"
    )
    assert data_root(None, "ett") is None and capsys.readouterr().err == ""  # warned once
    assert str(typo / "ett" / "ETTh1.csv") in data_root_hint("ett", "ETTh1.csv")
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("ATTNLAB_DATA_DIR", str(tmp_path / "data"))
    assert data_root_hint("ett") == (
        f"ATTNLAB_DATA_DIR={tmp_path / 'data'} has no ett/ folder (looked for "
        f"{tmp_path / 'data' / 'ett'})"
    )
    monkeypatch.delenv("ATTNLAB_DATA_DIR")
    assert data_root_hint("ett").startswith("ATTNLAB_DATA_DIR is not set")


def test_list_and_help_do_not_import_torch(tmp_path: Path) -> None:
    """`attnlab list` and `attnlab --help` read the installed apps' entry points without
    importing torch or Lightning (start-up time: `python -m benchmarks startup`). The toy app
    is left out: it is one module that imports torch itself."""
    probe = (
        "import sys; from attnlab.cli import main; "
        "code = main(sys.argv[1:]); "
        "heavy = sorted(m for m in ('torch', 'lightning') if m in sys.modules); "
        "print('imported:', heavy); sys.exit(code)"
    )
    for args in (["list"], ["--help"]):
        proc = subprocess.run(
            [sys.executable, "-c", probe, *args],
            cwd=tmp_path,
            env={k: v for k, v in os.environ.items() if k != "ATTNLAB_DEBUG"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        assert "vit" in proc.stdout
        assert "imported: []" in proc.stdout, proc.stdout


def test_quiet_log_hides_lightnings_deprecations_but_not_ours() -> None:
    """Deprecations raised inside Lightning's code are noise to a user; a renamed option of ours
    ("--model.x is deprecated", attributed to Lightning's CLI, which builds the module) is not."""
    import logging
    import warnings

    from attnlab.console import LIGHTNING_LOGGERS, quiet_lightning

    levels = {name: logging.getLogger(name).level for name in LIGHTNING_LOGGERS}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            quiet_lightning(verbose=False)
            for message, module in (
                ("`isinstance(treespec, LeafSpec)` is deprecated", "lightning.pytorch.utilities"),
                ("--model.embed_dim is deprecated; use --model.dim", "lightning.pytorch.cli"),
                ("a warning of the app's own code", "attnlab_vit.module"),
            ):
                warnings.warn_explicit(message, FutureWarning, "x.py", 1, module=module)
        assert [str(w.message) for w in caught] == [
            "--model.embed_dim is deprecated; use --model.dim",
            "a warning of the app's own code",
        ]
        assert logging.getLogger("lightning.pytorch").level == logging.WARNING
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
