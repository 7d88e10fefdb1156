"""Captioning benchmark: Show, Attend and Tell with soft and with stochastic hard attention vs a
Transformer decoder vs a no-attention baseline, each trained for the same CPU time, on digit
scenes and on the Flickr8k 1,000-image subset.

Every number comes from one ``attnlab caption fit`` run of a shipped config (``digits`` for the
generated digit scenes, ``flickr8k`` for the subset, which needs ``ATTNLAB_DATA_DIR``) with
``--model.decoder`` chosen and ``--budget.cpu_s`` bounding the training. The run's test split is
captioned with beam search and scored by the app on the generated captions: BLEU-1..4, CIDEr-D
and, on digit scenes, attention localization (``test/loc``: the share of generated digit words
whose attention peak lies inside a glyph of that digit). ``python -m benchmarks caption``
(``nox -s bench -- caption``) writes ``results/caption.json`` and ``.md``.
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import markdown_table
from benchmarks.runner import Benchmark, Run, RunResult, command_cell

DECODERS = {
    "lstm_attention": "LSTM + additive attention (Show, Attend and Tell)",
    "lstm_hard_attention": "LSTM + stochastic hard attention (Show, Attend and Tell, REINFORCE)",
    "transformer": "Transformer decoder (KV cache)",
    "lstm_pooled": "no-attention baseline (mean-pooled LSTM)",
}
# dataset label -> (shipped config, needs ATTNLAB_DATA_DIR, title)
DATASETS = {
    "digits": ("digits", False, "Digit scenes (`configs/digits.yaml`, generated offline)"),
    "flickr8k": (
        "flickr8k",
        True,
        "Flickr8k, 1,000-image subset (`configs/flickr8k.yaml`): trained on its 753 available "
        "train images, tested on its 125 available test images; not comparable with "
        "full-Flickr8k results",
    ),
}
BUDGET_CPU_S = 300  # training CPU seconds per run, as in the published table
# Self-critical training (Rennie et al. 2017) for the last quarter of the same budget, on the
# data with several references an image (Flickr8k): does optimising CIDEr-D help at this budget?
SCST_FRACTION = 0.25
# The smoke scale: the quick config for 3 CPU seconds, fewer scenes to generate and to caption.
TINY_BUDGET_CPU_S = 3
TINY_OVERRIDES = (
    "--data.n_train=256",
    "--data.n_val=32",
    "--data.n_test=32",
    "--figure_every=0",
)
METRICS = ("bleu1", "bleu2", "bleu3", "bleu4", "cider", "meteor", "loc")


def runs(scale: str) -> list[Run]:
    if scale == "tiny":
        return [
            Run(
                name=f"digits-{decoder}",
                app="caption",
                configs=("quick",),
                overrides=(*TINY_OVERRIDES, f"--model.decoder={decoder}"),
                budget={"cpu_s": TINY_BUDGET_CPU_S},
                labels={"dataset": "digits", "decoder": decoder},
            )
            for decoder in ("lstm_attention", "transformer")
        ]
    plain = [
        Run(
            name=f"{dataset}-{decoder}",
            app="caption",
            configs=(config,),
            overrides=(f"--model.decoder={decoder}",),
            budget={"cpu_s": BUDGET_CPU_S},
            needs_data=needs_data,
            labels={"dataset": dataset, "decoder": decoder},
        )
        for dataset, (config, needs_data, _) in DATASETS.items()
        for decoder in DECODERS
    ]
    scst = Run(
        name="flickr8k-lstm_attention-scst",
        app="caption",
        configs=("flickr8k",),
        overrides=("--model.decoder=lstm_attention", f"--model.scst_fraction={SCST_FRACTION}"),
        budget={"cpu_s": BUDGET_CPU_S},
        needs_data=True,
        labels={"dataset": "flickr8k", "decoder": "lstm_attention", "variant": "scst"},
    )
    return [*plain, scst]


def _last(result: RunResult, key: str) -> float | None:
    """The last value of ``key`` in the run's epoch log (metrics.csv)."""
    values = [row[key] for row in result.epochs if isinstance(row.get(key), float)]
    return values[-1] if values else None


def _row(result: RunResult) -> dict[str, Any]:
    train = result.train
    row: dict[str, Any] = {
        "run": result.run.name,
        **result.run.labels,
        "command": result.run.command(),
        **{name: result.metric(f"test/{name}") for name in METRICS},
        "train_cpu_s": train.get("cpu_s"),
        "steps": train.get("steps"),
        "epochs": train.get("epochs"),
        "final_train_xent": _last(result, "train/xent"),
        "stopped_by": result.stopped_by,
    }
    return row


def _pct(value: float | None, missing: str = "") -> str:
    return missing if value is None else f"{100 * value:.1f}"


