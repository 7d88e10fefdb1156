"""The markdown of ``results/core.md``, built from the data ``benchmarks.core`` measured.

``benchmarks.core`` measures and writes ``results/core.json``; this module only reads that data
(and core's settings) and lays it out, so the page can be rebuilt from a results file without
measuring anything. The leading underscore keeps it out of ``benchmarks.candidates()``: it is
part of ``core``, not a benchmark of its own.
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import environment_markdown, markdown_table
from benchmarks.core import (
    CANDIDATES,
    LABELS,
    LOCAL_WINDOW,
    MEM_BACKENDS,
    MEM_SHAPE,
    MEMORY_TARGET,
    PASSES,
    SPEED_TARGET,
)

__all__ = ["build_markdown", "number_or_dash"]


def number_or_dash(x: float | None, digits: int = 4) -> str:
    """``x`` with ``digits`` decimals, or a dash where it was not measured."""
    return "—" if x is None else f"{x:.{digits}f}"


def _fmt_ratio(d: dict[str, Any]) -> str:
    return f"{d['median']:.3f} ({d['q1']:.3f}–{d['q3']:.3f})"


def _speed_markdown(speed: list[dict[str, Any]]) -> str:
    headers = ["shape", "pass", "ref SDPA ms"]
    for n in CANDIDATES[1:]:
        headers += [f"{LABELS[n]} ms", f"{n} / ref"]
    headers += ["ours / ref, CPU time", "rounds × calls"]
    rows = []
    for e in speed:
        s = e["shape"]
        shape = f"{e['label']} (B={s['batch']}, dim={s['dim']}, H={s['heads']}" + (
            ", causal)" if s["causal"] else ")"
        )
        for pk, pl in PASSES.items():
            p = e["passes"][pk]
            if "skipped" in p:
                rows.append([shape, pl, "skipped (see note)"] + ["—"] * (2 * len(CANDIDATES)))
                continue
            row = [shape, pl, f"{p['ms']['ref']['median']:.3f}"]
            for n in CANDIDATES[1:]:
                if n in p["ms"]:
                    row += [f"{p['ms'][n]['median']:.3f}", _fmt_ratio(p["ratio_to_ref"][n])]
                else:
                    row += ["—", "—"]
            row.append(_fmt_ratio(p["cpu_ratio_to_ref"]["ours"]))
            row.append(f"{p['rounds']} × {p['calls_per_sample']}")
            rows.append(row)
    align = ["l", "l", "r"] + ["r"] * (2 * (len(CANDIDATES) - 1)) + ["r", "r"]
    return markdown_table(headers, rows, align)


def _profile_markdown(speed: list[dict[str, Any]]) -> str:
    parts = []
    for e in speed:
        for pk, pl in PASSES.items():
            prof = e["passes"][pk].get("profile")
            if not prof:
                continue
            ops = ", ".join(
                f"`{o['op']}` +{o['excess_us']:.0f} µs"
                for o in prof["top_op_excess_us_per_call"][:5]
            )
            py = ", ".join(
                f"`{r['function']}` {r['self_us_per_call']:.1f} µs"
                for r in prof["attention_core_python_self_us_per_call"][:5]
            )
            tot = prof["total_self_cpu_us_per_call"]
            parts.append(
                f"- {e['label']} {pl}: op self-time per call ours {tot['ours']:.0f} µs vs ref "
                f"{tot['ref']:.0f} µs; ops where ours spends more: {ops or 'none'}; "
                f"attention_core Python self-time: {py or 'none'}"
            )
    return "\n".join(parts)


def _memory_markdown(mem: dict[str, Any], ratios: dict[str, Any]) -> str:
    shape = MEM_SHAPE
    rows = []
    by = {(r["backend"], r["length"]): r for r in mem["rows"] if r["ok"]}
    for length in mem["lengths"]:
        score_mb = shape["batch"] * shape["heads"] * length * length * 4 / 2**20
        for backend in MEM_BACKENDS:
            r = by.get((backend, length))
            if r is None:
                rows.append([length, backend, "failed", "—", "—", "—", "—", f"{score_mb:.0f}"])
                continue
            rat = ratios[str(length)].get(backend, {})
            rows.append(
                [
                    length,
                    backend
                    + (f" (window {LOCAL_WINDOW})" if backend == "local" else "")
                    + (" (elu)" if backend == "linear" else ""),
                    "fwd+bwd" if r["pass"] == "forward_backward" else "**fwd only**",
                    f"{r['increase_mb']:.1f}",
                    f"{r['increase_hwm_mb']:.1f}" if r.get("increase_hwm_mb") is not None else "—",
                    f"{rat['vs_math']:.4f}" if "vs_math" in rat else "—",
                    f"{rat['vs_sdpa']:.2f}" if "vs_sdpa" in rat else "—",
                    f"{score_mb:.0f}",
                ]
            )
    headers = [
        "L",
        "backend",
        "pass",
        "peak RSS increase MB",
        "cross-check (VmHWM) MB",
        "/ math",
        "/ sdpa",
        "one L×L fp32 score matrix MB",
    ]
    return markdown_table(headers, rows, ["r", "l", "l", "r", "r", "r", "r", "r"])


def build_markdown(data: dict[str, Any]) -> str:
    env, speed, mem = data["environment"], data["speed"], data["memory"]
    ratios, targets, ovh = data["memory_ratios"], data["targets"], data["overhead"]
    st, mt = targets["speed"], targets["memory"]
    lines = [
        "# Benchmark `core`: attention_core on CPU",
        "",
        f"Written by `python -m benchmarks core` in {data['elapsed_s']:.0f} s"
        + (" (**quick mode**: cut-down shapes and rounds)" if data["quick"] else "")
        + ". Do not edit by hand.",
        "",
        "## Environment",
        "",
        environment_markdown(env),
        "",
        f"Load average at the end (1/5/15 min): "
        f"{' / '.join(str(x) for x in data['load_average_at_end'])}. Other processes shared "
        "the CPUs during the run if these exceed the usable CPU count; the interleaved rounds "
        "and paired ratios are there to cancel that, their IQR shows what is left.",
        "",
        f"dtype {data['settings']['dtype']}, device cpu, timm {data['settings']['timm']}.",
        "",
        "## Targets",
        "",
        f"- Speed, attention_core MHA (sdpa) / direct SDPA ≤ {SPEED_TARGET:.2f} at every shape, "
        f"forward and forward+backward: **{'MET' if st['met'] else 'NOT MET'}** "
        f"(worst median ratio {st['worst_ratio']:.3f}"
        + (
            "; over: " + ", ".join(f"{o['case']} {o['pass']} {o['ratio']:.3f}" for o in st["over"])
            if st["over"]
            else ""
        )
        + (
            "; not measured: " + ", ".join(f"{o['case']} {o['pass']}" for o in st["skipped"])
            if st["skipped"]
            else ""
        )
        + ").",
        f"- Memory at L={mt['length']}, local and linear ≤ {MEMORY_TARGET:.2f} × math "
        f"attention's peak (fwd+bwd): **{'MET' if mt['met'] else 'NOT MET'}** "
        f"(local {number_or_dash(mt['local_vs_math'])} × math, {number_or_dash(mt['local_vs_sdpa'], 2)} × sdpa; "
        f"linear {number_or_dash(mt['linear_vs_math'])} × math, {number_or_dash(mt['linear_vs_sdpa'], 2)} × sdpa"
        + (
            f"; math measured forward only at L={mt['length']}, so its ratio is conservative"
            if mt.get("math_pass") == "forward"
            else ""
        )
        + ").",
        "",
        "## Speed (fp32, median ms per call; ratios are medians of per-round ratios, IQR in "
        "parentheses)",
        "",
        "All candidates share one set of weights (bias on qkv and output), eval mode, dropout 0. "
        "Forward runs under `torch.no_grad()` (so `nn.MultiheadAttention` takes its native fast "
        "path); forward+backward clears gradients (set to None), runs the module and "
        "backpropagates a fixed output gradient to the weights and the inputs. "
        "`nn.MultiheadAttention` is called with `need_weights=False`. Candidates run in "
        "interleaved rounds with rotating order; one sample is `calls` back-to-back calls.",
        "",
        _speed_markdown(speed),
        "",
    ]
    for e in speed:
        for pk, pl in PASSES.items():
            for key in ("skipped", "note"):
                if key in e["passes"][pk]:
                    lines += [f"- {e['label']} {pl}: {e['passes'][pk][key]}.", ""]
    prof = _profile_markdown(speed)
    if prof:
        lines += [
            "### Where ours is above the target (torch.profiler + cProfile)",
            "",
            "Per-call self CPU time by op, median of 3 alternating profiler runs of each; op "
            "differences of whole kernels (addmm, the SDPA kernel) that both run identically "
            "are contention noise, not overhead.",
            "",
            prof,
            "",
        ]
    f, fb = ovh["forward"], ovh["forward_backward"]
    lines += [
        "### Fixed per-call cost (not a target)",
        "",
        f"Tiny shape (B={ovh['shape']['batch']}, L={ovh['shape']['length']}, "
        f"dim={ovh['shape']['dim']}, H={ovh['shape']['heads']}), 1 thread, where Python-side "
        f"work dominates: forward ours {f['ours_us']:.1f} µs vs ref {f['ref_us']:.1f} µs "
        f"(+{f['extra_us']:.1f} µs), forward+backward ours {fb['ours_us']:.1f} µs vs ref "
        f"{fb['ref_us']:.1f} µs (+{fb['extra_us']:.1f} µs); in CPU time +{f['extra_cpu_us']:.1f} µs "
        f"and +{fb['extra_cpu_us']:.1f} µs. This fixed cost is what the ratios above contain "
        "beyond noise.",
        "",
        f"## Peak memory (attention_core.attention, B={MEM_SHAPE['batch']}, "
        f"H={MEM_SHAPE['heads']}, D={MEM_SHAPE['head_dim']}, fp32, forward+backward)",
        "",
        "Each cell is a fresh subprocess: inputs and output gradient allocated, then the peak RSS "
        "increase (`resource.getrusage` ru_maxrss) over the baseline taken just before the "
        "call. The cross-check column resets /proc's VmHWM at the baseline and reads it after.",
        "",
        _memory_markdown(mem, ratios),
        "",
    ]
    if mem["notes"]:
        lines += [f"- {n}" for n in mem["notes"]] + [""]
    return "\n".join(lines)
