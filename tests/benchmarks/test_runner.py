"""The benchmark runner (``benchmarks/runner.py``): a benchmark is a list of ``attnlab`` commands,
each run in its own process, tabulated from nothing but the run folders.

The end-to-end tests train the ``vit`` app's quick config for three steps (a few CPU seconds);
the last test runs every benchmark module's ``runs("tiny")`` through the same path.
"""

from __future__ import annotations

import ast
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `benchmarks` is a folder of the checkout, not an installed package
    sys.path.insert(0, str(ROOT))

import benchmarks  # noqa: E402
from benchmarks import readme  # noqa: E402
from benchmarks.runner import (  # noqa: E402
    Benchmark,
    BenchmarkFailed,
    Run,
    RunResult,
    _stamp,
    config_digest,
    execute,
    results_table,
    run_benchmark,
)

# Three training steps, two validation and two test batches, no figures: seconds on one thread.
TINY = (
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=3",
    "--trainer.limit_val_batches=2",
    "--trainer.limit_test_batches=2",
    "--figure_every=0",
)


def _vit(name: str, *extra: str, seed: int = 42, **labels: Any) -> Run:
    return Run(
        name=name,
        app="vit",
        configs=("quick",),
        overrides=(*TINY, *extra),
        seed=seed,
        labels=labels,
    )


def _tabulate(results: list[RunResult]) -> tuple[dict[str, Any], str]:
    """Reads only the results: the shape every benchmark's tabulate has."""
    rows = [
        {**r.run.labels, "top1": r.metric("test/top1"), "epochs": len(r.epochs)} for r in results
    ]
    body = results_table(
        results,
        {"run": lambda r: r.run.name, "test top-1": lambda r: f"{r.metric('test/top1'):.4f}"},
        ["l", "r"],
    )
    return {"rows": rows}, body


def _bench(*runs: Run, name: str = "tinyvit") -> Benchmark:
    return Benchmark(
        name=name,
        title="Two tiny ViT runs",
        runs=lambda scale: list(runs),
        tabulate=_tabulate,
        headline=lambda p: "top-1 " + ", ".join(f"{r['top1']:.3f}" for r in p["rows"]),
        anchors=({"what": "nothing", "value": 1.0, "protocol": "none", "source": "this test"},),
    )


def _no_machine_paths(text: str, *folders: Path) -> None:
    for folder in (ROOT, *folders):
        assert str(folder) not in text, f"{folder} written into the results"


# --------------------------------------------------------------------------------------------
# the command a run is
# --------------------------------------------------------------------------------------------


def test_run_argv_and_command() -> None:
    run = Run(
        name="patchtst-96",
        app="forecast",
        configs=("etth1", "cpu"),
        overrides=("--data.horizon=96", "--model.name=patch tst"),
        budget={"cpu_s": 480.0, "wall_s": 0.5},
        seed=7,
    )
    assert run.argv() == [
        "forecast", "fit", "--config", "etth1", "--config", "cpu", "--data.horizon=96",
        "--model.name=patch tst", "--budget.cpu_s=480", "--budget.wall_s=0.5", "--seed_everything=7",
    ]  # fmt: skip
    assert run.command() == (
        "attnlab forecast fit --config etth1 --config cpu --data.horizon=96 "
        "'--model.name=patch tst' --budget.cpu_s=480 --budget.wall_s=0.5 --seed_everything=7"
    )
    assert shlex.split(run.command())[1:] == run.argv()
    # no budget: no budget flags (the layer may not know them)
    assert not any(a.startswith("--budget") for a in _vit("x").argv())


@pytest.mark.parametrize("name", ["", "a/b", "../x", " x", "-x"])
def test_run_name_must_be_a_folder_name(name: str) -> None:
    with pytest.raises(ValueError, match="run name"):
        _vit(name)


