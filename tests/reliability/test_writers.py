"""Nothing a command writes lands outside its folder (issue #18): every writer goes through
``attnlab.runs.atomic_output`` (a unique temporary beside the target, renamed over it), so a
symbolic link planted at the name a command writes -- export's temporary, the recommender's
``predictions.csv``, the forecast CSV, the captioner's ``captions.json`` -- is replaced, and the
file it points to is left alone; ``attnlab report`` embeds only regular files inside the run
folder; only rank 0 writes predictions, so `predict` in several processes is refused. The
commands run in a subprocess, as a user runs them."""

from __future__ import annotations

import base64
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from attnlab.runs import atomic_output, atomic_write_text

VICTIM_TEXT = "a file outside the run folder that no command may change\n"


def _plant_link(at: Path, victim: Path) -> None:
    """A symbolic link at ``at`` to ``victim`` (a file outside the folder the command writes)."""
    victim.write_text(VICTIM_TEXT)
    at.parent.mkdir(parents=True, exist_ok=True)
    at.symlink_to(victim)


def _assert_replaced_not_followed(at: Path, victim: Path) -> None:
    assert victim.read_text() == VICTIM_TEXT, f"the write through {at} changed {victim}"
    assert at.is_file() and not at.is_symlink(), f"{at} is still the planted link"


def test_atomic_output_replaces_a_link_and_cleans_up(tmp_path: Path) -> None:
    target, victim = tmp_path / "out" / "data.txt", tmp_path / "victim.txt"
    _plant_link(target, victim)
    atomic_write_text(target, "new\n")
    _assert_replaced_not_followed(target, victim)
    assert target.read_text() == "new\n"
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("the writer failed")
    assert target.read_text() == "new\n"  # the old file stays whole
    assert sorted(p.name for p in target.parent.iterdir()) == ["data.txt"]  # no temporary left


# The captioning quick config made tiny (the sizes of tests/apps/captioning's runs).
CAPTION_TINY = (
    "--model.encoder_width", "8", "--model.hidden_dim", "32", "--model.attention_dim", "16",
    "--model.word_dim", "16", "--model.dec_dim", "32", "--model.dec_depth", "1",
    "--data.n_train", "64", "--data.n_val", "16", "--data.n_test", "16",
    "--data.batch_size", "16",
)  # fmt: skip
# The forecast quick config made tiny: a one-layer model of width 8, one batch per loop.
FORECAST_TINY = (
    "--config", "quick", "--data.n_steps", "1510", "--model.dim", "8", "--model.depth", "1",
    "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1",
)  # fmt: skip


@pytest.fixture(scope="module")
def forecast_run(
    tmp_path_factory: pytest.TempPathFactory, attnlab_command: Callable[..., Any]
) -> Path:
    """A one-batch forecast run (checkpoints, figures) and a history CSV to predict from."""
    cwd = tmp_path_factory.mktemp("writers")
    attnlab_command(cwd)("forecast", "fit", *FORECAST_TINY, "--trainer.max_epochs", "1",
                         "--test_after_fit", "false", "--figure_every", "1",
                         "--run_dir", "run")  # fmt: skip
    rng = np.random.default_rng(0)
    stamps = np.arange("2020-01-01T00", "2020-01-10T00", dtype="datetime64[h]")
    lines = ["date,ch0,ch1,ch2,ch3,ch4"] + [
        f"{str(t).replace('T', ' ')}:00,{','.join(f'{v:.4f}' for v in rng.normal(size=5))}"
        for t in stamps
    ]
    (cwd / "history.csv").write_text("\n".join(lines) + "\n")
    return cwd / "run"


@pytest.mark.parametrize("fmt", ["torch-export", "onnx"])
def test_export_does_not_write_through_a_planted_temporary(
    fmt: str, forecast_run: Path, tmp_path: Path, attnlab_command: Callable[..., Any]
) -> None:
    """Export used to write ``<out>.tmp`` (``<out>.tmp.onnx``) under a fixed name and followed a
    link planted there; now its temporary is unique and the link is never opened."""
    out = tmp_path / ("model.onnx" if fmt == "onnx" else "model.pt2")
    planted = [out.with_name(out.name + ".tmp"), out.with_name(out.name + ".tmp.onnx")]
    for i, link in enumerate(planted):
        _plant_link(link, tmp_path / f"victim{i}.txt")
    ckpt = forecast_run / "checkpoints" / "best.ckpt"
    attnlab_command(tmp_path)("forecast", "export", "--ckpt", str(ckpt), "--format", fmt,
                              "--out", str(out))  # fmt: skip
    for i, link in enumerate(planted):
        assert (tmp_path / f"victim{i}.txt").read_text() == VICTIM_TEXT
        assert link.is_symlink()  # not ours to remove either
    assert out.is_file() and out.stat().st_size > 0


