"""``python -m benchmarks core``: speed and memory of ``attention_core`` on CPU, fp32.

1. Speed. For attention shapes taken from the apps, the forward and forward+backward time of
   ``attention_core.MultiHeadAttention`` (backend "sdpa", eval mode) against
   ``torch.nn.MultiheadAttention(batch_first=True)``, ``timm.layers.Attention`` (self-attention
   only) and a reference: the same ``nn.Linear`` qkv and output projections around a direct
   ``F.scaled_dot_product_attention`` call. All four share one set of weights and are timed in
   the same process, in interleaved rounds; each is reported as the median of its per-round
   ratio to the reference. Target: ours / reference <= 1.05 at every shape. Where it is above,
   a torch.profiler comparison of the two says where the extra time goes.
2. Peak memory of ``attention_core.attention`` (forward+backward, B=1, H=4, D=32) against the
   sequence length for the math backend (materialized L x L), sdpa (fused kernel), local
   (window 128) and linear (elu) attention, each in its own subprocess. Target: at 16384 tokens
   local and linear use at most a tenth of math attention's memory. Measured by
   ``benchmarks._core_memory``.

Writes ``results/core.json`` and ``results/core.md`` (laid out by ``benchmarks._core_report``
from that data). ``ATTNLAB_BENCH_QUICK=1`` runs a cut-down version (fewer rounds, no
16384-token shapes) for smoke tests.
"""

from __future__ import annotations

import contextlib
import cProfile
import os
import pstats
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks.common import (
    InterleavedTimings,
    environment,
    quick_mode,
    time_interleaved,
    write_results,
)

NAME = "core"
DTYPE = torch.float32
SPEED_TARGET = 1.05  # ours / direct SDPA reference
MEMORY_TARGET = 0.10  # local and linear / math at the longest sequence
MEM_LENGTHS = (1024, 4096, 16384)
MEM_BACKENDS = ("math", "sdpa", "local", "linear")
MEM_SHAPE = {"batch": 1, "heads": 4, "head_dim": 32}
LOCAL_WINDOW = 128
OVERHEAD_SHAPE = {"batch": 1, "length": 16, "dim": 64, "heads": 4}
# Wall-clock allowance of the speed section (the memory section takes ~2-3 minutes more). A
# forward+backward pass whose estimated cost would overrun it is skipped and reported as such.
SPEED_BUDGET_S = 420.0

CANDIDATES = ("ref", "ours", "torch_mha", "timm")
LABELS = {
    "ref": "direct SDPA (reference)",
    "ours": "attention_core MHA",
    "torch_mha": "torch nn.MultiheadAttention",
    "timm": "timm Attention",
}
PASSES = {"forward": "fwd", "forward_backward": "fwd+bwd"}


# --------------------------------------------------------------------------------------------
# the shapes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpeedCase:
    key: str
    label: str
    batch: int
    q_len: int
    k_len: int
    dim: int
    heads: int
    causal: bool = False
    cross: bool = False
    min_rounds_fwd: int = 7
    min_rounds_fb: int = 7

    @property
    def shape_text(self) -> str:
        lens = f"{self.q_len}x{self.k_len}" if self.cross else f"{self.q_len}"
        return f"B={self.batch} L={lens} dim={self.dim} H={self.heads}"


SPEED_CASES: tuple[SpeedCase, ...] = (
    SpeedCase("vit65", "ViT 65 tokens", 32, 65, 65, 256, 8),
    SpeedCase("seq256", "256 tokens", 8, 256, 256, 256, 8),
    SpeedCase("causal200", "causal 200 tokens", 8, 200, 200, 256, 8, causal=True),
    SpeedCase("cross20x196", "cross 20 q x 196 k", 16, 20, 196, 256, 8, cross=True),
    SpeedCase("long4096", "4096 tokens", 1, 4096, 4096, 128, 4),
    SpeedCase(
        "long16384", "16384 tokens", 1, 16384, 16384, 64, 4, min_rounds_fwd=5, min_rounds_fb=3
    ),
)


