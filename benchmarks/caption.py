"""Captioning benchmark: LSTM with attention vs Transformer vs no-attention baseline at the same
CPU training budget, on digit scenes and on the Flickr8k 1,000-image subset.

``python -m benchmarks caption`` (``nox -s bench -- caption``) writes ``results/caption.json``
and ``results/caption.md``. Every model trains for the same wall-clock budget with the same data,
encoder and optimizer (the digit-scene models use ``configs/quick.yaml``'s sizes, the Flickr8k
ones ``configs/flickr8k.yaml``'s); the test split is then captioned with beam search and scored
on the generated captions (BLEU-1..4, CIDEr-D, and on digit scenes attention localization).

Environment:

* ``ATTNLAB_BENCH_BUDGET_S``: training CPU seconds per model and dataset (default 600);
* ``ATTNLAB_BENCH_THREADS``: torch threads (default 2);
* ``ATTNLAB_DATA_DIR``: folder holding ``flickr8k/`` (the section is skipped without it).
"""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from benchmarks.common import environment, environment_markdown, markdown_table, write_results

DECODERS = {
    "lstm_attention": "LSTM + additive attention (Show, Attend and Tell)",
    "transformer": "Transformer decoder (KV cache)",
    "lstm_pooled": "no-attention baseline (mean-pooled LSTM)",
}


def _config(name: str) -> dict[str, Any]:
    import attnlab_captioning

    path = Path(attnlab_captioning.__file__).resolve().parents[2] / "configs" / f"{name}.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _portable(stats: dict[str, Any]) -> dict[str, Any]:
    """The reader's stats with the data folder written as ``$ATTNLAB_DATA_DIR``: results are
    committed, and an absolute path would name this machine."""
    root = os.environ.get("ATTNLAB_DATA_DIR")
    source = stats.get("source")
    if not root or not source:
        return dict(stats)
    try:
        relative = Path(source).resolve().relative_to(Path(root).resolve())
    except ValueError:
        relative = Path(Path(source).name)  # outside the data folder: the file name only
    return {**stats, "source": f"$ATTNLAB_DATA_DIR/{relative.as_posix()}"}


def run_one(
    config: str, decoder: str, budget_s: float, data_overrides: dict[str, Any]
) -> dict[str, Any]:
    """Train one decoder for ``budget_s`` seconds, then score its test captions."""
    from attnlab_captioning.data import CaptionData
    from attnlab_captioning.module import CaptionModule

    cfg = _config(config)
    torch.manual_seed(42)
    dm = CaptionData(**{**cfg["data"], **data_overrides})
    dm.setup("fit")
    model_cfg = {**cfg["model"], "decoder": decoder, "encoder_pretrained": False}
    module = CaptionModule(**model_cfg)
    module.data_info = {"image_size": dm.image_size}
    assert dm.vocab is not None
    module.build(dm.vocab)
    hp = module.hparams
    opt = torch.optim.AdamW(
        module.parameters(), lr=float(hp.lr), weight_decay=float(hp.weight_decay)
    )
    clip = float(cfg["trainer"].get("gradient_clip_val") or 0.0)
    loader = dm.train_dataloader()
    assert dm.train_set is not None
    for i in range(len(dm.train_set)):  # decode and cache every image before the clock starts
        dm.train_set._pixels(i)
    steps = epochs = 0
    losses: list[float] = []
    start = time.process_time()  # CPU seconds: fair across models on a shared machine
    module.train()
    while time.process_time() - start < budget_s:
        for batch in loader:
            loss, xent = module._loss(batch)
            opt.zero_grad()
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
            opt.step()
            steps += 1
            losses.append(xent.item())
            if time.process_time() - start >= budget_s:
                break
        else:
            epochs += 1
    train_s = time.process_time() - start
    module.eval()
    eval_start = time.perf_counter()
    with torch.no_grad():
        for batch in dm.test_dataloader():
            module.score_batch(batch, int(hp.beam_size))
    metrics = module.compute_metrics()
    tail = losses[-20:]
    return {
        "decoder": decoder,
        "train_cpu_seconds": round(train_s, 1),
        "steps": steps,
        "full_epochs": epochs,
        "batch_size": dm.batch_size,
        "train_images": len(dm.train_set or []),
        "test_images": len(dm.test_set or []),
        "final_train_xent": round(sum(tail) / max(1, len(tail)), 4),
        "eval_seconds": round(time.perf_counter() - eval_start, 1),
        "beam_size": int(hp.beam_size),
        "params": sum(p.numel() for p in module.parameters()),
        "metrics": {k: round(float(v), 4) for k, v in metrics.items()},
        "read_stats": _portable(dm.read_stats),
    }


