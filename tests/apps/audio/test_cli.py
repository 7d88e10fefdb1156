"""End to end through the real `attnlab audio` command: fit, figures, predict, export, errors."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from attnlab_audio.audio_io import write_wav

from attnlab.cli import main

from .conftest import tone

SMALL = ["--trainer.max_epochs", "1", "--data.n_synthetic", "96", "--figure_every", "1"]


def attnlab(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "attnlab.cli", "audio", *args],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("audio_cli")
    result = attnlab("fit", "--config", "quick", *SMALL, "--run_dir", str(tmp / "run"), cwd=tmp)
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp / "run"


def test_fit_writes_the_run_folder(run: Path) -> None:
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["app"] == "audio" and metrics["headline"]["metric"] == "test/acc"
    assert 0.0 <= metrics["test"]["test/acc"] <= 1.0
    assert (run / "checkpoints" / "best.ckpt").is_file()
    report = json.loads((run / "test_report.json").read_text())
    assert len(report["confusion_matrix"]) == 12 and report["per_class"][10]["name"] == "0"
    figures = {p.name for p in (run / "figures").iterdir()}
    assert {
        "attention_rollout_final.png",
        "confusion_matrix.png",
        "last_layer_heads_final.png",
    } <= figures


def test_predict_writes_csv_and_json(run: Path, tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    write_wav(clips / "a.wav", tone(941.0, seconds=0.3) + tone(1336.0, seconds=0.3), 8000)
    write_wav(clips / "b.wav", tone(697.0, sr=16000, seconds=0.2), 16000)  # resampled
    out = tmp_path / "pred"
    ckpt = run / "checkpoints" / "best.ckpt"
    result = attnlab(
        "predict", "--config", "quick", "--ckpt_path", str(ckpt), "--data.predict_path", str(clips),
        "--run_dir", str(out), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert [Path(r["path"]).name for r in rows] == ["a.wav", "b.wav"]
    assert all(r["name_1"] in "123456789*0#" for r in rows)
    preds = json.loads((out / "predictions.json").read_text())["predictions"]
    probs = [t["probability"] for t in preds[0]["top"]]
    assert len(preds) == 2 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001


def test_export_command(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "model.pt2"
    ckpt = str(run / "checkpoints" / "best.ckpt")
    assert (
        main(["audio", "export", "--ckpt", ckpt, "--format", "torch-export", "--out", str(out)])
        == 0
    )
    assert out.is_file() and "max abs difference" in capsys.readouterr().out


def test_bad_wav_is_a_one_line_error(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """In process (the same `main` as the command) to spare a second interpreter start."""
    monkeypatch.delenv("ATTNLAB_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"")
    code = main([
        "audio", "predict", "--config", "quick", "--ckpt_path", str(run / "checkpoints" / "best.ckpt"),
        "--data.predict_path", str(bad), "--run_dir", str(tmp_path / "p"),
    ])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith("error:") and "bad.wav: the file is empty" in err[-1]
