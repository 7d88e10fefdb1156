"""``python -m benchmarks matrix``: every app's default model with each attention backend and each
position scheme, at one CPU budget per app, three seeds each.

Every variant is one ``attnlab <app> fit`` command that differs from the app's default only in
``--model.attention.*``: the backends ``sdpa`` (the default), ``math``, ``local`` (the app's
window; class tokens global), ``linear`` and ``linformer`` with the model's default positions,
then each position scheme on ``sdpa``. Nothing here knows an app's internals: the domains (which
config, which budget, which metric) come from each installed app's ``App.matrix``, and a
combination a model cannot run is refused by the command itself (``error: ...``, recorded here as
n/a with that line).

The budget of a domain is the CPU time at which its default reaches at least 90 % of its
full-budget quality (the app states how that was measured next to its ``MatrixDomain``); every
variant gets the same budget and the same seeds, and the table gives mean ± std over seeds. A
variant is called better or worse than ``sdpa`` only when the difference of the means exceeds
the sum of the two standard deviations (their mean ± std intervals do not overlap); otherwise
the table says "within noise".

Long: about (valid variants x seeds x budget) per domain. ``--only vit-`` runs one domain and
``--reuse`` keeps finished runs, so the matrix can be assembled over several sittings; the result
files are rebuilt from every run folder found.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import markdown_table, mean_std
from benchmarks.runner import Benchmark, Run, RunResult

BACKENDS = ("sdpa", "math", "local", "linear", "linformer")
POSITIONS = ("none", "learned", "sincos", "sincos2d", "rope", "rope2d", "alibi")
SEEDS = (0, 1, 2)


def _domains() -> dict[str, Any]:
    """App name -> its ``MatrixDomain``, for every installed app that declares one."""
    from attnlab.app import load_apps

    return {
        name: app.matrix
        for name, app in load_apps().items()
        if getattr(app, "matrix", None) is not None
    }


def variants(default_pos: str) -> list[tuple[str, tuple[str, ...]]]:
    """(name, ``--model.attention.*`` overrides) for one domain: every backend with the model's
    default position, then every other position on sdpa."""
    out = [(b, (f"--model.attention.backend={b}",)) for b in BACKENDS]
    out += [
        (f"pos={p}", ("--model.attention.backend=sdpa", f"--model.attention.pos={p}"))
        for p in POSITIONS
        if p != default_pos
    ]
    return out


def _has_data(marker: str | None) -> bool:
    root = os.environ.get("ATTNLAB_DATA_DIR")
    return bool(marker) and bool(root) and (Path(root) / str(marker)).exists()


def runs(scale: str) -> list[Run]:
    planned: list[Run] = []
    for app_name, dom in _domains().items():
        real = scale == "full" and _has_data(dom.data)
        configs = (dom.config,) if real else ("quick",)
        budget = {"cpu_s": dom.budget_cpu_s if scale == "full" else 2.0}
        seeds = SEEDS if scale == "full" else (0,)
        chosen = variants(dom.default_pos)
        if scale == "tiny":  # the test: the default, and a 2-D position (refused on sequences)
            chosen = [v for v in chosen if v[0] in ("sdpa", "pos=rope2d")]
        if scale == "full":
            # The default trained as its config says (no budget): the full-budget quality that
            # the domain's budget must reach 90 % of.
            planned.append(
                Run(
                    name=f"{app_name}-reference",
                    app=app_name,
                    configs=configs,
                    overrides=dom.overrides,
                    labels={
                        "domain": app_name,
                        "variant": "reference",
                        "data": dom.data_label(real),
                        "metric": dom.metric,
                        "mode": dom.mode,
                    },
                )
            )
        for name, attention in chosen:
            extra: tuple[str, ...] = ()
            if name == "local":
                extra = (f"--model.attention.window={dom.window}",)
            for seed in seeds:
                planned.append(
                    Run(
                        name=f"{app_name}-{name}-s{seed}".replace("=", "_"),
                        app=app_name,
                        configs=configs,
                        overrides=(*dom.overrides, *attention, *extra),
                        budget=budget,
                        seed=seed,
                        labels={
                            "domain": app_name,
                            "variant": name,
                            "data": dom.data_label(real),
                            "metric": dom.metric,
                            "mode": dom.mode,
                        },
                        may_refuse=True,
                    )
                )
    return planned


def tabulate(results: list[RunResult]) -> tuple[dict[str, Any], str]:
    domains: dict[str, dict[str, Any]] = {}
    for r in results:
        lab = r.run.labels
        block = domains.setdefault(
            lab["domain"],
            {"data": lab["data"], "metric": lab["metric"], "mode": lab["mode"], "variants": {}},
        )
        entry = block["variants"].setdefault(
            lab["variant"], {"values": [], "samples_per_cpu_s": [], "seeds": [], "refused": None}
        )
        if r.status == "refused":
            entry["refused"] = r.note
            continue
        entry["values"].append(r.metric(lab["metric"]))
        entry["samples_per_cpu_s"].append(r.train.get("samples_per_cpu_s"))
        entry["seeds"].append(r.run.seed)
    sections = []
    for name, block in domains.items():
        higher = block["mode"] == "max"
        base_mean, base_std = mean_std(block["variants"].get("sdpa", {}).get("values", []))
        reference = block["variants"].pop("reference", None)
        ref_value = reference["values"][0] if reference and reference["values"] else None
        share = None
        if ref_value is not None and base_mean is not None and ref_value and base_mean:
            # Quality share of the full run reached at the budget (errors: full / budgeted).
            share = base_mean / ref_value if higher else ref_value / base_mean
        block["reference"] = ref_value
        block["budget_share_of_full_quality"] = share
        rows = []
        for variant, entry in block["variants"].items():
            mean, std = mean_std(entry["values"])
            speed, _ = mean_std(entry["samples_per_cpu_s"])
            entry.update(mean=mean, std=std, samples_per_cpu_s_mean=speed)
            verdict = "n/a"
            if entry["refused"]:
                verdict = "n/a: " + entry["refused"]
            elif variant == "sdpa":
                verdict = "the default"
            elif (
                len(entry["values"]) < 2
                or len(block["variants"].get("sdpa", {}).get("values", [])) < 2
            ):
                verdict = "one seed: no verdict"
            elif None not in (mean, base_mean, std, base_std):
                assert mean is not None and base_mean is not None
                diff = (mean - base_mean) * (1 if higher else -1)
                noise = (std or 0.0) + (base_std or 0.0)  # mean ± std intervals must not overlap
                verdict = (
                    "within noise" if abs(diff) <= noise else ("better" if diff > 0 else "worse")
                )
            entry["verdict"] = verdict
            rows.append(
                [
                    variant,
                    "-" if mean is None else f"{mean:.4f} ± {std:.4f}",
                    str(len(entry["values"])),
                    "-" if speed is None else f"{speed:.0f}",
                    verdict,
                ]
            )
        arrow = "higher is better" if higher else "lower is better"
        budget_note = (
            f"The default at this budget reaches {share:.0%} of its full run's quality "
            f"({ref_value:.4f}, the config's own schedule, seed 42)"
            + (" (goal: at least 90 %)." if share >= 0.9 else ": **below the 90 % goal**.")
            if share is not None
            else "No full-run reference."
        )
        sections.append(
            f"### {name}: {block['metric']} ({arrow}); {block['data']}\n\n"
            f"{budget_note}\n\n"
            + markdown_table(
                ["variant", "mean ± std", "seeds", "train samples / CPU s", "against sdpa"],
                rows,
                ["l", "r", "r", "r", "l"],
            )
        )
    intro = (
        "Every variant is the app's default model with one `--model.attention.*` change, trained "
        "for the domain's CPU budget with the layer's warmup + cosine over the budget, then "
        'tested; mean ± std over seeds. "better"/"worse" only where the difference of the '
        "means exceeds the sum of their standard deviations (mean ± std intervals apart). Plot: [`matrix.png`](matrix.png)."
    )
    payload = {"domains": domains}
    return payload, intro + "\n\n" + "\n\n".join(sections)


def write_plot(payload: dict[str, Any], folder: Path) -> list[Path]:
    """One panel per domain: mean quality (± std) against training samples per CPU second."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blocks = list(payload["domains"].items())
    if not blocks:
        return []
    path = Path(folder) / "matrix.png"
    cols = min(3, len(blocks))
    nrows = math.ceil(len(blocks) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5 * cols, 4 * nrows), squeeze=False)
    names = [*BACKENDS, *(f"pos={p}" for p in POSITIONS)]
    palette = {n: plt.get_cmap("tab20")(i % 20) for i, n in enumerate(names)}
    for ax, (name, block) in zip(axes.flat, blocks, strict=False):
        for variant, e in block["variants"].items():
            if e.get("mean") is None or e.get("samples_per_cpu_s_mean") is None:
                continue
            ax.errorbar(
                e["samples_per_cpu_s_mean"], e["mean"], yerr=e["std"] or 0.0, fmt="o",
                color=palette.get(variant, "black"), capsize=3,
            )  # fmt: skip
            ax.annotate(variant, (e["samples_per_cpu_s_mean"], e["mean"]), fontsize=8,
                        xytext=(3, 3), textcoords="offset points")  # fmt: skip
        arrow = "higher is better" if block["mode"] == "max" else "lower is better"
        ax.set_title(f"{name}: {block['data']}"[:70], fontsize=9)
        ax.set_xlabel("training samples per CPU second")
        ax.set_ylabel(f"{block['metric']} ({arrow})")
    for ax in list(axes.flat)[len(blocks) :]:
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".matrix.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=100)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)
    return [path]


def headline(payload: dict[str, Any]) -> str:
    parts = []
    for name, block in payload["domains"].items():
        base = block["variants"].get("sdpa", {})
        moved = [v for v, e in block["variants"].items() if e.get("verdict") in ("better", "worse")]
        shown = ", ".join(f"{v} {block['variants'][v]['verdict']}" for v in moved) or (
            "no variant outside the noise"
        )
        if base.get("mean") is not None:
            parts.append(f"{name} sdpa {base['mean']:.4f} ± {base['std']:.4f} ({shown})")
    return "; ".join(parts)


BENCHMARK = Benchmark(
    name="matrix",
    title="Attention variants: every backend and position, same CPU budget, three seeds",
    runs=runs,
    tabulate=tabulate,
    headline=headline,
    default_jobs=2,
    write_extra=write_plot,
)
