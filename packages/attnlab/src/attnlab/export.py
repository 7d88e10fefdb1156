"""`attnlab <app> export`: write a model as ONNX or a torch.export program and prove, in the same
run, that it computes what the eager model computes.

Every axis of every input is exported as dynamic where the model allows it (``Dim.AUTO``: the
batch always; a sequence length where nothing in the model fixes it), so the exported file takes
any batch size, not only the example batch's. Parity is checked on the example batch and at two
other shapes: one sample, and a larger batch with every dynamic non-batch axis shortened.
"""

from __future__ import annotations

import argparse
import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sympy
import torch
from torch import Tensor, nn

from .app import App
from .checkpoint import check_checkpoint
from .run_lock import lock_run_folder_of
from .runs import atomic_write_bytes

__all__ = [
    "ExportParityError",
    "ExportResult",
    "export_main",
    "export_model",
    "export_with_parity",
    "other_shapes",
]


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


def _resize(x: Tensor, axis: int, size: int) -> Tensor:
    """``x`` with ``size`` entries along ``axis``: the last ones (a left-padded history keeps its
    real items), or the entries repeated when ``size`` is larger."""
    n = x.shape[axis]
    if size <= n:
        return x.narrow(axis, n - size, size)
    reps = [1] * x.dim()
    reps[axis] = -(-size // n)
    return x.repeat(*reps).narrow(axis, 0, size)


def _size_expr(size: Any) -> sympy.Expr:
    """An exported input's axis size as a sympy expression (a plain int for a static axis)."""
    return size.node.expr if isinstance(size, torch.SymInt) else sympy.Integer(int(size))


def _user_inputs(program: torch.export.ExportedProgram) -> list[Any]:
    """The exported program's example inputs (fake tensors with symbolic sizes), in order."""
    user = set(program.graph_signature.user_inputs)
    return [n.meta["val"] for n in program.graph.nodes if n.op == "placeholder" and n.name in user]


def other_shapes(
    program: torch.export.ExportedProgram, inputs: tuple[Tensor, ...]
) -> list[tuple[Tensor, ...]]:
    """Input tuples of other shapes for the exported program: batch 1; a batch two larger with
    every other dynamic axis at about half its length; the larger batch alone (for a model whose
    layers fix a length the exporter left symbolic). Sizes follow the program's symbolic shapes,
    so axes tied together (``L`` and ``L + pred_len``) stay consistent."""
    fakes = _user_inputs(program)
    example: dict[sympy.Symbol, int] = {}
    batch: set[sympy.Symbol] = set()
    for fake, x in zip(fakes, inputs):
        for axis, (size, value) in enumerate(zip(fake.shape, x.shape)):
            expr = _size_expr(size)
            if isinstance(expr, sympy.Symbol):
                example[expr] = int(value)
                if axis == 0:
                    batch.add(expr)

    def pick(symbol: sympy.Symbol, wanted: int) -> int:
        bounds = program.range_constraints.get(symbol)
        if bounds is None:
            return wanted
        upper = float(bounds.upper)  # torch's own infinity is not sympy's
        high = wanted if math.isinf(upper) else min(wanted, int(upper))
        return max(int(bounds.lower), high)

    plans = [
        # Batch 1 although the exporter's range starts at 2 (it keeps 0 and 1 for specialising):
        # the program runs it, and one sample is what a user sends most.
        {s: 1 if s in batch else v for s, v in example.items()},
        {s: pick(s, v + 2 if s in batch else max(2, v // 2)) for s, v in example.items()},
        {s: pick(s, v + 2) if s in batch else v for s, v in example.items()},
    ]
    cases = []
    for plan in plans:
        case = []
        for fake, x in zip(fakes, inputs):
            for axis, size in enumerate(fake.shape):
                target = int(_size_expr(size).subs(plan))
                if target != x.shape[axis]:
                    x = _resize(x, axis, target)
            case.append(x.contiguous())
        cases.append(tuple(case))
    return cases


def _auto_dynamic(inputs: tuple[Tensor, ...]) -> tuple[dict[int, Any], ...]:
    """Every axis of every input dynamic where the model allows it, static where it does not."""
    return tuple({axis: torch.export.Dim.AUTO for axis in range(x.dim())} for x in inputs)


def _checked_axes(cases: list[tuple[Tensor, ...]]) -> list[str]:
    """``input_i[axis]`` for every axis whose size varied across the shapes parity was checked
    at: the axes proven dynamic, not only those the exporter left symbolic."""
    example = cases[0]
    return [
        f"input_{i}[{axis}]"
        for i, x in enumerate(example)
        for axis in range(x.dim())
        if any(case[i].shape[axis] != x.shape[axis] for case in cases[1:])
    ]


@dataclass(frozen=True)
class ExportResult:
    """What an export proved: the largest difference from eager over every shape checked, the
    input axes shown to be dynamic (``input_0[0]``), and the first input's shape in each check."""

    max_abs_diff: float
    dynamic_axes: list[str]
    checked_shapes: list[tuple[int, ...]]


def export_model(
    model: nn.Module, inputs: tuple[Tensor, ...], fmt: str, out: Path, atol: float = 1e-4
) -> float:
    """Export ``model`` to ``out`` with dynamic axes; the max abs difference from eager over the
    example inputs and two other shapes (``export_with_parity`` says which)."""
    return export_with_parity(model, inputs, fmt, out, atol).max_abs_diff


def export_with_parity(
    model: nn.Module, inputs: tuple[Tensor, ...], fmt: str, out: Path, atol: float = 1e-4
) -> ExportResult:
    """Export ``model`` to ``out`` with every axis dynamic where the model allows, and check the
    file against eager at the example inputs and two other shapes."""
    if fmt not in ("onnx", "torch-export"):
        raise ValueError(f"unknown export format {fmt!r}; choose onnx or torch-export")
    model = model.eval()
    with torch.no_grad():
        program = torch.export.export(model, inputs, dynamic_shapes=_auto_dynamic(inputs))
    cases: list[tuple[Tensor, ...]] = []
    expected: list[list[Tensor]] = []
    for case in [inputs, *other_shapes(program, inputs)]:
        if len(cases) == 3:
            break
        try:
            with torch.no_grad():
                want = _flatten(model(*case))
        except Exception:
            if case is inputs:
                raise
            continue  # a shape the eager model itself refuses is not one to check
        cases.append(case)
        expected.append(want)
    if fmt == "torch-export":
        buffer = io.BytesIO()
        torch.export.save(program, buffer)
        atomic_write_bytes(out, buffer.getvalue())
        runner = torch.export.load(io.BytesIO(out.read_bytes())).module()

        def run(case: tuple[Tensor, ...]) -> list[Tensor]:
            with torch.no_grad():
                return _flatten(runner(*case))
    else:
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise RuntimeError(
                "ONNX export needs onnx, onnxscript and onnxruntime: pip install 'attnlab[export]'"
            ) from exc
        names = [f"input_{i}" for i in range(len(inputs))]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            onnx_program = torch.onnx.export(
                program, inputs, input_names=names, dynamo=True, external_data=False
            )
        assert onnx_program is not None  # dynamo=True always returns the program
        atomic_write_bytes(out, onnx_program.model_proto.SerializeToString())
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])

        def run(case: tuple[Tensor, ...]) -> list[Tensor]:
            feed = {i.name: x.detach().cpu().numpy() for i, x in zip(session.get_inputs(), case)}
            return [torch.from_numpy(a) for a in session.run(None, feed)]

    diff = 0.0
    for case, want in zip(cases, expected):
        try:
            got = run(case)
        except Exception as exc:  # the runtime's own error types differ per format
            shapes = ", ".join(str(tuple(x.shape)) for x in case)
            raise ExportParityError(
                f"exported {fmt} model fails on inputs of shape {shapes} ({exc}); {out} is suspect"
            ) from None
        diff = max(diff, _max_abs_diff(want, got))
    if diff > atol:
        raise ExportParityError(
            f"exported {fmt} model differs from eager by {diff:.3g} (> atol {atol:g}); {out} is suspect"
        )
    return ExportResult(
        diff, _checked_axes(cases), [tuple(x.shape) for case in cases for x in case[:1]]
    )


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
    suffix = ".onnx" if args.format == "onnx" else ".pt2"
    out = Path(args.out) if args.out else ckpt.with_suffix(suffix)
    if out.exists() or out.is_symlink():
        raise FileExistsError(f"{out} already exists; pass --out with a new file name")
    # Into a run folder (by default, beside its checkpoint): not while a live command writes it.
    with lock_run_folder_of(out, "export"):
        check_checkpoint(ckpt, app.module, app.name)  # another app's, or a crafted one: one line
        module = app.module.from_checkpoint(ckpt)  # type: ignore[attr-defined]
        inputs = tuple(module.example_inputs())
        model = module.export_model()
        result = export_with_parity(model, inputs, args.format, out, atol=args.atol)
    shapes = ", ".join(str(tuple(x.shape)) for x in inputs)
    print(
        f"exported {args.format} to {out}; inputs {shapes}; dynamic axes: "
        f"{', '.join(result.dynamic_axes) or 'none'}; max abs difference vs eager: "
        f"{result.max_abs_diff:.3g} (checked at first-input shapes "
        f"{', '.join(map(str, result.checked_shapes))})"
    )
    return 0
