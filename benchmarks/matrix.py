"""``python -m benchmarks matrix``: swap the attention backend and the positional scheme of each
app's default model and train every variant for the same CPU budget.

Per domain the app's own LightningModule and DataModule are built from its config (the real-data
config where ``ATTNLAB_DATA_DIR`` holds the dataset, else ``configs/quick.yaml`` on the built-in
data, said so in the output), with the same seed and data for every variant:

=========  ===================================  ==============================  ============
domain     model                                data (real / fallback)          metric
=========  ===================================  ==============================  ============
vit        ViT preset of the config             Fashion-MNIST / sklearn digits  test top-1
caption    Transformer decoder (KV cache)       digit scenes (always built-in)  test BLEU-4
forecast   PatchTST-style                       ETTh1 L=336 H=96 / synthetic    test MSE
recsys     SASRec (CE)                          ML-100K / synthetic sessions    NDCG@10
audio      Audio Spectrogram Transformer        FSDD / synthetic tones          test acc
=========  ===================================  ==============================  ============

Variants: the backends ``sdpa`` (the baseline), ``math``, ``local`` (window = a quarter of the
tokens), ``linear`` (elu features; attention dropout off, it has no attention matrix) and
``linformer`` (keys and values projected to a quarter of the tokens), each with the model's own
learned positions; then, on ``sdpa``, the positional schemes ``sincos`` (the learned table
replaced by a fixed sin-cos one, 2-D for image/spectrogram grids), ``rope`` (RoPE, 2-D RoPE on
grids; the additive table zeroed and frozen) and ``alibi``. Invalid combinations are recorded as
``n/a: reason`` without training: linformer under a causal mask (caption, recsys) and ALiBi on a
2-D token grid (vit, audio). Only self-attention is changed (the captioner's cross-attention
keeps its exact backend and has no positions).

Each variant runs in a fresh subprocess (``common.peak_memory``): setup (data, model) happens
before the memory baseline, then Lightning trains it until ``ATTNLAB_BENCH_MATRIX_BUDGET_S`` CPU
seconds (``time.process_time`` of that process, all threads; validation off) with the app's
optimizer and its warmup + cosine schedule stretched over the CPU budget, and tests the final
weights. Recorded: the app's headline test metric, training samples per wall-clock second and
per CPU second, the peak RSS increase over the baseline (training and test), steps and epochs.

Cost: 36 runs by default (40 variants, 4 n/a). At the default 60 CPU s per variant that is
36 CPU minutes of training, ~18 minutes wall on 2 cores, plus per variant a process start, data
setup (FSDD features: ~15 s) and the test pass: about 30-40 minutes in all on a 2-core machine.

Environment:

* ``ATTNLAB_DATA_DIR``: the real datasets (optional; see the table).
* ``ATTNLAB_BENCH_MATRIX_BUDGET_S``: training CPU seconds per variant (default 60).
* ``ATTNLAB_BENCH_MATRIX_DOMAINS``: comma list, subset of vit,caption,forecast,recsys,audio.
* ``ATTNLAB_BENCH_MATRIX_VARIANTS``: comma list of variant names (e.g. ``sdpa,linear,rope``).
* ``ATTNLAB_BENCH_THREADS``: torch threads in each variant's process (default: torch's).

Writes ``results/matrix.json``, ``results/matrix.md`` and ``results/matrix.png`` (one panel per
domain: quality against training samples per CPU second, one labelled marker per variant).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import (
    RESULTS_DIR,
    environment,
    environment_markdown,
    markdown_table,
    peak_memory,
    write_results,
)

NAME = "matrix"
DEFAULT_BUDGET_S = 60.0
SEED = 42
BACKENDS = ("sdpa", "math", "local", "linear", "linformer")
POSITIONS = ("sincos", "rope", "alibi")  # "learned" is the apps' default: the backend rows


@dataclass(frozen=True)
class Domain:
    """How to build one app's default model and data, and where its positions live."""

    name: str
    package: str  # the app's python package; ``<package>.app`` is its attnlab.App
    real_config: str | None  # config file name used when the dataset is present
    real_marker: str | None  # path under ATTNLAB_DATA_DIR that must exist for the real config
    real_label: str
    quick_label: str
    model_overrides: dict[str, Any]
    pos_param: str  # dotted path (in the LightningModule) of the additive position table
    causal: bool  # self-attention under a causal mask (linformer impossible)
    grid: bool  # tokens form a 2-D grid (2-D sin-cos / RoPE; ALiBi n/a)
    metric_label: str


