"""The caption benchmark as a spec of `attnlab caption fit` runs: the published runs are the
shipped configs with a decoder and a CPU budget; the tiny runs go through the runner end to end
and the table holds exactly what the run folders hold."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `benchmarks` is a folder of the checkout, not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks import caption  # noqa: E402
from benchmarks.runner import Run, RunResult, execute  # noqa: E402


def test_full_runs_are_the_shipped_configs_with_a_decoder_and_a_budget() -> None:
    from attnlab.app import get_app

    runs = caption.BENCHMARK.planned("full")
    assert [r.name for r in runs] == [
        *(f"{d}-{m}" for d in ("digits", "flickr8k") for m in caption.DECODERS),
        "flickr8k-lstm_attention-scst",
    ]
    assert f"--model.scst_fraction={caption.SCST_FRACTION}" in runs[-1].overrides
    configs = {p.stem for p in get_app("caption").configs()}
    for run in runs:
        assert run.app == "caption" and set(run.configs) <= configs
        assert run.budget == {"cpu_s": 300}
        assert run.needs_data == (run.labels["dataset"] == "flickr8k")
        assert f"--model.decoder={run.labels['decoder']}" in run.overrides
    assert runs[0].command() == (
        "attnlab caption fit --config digits --model.decoder=lstm_attention "
        "--budget.cpu_s=300 --seed_everything=42"
    )


def test_tiny_runs_tabulate_what_their_folders_hold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ATTNLAB_DATA_DIR", raising=False)
    results = execute(
        caption.BENCHMARK, scale="tiny", jobs=2, threads=1, runs_root=tmp_path / "runs"
    )
    assert [r.status for r in results] == ["ok", "ok"], [r.log_tail for r in results]
    payload, body = caption.tabulate(results)
    assert payload["budget_cpu_s"] == [caption.TINY_BUDGET_CPU_S]
    for row, result in zip(payload["rows"], results):
        metrics = json.loads((result.run_dir / "metrics.json").read_text())
        test = metrics["test"]
        assert row["decoder"] == result.run.labels["decoder"]
        for name in ("bleu1", "bleu4", "cider", "loc"):  # both decoders attend: loc is there
            assert row[name] == test[f"test/{name}"], name
        assert row["steps"] == metrics["train"]["steps"] > 0
        assert metrics["stopped_by"] == row["stopped_by"] == "cpu_budget"
        assert row["final_train_xent"] is not None and row["final_train_xent"] > 0
        assert f"`{result.run.command()}`" in body
    assert "Not in this results file" in body  # no Flickr8k runs at this scale
    assert caption.headline(payload).startswith("digit scenes, 3 CPU s each: Show-Attend-Tell")


def _fake(decoder: str, dataset: str, test: dict[str, float]) -> RunResult:
    run = Run(
        name=f"{dataset}-{decoder}",
        app="caption",
        configs=(dataset,),
        overrides=(f"--model.decoder={decoder}",),
        budget={"cpu_s": 300},
        labels={"dataset": dataset, "decoder": decoder},
    )
    metrics = {"test": test, "train": {"steps": 10, "epochs": 2.0}, "stopped_by": "cpu_budget"}
    epochs = [{"train/xent": 2.0}, {"train/xent": 1.5}]
    return RunResult(run, Path(run.name), metrics, {}, epochs, 0, "")


def test_the_no_attention_baseline_has_no_localization_and_flickr_its_own_table() -> None:
    scores = {f"test/bleu{n}": n / 10 for n in range(1, 5)} | {"test/cider": 0.5}
    results = [
        _fake("lstm_attention", "digits", {**scores, "test/loc": 0.75}),
        _fake("lstm_pooled", "digits", scores),
        _fake("transformer", "flickr8k", scores),
    ]
    payload, body = caption.tabulate(results)
    assert [r["loc"] for r in payload["rows"]] == [0.75, None, None]
    assert payload["rows"][0]["final_train_xent"] == 1.5
    assert "| 40.0 | 75.0 | 0.500 |" in body and "n/a (no attention)" in body
    assert "| 10.0 | 20.0 | 30.0 | 40.0 | 0.500 |" in body  # Flickr8k: BLEU-1..4
    line = caption.headline(payload)
    assert "Show-Attend-Tell BLEU-4 40.0 (attention on the right digit 75.0%)" in line
    assert "no attention BLEU-4 40.0" in line and "Transformer" not in line