def main() -> None:
    budget = float(os.environ.get("ATTNLAB_BENCH_BUDGET_S", "600"))
    threads = int(os.environ.get("ATTNLAB_BENCH_THREADS", "2"))
    torch.set_num_threads(threads)
    env = environment()
    sections: dict[str, Any] = {}
    print(f"caption benchmark: {budget:.0f} s per model, {threads} threads", flush=True)
    digits = []
    for decoder in DECODERS:
        res = run_one("quick", decoder, budget, {})
        print(f"digit scenes {decoder}: {res['metrics']} ({res['steps']} steps)", flush=True)
        digits.append(res)
        if decoder == "lstm_attention":
            peak_default = _peak_rss_mb()
    sections["digit_scenes"] = {"config": "configs/quick.yaml", "results": digits}
    root = os.environ.get("ATTNLAB_DATA_DIR")
    if root and (Path(root) / "flickr8k" / "captions.txt").is_file():
        flickr = []
        for decoder in DECODERS:
            res = run_one("flickr8k", decoder, budget, {"root": str(Path(root) / "flickr8k")})
            print(f"flickr8k subset {decoder}: {res['metrics']} ({res['steps']} steps)", flush=True)
            flickr.append(res)
        sections["flickr8k_subset"] = {
            "config": "configs/flickr8k.yaml",
            "label": "Flickr8k 1,000-image subset (train on its 753 available train images, test on its 125 available test images); not comparable with full-Flickr8k results",
            "results": flickr,
        }
    else:
        sections["flickr8k_subset"] = {"skipped": "ATTNLAB_DATA_DIR/flickr8k not found"}
    data = {
        "benchmark": "caption",
        "budget_seconds_per_model": budget,
        "budget_note": "the same training CPU time (process_time) for every model of a dataset; "
        "evaluation time not counted",
        "threads": threads,
        "peak_rss_mb_default_config": round(peak_default, 1),
        "environment": env,
        **sections,
    }
    write_results("caption", data, _markdown(data))


def _markdown(data: dict[str, Any]) -> str:
    lines = [
        "# Captioning: attention vs no attention at the same CPU budget",
        "",
        f"Each model trained for {data['budget_seconds_per_model']:.0f} CPU seconds ({data['threads']} threads), "
        "then its test captions generated with beam search and scored (BLEU as %, CIDEr-D x1).",
        f"Peak RSS of the benchmark process after the default (quick) config: {data['peak_rss_mb_default_config']} MiB.",
        "",
    ]
    ds = data["digit_scenes"]
    lines += ["## Digit scenes (`configs/quick.yaml`, generated offline)", ""]
    rows = []
    for r in ds["results"]:
        m = r["metrics"]
        loc = f"{100 * m['loc']:.1f}" if "loc" in m else "n/a (no attention)"
        rows.append(
            [
                DECODERS[r["decoder"]],
                f"{100 * m['bleu4']:.1f}",
                loc,
                f"{m['cider']:.3f}",
                r["steps"],
                r["full_epochs"],
                r["final_train_xent"],
            ]
        )
    lines.append(
        markdown_table(
            ["decoder", "BLEU-4", "localization %", "CIDEr-D", "steps", "epochs", "train xent"],
            rows,
            ["l", "r", "r", "r", "r", "r", "r"],
        )
    )
    fl = data["flickr8k_subset"]
    lines += ["", "## Flickr8k, 1,000-image subset (`configs/flickr8k.yaml`)", ""]
    if "results" in fl:
        lines += [fl["label"] + ".", ""]
        rows = []
        for r in fl["results"]:
            m = r["metrics"]
            rows.append(
                [
                    DECODERS[r["decoder"]],
                    *(f"{100 * m[f'bleu{n}']:.1f}" for n in range(1, 5)),
                    f"{m['cider']:.3f}",
                    r["steps"],
                    r["full_epochs"],
                ]
            )
        lines.append(
            markdown_table(
                ["decoder", "BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "CIDEr-D", "steps", "epochs"],
                rows,
                ["l", "r", "r", "r", "r", "r", "r", "r"],
            )
        )
        lines += [
            "",
            "Published full-Flickr8k numbers (pretrained encoders, e.g. Show, Attend and Tell soft attention BLEU-4 19.5) are not comparable: 1,000 of 8,091 images, encoders trained from scratch, a CPU budget.",
        ]
    else:
        lines.append(f"skipped: {fl['skipped']}")
    lines += ["", "## Environment", "", environment_markdown(data["environment"])]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
