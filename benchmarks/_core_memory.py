"""Peak memory of ``attention_core.attention`` against the sequence length, for ``benchmarks.core``.

Each (backend, length) is measured in its own subprocess (``benchmarks.common.peak_memory``
calls :func:`memory_case` there); math attention at the longest length falls back to forward
only when forward+backward would not fit the memory available. The settings (lengths, backends,
shape, window) are core's; ``benchmarks.core`` imports this module in its ``main()``. The leading
underscore keeps it out of ``benchmarks.candidates()``: it is part of ``core``, not a benchmark
of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from benchmarks.common import available_memory_mb, peak_memory
from benchmarks.core import DTYPE, LOCAL_WINDOW, MEM_BACKENDS, MEM_LENGTHS, MEM_SHAPE

__all__ = ["memory_case", "memory_ratios", "run_memory"]


def memory_case(
    backend: str,
    length: int,
    backward: bool,
    batch: int = 1,
    heads: int = 4,
    head_dim: int = 32,
    window: int = LOCAL_WINDOW,
) -> Callable[[], dict[str, Any]]:
    """Subprocess setup for ``peak_memory``: warm up on a tiny input, allocate the real inputs
    (and the output gradient), return the measured call."""
    from attention_core import attention

    kwargs: dict[str, Any] = {}
    if backend == "local":
        kwargs["window"] = window
    elif backend == "linear":
        kwargs["feature_map"] = "elu"

    def make(n: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        q, k, v = (
            torch.randn(batch, heads, n, head_dim, dtype=DTYPE, requires_grad=backward)
            for _ in range(3)
        )
        return q, k, v, torch.randn(batch, heads, n, head_dim, dtype=DTYPE)

    def step(q: Tensor, k: Tensor, v: Tensor, g: Tensor) -> None:
        out = attention(q, k, v, backend=backend, **kwargs)
        assert isinstance(out, Tensor)
        if backward:
            out.backward(g)

    torch.manual_seed(0)
    step(*make(min(length, 2 * window)))  # library and thread-pool set-up, not measured
    q, k, v, g = make(length)

    def run() -> dict[str, Any]:
        step(q, k, v, g)
        return {"threads": torch.get_num_threads()}

    return run


def _measure_memory(backend: str, length: int, backward: bool) -> dict[str, Any]:
    res = peak_memory(
        "benchmarks._core_memory:memory_case",
        {"backend": backend, "length": length, "backward": backward, **MEM_SHAPE},
        timeout_s=420,
    )
    row: dict[str, Any] = {
        "backend": backend,
        "length": length,
        "pass": "forward_backward" if backward else "forward",
        **res.to_dict(),
    }
    row.pop("extra", None)
    return row


def run_memory(quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    lengths = [n for n in MEM_LENGTHS if not (quick and n > 4096)]
    rows: list[dict[str, Any]] = []
    notes: list[str] = []

    def record(row: dict[str, Any]) -> dict[str, Any]:
        rows.append(row)
        inc = row.get("increase_mb")
        what = f"{inc:.1f} MB" if row["ok"] else f"FAILED ({row['error']})"
        log(f"  {row['backend']:<7} L={row['length']:<6} {row['pass']:<16} {what}")
        return row

    for length in lengths:
        for backend in MEM_BACKENDS:
            if backend == "math" and length == max(lengths) and length > 4096:
                record(_math_longest(length, rows, notes, log))
                continue
            record(_measure_memory(backend, length, True))
    return {"rows": rows, "notes": notes, "lengths": lengths}


def _math_longest(
    length: int, rows: list[dict[str, Any]], notes: list[str], log: Callable[[str], None]
) -> dict[str, Any]:
    """Math attention at the longest length: forward+backward if the quadratic extrapolation
    from the previous length fits in the memory available now (with a 25% margin), else forward
    only; forward only also if forward+backward fails."""
    prev = [r for r in rows if r["backend"] == "math" and r["ok"] and r["length"] < length]
    avail = available_memory_mb()
    if prev and avail is not None:
        p = max(prev, key=lambda r: r["length"])
        estimate = p["increase_mb"] * (length / p["length"]) ** 2
        log(f"  math L={length}: fwd+bwd estimated {estimate:.0f} MB, available {avail:.0f} MB")
        if estimate * 1.25 > avail:
            notes.append(
                f"math attention at L={length} was measured forward only: forward+backward was "
                f"estimated at {estimate:.0f} MB against {avail:.0f} MB available."
            )
            return _measure_memory("math", length, False)
    row = _measure_memory("math", length, True)
    if not row["ok"]:
        notes.append(
            f"math attention at L={length} forward+backward failed ({row['error']}); "
            "measured forward only."
        )
        rows.append(row)
        return _measure_memory("math", length, False)
    return row


def memory_ratios(mem: dict[str, Any]) -> dict[str, Any]:
    """Ratios of every backend to math and to sdpa at each length."""
    by: dict[tuple[str, int], dict[str, Any]] = {}
    for r in mem["rows"]:
        if r["ok"]:
            by[(r["backend"], r["length"])] = r  # a later (fallback) row wins
    out: dict[str, Any] = {}
    for length in mem["lengths"]:
        entry: dict[str, Any] = {}
        for backend in MEM_BACKENDS:
            row = by.get((backend, length))
            if row is None:
                continue
            res: dict[str, Any] = {}
            for base in ("math", "sdpa"):
                b = by.get((base, length))
                if b is not None and b["increase_mb"] and b["increase_mb"] > 0:
                    res[f"vs_{base}"] = round(row["increase_mb"] / b["increase_mb"], 4)
            entry[backend] = res
        out[str(length)] = entry
    return out