DOMAINS: dict[str, Domain] = {
    d.name: d
    for d in (
        Domain(
            "vit",
            "attnlab_vit",
            "fashion_mnist.yaml",
            "fashion-mnist",
            "Fashion-MNIST (60,000 train / 10,000 test)",
            "scikit-learn digits (built-in quick data)",
            {},
            "model.pos_embed",
            causal=False,
            grid=True,
            metric_label="test top-1",
        ),
        Domain(
            "caption",
            "attnlab_captioning",
            None,
            None,
            "digit scenes (generated offline)",
            "digit scenes (generated offline)",
            {"decoder": "transformer", "encoder_pretrained": False},
            "model.decoder.pos.weight",
            causal=True,
            grid=False,
            metric_label="test BLEU-4",
        ),
        Domain(
            "forecast",
            "attnlab_forecasting",
            "etth1.yaml",
            "ett/ETTh1.csv",
            "ETTh1, L=336, H=96, normalized scale",
            "synthetic seasonal series (built-in quick data)",
            {},
            "model.pos_embed",
            causal=False,
            grid=False,
            metric_label="test MSE",
        ),
        Domain(
            "recsys",
            "attnlab_recommender",
            "ml100k.yaml",
            "movielens-100k",
            "MovieLens-100K, leave-one-out, full ranking",
            "synthetic sessions (built-in quick data)",
            {},
            "model.pos_embedding.weight",
            causal=True,
            grid=False,
            metric_label="test NDCG@10",
        ),
        Domain(
            "audio",
            "attnlab_audio",
            "fsdd.yaml",
            "fsdd",
            "FSDD spoken digits, official split",
            "synthetic DTMF-style clips (built-in quick data)",
            {},
            "model.pos_embed",
            causal=False,
            grid=True,
            metric_label="test accuracy",
        ),
    )
}


# --------------------------------------------------------------------------------------------
# variants
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    name: str
    backend: str
    pos: str  # learned | sincos | rope | alibi


def variants() -> list[Variant]:
    """Every backend with learned positions, then every positional scheme on sdpa."""
    out = [Variant(b, b, "learned") for b in BACKENDS]
    return out + [Variant(p, "sdpa", p) for p in POSITIONS]


def invalid_reason(domain: Domain, variant: Variant) -> str | None:
    """Why ``variant`` cannot apply to ``domain`` (None when it can)."""
    if variant.backend == "linformer" and domain.causal:
        return (
            "n/a: linformer projects all key positions together, so it cannot be causal "
            f"({domain.name}'s self-attention is)"
        )
    if variant.pos == "alibi" and domain.grid:
        return (
            "n/a: ALiBi is a 1-D distance bias and this model's tokens form a 2-D grid "
            "(2-D RoPE is the grid counterpart)"
        )
    return None


def _config(domain: Domain, data_dir: str | None) -> tuple[dict[str, Any], str, bool]:
    """(config dict, data label, real?) for the domain under ``data_dir``."""
    import importlib

    import yaml

    app = importlib.import_module(domain.package).app
    real = bool(
        domain.real_config
        and domain.real_marker
        and data_dir
        and (Path(data_dir) / domain.real_marker).exists()
    )
    name = domain.real_config if real and domain.real_config else "quick.yaml"
    cfg = yaml.safe_load((Path(app.config_dir) / name).read_text(encoding="utf-8"))
    cfg["_file"] = name
    return cfg, domain.real_label if real else domain.quick_label, real


def _self_attention(module: Any) -> list[tuple[str, Any]]:
    """The self-attention layers (cross-attention keeps its exact backend and no positions)."""
    from attention_core import MultiHeadAttention

    return [
        (name, m)
        for name, m in module.named_modules()
        if isinstance(m, MultiHeadAttention) and not name.endswith("cross_attn")
    ]


def _get(module: Any, path: str) -> Any:
    for part in path.split("."):
        module = getattr(module, part)
    return module