# --------------------------------------------------------------------------------------------
# the candidates
# --------------------------------------------------------------------------------------------


class DirectSDPA(nn.Module):
    """The minimal module: qkv linear, ``F.scaled_dot_product_attention``, output linear."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, causal: bool = False) -> Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class DirectCrossSDPA(nn.Module):
    """Minimal cross-attention: q and kv linears, ``F.scaled_dot_product_attention``, output."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        b, n, c = x.shape
        m = context.shape[1]
        h = self.heads
        q = self.q(x).view(b, n, h, c // h).transpose(1, 2)
        k, v = self.kv(context).view(b, m, 2, h, c // h).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


def _build(
    case: SpeedCase,
) -> tuple[dict[str, nn.Module], dict[str, Callable[[], Tensor]], list[Tensor]]:
    """The candidates with one shared set of weights, a forward callable each, and the inputs."""
    import timm.layers

    from attention_core import MultiHeadAttention

    torch.manual_seed(0)
    dim, heads = case.dim, case.heads
    ours = MultiHeadAttention(dim, heads, backend="sdpa")
    w_qkv, b_qkv = ours.qkv.weight.detach(), ours.qkv.bias.detach()
    w_out, b_out = ours.proj.weight.detach(), ours.proj.bias.detach()
    mha = nn.MultiheadAttention(dim, heads, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(w_qkv)
        assert mha.in_proj_bias is not None
        mha.in_proj_bias.copy_(b_qkv)
        mha.out_proj.weight.copy_(w_out)
        mha.out_proj.bias.copy_(b_out)
    modules: dict[str, nn.Module] = {"ours": ours, "torch_mha": mha}
    x = torch.randn(case.batch, case.q_len, dim, dtype=DTYPE, requires_grad=True)
    inputs = [x]
    calls: dict[str, Callable[[], Tensor]] = {}
    if case.cross:
        ref_c = DirectCrossSDPA(dim, heads)
        with torch.no_grad():
            ref_c.q.weight.copy_(w_qkv[:dim])
            ref_c.q.bias.copy_(b_qkv[:dim])
            ref_c.kv.weight.copy_(w_qkv[dim:])
            ref_c.kv.bias.copy_(b_qkv[dim:])
            ref_c.proj.load_state_dict(ours.proj.state_dict())
        modules["ref"] = ref_c
        ctx = torch.randn(case.batch, case.k_len, dim, dtype=DTYPE, requires_grad=True)
        inputs.append(ctx)
        calls["ref"] = lambda: ref_c(x, ctx)
        calls["ours"] = lambda: ours(x, ctx)
        calls["torch_mha"] = lambda: mha(x, ctx, ctx, need_weights=False)[0]
    else:
        ref = DirectSDPA(dim, heads)
        ref.load_state_dict(ours.state_dict())
        tm = timm.layers.Attention(dim, heads, qkv_bias=True)
        tm.load_state_dict(ours.state_dict())
        if not getattr(tm, "fused_attn", True):
            raise RuntimeError("timm Attention is not using F.scaled_dot_product_attention")
        modules["ref"], modules["timm"] = ref, tm
        causal = case.causal
        calls["ref"] = lambda: ref(x, causal)
        calls["ours"] = lambda: ours(x, causal=causal)
        calls["timm"] = lambda: tm(x, is_causal=causal)
        if causal:
            # is_causal is only a hint to nn.MultiheadAttention; it still wants the mask, and
            # then (need_weights=False, no padding mask) calls SDPA with is_causal=True.
            cmask = nn.Transformer.generate_square_subsequent_mask(case.q_len, dtype=DTYPE)
            calls["torch_mha"] = lambda: mha(
                x, x, x, attn_mask=cmask, is_causal=True, need_weights=False
            )[0]
        else:
            calls["torch_mha"] = lambda: mha(x, x, x, need_weights=False)[0]
    for m in modules.values():
        m.eval()
    # check that they agree (same weights, same maths)
    with torch.no_grad():
        want = calls["ref"]()
        for name, call in calls.items():
            err = (call() - want).abs().max().item()
            if err > 1e-4:
                raise RuntimeError(f"{name} disagrees with the reference at {case.key}: {err:.2e}")
    order = [c for c in CANDIDATES if c in calls]
    return {c: modules[c] for c in order}, {c: calls[c] for c in order}, inputs


def _fwd_bwd(
    module: nn.Module, call: Callable[[], Tensor], inputs: list[Tensor], grad: Tensor
) -> Callable[[], None]:
    """One training step's attention work: gradients cleared (set to None), forward, backward."""
    params = [p for p in module.parameters() if p.requires_grad]
    leaves = params + inputs

    def step() -> None:
        for t in leaves:
            t.grad = None
        call().backward(grad)

    return step


# --------------------------------------------------------------------------------------------
# speed
# --------------------------------------------------------------------------------------------


def _timing_dict(t: InterleavedTimings, names: list[str]) -> dict[str, Any]:
    return {
        "rounds": t.rounds,
        "calls_per_sample": t.inner,
        "warmup_calls": t.warmup,
        "ms": {n: t.timings[n].to_dict(1e3, 4) for n in names},
        "ratio_to_ref": {n: t.ratio(n, "ref").to_dict(1.0, 4) for n in names if n != "ref"},
        "cpu_ms": {n: t.cpu_timings[n].to_dict(1e3, 4) for n in names},
        "cpu_ratio_to_ref": {
            n: t.ratio(n, "ref", cpu=True).to_dict(1.0, 4) for n in names if n != "ref"
        },
    }


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (the profiler's C++ start/stop chatter) for a block."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _profile_gap(
    calls: dict[str, Callable[[], object]], grad_mode: bool, n_calls: int, repeats: int = 3
) -> dict[str, Any]:
    """Where ours spends more than the reference: per-call self CPU time by op (median over
    ``repeats`` alternating torch.profiler runs of ``n_calls`` calls each) and the Python
    self-time of attention_core's functions (cProfile)."""
    from torch.profiler import ProfilerActivity, profile

    runs: dict[str, list[dict[str, float]]] = {"ours": [], "ref": []}
    with torch.set_grad_enabled(grad_mode):
        for name in ("ours", "ref"):
            calls[name]()
        for _ in range(repeats):
            for name in ("ours", "ref"):
                fn = calls[name]
                with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU]) as prof:
                    for _ in range(n_calls):
                        fn()
                runs[name].append(
                    {e.key: e.self_cpu_time_total / n_calls for e in prof.key_averages()}
                )  # microseconds per call
    per_op: dict[str, dict[str, float]] = {}
    for name, tables in runs.items():
        keys = set().union(*tables)
        per_op[name] = {k: statistics.median(t.get(k, 0.0) for t in tables) for k in keys}
    keys = set(per_op["ours"]) | set(per_op["ref"])
    diffs = sorted(
        ((k, per_op["ours"].get(k, 0.0) - per_op["ref"].get(k, 0.0)) for k in keys),
        key=lambda kv: -kv[1],
    )
    prof_py = cProfile.Profile()
    with torch.set_grad_enabled(grad_mode):
        prof_py.enable()
        for _ in range(n_calls):
            calls["ours"]()
        prof_py.disable()
    stats = pstats.Stats(prof_py)
    py_rows = []
    for (filename, line, func), (_cc, ncalls, tottime, _cum, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if "attention_core" in filename:
            py_rows.append(
                {
                    "function": f"{filename.split('attention_core/')[-1]}:{line}({func})",
                    "self_us_per_call": round(tottime / n_calls * 1e6, 2),
                    "calls_per_call": ncalls / n_calls,
                }
            )
    py_rows.sort(key=lambda r: -r["self_us_per_call"])
    return {
        "profiled_calls": n_calls,
        "repeats": repeats,
        "top_op_excess_us_per_call": [
            {"op": k, "excess_us": round(v, 2)} for k, v in diffs[:8] if v > 0
        ],
        "total_self_cpu_us_per_call": {
            n: round(sum(per_op[n].values()), 1) for n in ("ours", "ref")
        },
        "attention_core_python_self_us_per_call": py_rows[:8],
    }


def run_speed(quick: bool, log: Callable[[str], None], deadline: float) -> list[dict[str, Any]]:
    """Every shape, forward then forward+backward; see the module docstring."""
    results = []
    cases = [c for c in SPEED_CASES if not (quick and c.q_len > 4096)]
    budget = 2.0 if quick else 15.0  # seconds per (shape, pass) once the minimum rounds are in
    for case in cases:
        modules, calls, inputs = _build(case)
        names = list(calls)
        entry: dict[str, Any] = {
            "key": case.key,
            "label": case.label,
            "shape": {
                "batch": case.batch,
                "q_len": case.q_len,
                "k_len": case.k_len,
                "dim": case.dim,
                "heads": case.heads,
                "head_dim": case.dim // case.heads,
                "causal": case.causal,
                "cross": case.cross,
            },
            "candidates": names,
            "passes": {},
        }
        with torch.no_grad():
            fwd = time_interleaved(
                calls,
                warmup=1 if quick or case.q_len >= 4096 else 2,
                min_rounds=2 if quick else case.min_rounds_fwd,
                max_rounds=60,
                budget_s=budget,
            )
        entry["passes"]["forward"] = _timing_dict(fwd, names)
        log(_speed_line(case, "fwd", fwd, names))
        with torch.no_grad():
            grad = torch.randn(case.batch, case.q_len, case.dim, dtype=DTYPE)
        steps = {n: _fwd_bwd(modules[n], calls[n], inputs, grad) for n in names}
        min_fb = 2 if quick else case.min_rounds_fb
        # Affordable? Estimate from one reference step (it doubles as that one's first warmup).
        # If not for every candidate, time ours against the reference alone (the target).
        t0 = time.perf_counter()
        steps["ref"]()
        one = time.perf_counter() - t0
        left = deadline - time.perf_counter()
        fb_names = names
        note = None
        if one * len(names) * (1 + min_fb) > left:
            fb_names = ["ref", "ours"]
            note = (
                f"one fwd+bwd call takes {one:.1f} s; warmup and the minimum {min_fb} rounds of "
                f"all {len(names)} candidates would not fit the {max(left, 0.0):.0f} s left of "
                f"the speed section's {SPEED_BUDGET_S:.0f} s allowance"
            )
        fb: InterleavedTimings | None = None
        if one * len(fb_names) * (1 + min_fb) > left:
            reason = f"skipped: {note}, not even ours and the reference alone"
            entry["passes"]["forward_backward"] = {"skipped": reason}
            log(f"  {case.label:<20} fwd+bwd {reason}")
        else:
            fb = time_interleaved(
                {n: steps[n] for n in fb_names},
                warmup=1,
                min_rounds=min_fb,
                max_rounds=60,
                budget_s=budget,
            )
            entry["passes"]["forward_backward"] = _timing_dict(fb, fb_names)
            if note:
                note = f"only ours and the reference timed: {note}"
                entry["passes"]["forward_backward"]["note"] = note
                log(f"  {case.label:<20} fwd+bwd {note}")
            log(_speed_line(case, "fwd+bwd", fb, fb_names))
        for pass_key, timings, fns, grad_mode in (
            ("forward", fwd, calls, False),
            ("forward_backward", fb, steps, True),
        ):
            if timings is not None and timings.ratio("ours", "ref").median > SPEED_TARGET:
                n_prof = max(1, min(20, int(1.0 / max(timings.timings["ours"].median, 1e-6))))
                prof = _profile_gap(dict(fns), grad_mode, n_prof)
                entry["passes"][pass_key]["profile"] = prof
                top = ", ".join(
                    f"{o['op']} +{o['excess_us']:.0f}us"
                    for o in prof["top_op_excess_us_per_call"][:3]
                )
                log(f"   profiled {case.key} {pass_key}: {top}")
        results.append(entry)
    return results


def _speed_line(case: SpeedCase, label: str, t: InterleavedTimings, names: list[str]) -> str:
    ref_ms = t.timings["ref"].median * 1e3
    parts = [f"{n} {t.ratio(n, 'ref').median:.3f}" for n in names if n != "ref"]
    return (
        f"  {case.label:<20} {label:<7} ref {ref_ms:9.3f} ms | ratios: {', '.join(parts)} "
        f"| ours cpu-time {t.ratio('ours', 'ref', cpu=True).median:.3f} "
        f"({t.rounds} rounds x {t.inner})"
    )


def run_overhead(quick: bool) -> dict[str, Any]:
    """Fixed per-call cost of ours against the reference on a tiny shape, 1 thread (Python side)."""
    from attention_core import MultiHeadAttention

    s = OVERHEAD_SHAPE
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        ours = MultiHeadAttention(s["dim"], s["heads"], backend="sdpa").eval()
        ref = DirectSDPA(s["dim"], s["heads"]).eval()
        ref.load_state_dict(ours.state_dict())
        x = torch.randn(s["batch"], s["length"], s["dim"], requires_grad=True)
        calls: dict[str, Callable[[], Tensor]] = {"ref": lambda: ref(x), "ours": lambda: ours(x)}
        with torch.no_grad():
            fwd = time_interleaved(
                calls, warmup=50, min_rounds=5 if quick else 15, budget_s=1 if quick else 4
            )
        grad = torch.randn(s["batch"], s["length"], s["dim"])
        steps = {n: _fwd_bwd(m, calls[n], [x], grad) for n, m in (("ref", ref), ("ours", ours))}
        fb = time_interleaved(
            steps, warmup=20, min_rounds=5 if quick else 15, budget_s=1 if quick else 4
        )
    finally:
        torch.set_num_threads(threads)
    out: dict[str, Any] = {"shape": dict(s), "threads": 1}
    for key, t in (("forward", fwd), ("forward_backward", fb)):
        ours_us, ref_us = t.timings["ours"].median * 1e6, t.timings["ref"].median * 1e6
        ours_cpu, ref_cpu = t.cpu_timings["ours"].median * 1e6, t.cpu_timings["ref"].median * 1e6
        out[key] = {
            "ours_us": round(ours_us, 2),
            "ref_us": round(ref_us, 2),
            "extra_us": round(ours_us - ref_us, 2),
            "ours_cpu_us": round(ours_cpu, 2),
            "ref_cpu_us": round(ref_cpu, 2),
            "extra_cpu_us": round(ours_cpu - ref_cpu, 2),
            "ratio": t.ratio("ours", "ref").to_dict(1.0, 4),
            "rounds": t.rounds,
            "calls_per_sample": t.inner,
        }
    return out


# --------------------------------------------------------------------------------------------
# targets
# --------------------------------------------------------------------------------------------


def evaluate_targets(
    speed: list[dict[str, Any]], mem: dict[str, Any], ratios: dict[str, Any]
) -> dict[str, Any]:
    over = []
    worst = 0.0
    skipped = []
    for e in speed:
        for pk in PASSES:
            if "skipped" in e["passes"][pk]:
                skipped.append({"case": e["key"], "pass": pk})
                continue
            r = e["passes"][pk]["ratio_to_ref"]["ours"]["median"]
            worst = max(worst, r)
            if r > SPEED_TARGET:
                over.append({"case": e["key"], "pass": pk, "ratio": r})
    speed_t = {
        "threshold": SPEED_TARGET,
        "met": not over,
        "worst_ratio": round(worst, 4),
        "over": over,
        "skipped": skipped,
        "shapes_measured": [e["key"] for e in speed],
    }
    longest = str(max(mem["lengths"]))
    at = ratios.get(longest, {})
    mem_t: dict[str, Any] = {"threshold": MEMORY_TARGET, "length": int(longest)}
    met = True
    for backend in ("local", "linear"):
        r = at.get(backend, {}).get("vs_math")
        mem_t[f"{backend}_vs_math"] = r
        mem_t[f"{backend}_vs_sdpa"] = at.get(backend, {}).get("vs_sdpa")
        if r is None or r > MEMORY_TARGET:
            met = False
    mem_t["met"] = met
    math_row = [
        r for r in mem["rows"] if r["ok"] and r["backend"] == "math" and str(r["length"]) == longest
    ]
    mem_t["math_pass"] = math_row[-1]["pass"] if math_row else None
    return {"speed": speed_t, "memory": mem_t}


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------


def main() -> None:
    import timm

    from benchmarks._core_memory import memory_ratios, run_memory

    start = time.perf_counter()
    quick = quick_mode()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - start:6.1f}s] {msg}", flush=True)

    env = environment()
    log(
        f"torch {env['torch']}, {env['torch_num_threads']} threads, {env['cpu_model']}, "
        f"python {env['python']}, load {env['load_average_1_5_15']}, dtype {DTYPE}"
        + (", QUICK mode" if quick else "")
    )
    log("speed (ratios to the direct SDPA reference):")
    speed = run_speed(quick, log, start + SPEED_BUDGET_S)
    log("fixed per-call cost on a tiny shape (1 thread):")
    overhead = run_overhead(quick)
    log(
        f"  forward +{overhead['forward']['extra_us']:.1f} µs, "
        f"forward+backward +{overhead['forward_backward']['extra_us']:.1f} µs per call"
    )
    log("peak memory (fwd+bwd, each in a fresh subprocess):")
    mem = run_memory(quick, log)
    ratios = memory_ratios(mem)
    targets = evaluate_targets(speed, mem, ratios)
    data: dict[str, Any] = {
        "benchmark": NAME,
        "quick": quick,
        "elapsed_s": round(time.perf_counter() - start, 1),
        "environment": env,
        "settings": {
            "dtype": str(DTYPE).replace("torch.", ""),
            "device": "cpu",
            "timm": timm.__version__,
            "speed_target_ratio": SPEED_TARGET,
            "memory_target_ratio": MEMORY_TARGET,
            "memory_shape": MEM_SHAPE,
            "local_window": LOCAL_WINDOW,
            "ratio_definition": "median over rounds of time(candidate) / time(ref) in the same round",
        },
        "speed": speed,
        "overhead": overhead,
        "memory": mem,
        "memory_ratios": ratios,
        "targets": targets,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    from benchmarks._core_report import build_markdown, number_or_dash

    md = build_markdown(data)
    json_path, md_path = write_results(NAME, data, md)
    st, mt = targets["speed"], targets["memory"]
    log(
        f"speed target (<= {SPEED_TARGET}): {'MET' if st['met'] else 'NOT MET'}, worst {st['worst_ratio']:.3f}"
    )
    log(
        f"memory target (<= {MEMORY_TARGET} x math at L={mt['length']}): "
        f"{'MET' if mt['met'] else 'NOT MET'}, local {number_or_dash(mt['local_vs_math'])}, linear {number_or_dash(mt['linear_vs_math'])}"
    )
    log(
        f"wrote {json_path.relative_to(json_path.parent.parent)} and {md_path.name}; took {data['elapsed_s']:.0f} s"
    )


if __name__ == "__main__":
    main()