def _num(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def tabulate(results: list[RunResult]) -> tuple[dict[str, Any], str]:
    rows = [_row(r) for r in results]
    by_run = {r.run.name: r for r in results}
    lines = [
        "Each model trains for the same CPU time on one thread (`--budget.cpu_s`, validation "
        "inside the loop counted), then the best checkpoint by validation BLEU-4 captions the test "
        "split with beam search (BLEU as %, CIDEr-D x1, localization as %).",
    ]
    for dataset, (_, _, title) in DATASETS.items():
        mine = [row for row in rows if row["dataset"] == dataset]
        lines += ["", f"## {title}", ""]
        if not mine:
            lines.append(
                "Not in this results file (see the runs below; these runs need "
                "`ATTNLAB_DATA_DIR` holding `flickr8k/`)."
            )
            continue
        # METEOR where the runs computed it (optional: pycocoevalcap and java installed)
        with_meteor = dataset == "flickr8k" and any(row["meteor"] is not None for row in mine)
        table = []
        for row in mine:
            cells = [
                DECODERS.get(row["decoder"], row["decoder"])
                + (
                    f", the last {SCST_FRACTION:.0%} self-critical (CIDEr-D reward)"
                    if row.get("variant") == "scst"
                    else ""
                )
            ]
            if dataset == "digits":
                cells += [
                    _pct(row["bleu4"]),
                    _pct(row["loc"], "n/a (no attention)"),
                    _num(row["cider"], 3),
                ]
            else:
                cells += [_pct(row[f"bleu{n}"]) for n in range(1, 5)] + [_num(row["cider"], 3)]
                if with_meteor:
                    cells.append(_pct(row["meteor"]))
            cells += [
                _num(row["steps"], 0),
                _num(row["epochs"], 1),
                _num(row["final_train_xent"], 4),
                command_cell(by_run[row["run"]]),
            ]
            table.append(cells)
        scores = (
            ["BLEU-4", "localization %", "CIDEr-D"]
            if dataset == "digits"
            else ["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "CIDEr-D"]
            + (["METEOR %"] if with_meteor else [])
        )
        headers = ["decoder", *scores, "steps", "epochs", "train xent", "command"]
        lines.append(markdown_table(headers, table, ["l"] + ["r"] * (len(headers) - 2) + ["l"]))
        if dataset == "flickr8k":
            lines += [
                "",
                "Published full-Flickr8k numbers (below) use every image and an ImageNet-pretrained "
                "encoder; these runs see 1,000 of the 8,091 images with an encoder trained from "
                "scratch for a few CPU minutes."
                + (
                    " METEOR is METEOR 1.5 as the COCO caption evaluation runs it (pycocoevalcap's "
                    "jar and paraphrase table, on Java)."
                    if with_meteor
                    else ""
                ),
            ]
    return {"budget_cpu_s": sorted({r.run.budget.get("cpu_s") for r in results}), "rows": rows}, (
        "\n".join(lines)
    )


def headline(payload: dict[str, Any]) -> str:
    digits = {
        row["decoder"]: row
        for row in payload["rows"]
        if row["dataset"] == "digits" and not row.get("variant")
    }
    parts = [
        f"{name} BLEU-4 {_pct(digits[d]['bleu4'])}"
        + (
            f" (attention on the right digit {_pct(digits[d]['loc'])}%)"
            if digits[d]["loc"] is not None
            else ""
        )
        for d, name in (
            ("lstm_attention", "Show-Attend-Tell"),
            ("lstm_hard_attention", "hard attention"),
            ("transformer", "Transformer"),
            ("lstm_pooled", "no attention"),
        )
        if d in digits
    ]
    budget = "/".join(f"{b:g}" for b in payload["budget_cpu_s"])
    return f"digit scenes, {budget} CPU s each: " + ", ".join(parts)


BENCHMARK = Benchmark(
    name="caption",
    title="Captioning: attention vs no attention at the same CPU budget",
    runs=runs,
    tabulate=tabulate,
    headline=headline,
    anchors=(
        {
            "what": "Show, Attend and Tell, soft attention, Flickr8k test BLEU-4",
            "value": 19.5,
            "protocol": "full Flickr8k (6,000/1,000/1,000 images), ImageNet-pretrained VGG "
            "encoder, beam search; METEOR 18.93",
            "source": "Xu et al., Show, Attend and Tell, ICML 2015, Table 1 (arXiv:1502.03044)",
        },
        {
            "what": "Show, Attend and Tell, hard attention, Flickr8k test BLEU-4",
            "value": 21.3,
            "protocol": "same protocol; METEOR 20.30",
            "source": "Xu et al., Show, Attend and Tell, ICML 2015, Table 1 (arXiv:1502.03044)",
        },
    ),
)