def test_run_names_are_unique_and_the_scale_known(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="used twice: a"):
        execute(_bench(_vit("a"), _vit("a")), runs_root=tmp_path)
    with pytest.raises(ValueError, match="scale 'huge'"):
        execute(_bench(_vit("a")), scale="huge", runs_root=tmp_path)


def test_runs_needing_data_are_skipped_without_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ATTNLAB_DATA_DIR", raising=False)
    run = Run("real", "vit", ("fashion_mnist",), needs_data=True)
    (result,) = execute(_bench(run), runs_root=tmp_path)
    assert result.status == "skipped" and "ATTNLAB_DATA_DIR" in result.note
    assert not (tmp_path / "tinyvit").exists()  # nothing started


# --------------------------------------------------------------------------------------------
# end to end
# --------------------------------------------------------------------------------------------


def test_two_runs_in_parallel_tabulate_from_their_folders(tmp_path: Path) -> None:
    bench = _bench(_vit("a", seed=1, model="vit", seed_label=1), _vit("b", seed=2, seed_label=2))
    results = execute(bench, jobs=2, threads=1, runs_root=tmp_path / "runs")

    assert [r.run.name for r in results] == ["a", "b"]
    for r in results:
        assert r.ok, r.log_tail
        assert r.run_dir == tmp_path / "runs" / "tinyvit" / "full" / r.run.name
        assert r.run_dir.with_name(r.run.name + ".log").is_file()
        assert 0.0 <= r.metric("test/top1") <= 1.0
        assert r.manifest["status"] == "completed" and r.manifest["threads"] == 1
        assert r.manifest["seed"] == r.run.seed
        assert r.epochs and isinstance(r.epochs[0]["step"], float)
    payload, body = _tabulate(results)
    assert [row["seed_label"] for row in payload["rows"]] == [1, 2]
    assert body.count("| `attnlab vit fit --config quick ") == 2

    # The results files, from the same folders (reused: nothing runs again).
    out = tmp_path / "results"
    path = run_benchmark(bench, jobs=2, runs_root=tmp_path / "runs", reuse=True, results_dir=out)
    text = path.read_text(encoding="utf-8")
    _no_machine_paths(text, tmp_path)
    data = json.loads(text)
    assert data["format"] == 2 and data["complete"] and data["threads"] == 1
    assert data["environment"]["settings_from_env"] is not None
    assert [r["command"] for r in data["runs"]] == [r.run.command() for r in results]
    assert all(r["reused"] and r["status"] == "ok" for r in data["runs"])
    assert data["runs"][0]["labels"] == {"model": "vit", "seed_label": 1}
    assert data["runs"][0]["run_dir"] == "<runs-dir>/tinyvit/full/a"
    assert data["runs"][0]["metrics"]["test"]["test/top1"] == results[0].metric("test/top1")
    assert data["payload"] == json.loads(json.dumps(payload))
    assert data["headline"].startswith("top-1 ")
    md = (out / "tinyvit.md").read_text(encoding="utf-8")
    _no_machine_paths(md, tmp_path)
    for r in results:  # every row of every table names its command
        rows = [line for line in md.splitlines() if line.startswith(f"| {r.run.name} |")]
        assert len(rows) == 2 and all(f"`{r.run.command()}`" in row for row in rows)
    assert "nothing: 1.0 (none; this test)" in md

    # The README section of a runner-written file: the commands, the headline, the anchors.
    section = "\n".join(readme.benchmark_section("tinyvit", out))
    assert data["headline"] in section
    assert all(f"`{r.run.command()}`" in section for r in results)
    assert "`nox -s bench -- tinyvit --jobs 2 --threads 1`" in section
    assert "OMP_NUM_THREADS=" not in section.split("commands")[0]
    assert "nothing: 1.0 (none; this test)" in section


