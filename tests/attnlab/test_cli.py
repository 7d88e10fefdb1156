"""The `attnlab` command driven end to end with the toy app (real subprocesses)."""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

import pytest
import torch

from attnlab.checkpoint import load_checkpoint


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_list_discovers_app_through_entry_point(attnlab) -> None:
    out = attnlab("list").stdout
    assert re.search(r"^toy\s", out, re.M), out


def test_unknown_app_is_a_clear_error(attnlab) -> None:
    proc = attnlab("nosuchapp", "fit", check=False)
    assert proc.returncode != 0
    assert "no app named 'nosuchapp'" in proc.stderr + proc.stdout


def test_print_config_shows_overrides(attnlab) -> None:
    out = attnlab("toy", "fit", "--config", "quick", "--model.dim=24", "--print_config").stdout
    assert "dim: 24" in out and "max_epochs: 3" in out


def test_fit_writes_the_run_folder(trained_run: Path) -> None:
    run = trained_run
    for name in ("config.yaml", "manifest.json", "metrics.csv", "metrics.json"):
        assert (run / name).is_file(), name
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "checkpoints" / "best.ckpt").is_file()
    assert list((run / "figures").glob("toy_attention_*.png"))
    assert list((run / "tb").glob("events.out.tfevents.*"))
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["seed"] == 42
    assert manifest["versions"]["torch"] == torch.__version__
    assert manifest["start_time"] <= manifest["end_time"]
    rows = _rows(run / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    metrics = json.loads((run / "metrics.json").read_text())
    best_acc = max(float(r["val/acc"]) for r in rows)
    assert metrics["best"]["val/acc"] == pytest.approx(best_acc)
    assert set(metrics["test"]) == {"test/acc", "test/loss"}
    assert metrics["headline"]["metric"] == "test/acc"
    assert metrics["headline"]["value"] == metrics["test"]["test/acc"]
    # the toy task is learnable: two epochs beat chance clearly
    assert metrics["best"]["val/acc"] > 0.7


def test_validate_test_predict_from_checkpoint(attnlab, trained_run: Path, tmp_path: Path) -> None:
    best = str(trained_run / "checkpoints" / "best.ckpt")
    out = attnlab("toy", "test", "--config", "quick", "--ckpt_path", best, "--run_dir", "t").stdout
    assert "test/acc" in out
    metrics = json.loads((tmp_path / "t" / "metrics.json").read_text())
    expected = json.loads((trained_run / "metrics.json").read_text())["test"]["test/acc"]
    assert metrics["test"]["test/acc"] == pytest.approx(expected)
    attnlab("toy", "validate", "--config", "quick", "--ckpt_path", best, "--run_dir", "v")
    assert "validate" in json.loads((tmp_path / "v" / "metrics.json").read_text())
    attnlab("toy", "predict", "--config", "quick", "--ckpt_path", best, "--run_dir", "p")
    assert (tmp_path / "p" / "manifest.json").is_file()


def test_resume_from_last_continues_the_run(attnlab, tmp_path: Path) -> None:
    attnlab("toy", "fit", "--config", "quick", "--trainer.max_epochs", "1", "--run_dir", "r")
    first_best = (tmp_path / "r" / "checkpoints" / "best.ckpt").read_bytes()
    attnlab(
        "toy",
        "fit",
        "--config",
        "quick",
        "--trainer.max_epochs",
        "3",
        "--run_dir",
        "r",
        "--ckpt_path",
        "last",
    )
    rows = _rows(tmp_path / "r" / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    ckpt = load_checkpoint(tmp_path / "r" / "checkpoints" / "last.ckpt")
    assert ckpt["epoch"] == 2
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert len(manifest["resumed"]) == 1 and manifest["status"] == "completed"
    assert first_best  # the first run's files were there to resume from


def test_fit_refuses_to_overwrite_a_run(attnlab, trained_run: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in trained_run.rglob("*") if p.is_file()}
    proc = attnlab("toy", "fit", "--config", "quick", "--run_dir", str(trained_run), check=False)
    assert proc.returncode != 0
    assert "already holds a run" in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
    after = {p: p.stat().st_mtime_ns for p in trained_run.rglob("*") if p.is_file()}
    assert before == after


def test_resume_without_run_dir_or_checkpoint_is_refused(attnlab) -> None:
    proc = attnlab("toy", "fit", "--config", "quick", "--ckpt_path", "last", check=False)
    assert proc.returncode != 0 and "--run_dir" in proc.stderr
    proc = attnlab(
        "toy", "fit", "--config", "quick", "--ckpt_path", "last", "--run_dir", "empty", check=False
    )
    assert proc.returncode != 0 and "does not exist" in proc.stderr


@pytest.mark.parametrize("fmt", ["torch-export", "onnx"])
def test_export_matches_eager(attnlab, trained_run: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"model.{fmt}"
    proc = attnlab(
        "toy",
        "export",
        "--ckpt",
        str(trained_run / "checkpoints" / "best.ckpt"),
        "--format",
        fmt,
        "--out",
        str(out),
    )
    assert out.is_file() and out.stat().st_size > 0
    diff = float(re.search(r"max abs difference vs eager: (\S+)", proc.stdout).group(1))
    assert diff <= 1e-4
    again = attnlab(
        "toy",
        "export",
        "--ckpt",
        str(trained_run / "checkpoints" / "best.ckpt"),
        "--format",
        fmt,
        "--out",
        str(out),
        check=False,
    )
    assert again.returncode != 0 and "already exists" in again.stderr


def test_report_is_self_contained(attnlab, trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    attnlab("report", str(trained_run), "--out", str(out))
    page = out.read_text()
    assert "<table>" in page and "test/acc" in page and "max_epochs" in page
    assert page.count("data:image/png;base64,") >= 2  # curves and at least one attention figure
    assert not re.search(r"""(src|href)=['"]?(https?:)?//""", page)


def test_nan_guard_stops_and_keeps_last_good_checkpoint(attnlab, tmp_path: Path) -> None:
    # 8 steps per epoch: the loss turns NaN in the second epoch, after one good checkpoint.
    proc = attnlab(
        "toy",
        "fit",
        "--config",
        "quick",
        "--model.nan_at_step",
        "11",
        "--run_dir",
        "n",
        check=False,
    )
    assert proc.returncode != 0
    assert re.search(r"non-finite loss \(nan\) at step \d+ \(epoch 1", proc.stderr), proc.stderr
    ckpt = load_checkpoint(tmp_path / "n" / "checkpoints" / "last.ckpt")
    assert ckpt["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())
    manifest = json.loads((tmp_path / "n" / "manifest.json").read_text())
    assert manifest["status"].startswith("failed: NonFiniteLossError")


def test_deterministic_runs_repeat_exactly(attnlab, tmp_path: Path) -> None:
    for name in ("a", "b"):
        attnlab(
            "toy",
            "fit",
            "--config",
            "quick",
            "--trainer.max_epochs",
            "2",
            "--trainer.deterministic",
            "true",
            "--run_dir",
            name,
            "--test_after_fit",
            "false",
        )
    a, b = (_rows(tmp_path / n / "metrics.csv") for n in ("a", "b"))
    for ra, rb in zip(a, b, strict=True):
        for clock in ("time", "train_cpu_s", "train_wall_s"):  # measured, not learned
            ra.pop(clock), rb.pop(clock)
        assert ra == rb


def test_checkpoint_of_another_app_is_refused(attnlab, trained_run: Path, tmp_path: Path) -> None:
    ckpt = torch.load(trained_run / "checkpoints" / "best.ckpt", weights_only=True)
    ckpt["attnlab"]["app"] = "vit"
    ckpt["attnlab"]["module"] = "attnlab_vit.module.ViTModule"
    torch.save(ckpt, tmp_path / "other.ckpt")
    proc = attnlab("toy", "test", "--config", "quick", "--ckpt_path", "other.ckpt", check=False)
    assert proc.returncode != 0
    assert "written by attnlab_vit.module.ViTModule" in proc.stderr
    proc = attnlab("toy", "export", "--ckpt", "other.ckpt", "--format", "torch-export", check=False)
    assert proc.returncode != 0 and "'vit'" in proc.stderr


def test_pickle_payload_in_checkpoint_is_refused(attnlab, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"state_dict": {}, "evil": Payload()}, tmp_path / "evil.ckpt")
    proc = attnlab("toy", "test", "--config", "quick", "--ckpt_path", "evil.ckpt", check=False)
    assert proc.returncode != 0
    assert not marker.exists()
    proc = attnlab("toy", "export", "--ckpt", "evil.ckpt", "--format", "onnx", check=False)
    assert proc.returncode != 0 and "refusing to load" in proc.stderr
    assert not marker.exists()


def test_ddp_two_cpu_processes(attnlab, tmp_path: Path) -> None:
    attnlab(
        "toy",
        "fit",
        "--config",
        "quick",
        "--config",
        "ddp",
        "--trainer.accelerator",
        "cpu",
        "--trainer.devices",
        "2",
        "--trainer.max_epochs",
        "1",
        "--run_dir",
        "d",
        timeout=400,
    )
    metrics = json.loads((tmp_path / "d" / "metrics.json").read_text())
    assert metrics["test"]["test/acc"] > 0.5
    assert json.loads((tmp_path / "d" / "manifest.json").read_text())["devices"] == 2


def test_debug_preset_runs_one_batch(attnlab, tmp_path: Path) -> None:
    proc = attnlab("toy", "fit", "--config", "quick", "--config", "debug", "--run_dir", "f")
    assert "fast_dev_run" in proc.stdout + proc.stderr or (tmp_path / "f" / "metrics.json").exists()


def test_explicit_model_arguments_win_over_checkpoint_hyperparameters(
    attnlab, trained_run: Path, tmp_path: Path
) -> None:
    best = str(trained_run / "checkpoints" / "best.ckpt")
    attnlab(
        "toy",
        "test",
        "--config",
        "quick",
        "--ckpt_path",
        best,
        "--model.nan_at_step",
        "7",
        "--run_dir",
        "a",
    )
    attnlab("toy", "test", "--config", "quick", "--ckpt_path", best, "--run_dir", "b")
    assert "nan_at_step: 7" in (tmp_path / "a" / "config.yaml").read_text()
    assert "nan_at_step: -1" in (tmp_path / "b" / "config.yaml").read_text()
