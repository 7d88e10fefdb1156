"""Refresh the README's results section from the ``results/<name>.json`` files that exist.

``python -m benchmarks readme`` (and a bare ``python -m benchmarks``, after every benchmark)
replaces what lies between ``<!-- results:start -->`` and ``<!-- results:end -->`` in README.md;
nothing outside the markers changes, and running it twice gives the same file. Each benchmark
gets its headline numbers, the commands that produced them, the machine they ran on (from the
json's environment header) and the published anchors with their protocol; a benchmark without a
results file says "not run yet" and gives its command.

Two shapes of result file are read: the runner's (``"format": 2``, written by
``benchmarks.runner.run_benchmark``: the headline comes from the module's ``BENCHMARK.headline``,
the commands from each run's ``command``), and the older per-benchmark files (``core``,
``matrix`` and results not yet re-run), summarized by the functions below.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import benchmarks
from benchmarks.common import RESULTS_DIR, ROOT
from benchmarks.runner import FORMAT

START = "<!-- results:start -->"
END = "<!-- results:end -->"


def order(results_dir: Path | None = None) -> list[str]:
    """The benchmarks in run order (``benchmarks.names()``), then any other result file's."""
    names = benchmarks.names()
    if results_dir is not None and results_dir.is_dir():
        names += sorted(
            p.stem for p in results_dir.glob("*.json") if p.stem not in names and _is_new(p)
        )
    return names