def test_printed_command_reproduces_the_run(tmp_path: Path) -> None:
    run = _vit("repro", "--trainer.deterministic=true", seed=3)
    (result,) = execute(_bench(run), threads=1, runs_root=tmp_path / "runs")
    assert result.ok, result.log_tail

    # By hand: exactly the printed words, in a fresh folder (the run lands in runs/vit/<time>).
    hand = tmp_path / "hand"
    hand.mkdir()
    words = shlex.split(run.command())
    exe = shutil.which("attnlab", path=str(Path(sys.executable).parent))
    argv = [exe] if exe else [sys.executable, "-m", "attnlab.cli"]
    env = {k: v for k, v in os.environ.items() if k != "ATTNLAB_RUNS"}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(
        [*argv, *words[1:]], cwd=hand, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (folder,) = (hand / "runs" / "vit").iterdir()
    by_hand = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    for section in ("test", "best"):
        assert by_hand[section].keys() == result.metrics[section].keys()
        for key, value in result.metrics[section].items():
            assert math.isclose(by_hand[section][key], value, abs_tol=1e-6), (section, key)


def test_a_failed_run_is_reported_and_the_others_kept(tmp_path: Path) -> None:
    seen: list[str] = []

    def tabulate(results: list[RunResult]) -> tuple[dict[str, Any], str]:
        seen.extend(r.run.name for r in results)
        return _tabulate(results)

    good, bad = _vit("good"), _vit("bad", "--model.no_such_option=1")
    bench = Benchmark("mixed", "One good, one bad", lambda scale: [good, bad], tabulate)
    with pytest.raises(BenchmarkFailed, match=r"bad \(exit [1-9]") as info:
        run_benchmark(bench, jobs=2, runs_root=tmp_path / "runs", results_dir=tmp_path)
    (failed,) = info.value.failed
    assert failed.run is bad and failed.returncode != 0 and failed.status == "failed"
    assert "no_such_option" in failed.log_tail
    assert seen == ["good"]  # tabulated without the failed run

    data = json.loads((tmp_path / "mixed.json").read_text(encoding="utf-8"))
    assert not data["complete"]
    status = {r["name"]: r["status"] for r in data["runs"]}
    assert status == {"good": "ok", "bad": "failed"}
    assert data["payload"]["rows"][0]["top1"] is not None
    md = (tmp_path / "mixed.md").read_text(encoding="utf-8")
    assert "## Failed runs" in md and "no_such_option" in md


def test_reuse_runs_again_when_the_command_changed(tmp_path: Path) -> None:
    """--reuse keeps a folder only for the same command and threads; --only leaves the rest."""
    runs_root = tmp_path / "runs"
    first = _vit("a", seed=1)
    (done,) = execute(_bench(first), runs_root=runs_root)
    assert done.ok, done.log_tail
    (kept,) = execute(_bench(first), runs_root=runs_root, reuse=True)
    assert kept.reused and kept.metrics == done.metrics
    (other_threads,) = execute(_bench(first), runs_root=runs_root, reuse=True, threads=2, only="zz")
    assert other_threads.status == "skipped" and "--only" in other_threads.note
    (changed,) = execute(_bench(_vit("a", seed=2)), runs_root=runs_root, reuse=True)
    assert changed.ok and not changed.reused and changed.manifest["seed"] == 2


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------


def test_order_is_core_then_the_apps_then_matrix() -> None:
    from attnlab.app import load_apps

    names = benchmarks.names()
    assert names[0] == "core" and names[-1] == "matrix"
    by_order = sorted(load_apps().values(), key=lambda a: (a.bench_order, a.name))
    apps = [a.name for a in by_order if a.name in names]  # the apps' declared bench_order
    assert [n for n in names if n in apps] == apps
    assert not {"runner", "common", "readme", "__main__"} & set(names)


def _defines_benchmark(path: Path) -> bool:
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(isinstance(t, ast.Name) and t.id == "BENCHMARK" for t in targets):
            return True
    return False


def _modules() -> list[Any]:
    params = []
    for name in benchmarks.candidates():
        defined = _defines_benchmark(ROOT / "benchmarks" / f"{name}.py")
        marks = () if defined else (pytest.mark.skip(reason=f"{name}.py defines no BENCHMARK"),)
        params.append(pytest.param(name, id=name, marks=marks))
    return params


@pytest.mark.parametrize("name", _modules())
def test_every_benchmark_runs_tiny_end_to_end(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each module's ``runs("tiny")`` through the runner, and its tabulate and headline."""
    monkeypatch.delenv("ATTNLAB_DATA_DIR", raising=False)  # tiny runs use built-in data
    spec = benchmarks.load(name).BENCHMARK
    assert isinstance(spec, Benchmark) and spec.name == name
    out = tmp_path / "results"
    path = run_benchmark(spec, scale="tiny", jobs=2, runs_root=tmp_path / "runs", results_dir=out)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["complete"], [r for r in data["runs"] if r["status"] != "ok"]
    assert data["payload"] is not None
    assert spec.headline is None or data["headline"]
    md = (out / f"{name}.md").read_text(encoding="utf-8")
    assert all(f"`{r['command']}`" in md for r in data["runs"])
    _no_machine_paths(path.read_text(encoding="utf-8") + md, tmp_path)


def test_budget_factor_scales_every_budget_and_shows_in_the_commands():
    from benchmarks.runner import scaled_budgets

    runs = [
        Run("a", "vit", ("quick",), budget={"cpu_s": 300}),
        Run("b", "vit", ("quick",)),
    ]
    half = scaled_budgets(runs, 0.5)
    assert half[0].budget == {"cpu_s": 150.0} and half[1].budget == {}
    assert "--budget.cpu_s=150" in half[0].command()
    assert scaled_budgets(runs, 1.0) == runs
    with pytest.raises(ValueError, match="--budget-factor must be a positive number"):
        scaled_budgets(runs, 0.0)


def test_a_run_completed_at_another_budget_is_kept_with_its_own_command(tmp_path):
    """A benchmark assembled over sittings (``--only`` + ``--reuse``) keeps each run folder's
    own budget and command, instead of dropping the runs another sitting made."""
    from benchmarks.runner import execute

    run = Run("slow", "vit", ("quick",), budget={"cpu_s": 100})
    bench = Benchmark(
        name="sittings", title="t", runs=lambda scale: [run], tabulate=lambda r: ({}, "")
    )
    folder = tmp_path / "sittings" / "full" / "slow"
    folder.mkdir(parents=True)
    earlier = Run("slow", "vit", ("quick",), budget={"cpu_s": 25.0})
    (folder / "metrics.json").write_text(json.dumps({"test": {"test/top1": 0.5}}))
    (folder / "manifest.json").write_text(json.dumps({"status": "completed"}))
    (folder / "bench.json").write_text(
        json.dumps({"command": earlier.command(), "threads": 1, "budget": {"cpu_s": 25.0},
                    "configs_sha256": config_digest(run)})
    )  # fmt: skip
    [result] = execute(bench, runs_root=tmp_path, only="other", reuse=True)
    assert result.ok and result.reused
    assert result.run.budget == {"cpu_s": 25.0} and "--budget.cpu_s=25" in result.run.command()
    [skipped] = execute(bench, runs_root=tmp_path, only="other", reuse=False)
    assert skipped.status == "skipped"


def test_the_whole_tables_command_drops_an_only_that_left_nothing_out(tmp_path):
    """Assembled over sittings, a table whose runs all completed is made by the plain command;
    an ``--only`` that skipped runs stays in it."""
    run = Run("slow", "vit", ("quick",), budget={"cpu_s": 100})
    bench = Benchmark(
        name="sittings", title="t", runs=lambda scale: [run], tabulate=lambda r: ({}, "")
    )
    folder = tmp_path / "runs" / "sittings" / "full" / "slow"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"test": {"test/top1": 0.5}}))
    (folder / "manifest.json").write_text(json.dumps({"status": "completed"}))
    (folder / "bench.json").write_text(
        json.dumps({"command": run.command(), "threads": 1, "budget": {"cpu_s": 100},
                    "configs_sha256": config_digest(run)})
    )  # fmt: skip
    out = tmp_path / "results"
    kwargs = dict(runs_root=tmp_path / "runs", results_dir=out, jobs=1)
    path = run_benchmark(bench, only="other", reuse=True, **kwargs)
    assert (
        json.loads(path.read_text())["command"] == "nox -s bench -- sittings --jobs 1 --threads 1"
    )
    path = run_benchmark(bench, only="other", reuse=False, **kwargs)  # the run is skipped
    data = json.loads(path.read_text())
    assert data["command"].endswith("--only other") and not data["complete"]