def apply_variant(domain: Domain, module: Any, variant: Variant) -> dict[str, Any]:
    """Switch ``module``'s self-attention backend and positions in place; returns the settings.

    Runs before the optimizer exists (linformer creates its projections here).
    """
    import torch

    from attention_core import ALiBi, RotaryEmbedding, RotaryEmbedding2D
    from attention_core.positional import sincos_2d_table, sinusoidal_table

    table = _get(module, domain.pos_param)  # (1, L, D) or (L, D)
    length, dim = table.shape[-2], table.shape[-1]
    layers = _self_attention(module)
    if not layers:
        raise ValueError(f"{domain.name}: the model has no self-attention layer to change")
    if any(m.pos is not None for _, m in layers) and variant.pos != "learned":
        raise ValueError(f"{domain.name}: the model already uses attention-level positions")
    grid: tuple[int, int] | None = None
    prefix = 0
    if domain.grid:
        inner = module.model
        grid = tuple(inner.grid_size)  # type: ignore[assignment]
        prefix = length - grid[0] * grid[1]
    settings: dict[str, Any] = {"tokens": length, "layers_changed": len(layers)}
    kwargs: dict[str, Any] = {}
    if variant.backend == "local":
        kwargs = {"window": max(2, length // 4)}
    elif variant.backend == "linear":
        kwargs = {"feature_map": "elu"}
    elif variant.backend == "linformer":
        kwargs = {"seq_len": length, "proj_dim": max(4, length // 4)}
    settings["backend_kwargs"] = kwargs
    for _, layer in layers:
        layer.configure_backend(variant.backend, **kwargs)
        if variant.backend == "linear" and layer.attn_drop.p > 0:
            settings["attention_dropout_off"] = layer.attn_drop.p
            layer.attn_drop.p = 0.0
    if variant.pos == "learned":
        return settings
    with torch.no_grad():
        if variant.pos == "sincos":
            if grid is not None:
                fixed = torch.zeros(length, dim)
                fixed[prefix:] = sincos_2d_table(dim, grid)
            else:
                fixed = sinusoidal_table(length, dim)
            table.copy_(fixed.view_as(table))
        else:
            table.zero_()
    table.requires_grad_(False)
    for _, layer in layers:
        if variant.pos == "rope":
            layer.pos = (
                RotaryEmbedding2D(layer.head_dim, grid, num_prefix_tokens=prefix)
                if grid is not None
                else RotaryEmbedding(layer.head_dim)
            )
        elif variant.pos == "alibi":
            layer.pos = ALiBi(layer.num_heads)
    settings["grid"] = list(grid) if grid else None
    return settings


# --------------------------------------------------------------------------------------------
# one variant (runs inside the peak-memory subprocess)
# --------------------------------------------------------------------------------------------


def _batch_size(batch: Any) -> int:
    """Leading dimension of the first tensor in a (nested) batch."""
    import torch

    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0])
    values = batch.values() if isinstance(batch, dict) else batch
    for value in values:
        if isinstance(value, torch.Tensor | dict | list | tuple):
            n = _batch_size(value)
            if n:
                return n
    return 0


def _budget_callback(budget_s: float, warmup_fraction: float, min_lr_ratio: float) -> Any:
    """A Lightning callback: the app's warmup + cosine over the CPU budget, then stop."""
    import lightning.pytorch as pl

    from attnlab.module import warmup_cosine

    class CpuBudget(pl.Callback):
        def __init__(self) -> None:
            self.cpu0 = self.wall0 = 0.0
            self.samples = self.steps = 0
            self.cpu_s = self.wall_s = 0.0

        def _used(self) -> float:
            return time.process_time() - self.cpu0

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            self.cpu0, self.wall0 = time.process_time(), time.perf_counter()

        def on_train_batch_start(
            self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int
        ) -> None:
            ticks = 10_000  # the schedule's resolution over the budget
            step = int(ticks * min(1.0, self._used() / budget_s))
            factor = warmup_cosine(step, ticks, int(warmup_fraction * ticks), min_lr_ratio)
            for optimizer in trainer.optimizers:
                for group in optimizer.param_groups:
                    group["lr"] = group.get("initial_lr", group["lr"]) * factor

        def on_train_batch_end(
            self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
        ) -> None:
            self.samples += _batch_size(batch)
            self.steps += 1
            if self._used() >= budget_s:
                trainer.should_stop = True

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            self.cpu_s, self.wall_s = self._used(), time.perf_counter() - self.wall0

    return CpuBudget()


def variant_case(
    domain: str, variant: str, budget_s: float, data_dir: str | None = None
) -> Callable[[], dict[str, Any]]:
    """For ``peak_memory``: build data and model (before the baseline); the callable trains and
    tests, returning the measurements (or ``status: error`` with the reason)."""
    import importlib

    import lightning.pytorch as pl
    import torch

    threads = os.environ.get("ATTNLAB_BENCH_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    spec = DOMAINS[domain]
    var = next(v for v in variants() if v.name == variant)
    cfg, _, _ = _config(spec, data_dir)
    app = importlib.import_module(spec.package).app
    pl.seed_everything(SEED, verbose=False)
    dm = app.datamodule(**cfg.get("data", {}))
    model_kwargs = {**cfg.get("model", {}), **spec.model_overrides}
    if spec.name in ("caption", "recsys"):
        dm.setup("fit")  # their networks depend on the data (vocabulary, item count)
    if spec.name == "recsys":
        model_kwargs["num_items"] = dm.num_items
    module = app.module(**model_kwargs)
    if spec.name == "caption":
        module.data_info = {"image_size": dm.image_size}
        module.build(dm.vocab)
    settings = apply_variant(spec, module, var)
    hp = module.hparams
    budget_cb = _budget_callback(
        budget_s, float(hp.get("warmup_fraction", 0.05)), float(hp.get("min_lr_ratio", 0.01))
    )
    root = tempfile.mkdtemp(prefix=f"attnlab-matrix-{domain}-")
    trainer_cfg = cfg.get("trainer", {}) or {}
    trainer = pl.Trainer(
        default_root_dir=root,
        accelerator="cpu",
        devices=1,
        max_epochs=100_000,  # the CPU budget stops training
        limit_val_batches=0,
        num_sanity_val_steps=0,
        gradient_clip_val=trainer_cfg.get("gradient_clip_val"),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[budget_cb],
    )
    params = sum(p.numel() for p in module.parameters() if p.requires_grad)

    def run() -> dict[str, Any]:
        out: dict[str, Any] = {"settings": settings, "trainable_parameters": params}
        try:
            trainer.fit(module, datamodule=dm)
            test_start = time.perf_counter()
            metrics = trainer.test(module, datamodule=dm, verbose=False)[0]
        except (ValueError, RuntimeError, NotImplementedError) as exc:
            out.update(status="error", reason=f"{type(exc).__name__}: {exc}"[:400])
            return out
        finally:
            shutil.rmtree(root, ignore_errors=True)
        value = metrics.get(app.headline)
        batches = float(trainer.num_training_batches)  # per epoch
        out.update(
            status="ok",
            metric=app.headline,
            value=None if value is None else round(float(value), 4),
            train_cpu_s=round(budget_cb.cpu_s, 1),
            train_wall_s=round(budget_cb.wall_s, 1),
            steps=budget_cb.steps,
            samples=budget_cb.samples,
            epochs=round(budget_cb.steps / batches, 2) if 0 < batches < math.inf else None,
            samples_per_s=round(budget_cb.samples / max(budget_cb.wall_s, 1e-9), 1),
            samples_per_cpu_s=round(budget_cb.samples / max(budget_cb.cpu_s, 1e-9), 1),
            test_wall_s=round(time.perf_counter() - test_start, 1),
        )
        return out

    return run


# --------------------------------------------------------------------------------------------
# the matrix
# --------------------------------------------------------------------------------------------


def run_domain(
    domain: Domain, names: Sequence[str], budget_s: float, data_dir: str | None
) -> dict[str, Any]:
    """Every variant of one domain, each in its own subprocess."""
    import importlib

    cfg, label, real = _config(domain, data_dir)
    app = importlib.import_module(domain.package).app
    rows = []
    for var in variants():
        if var.name not in names:
            continue
        row: dict[str, Any] = {"variant": var.name, "backend": var.backend, "positions": var.pos}
        reason = invalid_reason(domain, var)
        if reason:
            rows.append({**row, "status": "n/a", "reason": reason})
            print(f"  {domain.name} {var.name}: {reason}", flush=True)
            continue
        mem = peak_memory(
            "benchmarks.matrix:variant_case",
            {
                "domain": domain.name,
                "variant": var.name,
                "budget_s": budget_s,
                "data_dir": data_dir,
            },
            timeout_s=900 + 4 * budget_s,
        )
        if not mem.ok:
            rows.append({**row, "status": "error", "reason": mem.error})
        else:
            rows.append(
                {**row, **mem.extra, "peak_rss_increase_mb": round(mem.increase_mb or 0, 1)}
            )
        r = rows[-1]
        print(
            f"  {domain.name} {var.name}: "
            + (
                f"{r['metric']} {r['value']}, {r['samples_per_s']} samples/s, "
                f"+{r['peak_rss_increase_mb']} MiB"
                if r["status"] == "ok"
                else f"{r['status']}: {r['reason']}"
            ),
            flush=True,
        )
    return {
        "config": f"apps/{Path(app.config_dir).parent.name}/configs/{cfg['_file']}",
        "model_overrides": domain.model_overrides,
        "data": label,
        "real_data": real,
        "fallback_note": None
        if real or domain.real_config is None
        else f"ATTNLAB_DATA_DIR/{domain.real_marker} not found: built-in quick data instead",
        "metric": app.headline,
        "metric_label": domain.metric_label,
        "higher_is_better": app.mode == "max",
        "variants": rows,
    }


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def build_markdown(data: dict[str, Any]) -> str:
    lines = [
        "# Attention variants: backends and positions at the same CPU budget",
        "",
        f"Each variant trained for **{data['budget_s_per_variant']:.0f} CPU seconds** "
        "(`time.process_time`, all threads) with the app's optimizer and warmup + cosine "
        "schedule stretched over the budget, same seed and data, no validation; then the final "
        "weights were tested. Throughput is training samples per wall-clock second (and per CPU "
        "second); memory is the peak RSS increase of the variant's process over its baseline "
        "after data and model setup. "
        + ("" if data["complete"] else "**Partial: not every domain has run yet.**"),
        "",
    ]
    for name, block in data["domains"].items():
        arrow = "higher is better" if block["higher_is_better"] else "lower is better"
        lines += [
            f"## {name}: {block['metric_label']} ({arrow})",
            "",
            f"Config `{block['config']}`"
            + (f" with {block['model_overrides']}" if block["model_overrides"] else "")
            + f"; data: {block['data']}."
            + (f" **{block['fallback_note']}.**" if block["fallback_note"] else ""),
            "",
        ]
        rows = []
        for r in block["variants"]:
            if r["status"] != "ok":
                rows.append([r["variant"], r["backend"], r["positions"], r["reason"], *["-"] * 5])
                continue
            kw = r.get("settings", {}).get("backend_kwargs") or {}
            backend = r["backend"] + (
                f" ({', '.join(f'{k}={v}' for k, v in kw.items())})" if kw else ""
            )
            rows.append(
                [
                    r["variant"],
                    backend,
                    r["positions"],
                    _fmt(r["value"]),
                    _fmt(r["samples_per_s"], 1),
                    _fmt(r["samples_per_cpu_s"], 1),
                    _fmt(r["peak_rss_increase_mb"], 1),
                    r["steps"],
                    r["epochs"],
                ]
            )
        lines += [
            markdown_table(
                [
                    "variant",
                    "backend",
                    "positions",
                    block["metric_label"],
                    "train samples/s",
                    "samples/CPU-s",
                    "peak RSS +MiB",
                    "steps",
                    "epochs",
                ],
                rows,
                ["l", "l", "l", "r", "r", "r", "r", "r", "r"],
            ),
            "",
        ]
    lines += [
        f"Plot: [`matrix.png`](matrix.png). Total time {data['elapsed_s']:.0f} s.",
        "",
        "## Environment",
        "",
        environment_markdown(data["environment"]),
    ]
    return "\n".join(lines)


def write_plot(data: dict[str, Any], path: Path) -> Path:
    """One panel per domain: quality against training samples per CPU second."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blocks = list(data["domains"].items())
    cols = min(3, max(1, len(blocks)))
    rows = math.ceil(len(blocks) / cols) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 4 * rows), squeeze=False)
    # One colour per variant in every panel, so "rope" is the same colour in each domain.
    names = [*BACKENDS, *POSITIONS]
    names += sorted({r["variant"] for _, b in blocks for r in b["variants"]} - set(names))
    palette = {name: plt.get_cmap("tab10")(i % 10) for i, name in enumerate(names)}
    for ax, (name, block) in zip(axes.flat, blocks, strict=False):
        ok = [r for r in block["variants"] if r["status"] == "ok" and r["value"] is not None]
        for r in ok:
            marker = "o" if r["positions"] == "learned" else "s"
            ax.scatter(
                r["samples_per_cpu_s"], r["value"], marker=marker, color=palette[r["variant"]]
            )
            ax.annotate(
                r["variant"], (r["samples_per_cpu_s"], r["value"]), fontsize=8,
                xytext=(3, 3), textcoords="offset points",
            )  # fmt: skip
        arrow = "higher is better" if block["higher_is_better"] else "lower is better"
        ax.set_title(f"{name}: {block['data']}"[:60], fontsize=9)
        ax.set_xlabel("training samples per CPU second")
        ax.set_ylabel(f"{block['metric_label']} ({arrow})")
        if not ok:
            ax.text(0.5, 0.5, "no completed variant", ha="center", transform=ax.transAxes)
    for ax in list(axes.flat)[len(blocks) :]:
        ax.axis("off")
    fig.suptitle(
        f"Attention variants at {data['budget_s_per_variant']:.0f} CPU s each\n"
        "(circles: backends with learned positions; squares: positions on sdpa)",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)
    return path


def _env_list(name: str, allowed: Sequence[str]) -> list[str]:
    raw = os.environ.get(name, "")
    picked = [x.strip() for x in raw.split(",") if x.strip()] or list(allowed)
    unknown = [x for x in picked if x not in allowed]
    if unknown:
        raise SystemExit(
            f"error: {name}={raw!r} names unknown entries {unknown}; choose from {list(allowed)}"
        )
    return picked


def main(
    domains: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
    budget_s: float | None = None,
    results_dir: Path | None = None,
) -> dict[str, Any]:
    """Run the matrix (arguments default to the environment variables); returns the json."""
    start = time.perf_counter()
    all_names = [v.name for v in variants()]
    domains = list(domains or _env_list("ATTNLAB_BENCH_MATRIX_DOMAINS", list(DOMAINS)))
    names = list(names or _env_list("ATTNLAB_BENCH_MATRIX_VARIANTS", all_names))
    if budget_s is None:
        raw = os.environ.get("ATTNLAB_BENCH_MATRIX_BUDGET_S", str(DEFAULT_BUDGET_S))
        try:
            budget_s = float(raw)
        except ValueError:
            raise SystemExit(
                f"error: ATTNLAB_BENCH_MATRIX_BUDGET_S={raw!r} is not a number of CPU seconds"
            ) from None
    if not budget_s > 0:
        raise SystemExit(f"error: the budget must be > 0 CPU seconds, got {budget_s}")
    data_dir = os.environ.get("ATTNLAB_DATA_DIR") or None
    folder = RESULTS_DIR if results_dir is None else results_dir
    env = environment()
    data: dict[str, Any] = {
        "benchmark": NAME,
        "budget_s_per_variant": budget_s,
        "budget_kind": "CPU seconds (time.process_time, all threads) of training per variant",
        "seed": SEED,
        "variants_requested": names,
        "domains_requested": domains,
        "complete": False,
        "elapsed_s": 0.0,
        "environment": env,
        "domains": {},
    }
    for name in domains:
        print(f"== matrix {name} ({budget_s:.0f} CPU s per variant)", flush=True)
        data["domains"][name] = run_domain(DOMAINS[name], names, budget_s, data_dir)
        data["complete"] = len(data["domains"]) == len(domains)
        data["elapsed_s"] = round(time.perf_counter() - start, 1)
        # written after every domain so an interrupted matrix keeps what it measured
        write_results(NAME, data, build_markdown(data), results_dir=folder)
        write_plot(data, folder / f"{NAME}.png")
    print(f"wrote {folder / NAME}.json/.md/.png in {time.perf_counter() - start:.0f} s")
    return data


if __name__ == "__main__":
    main()