def _is_new(path: Path) -> bool:
    try:
        return _new_shape(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return False


def _new_shape(data: Any) -> bool:
    return isinstance(data, Mapping) and data.get("format") == FORMAT


# --------------------------------------------------------------------------------------------
# result files written by benchmarks.runner
# --------------------------------------------------------------------------------------------


def _live_headline(name: str, data: Mapping[str, Any]) -> str | None:
    """The module's ``BENCHMARK.headline`` on the payload (so a reworded headline needs no
    re-run); the line stored in the json where the module is gone or cannot say it."""
    payload = data.get("payload")
    try:
        spec = getattr(benchmarks.load(name), "BENCHMARK", None)
        if spec is not None and spec.headline is not None and payload is not None:
            return str(spec.headline(payload))
    except Exception:  # an old payload the new code cannot read: the stored line stands
        pass
    stored = data.get("headline")
    return str(stored) if stored else None


def _anchor_text(anchor: Mapping[str, Any], *, full: bool) -> str:
    text = f"{anchor.get('what', '?')}: {anchor.get('value', '?')}"
    if not full:
        return text
    extra = "; ".join(str(anchor[k]) for k in ("protocol", "source") if anchor.get(k))
    return f"{text} ({extra})" if extra else text


def _new_row(name: str, data: Mapping[str, Any]) -> tuple[str, str]:
    runs = data.get("runs") or []
    ok = sum(1 for r in runs if r.get("status") == "ok")
    ours = _live_headline(name, data) or f"{ok} of {len(runs)} runs completed"
    if not data.get("complete", True):
        ours += f" (partial: {ok} of {len(runs)} runs)"
    anchors = list(data.get("anchors") or [])
    against = _anchor_text(anchors[0], full=False) if anchors else ""
    if len(anchors) > 1:
        against += f" (and {len(anchors) - 1} more)"
    return ours, against


def _new_section(name: str, data: Mapping[str, Any], link: str) -> list[str]:
    runs = list(data.get("runs") or [])
    ok = [r for r in runs if r.get("status") == "ok"]
    lines = [f"### {name}", ""]
    headline = _live_headline(name, data)
    title = data.get("title") or name
    lines.append(f"- {title}" + (f": {headline}" if headline else ""))
    if not data.get("complete", True):
        lines.append(f"- partial: {len(ok)} of {len(runs)} runs completed")
    threads = data.get("threads", 1)
    lines.append(
        f"- commands (one process each, `OMP_NUM_THREADS={threads}`; every row of {link} "
        "names its own):"
    )
    for r in runs:
        note = "" if r.get("status") == "ok" else f" ({r.get('status')}: {r.get('note', '')})"
        lines.append(f"  - `{r.get('command', '?')}`{note}")
    env = dict(data.get("environment") or {})
    env["torch_num_threads"] = threads  # the runs' threads, not the launching process's
    lines += [
        f"- all of them: `{data.get('command') or f'nox -s bench -- {name}'}`",
        f"- machine: {_machine(env)}",
    ]
    anchors = list(data.get("anchors") or [])
    if anchors:
        lines.append("- anchors beside ours (protocol):")
        lines += [f"  - {_anchor_text(a, full=True)}" for a in anchors]
    return [*lines, ""]


# --------------------------------------------------------------------------------------------
# the older, per-benchmark result files
# --------------------------------------------------------------------------------------------

# Anchors for benchmarks whose json does not carry them (their markdown states the same).
STATIC_ANCHORS: dict[str, list[str]] = {
    "core": [
        "no published anchor: torch.nn.MultiheadAttention, timm's Attention and a direct "
        "F.scaled_dot_product_attention call are measured in the same run (targets: ours / "
        "direct SDPA <= 1.05; local and linear <= 0.1 x math attention's memory at 16384 tokens)"
    ],
    "vit": [
        "timm ViT d128 / depth 6 / 4 heads / patch 4 on Fashion-MNIST: 79.8 % test top-1 after "
        "10 min (2.8 epochs, 280 img/s) on a 2-core CPU (shared/docs/ANCHORS.md); protocol: "
        "60,000 train / 10,000 test images, same wall-clock budget"
    ],
    "caption": [
        "Show, Attend and Tell (soft attention) BLEU-4 19.5 on full Flickr8k with a pretrained "
        "encoder; protocol differs (1,000-image subset, encoders from scratch, CPU budget), so "
        "not comparable"
    ],
    "audio": [],
    "matrix": [
        "no published anchor: the variants are compared with each other (the sdpa row is the "
        "apps' default) at the same CPU budget"
    ],
}


def _pct(x: Any) -> str:
    return f"{100 * float(x):.1f} %"


def _machine(env: Mapping[str, Any]) -> str:
    """One line from a result's environment header."""
    if not env:
        return "machine not recorded"
    parts = [
        str(env.get("cpu_model", "unknown CPU")),
        f"{env.get('cpus_usable', '?')} CPUs usable",
        f"torch {env.get('torch', '?')} ({_threads(env.get('torch_num_threads', '?'))})",
        "CUDA" if env.get("cuda_available") else "no GPU",
        f"python {env.get('python', '?')}",
    ]
    if env.get("date_utc"):
        parts.append(str(env["date_utc"])[:10])
    if env.get("git"):
        parts.append(f"git {env['git']}")
    return ", ".join(parts)


def _threads(n: Any) -> str:
    return "1 thread" if n == 1 else f"{n} threads"


def _core(d: Mapping[str, Any]) -> list[str]:
    t = d["targets"]
    sp, mem = t["speed"], t["memory"]
    return [
        f"speed: worst MultiHeadAttention / direct SDPA ratio {sp['worst_ratio']:.3f} "
        f"(target <= {sp['threshold']}: {'met' if sp['met'] else 'not met'})",
        f"memory at {mem['length']} tokens: local {mem['local_vs_math']:.3f} x math, linear "
        f"{mem['linear_vs_math']:.3f} x math (target <= {mem['threshold']}: "
        f"{'met' if mem['met'] else 'not met'})" + (" (quick mode)" if d.get("quick") else ""),
    ]


def _vit(d: Mapping[str, Any]) -> list[str]:
    runs = d["runs"]
    lines = [
        f"{label}: test top-1 {_pct(r['test_top1'])}, {r['train_images_per_s']:.0f} train img/s, "
        f"{r['epochs']} epochs"
        for label, r in runs.items()
    ]
    return [f"{d['dataset']}, {d['budget_s_per_model']:.0f} s per model", *lines]


def _caption(d: Mapping[str, Any]) -> list[str]:
    out = [f"{d['budget_seconds_per_model']:.0f} CPU s per model"]
    for key, title in (("digit_scenes", "digit scenes"), ("flickr8k_subset", "Flickr8k subset")):
        block = d.get(key) or {}
        if "results" not in block:
            out.append(f"{title}: {block.get('skipped', 'not run')}")
            continue
        scores = ", ".join(
            f"{r['decoder']} {100 * r['metrics']['bleu4']:.1f}" for r in block["results"]
        )
        out.append(f"{title} BLEU-4: {scores}")
    return out


def _forecast(d: Mapping[str, Any]) -> list[str]:
    budgets = ", ".join(f"{m} {b:.0f}" for m, b in d["budget_s_per_model"].items())
    out = [f"CPU s per run: {budgets}; protocol: {d['protocol']}"]
    for r in d["results"]:
        out.append(
            f"{r['model']} L={r['seq_len']} H={r['horizon']}: MSE {r['test_mse']:.4f}, "
            f"MAE {r['test_mae']:.4f}"
        )
    if not d.get("complete", True):
        out.append(f"partial: {len(d['results'])} of {d.get('runs_planned', '?')} runs")
    return out


def _forecast_anchors(d: Mapping[str, Any]) -> list[str]:
    return [
        f"{source}: MSE " + ", ".join(f"H={h} {v}" for h, v in values.items())
        for source, values in d.get("published_mse", {}).items()
    ]


def _recsys(d: Mapping[str, Any]) -> list[str]:
    out = [f"protocol: {d['protocol']}"]
    for name, block in d["datasets"].items():
        scores = ", ".join(
            f"{label} {r['test']['ndcg@10']:.4f}" for label, r in block["results"].items()
        )
        budget = d.get("budgets_s", {}).get(name)
        out.append(
            f"{name} NDCG@10"
            + (f" ({budget:.0f} CPU s per model)" if budget else "")
            + f": {scores}"
        )
    return out


def _recsys_anchors(d: Mapping[str, Any]) -> list[str]:
    return [
        f"{p['model']} on {p['data']}: HR@10 {p['hr@10']}, NDCG@10 {p['ndcg@10']} ({p['source']})"
        for p in d.get("published", [])
    ]


def _audio(d: Mapping[str, Any]) -> list[str]:
    runs = ", ".join(f"{r['arch']} {_pct(r['test_acc'])}" for r in d["runs"])
    goal = d.get("goal") or {}
    return [
        f"{d['task']}; {d['budget_s_per_model']:.0f} CPU s per model",
        f"test accuracy: {runs}"
        + (
            f" (goal: AST >= {_pct(goal['target'])}, {'met' if goal.get('met') else 'not met'})"
            if goal
            else ""
        ),
    ]


def _matrix(d: Mapping[str, Any]) -> list[str]:
    out = [f"{d['budget_s_per_variant']:.0f} CPU s per variant"]
    for name, block in d["domains"].items():
        ok = [r for r in block["variants"] if r["status"] == "ok" and r.get("value") is not None]
        if not ok:
            out.append(f"{name}: no completed variant")
            continue
        best = (max if block["higher_is_better"] else min)(ok, key=lambda r: r["value"])
        fastest = max(ok, key=lambda r: r["samples_per_cpu_s"])
        base = next((r for r in ok if r["variant"] == "sdpa"), None)
        out.append(
            f"{name} ({block['data']}, {block['metric_label']}): "
            + (f"sdpa {base['value']}, " if base else "")
            + f"best {best['variant']} {best['value']}, fastest {fastest['variant']} "
            f"({fastest['samples_per_cpu_s']:.0f} samples/CPU-s)"
        )
    if not d.get("complete", True):
        out.append("partial: not every domain ran")
    return out


# One row each for the table that opens the section: (what we measured, what it is measured
# against). Short on purpose; the sections below give every number with its protocol.
def _core_row(d: Mapping[str, Any]) -> tuple[str, str]:
    sp, mem = d["targets"]["speed"], d["targets"]["memory"]
    met = "met" if sp["met"] and mem["met"] else "not met"
    return (
        f"MultiHeadAttention / direct SDPA time <= {sp['worst_ratio']:.3f}x; memory at "
        f"{mem['length']} tokens: local {mem['local_vs_math']:.3f}x, linear "
        f"{mem['linear_vs_math']:.3f}x math attention",
        f"targets <= {sp['threshold']}x and <= {mem['threshold']}x: {met}",
    )


def _vit_row(d: Mapping[str, Any]) -> tuple[str, str]:
    ours, timm = d["runs"]["ours"], d["runs"]["timm"]
    return (
        f"ViT top-1 {_pct(ours['test_top1'])}, {ours['train_images_per_s']:.0f} img/s",
        f"timm's ViT, same size and budget: {_pct(timm['test_top1'])}, "
        f"{timm['train_images_per_s']:.0f} img/s",
    )


def _caption_row(d: Mapping[str, Any]) -> tuple[str, str]:
    rows = (d.get("digit_scenes") or {}).get("results", [])
    ours = ", ".join(
        f"{r['decoder']} {100 * r['metrics']['bleu4']:.1f}"
        + (f" (localization {_pct(r['metrics']['loc'])})" if "loc" in r["metrics"] else "")
        for r in rows
    )
    return f"digit scenes BLEU-4: {ours}", "the no-attention baseline (lstm_pooled), same budget"


def _forecast_row(d: Mapping[str, Any]) -> tuple[str, str]:
    """PatchTST-style (the attention model) per horizon, and the best of every model run."""
    by_h: dict[int, list[dict[str, Any]]] = {}
    for r in d["results"]:
        by_h.setdefault(int(r["horizon"]), []).append(r)
    patch = " / ".join(
        f"{r['test_mse']:.4f}" for h in sorted(by_h) for r in by_h[h] if r["model"] == "patchtst"
    )
    best = ", ".join(
        f"H={h} {b['test_mse']:.4f} ({b['model']})"
        for h in sorted(by_h)
        for b in [min(by_h[h], key=lambda r: r["test_mse"])]
    )
    horizons = " / ".join(str(h) for h in sorted(by_h))
    ours = f"ETTh1 test MSE, PatchTST-style (H={horizons}): {patch}; best of ours: {best}"
    source, values = next(iter(d.get("published_mse", {}).items()), ("", {}))
    against = f"{source}: " + " / ".join(str(v) for v in values.values()) if source else ""
    return ours, against


BASELINES = ("popularity", "co-occurrence")


def _recsys_row(d: Mapping[str, Any]) -> tuple[str, str]:
    ours, against = [], []
    for name, block in d["datasets"].items():
        models = {k: r for k, r in block["results"].items() if k not in BASELINES}
        label, r = max(models.items(), key=lambda kv: kv[1]["test"]["ndcg@10"])
        ours.append(f"{name} {r['test']['ndcg@10']:.4f} ({label})")
        against += [
            f"{name} {k} {block['results'][k]['test']['ndcg@10']:.4f}"
            for k in BASELINES
            if k in block["results"]
        ]
    return "NDCG@10: " + ", ".join(ours), "same evaluation: " + ", ".join(against)


def _audio_row(d: Mapping[str, Any]) -> tuple[str, str]:
    goal = d.get("goal") or {}
    runs = ", ".join(f"{r['arch']} {_pct(r['test_acc'])}" for r in d["runs"])
    against = (
        f"goal AST >= {_pct(goal['target'])}: {'met' if goal.get('met') else 'not met'}"
        if goal
        else ""
    )
    return f"FSDD test accuracy: {runs}", against


def _matrix_row(d: Mapping[str, Any]) -> tuple[str, str]:
    runs = sum(
        1 for block in d["domains"].values() for r in block["variants"] if r["status"] == "ok"
    )
    return (
        f"{runs} variants trained over {len(d['domains'])} domains, "
        f"{d['budget_s_per_variant']:.0f} CPU s each",
        "each other (sdpa with learned positions is every app's default)",
    )


ROWS: dict[str, Callable[[Mapping[str, Any]], tuple[str, str]]] = {
    "core": _core_row,
    "vit": _vit_row,
    "caption": _caption_row,
    "forecast": _forecast_row,
    "recsys": _recsys_row,
    "audio": _audio_row,
    "matrix": _matrix_row,
}


def summary_table(results_dir: Path) -> list[str]:
    """The table that opens the section: one row per benchmark."""
    lines = ["| benchmark | ours | measured against |", "| :--- | :--- | :--- |"]
    for name in order(results_dir):
        path = results_dir / f"{name}.json"
        link = f"[{name}](#{name})"
        if not path.is_file():
            lines.append(f"| {link} | not run yet | |")
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            ours, against = _new_row(name, data) if _new_shape(data) else ROWS[name](data)
        except (KeyError, TypeError, ValueError, AttributeError, StopIteration):
            ours, against = f"see [`results/{name}.md`](results/{name}.md)", ""
        lines.append(f"| {link} | {ours} | {against} |".replace("|  |", "| |"))
    return [*lines, ""]


HEADLINES: dict[str, Callable[[Mapping[str, Any]], list[str]]] = {
    "core": _core,
    "vit": _vit,
    "caption": _caption,
    "forecast": _forecast,
    "recsys": _recsys,
    "audio": _audio,
    "matrix": _matrix,
}
ANCHORS: dict[str, Callable[[Mapping[str, Any]], list[str]]] = {
    "forecast": _forecast_anchors,
    "recsys": _recsys_anchors,
}


def benchmark_section(name: str, results_dir: Path) -> list[str]:
    """The README lines for one benchmark."""
    command = f"`nox -s bench -- {name}`"
    path = results_dir / f"{name}.json"
    if not path.is_file():
        return [f"### {name}", "", f"Not run yet: {command}.", ""]
    link = f"[`results/{name}.md`](results/{name}.md)"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if _new_shape(data):
            return _new_section(name, data, link)
        headline = HEADLINES[name](data)
        anchors = ANCHORS[name](data) if name in ANCHORS else list(STATIC_ANCHORS.get(name, []))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return [
            f"### {name}",
            "",
            f"`results/{name}.json` could not be summarized ({type(exc).__name__}: {exc}); see "
            f"{link}. Command: {command}.",
            "",
        ]
    lines = [f"### {name}", ""]
    lines += [f"- {line}" for line in headline]
    settings = (data.get("environment") or {}).get("settings_from_env") or {}
    if settings:  # the budgets and threads it really ran with
        command = "`" + " ".join(f"{k}={v}" for k, v in settings.items()) + " " + command[1:]
    lines += [
        f"- command: {command}; details: {link}",
        f"- machine: {_machine(data.get('environment') or {})}",
    ]
    if anchors:
        lines.append("- anchors beside ours (protocol):")
        lines += [f"  - {a}" for a in anchors]
    return [*lines, ""]


def render(results_dir: Path) -> str:
    """The text that goes between the markers (markers excluded)."""
    lines = [
        "",
        "Generated by `python -m benchmarks readme` from `results/*.json`; do not edit by hand.",
        "",
        *summary_table(results_dir),
    ]
    for name in order(results_dir):
        lines += benchmark_section(name, results_dir)
    return "\n".join(lines)


def refresh(readme: Path | None = None, results_dir: Path | None = None) -> bool:
    """Rewrite the marked section of ``readme`` in place; returns whether the file changed."""
    path = ROOT / "README.md" if readme is None else readme
    text = path.read_text(encoding="utf-8")
    start, end = text.find(START), text.find(END)
    if start < 0 or end < 0 or end < start or text.count(START) != 1 or text.count(END) != 1:
        raise SystemExit(
            f"error: {path} needs exactly one '{START}' followed by one '{END}' line to mark "
            "where the results go; add them and run again"
        )
    body = render(RESULTS_DIR if results_dir is None else results_dir)
    new = text[: start + len(START)] + body + "\n" + text[end:]
    if new == text:
        return False
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(new)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def main() -> None:
    changed = refresh()
    print(f"README.md results section {'refreshed' if changed else 'already up to date'}")


if __name__ == "__main__":
    main()
