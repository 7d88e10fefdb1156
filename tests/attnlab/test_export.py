"""`attnlab <app> export` writes models that take any batch (issue #23): the exported file is
loaded back here and run at shapes other than the example batch's, against the eager model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch


def _run_exported(path: Path, fmt: str, x: torch.Tensor) -> torch.Tensor:
    if fmt == "torch-export":
        return torch.export.load(str(path)).module()(x)
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    return torch.from_numpy(out)


@pytest.mark.parametrize("fmt", ["torch-export", "onnx"])
def test_exported_model_takes_any_batch_and_length(
    attnlab, trained_run: Path, tmp_path: Path, toy_module_cls: type, fmt: str
) -> None:
    """The toy's example batch is (3, 8, 4); its model averages over tokens, so both the batch
    and the token count are free. Before: both files were fixed at (3, 8, 4)."""
    ckpt = trained_run / "checkpoints" / "best.ckpt"
    out = tmp_path / ("model.onnx" if fmt == "onnx" else "model.pt2")
    proc = attnlab("toy", "export", "--ckpt", str(ckpt), "--format", fmt, "--out", str(out))
    eager = toy_module_cls.from_checkpoint(ckpt)
    generator = torch.Generator().manual_seed(1)
    for shape in ((1, 8, 4), (7, 8, 4), (2, 5, 4)):
        x = torch.randn(*shape, generator=generator)
        with torch.no_grad():
            expected = eager(x)
            got = _run_exported(out, fmt, x)
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    axes = re.search(r"dynamic axes: ([^;]+);", proc.stdout)
    assert axes and {"input_0[0]", "input_0[1]"} <= set(axes.group(1).split(", ")), proc.stdout
