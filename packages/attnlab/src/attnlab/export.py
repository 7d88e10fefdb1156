"""`attnlab <app> export`: write a model as ONNX or a torch.export program and prove, in the same
run, that it computes what the eager model computes on a sample batch."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .app import App
from .checkpoint import CheckpointError, load_checkpoint

__all__ = ["ExportParityError", "export_main", "export_model"]


class ExportParityError(RuntimeError):
    """The exported model's outputs differ from the eager model's beyond the tolerance."""


def _flatten(out: Any) -> list[Tensor]:
    if isinstance(out, Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for v in out.values() for t in _flatten(v)]
    if isinstance(out, list | tuple):
        return [t for v in out for t in _flatten(v)]
    return []


def _max_abs_diff(a: list[Tensor], b: list[Tensor]) -> float:
    if len(a) != len(b):
        raise ExportParityError(f"exported model returns {len(b)} tensors, eager returns {len(a)}")
    diff = 0.0
    for x, y in zip(a, b):
        if x.shape != y.shape:
            raise ExportParityError(
                f"output shape {tuple(y.shape)} differs from eager {tuple(x.shape)}"
            )
        if x.numel():
            diff = max(diff, (x.float() - y.float()).abs().max().item())
    return diff


def export_model(
    model: nn.Module, inputs: tuple[Tensor, ...], fmt: str, out: Path, atol: float = 1e-4
) -> float:
    """Export ``model`` to ``out`` and return the max abs difference from eager on ``inputs``."""
    model = model.eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        expected = _flatten(model(*inputs))
    if fmt == "torch-export":
        program = torch.export.export(model, inputs)
        tmp = out.with_name(out.name + ".tmp")
        torch.export.save(program, str(tmp))
        tmp.replace(out)
        loaded = torch.export.load(str(out))
        with torch.no_grad():
            got = _flatten(loaded.module()(*inputs))
    elif fmt == "onnx":
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise RuntimeError(
                "ONNX export needs onnx, onnxscript and onnxruntime: pip install 'attnlab[export]'"
            ) from exc
        names = [f"input_{i}" for i in range(len(inputs))]
        tmp = out.with_name(out.name + ".tmp.onnx")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, inputs, str(tmp), input_names=names, dynamo=True, external_data=False
            )
        tmp.replace(out)
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        feed = {i.name: x.detach().cpu().numpy() for i, x in zip(session.get_inputs(), inputs)}
        got = [torch.from_numpy(a) for a in session.run(None, feed)]
    else:
        raise ValueError(f"unknown export format {fmt!r}; choose onnx or torch-export")
    diff = _max_abs_diff(expected, got)
    if diff > atol:
        raise ExportParityError(
            f"exported {fmt} model differs from eager by {diff:.3g} (> atol {atol:g}); {out} is suspect"
        )
    return diff


def export_main(app: App, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"attnlab {app.name} export")
    parser.add_argument(
        "--ckpt", required=True, help="checkpoint to export (e.g. RUN/checkpoints/best.ckpt)"
    )
    parser.add_argument("--format", required=True, choices=["onnx", "torch-export"])
    parser.add_argument("--out", default=None, help="output file (default next to the checkpoint)")
    parser.add_argument("--atol", type=float, default=1e-4, help="parity tolerance")
    args = parser.parse_args(argv)
    ckpt = Path(args.ckpt)
    meta = load_checkpoint(ckpt).get("attnlab") or {}
    if meta.get("app") and meta["app"] != app.name:
        raise CheckpointError(f"{ckpt} was written by app {meta['app']!r}, not {app.name!r}")
    module = app.module.from_checkpoint(ckpt)  # type: ignore[attr-defined]
    suffix = ".onnx" if args.format == "onnx" else ".pt2"
    out = Path(args.out) if args.out else ckpt.with_suffix(suffix)
    if out.exists():
        raise FileExistsError(f"{out} already exists; pass --out with a new file name")
    inputs = tuple(module.example_inputs())
    diff = export_model(module.export_model(), inputs, args.format, out, atol=args.atol)
    shapes = ", ".join(str(tuple(x.shape)) for x in inputs)
    print(
        f"exported {args.format} to {out}; inputs {shapes}; max abs difference vs eager: {diff:.3g}"
    )
    return 0