def test_a_folder_made_with_an_edited_config_is_not_reused(tmp_path):
    """The same command line over a config file edited since (a shipped config retuned between
    sittings) is another run: collected, its folder is skipped and named as stale (the check
    that also makes a selected run train again instead of being reused)."""
    from benchmarks.runner import COLLECT, execute

    config = tmp_path / "mine.yaml"
    config.write_text("budget: {cpu_s: 3}\n", encoding="utf-8")
    run = Run("mine", "vit", (str(config),))
    bench = Benchmark(name="e", title="t", runs=lambda scale: [run], tabulate=lambda r: ({}, ""))
    folder = tmp_path / "runs" / "e" / "full" / "mine"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"test": {"test/top1": 0.5}}))
    (folder / "manifest.json").write_text(json.dumps({"status": "completed"}))
    (folder / "bench.json").write_text(json.dumps(_stamp(run, 1)))
    [kept] = execute(bench, runs_root=tmp_path / "runs", only=COLLECT, reuse=True)
    assert kept.ok and kept.reused

    config.write_text("budget: {cpu_s: 4}\n", encoding="utf-8")  # retuned after the run
    [stale] = execute(bench, runs_root=tmp_path / "runs", only=COLLECT, reuse=True)
    assert stale.status == "skipped" and "other config files" in stale.note
    (folder / "bench.json").write_text(json.dumps({"command": run.command(), "threads": 1}))
    [undated] = execute(bench, runs_root=tmp_path / "runs", only=COLLECT, reuse=True)
    assert undated.status == "skipped"  # a stamp without the digest is not trusted


