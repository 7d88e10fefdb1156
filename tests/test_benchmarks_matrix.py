"""The variant matrix (``benchmarks/matrix.py``) and the README refresher (``benchmarks/readme.py``).

The matrix runs for real on one domain (recsys, built-in data, 2 CPU seconds per variant); the
variant switches are checked on the apps' quick models; the refresher on fixture result files.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `benchmarks` is a folder of the checkout, not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks import common, matrix, readme  # noqa: E402


def _quick_module(domain: str, **overrides: Any) -> Any:
    """The app's quick-config LightningModule, built without data (vit, forecast, recsys)."""
    spec = matrix.DOMAINS[domain]
    app = __import__(spec.package).app
    cfg = yaml.safe_load((Path(app.config_dir) / "quick.yaml").read_text(encoding="utf-8"))
    return app.module(**{**cfg["model"], **overrides})


def _variant(name: str) -> matrix.Variant:
    return next(v for v in matrix.variants() if v.name == name)


# --------------------------------------------------------------------------------------------
# variant switches
# --------------------------------------------------------------------------------------------


def test_rope_zeroes_and_freezes_the_learned_table_and_rotates_self_attention() -> None:
    from attention_core import RotaryEmbedding

    module = _quick_module("forecast")
    matrix.apply_variant(matrix.DOMAINS["forecast"], module, _variant("rope"))
    table = module.model.pos_embed
    assert not table.requires_grad and torch.count_nonzero(table) == 0
    layers = matrix._self_attention(module)
    assert layers and all(isinstance(m.pos, RotaryEmbedding) for _, m in layers)
    assert all(m.backend == "sdpa" for _, m in layers)
    x = module.example_inputs()[0]
    module.eval()
    assert torch.isfinite(module.export_model()(x)).all()


def test_sincos_on_a_grid_is_the_fixed_2d_table_after_the_class_token() -> None:
    from attention_core.positional import sincos_2d_table

    module = _quick_module("vit")
    matrix.apply_variant(matrix.DOMAINS["vit"], module, _variant("sincos"))
    table = module.model.pos_embed[0]  # (1 + N, D)
    grid = tuple(module.model.grid_size)
    assert not module.model.pos_embed.requires_grad
    assert torch.equal(table[0], torch.zeros_like(table[0]))
    assert torch.allclose(table[1:], sincos_2d_table(table.shape[-1], grid))


def test_backend_switch_reaches_every_self_attention_layer_with_its_options() -> None:
    module = _quick_module("forecast")
    tokens = module.model.pos_embed.shape[1]
    settings = matrix.apply_variant(matrix.DOMAINS["forecast"], module, _variant("linformer"))
    layers = matrix._self_attention(module)
    assert all(m.backend == "linformer" for _, m in layers)
    assert settings["backend_kwargs"] == {"seq_len": tokens, "proj_dim": max(4, tokens // 4)}
    assert module.model.pos_embed.requires_grad  # learned positions stay trainable
    linear = _quick_module("recsys", num_items=40)  # its quick config has attention dropout
    assert all(m.attn_drop.p > 0 for _, m in matrix._self_attention(linear))
    settings = matrix.apply_variant(matrix.DOMAINS["recsys"], linear, _variant("linear"))
    assert all(m.attn_drop.p == 0.0 for _, m in matrix._self_attention(linear))
    assert all(m.backend == "linear" for _, m in matrix._self_attention(linear))
    assert settings["attention_dropout_off"] > 0


def test_invalid_combinations_are_named_and_valid_ones_are_not() -> None:
    d = matrix.DOMAINS
    assert "causal" in matrix.invalid_reason(d["recsys"], _variant("linformer"))
    assert "2-D grid" in matrix.invalid_reason(d["audio"], _variant("alibi"))
    assert matrix.invalid_reason(d["forecast"], _variant("linformer")) is None
    assert matrix.invalid_reason(d["recsys"], _variant("alibi")) is None


# --------------------------------------------------------------------------------------------
# the runner, on one domain
# --------------------------------------------------------------------------------------------


@pytest.mark.xdist_group("benchmark_matrix")
def test_matrix_on_one_domain_writes_json_markdown_and_plot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ATTNLAB_DATA_DIR", raising=False)
    monkeypatch.setenv("ATTNLAB_BENCH_THREADS", "1")
    data = matrix.main(
        domains=["recsys"], names=["sdpa", "linformer"], budget_s=2.0, results_dir=tmp_path
    )
    on_disk = json.loads((tmp_path / "matrix.json").read_text(encoding="utf-8"))
    assert on_disk == json.loads(json.dumps(data))
    block = on_disk["domains"]["recsys"]
    assert not block["real_data"] and "not found" in block["fallback_note"]
    rows = {r["variant"]: r for r in block["variants"]}
    assert set(rows) == {"sdpa", "linformer"}
    sdpa = rows["sdpa"]
    assert sdpa["status"] == "ok", sdpa
    assert sdpa["metric"] == "test/ndcg@10" and 0.0 <= sdpa["value"] <= 1.0
    assert sdpa["steps"] > 0 and sdpa["samples"] > 0 and sdpa["samples_per_s"] > 0
    assert sdpa["train_cpu_s"] >= 2.0  # trained up to the budget, not past it by much
    assert sdpa["peak_rss_increase_mb"] > 0
    assert rows["linformer"]["status"] == "n/a" and "causal" in rows["linformer"]["reason"]
    md = (tmp_path / "matrix.md").read_text(encoding="utf-8")
    assert "## recsys" in md and "n/a: linformer" in md and "built-in quick data" in md
    png = (tmp_path / "matrix.png").read_bytes()
    assert png.startswith(b"\x89PNG")


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