# (command-line arguments, the files predict writes relative to its run folder)
PREDICTS = {
    "recsys": (("recsys", "predict", "--config", "quick", "--data.synthetic",
                "{num_users: 300}", "--trainer.limit_predict_batches", "1"),
               ("predictions.csv",)),
    "forecast": (("forecast", "predict", *FORECAST_TINY), ("forecast.csv",)),
    "caption": (("caption", "predict", "--config", "quick", *CAPTION_TINY),
                ("predictions/captions.json", "predictions/p0_attention.png")),
}  # fmt: skip


@pytest.fixture(scope="module")
def caption_run(
    tmp_path_factory: pytest.TempPathFactory, attnlab_command: Callable[..., Any]
) -> Path:
    """A one-batch captioning run (its checkpoint brings the vocabulary) and two images."""
    cwd = tmp_path_factory.mktemp("writers-caption")
    attnlab_command(cwd)("caption", "fit", "--config", "quick", *CAPTION_TINY,
                         "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1",
                         "--trainer.limit_val_batches", "1", "--test_after_fit", "false",
                         "--run_dir", "run")  # fmt: skip
    images = cwd / "images"
    images.mkdir()
    for i in range(2):
        pixels = (np.random.default_rng(i).random((40, 50, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(images / f"p{i}.png")
    return cwd / "run"


@pytest.mark.parametrize("app", list(PREDICTS))
def test_predict_replaces_a_planted_link(
    app: str, request: pytest.FixtureRequest, tmp_path: Path, attnlab_command: Callable[..., Any]
) -> None:
    args, written = PREDICTS[app]
    run_dir = tmp_path / "predict"
    victims = [tmp_path / f"victim{i}.txt" for i in range(len(written))]
    for name, victim in zip(written, victims):
        _plant_link(run_dir / name, victim)
    extra: tuple[str, ...] = ()
    if app == "forecast":
        run = request.getfixturevalue("forecast_run")
        extra = ("--data.predict_csv", str(run.parent / "history.csv"),
                 "--ckpt_path", str(run / "checkpoints" / "best.ckpt"))  # fmt: skip
    if app == "caption":
        run = request.getfixturevalue("caption_run")
        extra = ("--data.predict_images", str(run.parent / "images"),
                 "--ckpt_path", str(run / "checkpoints" / "best.ckpt"))  # fmt: skip
    attnlab_command(tmp_path)(*args, *extra, "--run_dir", str(run_dir))
    for name, victim in zip(written, victims):
        _assert_replaced_not_followed(run_dir / name, victim)


def test_report_embeds_only_files_inside_the_run_folder(
    forecast_run: Path, tmp_path: Path, attnlab_command: Callable[..., Any]
) -> None:
    """A run folder from elsewhere with links to a secret: a figure and config.yaml pointing
    outside. The page holds neither secret and names what it skipped; the run's own figures
    and a link that stays inside the folder are still embedded."""
    run = tmp_path / "run"
    shutil.copytree(forecast_run, run)
    secret_bytes = b"\x89PNG secret key material " * 4
    (tmp_path / "secret.png").write_bytes(secret_bytes)
    (tmp_path / "secret.txt").write_text("password: hunter2\n")
    (run / "figures" / "planted.png").symlink_to(tmp_path / "secret.png")
    (run / "config.yaml").unlink()
    (run / "config.yaml").symlink_to(tmp_path / "secret.txt")
    own = sorted((run / "figures").glob("*.png"))[0]
    (run / "figures" / "inside_link.png").symlink_to(own)
    proc = attnlab_command(tmp_path)("report", str(run), "--out", str(tmp_path / "report.html"))
    page = (tmp_path / "report.html").read_text()
    assert base64.b64encode(secret_bytes).decode() not in page
    assert "hunter2" not in page
    assert "figures/planted.png" in proc.stderr and "config.yaml" in proc.stderr
    assert base64.b64encode(own.read_bytes()).decode() in page
    assert "inside_link.png" in page


def test_predict_in_several_processes_is_refused(
    tmp_path: Path, attnlab_command: Callable[..., Any]
) -> None:
    """Under the ddp preset each process predicts its share and only rank 0 writes: predict used
    to exit 0 with half the predictions in predictions.csv; now it is one line, nothing written."""
    args, _ = PREDICTS["recsys"]
    ddp = ("--config", "ddp", "--trainer.accelerator", "cpu", "--trainer.devices", "2")
    run_dir = tmp_path / "predict"
    proc = attnlab_command(tmp_path)(*args, *ddp, "--run_dir", str(run_dir), check=False)
    assert proc.returncode == 1, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "rank 0's share of the predictions only" in errors[0], errors
    assert "--trainer.devices 1" in errors[0]
    assert not run_dir.exists()
