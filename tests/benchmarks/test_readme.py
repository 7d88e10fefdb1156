"""The README refresher (``benchmarks/readme.py``) on fixture result files of the older shape."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `benchmarks` is a folder of the checkout, not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks import common, readme  # noqa: E402

# --------------------------------------------------------------------------------------------
# README refresher
# --------------------------------------------------------------------------------------------

ENV = {
    "date_utc": "2026-01-02T03:04:05+00:00",
    "torch": "2.14.1",
    "torch_num_threads": 2,
    "cpu_model": "Test CPU 9000",
    "cpus_usable": 2,
    "cuda_available": False,
    "python": "3.11.9",
    "git": "abc1234",
}


def _fixture_results(folder: Path) -> None:
    folder.mkdir()
    forecast = {
        "environment": {
            **ENV,
            "settings_from_env": {"ATTNLAB_BENCH_BUDGET_S": "patchtst=480", "OMP_NUM_THREADS": "1"},
        },
        "protocol": "task M, every test window",
        "budget_s_per_model": {"dlinear": 120.0},
        "complete": True,
        "results": [
            {"model": "patchtst", "seq_len": 336, "horizon": 96, "test_mse": 0.41, "test_mae": 0.42}
        ],
        "published_mse": {"PatchTST/42 re-run, full test set (L=336)": {"96": 0.385}},
    }
    (folder / "forecast.json").write_text(json.dumps(forecast), encoding="utf-8")
    (folder / "audio.json").write_text(json.dumps({"environment": ENV}), encoding="utf-8")


def test_readme_refresh_replaces_only_the_marked_section_and_is_idempotent(
    tmp_path: Path,
) -> None:
    results = tmp_path / "results"
    _fixture_results(results)
    before, after = "# Title\n\nintro text\n\n", "\n\n## Later\n\nkept as is\n"
    path = tmp_path / "README.md"
    path.write_text(f"{before}{readme.START}\nstale numbers\n{readme.END}{after}", "utf-8")

    assert readme.refresh(path, results) is True
    text = path.read_text(encoding="utf-8")
    assert text.startswith(before + readme.START) and text.endswith(readme.END + after)
    section = text[text.index(readme.START) : text.index(readme.END)]
    assert "stale numbers" not in section
    assert "patchtst L=336 H=96: MSE 0.4100" in section
    # the command carries the settings the run had (a reduced budget, one thread)
    assert (
        "`ATTNLAB_BENCH_BUDGET_S=patchtst=480 OMP_NUM_THREADS=1 nox -s bench -- forecast`"
        in section
    )
    assert "Test CPU 9000, 2 CPUs usable, torch 2.14.1 (2 threads)" in section
    assert "PatchTST/42 re-run, full test set (L=336): MSE H=96 0.385" in section
    assert "Not run yet: `nox -s bench -- vit`" in section
    # the opening table: a row per benchmark, numbers from the json
    assert "| benchmark | ours | measured against |" in section
    assert (
        "| [forecast](#forecast) | ETTh1 test MSE, PatchTST-style (H=96): 0.4100; "
        "best of ours: H=96 0.4100 (patchtst) | PatchTST/42 re-run, full test set (L=336): 0.385 |"
    ) in section
    assert "| [vit](#vit) | not run yet | |" in section
    assert "| [audio](#audio) | see [`results/audio.md`](results/audio.md) | |" in section
    assert "Not run yet: `nox -s bench -- matrix`" in section
    assert "`results/audio.json` could not be summarized" in section  # malformed fixture

    assert readme.refresh(path, results) is False  # idempotent
    assert path.read_text(encoding="utf-8") == text


def test_results_record_the_bench_settings_but_no_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATTNLAB_BENCH_BUDGET_S", "45")
    monkeypatch.setenv("ATTNLAB_BENCH_RESULTS_DIR", "/somewhere/results")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    settings = common.bench_settings()
    assert settings["ATTNLAB_BENCH_BUDGET_S"] == "45" and settings["OMP_NUM_THREADS"] == "1"
    assert "ATTNLAB_BENCH_RESULTS_DIR" not in settings and "ATTNLAB_DATA_DIR" not in settings
    table = common.environment_markdown({"settings_from_env": settings})
    assert "ATTNLAB_BENCH_BUDGET_S=45" in table and "OMP_NUM_THREADS=1" in table


def test_readme_refresh_refuses_a_readme_without_markers(tmp_path: Path) -> None:
    path = tmp_path / "README.md"
    path.write_text("# no markers here\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="results:start"):
        readme.refresh(path, tmp_path)
    assert path.read_text(encoding="utf-8") == "# no markers here\n"
