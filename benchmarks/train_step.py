"""``python -m benchmarks train_step``: the CPU time of one training step of the apps' models with
``torch.nn.Dropout`` against ``attention_core.Dropout`` (the mask drawn with ``rand_like``
instead of ``bernoulli_``), in the same process; nothing is trained to a result.

For each model (the forecaster's PatchTST at the ETTh1 config's sizes, the recommender's SASRec
at the sizes and loss read from its MovieLens config) one set of weights is built twice: as the
app builds it, and with every dropout module swapped for ``torch.nn.Dropout`` of the same ``p``
(what the apps used before). Full training steps (forward, loss, backward, Adam) of the two
are timed in interleaved rounds on one thread (``benchmarks.common.time_interleaved``); the
table gives the median CPU milliseconds of each and the median per-round ratio. A
torch.profiler pass then gives the share of the step spent drawing dropout masks
(``aten::bernoulli_`` before, ``aten::uniform_`` after).

Writes ``results/train_step.json`` (the keys ``python -m benchmarks readme`` reads) and
``results/train_step.md``. ``ATTNLAB_BENCH_QUICK=1``: small shapes and few rounds, for the test.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from benchmarks._results import FORMAT
from benchmarks.common import (
    environment,
    environment_markdown,
    markdown_table,
    quick_mode,
    time_interleaved,
    write_results,
)

NAME = "train_step"
MASK_OPS = ("aten::bernoulli_", "aten::uniform_")


def _patchtst(quick: bool) -> tuple[nn.Module, Callable[[nn.Module], Tensor], dict[str, Any]]:
    """PatchTST at the etth1 config's sizes: batch 128 windows of 336 steps x 7 channels."""
    from attnlab_forecasting.model import build_model

    batch, seq_len, horizon, channels = (16, 96, 24, 7) if quick else (128, 336, 96, 7)
    model = build_model(
        "patchtst", seq_len=seq_len, pred_len=horizon, channels=channels, dim=16, depth=3,
        num_heads=4, mlp_ratio=8.0, dropout=0.3, patch_len=16, stride=8, norm="batch",
    )  # fmt: skip
    x, y = torch.randn(batch, seq_len, channels), torch.randn(batch, horizon, channels)

    def loss(m: nn.Module) -> Tensor:
        return nn.functional.mse_loss(m(x), y)

    shape = {"batch": batch, "seq_len": seq_len, "horizon": horizon, "channels": channels}
    return model, loss, shape


def _shipped_model_settings(app: str, config: str) -> dict[str, Any]:
    """The ``model:`` block of a shipped config, so that the timed sizes follow the config."""
    import yaml

    from attnlab.app import get_app
    from attnlab.cli import resolve_config

    with open(resolve_config(config, get_app(app))) as fh:
        return dict(yaml.safe_load(fh)["model"])


def _sasrec(quick: bool) -> tuple[nn.Module, Callable[[nn.Module], Tensor], dict[str, Any]]:
    """SASRec at the movielens config's sizes and loss (read from the config): 128 sequences of
    its max_len items, full softmax over ML-100K's 1,682 items."""
    from attnlab_recommender.model import RecConfig, SequentialRecommender

    shipped = _shipped_model_settings("recsys", "movielens")
    keys = ("max_len", "dim", "depth", "num_heads", "dropout", "attn_dropout")
    sizes = {k: shipped[k] for k in keys}
    smoothing = float(shipped.get("label_smoothing", 0.0))
    batch, items = (16, 500) if quick else (128, 1682)
    if quick:
        sizes.update(max_len=50, dim=32)
    length = sizes["max_len"]
    model = SequentialRecommender(RecConfig(num_items=items, **sizes))
    seq = torch.randint(1, items + 1, (batch, length))  # (B, L)
    target = torch.randint(1, items + 1, (batch * length,))  # next item of every position

    def loss(m: nn.Module) -> Tensor:
        hidden = m.encode(seq).flatten(0, 1)  # (B * L, dim)
        return m.item_cross_entropy(hidden, target, label_smoothing=smoothing)

    shape = {"batch": batch, "length": length, "items": items, "dim": sizes["dim"]}
    shape["label smoothing"] = smoothing
    return model, loss, shape


MODELS: dict[str, Callable[[bool], tuple[nn.Module, Callable[[nn.Module], Tensor], dict]]] = {
    "patchtst (forecast, etth1)": _patchtst,
    "sasrec (recsys, movielens)": _sasrec,
}


def with_torch_dropout(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (same weights) whose dropout modules are ``torch.nn.Dropout``."""
    twin = copy.deepcopy(model)
    for parent in twin.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Dropout) and type(child) is not nn.Dropout:
                setattr(parent, name, nn.Dropout(child.p))
    return twin


def _step(model: nn.Module, loss: Callable[[nn.Module], Tensor]) -> Callable[[], None]:
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss(model).backward()
        opt.step()

    return step


def _mask_share(step: Callable[[], None], steps: int) -> dict[str, float]:
    """Share of the profiled CPU time in each mask-drawing op over ``steps`` steps."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    return {
        op: round(sum(e.self_cpu_time_total for e in events if e.key == op) / total, 4)
        for op in MASK_OPS
    }


