"""The variant matrix: planned from the installed apps' ``MatrixDomain``s (every backend and
position, three seeds, one budget per domain, a full-run reference), verdicts only outside the
seeds' spread, and tiny runs end to end through the runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attnlab.app import MatrixDomain, load_apps
from benchmarks import matrix
from benchmarks.runner import Run, RunResult, execute


def test_full_plan_covers_every_app_domain_with_three_seeds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ATTNLAB_DATA_DIR", raising=False)
    planned = matrix.runs("full")
    domains = {name: app.matrix for name, app in load_apps().items() if app.matrix is not None}
    assert set(domains) == {"vit", "caption", "forecast", "recsys", "audio"}
    assert len({r.name for r in planned}) == len(planned)
    for name, dom in domains.items():
        mine = [r for r in planned if r.labels["domain"] == name]
        variants = matrix.variants(dom.default_pos)
        assert len(mine) == 1 + len(variants) * len(matrix.SEEDS)
        reference = [r for r in mine if r.labels["variant"] == "reference"]
        assert len(reference) == 1 and not reference[0].budget  # the config's own schedule
        for run in mine:
            assert run.configs == ("quick",)  # no data dir: the built-in data
            assert run.labels["data"] == dom.data_label(real=False)
            if run.labels["variant"] != "reference":
                assert run.budget == {"cpu_s": dom.budget_cpu_s}
                assert run.may_refuse
            if run.labels["variant"] == "local":
                assert f"--model.attention.window={dom.window}" in run.overrides
        # The default position is the sdpa row, never a separate pos= variant.
        assert f"pos={dom.default_pos}" not in {v for v, _ in variants}


def test_data_label_falls_back_to_the_label() -> None:
    common = dict(config="quick", data=None, metric="test/acc", mode="max", budget_cpu_s=1.0)
    plain = MatrixDomain(label="built-in tones", window=2, **common)  # type: ignore[arg-type]
    assert plain.data_label(real=False) == plain.data_label(real=True) == "built-in tones"
    two = MatrixDomain(label="FSDD", fallback_label="tones", window=2, **common)  # type: ignore[arg-type]
    assert (two.data_label(real=True), two.data_label(real=False)) == ("FSDD", "tones")


def _result(variant: str, seed: int, value: float | None, refused: str = "") -> RunResult:
    labels = {"domain": "d", "variant": variant, "data": "x", "metric": "test/acc", "mode": "max"}
    run = Run(name=f"d-{variant}-s{seed}", app="audio", configs=("quick",), seed=seed,
              labels=labels)  # fmt: skip
    metrics = {} if value is None else {"test": {"test/acc": value}}
    return RunResult(run=run, run_dir=Path("unused"), metrics=metrics, manifest={}, epochs=[],
                     returncode=0, log_tail="", status="refused" if refused else "ok",
                     note=refused)  # fmt: skip


def test_a_variant_is_better_or_worse_only_outside_the_seeds_spread() -> None:
    results = [_result("reference", 42, 0.90)]
    for seed, (sdpa, math_, linear, local) in enumerate(
        [(0.80, 0.805, 0.50, 0.86), (0.81, 0.80, 0.52, 0.87), (0.79, 0.795, 0.51, 0.88)]
    ):
        results += [
            _result("sdpa", seed, sdpa),
            _result("math", seed, math_),
            _result("linear", seed, linear),
            _result("local", seed, local),
        ]
    results.append(_result("pos=alibi", 0, None, refused="pos 'alibi' needs a 1-D sequence"))
    payload, body = matrix.tabulate(results)
    block = payload["domains"]["d"]
    verdicts = {name: entry["verdict"] for name, entry in block["variants"].items()}
    assert verdicts == {
        "sdpa": "the default",
        "math": "within noise",
        "linear": "worse",
        "local": "better",
        "pos=alibi": "n/a: pos 'alibi' needs a 1-D sequence",
    }
    assert block["budget_share_of_full_quality"] == pytest.approx(0.80 / 0.90)
    assert "**below the 90 % goal**" in body


def test_tiny_runs_end_to_end(tmp_path: Path) -> None:
    """One domain at the tiny scale: its runs go through `attnlab audio fit` and the table is
    read back from their folders."""
    results = execute(matrix.BENCHMARK, scale="tiny", threads=1, runs_root=tmp_path, only="audio-")
    mine = [r for r in results if r.run.labels["domain"] == "audio"]
    assert [r.run.labels["variant"] for r in mine] == ["sdpa", "pos=rope2d"]
    assert all(r.status == "ok" for r in mine), [r.log_tail for r in mine]
    payload, _ = matrix.tabulate(mine)
    for r in mine:
        written = json.loads((r.run_dir / "metrics.json").read_text(encoding="utf-8"))
        entry = payload["domains"]["audio"]["variants"][r.run.labels["variant"]]
        assert entry["values"] == [written["test"]["test/acc"]]
        assert written["stopped_by"] == "cpu_budget"