def test_collect_runs_nothing_and_says_so(tmp_path):
    from benchmarks._results import bench_command
    from benchmarks.runner import COLLECT, execute

    run = Run("never", "vit", ("quick",))
    bench = Benchmark(name="c", title="t", runs=lambda scale: [run], tabulate=lambda r: ({}, ""))
    [result] = execute(bench, runs_root=tmp_path, only=COLLECT, reuse=True)
    assert result.status == "skipped" and result.note == "not run in any sitting yet"
    assert bench_command("c", "full", 1, 1, COLLECT).endswith("--collect")


def test_a_refusal_from_an_earlier_sitting_is_kept(tmp_path):
    """A combination the command refused stays n/a when the benchmark is assembled again."""
    from benchmarks.runner import execute

    run = Run("bad-combo", "vit", ("quick",), may_refuse=True)
    bench = Benchmark(name="r", title="t", runs=lambda scale: [run], tabulate=lambda r: ({}, ""))
    folder = tmp_path / "r" / "full"
    folder.mkdir(parents=True)
    (folder / "bad-combo.refused.json").write_text(
        json.dumps({"command": run.command(), "threads": 1, "error": "pos 'x' is not available",
                    "configs_sha256": config_digest(run)})
    )  # fmt: skip
    [result] = execute(bench, runs_root=tmp_path, only="other", reuse=True)
    assert result.status == "refused" and result.note == "pos 'x' is not available"