def measure(quick: bool) -> list[dict[str, Any]]:
    rows = []
    for label, build in MODELS.items():
        torch.manual_seed(0)
        ours, loss, shape = build(quick)
        before = with_torch_dropout(ours)
        steps = {"torch": _step(before, loss), "attention_core": _step(ours, loss)}
        t = time_interleaved(
            steps, warmup=3, min_rounds=3 if quick else 7, budget_s=2 if quick else 60
        )
        ratio = t.ratio("attention_core", "torch", cpu=True)
        rows.append(
            {
                "model": label,
                "shape": shape,
                "dropout_modules": sum(isinstance(m, nn.Dropout) for m in ours.modules()),
                "torch_cpu_ms": round(t.cpu_timings["torch"].median * 1e3, 1),
                "ours_cpu_ms": round(t.cpu_timings["attention_core"].median * 1e3, 1),
                "ratio": ratio.to_dict(1.0, 3),
                "rounds": t.rounds,
                "mask_share_torch": _mask_share(steps["torch"], 2 if quick else 5),
                "mask_share_ours": _mask_share(steps["attention_core"], 2 if quick else 5),
            }
        )
    return rows


def headline(rows: list[dict[str, Any]]) -> str:
    return "; ".join(
        f"{r['model']}: {r['torch_cpu_ms']:.0f} -> {r['ours_cpu_ms']:.0f} CPU ms a step "
        f"(x{r['ratio']['median']:.2f})"
        for r in rows
    )


def build_markdown(data: dict[str, Any]) -> str:
    table = markdown_table(
        ["model", "shape", "dropout modules", "nn.Dropout CPU ms", "attention_core CPU ms",
         "ratio (median, IQR)", "bernoulli_ share before", "uniform_ share after"],
        [
            [
                r["model"],
                ", ".join(f"{k} {v}" for k, v in r["shape"].items()),
                r["dropout_modules"],
                f"{r['torch_cpu_ms']:.1f}",
                f"{r['ours_cpu_ms']:.1f}",
                f"{r['ratio']['median']:.3f} ({r['ratio']['q1']:.3f}-{r['ratio']['q3']:.3f})",
                f"{100 * r['mask_share_torch']['aten::bernoulli_']:.0f} %",
                f"{100 * r['mask_share_ours']['aten::uniform_']:.0f} %",
            ]
            for r in data["rows"]
        ],
    )  # fmt: skip
    return "\n".join(
        [
            f"# {data['title']}",
            "",
            f"`{data['command']}`" + (" (QUICK mode: small shapes)" if data["quick"] else ""),
            "",
            f"**{data['headline']}**",
            "",
            "One full training step (forward, loss, backward, Adam) on one thread, the two "
            "variants interleaved in the same process with the same weights; CPU milliseconds "
            "are medians over rounds, the ratio is attention_core / nn.Dropout per round. The "
            "shares are of the profiled CPU time of a few steps.",
            "",
            table,
            "",
            "## Environment",
            "",
            environment_markdown(data["environment"]),
            "",
        ]
    )


def main() -> None:
    quick = quick_mode()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    start = time.perf_counter()
    try:
        rows = measure(quick)
    finally:
        torch.set_num_threads(threads)
    env = environment()
    env["torch_num_threads"] = 1
    data: dict[str, Any] = {
        "format": FORMAT,  # the keys `python -m benchmarks readme` reads
        "benchmark": NAME,
        "title": "a training step with torch's dropout and with attention_core's",
        "headline": headline(rows),
        "command": "python -m benchmarks train_step",
        "threads": 1,
        "complete": True,
        "quick": quick,
        "anchors": [],
        "runs": [
            {"command": r["model"], "status": "ok", "note": f"x{r['ratio']['median']:.2f}"}
            for r in rows
        ],
        "rows": rows,
        "environment": env,
        "elapsed_s": round(time.perf_counter() - start, 1),
    }
    for r in rows:
        print(
            f"{r['model']}: nn.Dropout {r['torch_cpu_ms']:.1f} CPU ms, attention_core "
            f"{r['ours_cpu_ms']:.1f} CPU ms, ratio {r['ratio']['median']:.3f} "
            f"({', '.join(f'{k} {v}' for k, v in r['shape'].items())}; 1 thread, torch "
            f"{torch.__version__})",
            flush=True,
        )
    json_path, md_path = write_results(NAME, data, build_markdown(data))
    print(f"wrote {json_path.name} and {md_path.name}", flush=True)


if __name__ == "__main__":
    main()
