"""Scaled dot-product attention with swappable backends.

Every backend takes queries, keys and values shaped (B, H, L, D) and the same mask conventions,
so a model can switch between the fused kernel, the explicit softmax, FlexAttention and the
sub-quadratic approximations without touching anything else.

Conventions shared by all backends:

* ``mask`` is boolean (True = may attend) or additive float, broadcastable to (B, H, Lq, Lk).
* ``causal=True`` aligns the causal mask to the bottom right: query ``i`` sits at absolute
  position ``i + Lk - Lq``. With ``Lq == Lk`` this is the usual lower-triangular mask; with a
  KV cache (``Lq < Lk``) new queries see every cached key, which is what incremental decoding needs.
* Grouped-query attention: keys and values may have fewer heads than queries, as long as the
  query heads are a multiple of them.
* A query row whose keys are all masked out attends to nothing: its output and weights are zero.

This module holds the exact backends (sdpa, math, flex), registers every built-in backend and is
the public entry point. The pieces it builds on: ``masks.py`` (shape checks, masks, the explicit
softmax), ``local.py`` (sliding-window attention) and ``linear.py`` (kernelized attention).
"""

from __future__ import annotations

import warnings
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .linear import _linear, favor_projection
from .linear import linear_features as linear_features  # re-exported: callers import it here
from .local import _local
from .masks import (
    _check_qkv,
    _expand_kv_heads,
    _key_padding_from_mask,
    _math,
    _scale,
    _to_additive,
    _visible,
    causal_mask,
    normalize_mask,
)
from .registry import Backend, BackendOption, get_backend, list_backends, register_backend

__all__ = [
    "APPROXIMATE_BACKENDS",
    "EXACT_BACKENDS",
    "attention",
    "attention_weights",
    "causal_mask",
    "list_backends",
    "normalize_mask",
]


def _flex_available() -> bool:
    try:
        from torch.nn.attention.flex_attention import flex_attention  # noqa: F401
    except Exception:  # pragma: no cover - depends on the torch build
        return False
    return True


# --------------------------------------------------------------------------------------------
# exact backends
# --------------------------------------------------------------------------------------------


def _sdpa(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None,
    causal: bool,
    dropout_p: float,
    scale: float | None,
) -> Tensor:
    if causal and mask is None and q.shape[2] == k.shape[2]:
        return F.scaled_dot_product_attention(
            q, k, v, dropout_p=dropout_p, is_causal=True, scale=scale
        )
    mask = normalize_mask(mask, q, k, causal=causal)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=scale)
    if mask is not None:
        # Rows with no visible key come back as NaN from some kernels: make them zero, as the
        # other backends do.
        # Export-safe: no data-dependent branch.
        out = out.masked_fill(~_visible(mask).any(-1, keepdim=True), 0.0)
    return out


_COMPILED_FLEX: Any = None


def _flex_kernel(on_gpu: bool) -> Any:
    """FlexAttention, compiled on GPU (where its kernels live) and eager elsewhere."""
    global _COMPILED_FLEX
    from torch.nn.attention.flex_attention import flex_attention

    if not on_gpu:
        return flex_attention
    if _COMPILED_FLEX is None:
        _COMPILED_FLEX = torch.compile(flex_attention, dynamic=False)
    return _COMPILED_FLEX


def _flex(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale: float) -> Tensor:
    flex_attention = _flex_kernel(q.is_cuda)
    with warnings.catch_warnings():
        # Eager flex warns that it is slow; on CPU it is the reference path, not a fast one.
        warnings.filterwarnings("ignore", message=".*flex_attention.*")
        return _flex_call(flex_attention, q, k, v, mask, scale)


def _flex_call(
    flex_attention: Any, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale: float
) -> Tensor:
    if mask is None:
        out = flex_attention(q, k, v, scale=scale)
    else:
        bias = _to_additive(mask, q.dtype).expand(q.shape[0], q.shape[1], q.shape[2], k.shape[2])

        def score_mod(score: Tensor, b: Tensor, h: Tensor, qi: Tensor, ki: Tensor) -> Tensor:
            return score + bias[b, h, qi, ki]

        out = flex_attention(q, k, v, score_mod=score_mod, scale=scale)
    assert isinstance(out, Tensor)
    if mask is not None:
        out = out.masked_fill(~_visible(mask).any(-1, keepdim=True), 0.0)
    return out


# --------------------------------------------------------------------------------------------
# the built-in backends, registered in attention_core.registry
# --------------------------------------------------------------------------------------------


def _math_backend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None,
    causal: bool,
    dropout_p: float,
    scale: float,
    return_weights: bool,
    module: nn.Module | None,
) -> tuple[Tensor, Tensor | None]:
    full = normalize_mask(mask, q, k, causal=causal)
    out, weights = _math(q, k, v, full, dropout_p, scale)
    return out, weights if return_weights else None


def _sdpa_backend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None,
    causal: bool,
    dropout_p: float,
    scale: float,
    return_weights: bool,
    module: nn.Module | None,
) -> tuple[Tensor, Tensor | None]:
    if return_weights:  # the fused kernel never forms the weights: the explicit softmax does
        return _math_backend(
            q,
            k,
            v,
            mask=mask,
            causal=causal,
            dropout_p=dropout_p,
            scale=scale,
            return_weights=True,
            module=module,
        )
    return _sdpa(q, k, v, mask, causal, dropout_p, scale), None


_FLEX_FALLBACK_WARNED = False


def _flex_backend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None,
    causal: bool,
    dropout_p: float,
    scale: float,
    return_weights: bool,
    module: nn.Module | None,
) -> tuple[Tensor, Tensor | None]:
    global _FLEX_FALLBACK_WARNED
    full = normalize_mask(mask, q, k, causal=causal)
    needs_grad = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
    if return_weights or dropout_p > 0 or (q.device.type == "cpu" and needs_grad):
        # FlexAttention has no dropout and no CPU backward; the explicit softmax is the same
        # exact attention and has both. Said once, so nobody times "flex" and measures math.
        if not return_weights and not _FLEX_FALLBACK_WARNED:
            _FLEX_FALLBACK_WARNED = True
            why = "dropout" if dropout_p > 0 else "backward pass on the CPU"
            warnings.warn(
                f"backend 'flex' ran the math backend: FlexAttention has no {why}; it runs "
                "FlexAttention for inference on the CPU and everywhere on a GPU",
                stacklevel=4,
            )
        out, weights = _math(q, k, v, full, dropout_p, scale)
        return out, weights if return_weights else None
    return _flex(q, k, v, full, scale), None


def _local_backend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None,
    causal: bool,
    dropout_p: float,
    scale: float,
    return_weights: bool,
    module: nn.Module | None,
    window: int,
    block_size: int | None = None,
    global_tokens: int = 0,
) -> tuple[Tensor, Tensor | None]:
    return _local(
        q,
        k,
        v,
        mask,
        causal,
        dropout_p,
        scale,
        window,
        block_size,
        return_weights=return_weights,
        global_tokens=global_tokens,
    )


def _init_linear(module: nn.Module, options: dict[str, Any]) -> list[str]:
    """Performer's random features live on the module, fixed (a buffer), so runs repeat."""
    if options.get("feature_map") != "favor":
        return []
    head_dim = int(cast(int, module.head_dim))
    module.register_buffer(
        "favor_features", favor_projection(head_dim, options.get("num_features"))
    )
    return ["favor_features"]


def _linear_backend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None,
    causal: bool,
    dropout_p: float,
    scale: float,
    return_weights: bool,
    module: nn.Module | None,
    feature_map: str = "elu",
    num_features: int | None = None,
    chunk_size: int = 128,
    projection: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    if feature_map == "favor" and projection is None:
        if module is not None and hasattr(module, "favor_features"):
            projection = cast(Tensor, module.favor_features)
        else:
            projection = favor_projection(q.shape[-1], num_features, device=q.device, dtype=q.dtype)
    return _linear(
        q,
        k,
        v,
        mask,
        causal,
        scale,
        feature_map=feature_map,
        projection=projection,
        chunk_size=chunk_size,
        return_weights=return_weights,
    )


def _init_linformer(module: nn.Module, options: dict[str, Any]) -> list[str]:
    """E and F of Wang et al. (2020): (proj_dim, seq_len), shared by all heads."""
    seq_len = int(options["seq_len"])
    proj_dim = int(options.get("proj_dim") or min(64, seq_len))
    module.linformer_e = nn.Parameter(torch.randn(proj_dim, seq_len) / seq_len**0.5)
    module.linformer_f = nn.Parameter(torch.randn(proj_dim, seq_len) / seq_len**0.5)
    return ["linformer_e", "linformer_f"]


def _linformer_backend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None,
    causal: bool,
    dropout_p: float,
    scale: float,
    return_weights: bool,
    module: nn.Module | None,
    seq_len: int,
    proj_dim: int | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Project K and V (B, H, Lk, D) along the sequence to (B, H, proj_dim, D), then exact
    attention over the projections."""
    assert module is not None  # learned backends only run inside a module
    lk = k.shape[2]
    e_all, f_all = cast(Tensor, module.linformer_e), cast(Tensor, module.linformer_f)
    if lk > e_all.shape[1]:
        raise ValueError(
            f"linformer was built for seq_len={e_all.shape[1]} but got {lk} keys; "
            "rebuild it with a larger seq_len"
        )
    if mask is not None:
        keep = _key_padding_from_mask(mask, q, k, "linformer")  # (B|1, H|1, 1, Lk)
        keep = keep.transpose(-1, -2).to(k.dtype)  # (B|1, H|1, Lk, 1)
        k, v = k * keep, v * keep
    e = e_all[:, :lk].to(k.dtype)
    f = f_all[:, :lk].to(v.dtype)
    k = torch.einsum("pl,bhld->bhpd", e, k)  # (B, H, proj_dim, D)
    v = torch.einsum("pl,bhld->bhpd", f, v)
    if return_weights:
        out, weights = _math(q, k, v, None, dropout_p, scale)  # weights over the projections
        return out, weights
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, scale=scale), None


def _register_builtins() -> None:
    opt = BackendOption
    register_backend(
        Backend(
            "sdpa",
            _sdpa_backend,
            doc="torch's fused scaled_dot_product_attention (flash / memory-efficient / math kernels)",
        ),
        replace=True,
    )
    register_backend(
        Backend("math", _math_backend, doc="the explicit softmax(q k^T * scale + mask) v"),
        replace=True,
    )
    register_backend(
        Backend(
            "flex",
            _flex_backend,
            doc="FlexAttention; on the CPU it runs the math backend for training and dropout "
            "(warned once)",
            export=False,
            available=_flex_available,
        ),
        replace=True,
    )
    register_backend(
        Backend(
            "local",
            _local_backend,
            doc="sliding window, O(L * window) memory; global_tokens first positions see and are "
            "seen by all (Longformer)",
            options=(
                opt("window", int, required=True, minimum=0, doc="keys on each side"),
                opt(
                    "block_size",
                    int,
                    None,
                    doc="queries per block (memory/speed trade-off)",
                    minimum=1,
                ),
                opt("global_tokens", int, 0, doc="first positions attending globally", minimum=0),
            ),
            exact=False,
        ),
        replace=True,
    )
    register_backend(
        Backend(
            "linear",
            _linear_backend,
            doc="kernelized attention (elu + 1, or Performer FAVOR+ random features); causal "
            "runs chunk by chunk",
            options=(
                opt("feature_map", str, "elu", choices=("elu", "favor"), doc="feature map"),
                opt(
                    "num_features",
                    int,
                    None,
                    minimum=1,
                    doc="FAVOR+ random features (default 4 x head_dim)",
                ),
                opt("chunk_size", int, 128, minimum=1, doc="causal chunk length"),
                opt("projection", Tensor, None, doc="fixed FAVOR+ features (F, D), functional use"),
            ),
            exact=False,
            masks="key_padding",
            dropout=False,
            init_module=_init_linear,
        ),
        replace=True,
    )
    register_backend(
        Backend(
            "linformer",
            _linformer_backend,
            doc="learned projections of K and V along the sequence (Wang et al. 2020); "
            "module only, not causal",
            options=(
                opt(
                    "seq_len",
                    int,
                    required=True,
                    minimum=1,
                    from_model=True,
                    doc="longest input length",
                ),
                opt(
                    "proj_dim",
                    int,
                    None,
                    minimum=1,
                    doc="projected length (default min(64, seq_len))",
                ),
            ),
            exact=False,
            causal=False,
            masks="key_padding",
            kv_cache=False,
            learned=True,
            init_module=_init_linformer,
        ),
        replace=True,
    )


_register_builtins()

EXACT_BACKENDS = ("sdpa", "math", "flex")
APPROXIMATE_BACKENDS = ("local", "linear", "linformer")


# --------------------------------------------------------------------------------------------
# the public entry points
# --------------------------------------------------------------------------------------------


def check_supported(
    spec: Backend, *, causal: bool, dropout_p: float, mask: Tensor | None = None
) -> None:
    """One clear error when a call asks a backend for something it cannot do."""
    if causal and not spec.causal:
        raise ValueError(
            f"{spec.name} cannot be causal: it mixes every position of K and V, so future "
            "tokens would leak; use backend 'sdpa', 'local' or 'linear'"
        )
    if dropout_p > 0 and not spec.dropout:
        raise ValueError(
            f"{spec.name} attention has no attention matrix to drop out; use dropout_p=0"
        )
    if mask is not None and spec.masks == "none":
        raise ValueError(f"backend {spec.name!r} takes no mask")


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None = None,
    causal: bool = False,
    dropout_p: float = 0.0,
    scale: float | None = None,
    backend: str = "auto",
    return_weights: bool = False,
    module: nn.Module | None = None,
    **backend_kwargs: Any,
) -> Tensor | tuple[Tensor, Tensor]:
    """Attention of q (B, H, Lq, D) over k (B, Hkv, Lk, D) and v (B, Hkv, Lk, Dv).

    Returns the output (B, H, Lq, Dv), or (output, weights (B, H, Lq, Lk)) with
    ``return_weights=True``; exact backends then run the explicit softmax, approximate ones
    return the weights they effectively applied.

    ``backend`` is any name in ``list_backends()`` ("auto" = "sdpa"); its options come as keyword
    arguments (``local``: ``window``, ``block_size``, ``global_tokens``; ``linear``:
    ``feature_map``, ``num_features``, ``chunk_size``, ``projection``); ``backend_table()`` lists
    them all. ``module`` is the layer calling (backends with learned parameters need it).
    """
    spec = get_backend(backend)
    _check_qkv(q, k, v)
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}")
    if spec.learned and module is None:
        raise ValueError(
            f"backend {spec.name!r} learns parameters, so it lives in a module: use "
            f"MultiHeadAttention(dim, num_heads, backend={spec.name!r}, ...)"
        )
    options = spec.resolve_options(backend_kwargs)
    return run_backend(
        spec,
        q,
        k,
        v,
        options,
        mask=mask,
        causal=causal,
        dropout_p=dropout_p,
        scale=scale,
        return_weights=return_weights,
        module=module,
    )


def run_backend(
    spec: Backend,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    options: dict[str, Any],
    *,
    mask: Tensor | None = None,
    causal: bool = False,
    dropout_p: float = 0.0,
    scale: float | None = None,
    return_weights: bool = False,
    module: nn.Module | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """``attention`` for a backend whose options are already checked (``resolve_options``):
    what ``MultiHeadAttention`` calls on every forward, without re-validating its options."""
    check_supported(spec, causal=causal, dropout_p=dropout_p, mask=mask)
    k, v = _expand_kv_heads(q, k, v)
    s = _scale(q, scale)
    mask = normalize_mask(mask, q, k)
    if spec.masks == "key_padding" and mask is not None:
        _key_padding_from_mask(mask, q, k, spec.name)
    out, weights = spec.fn(
        q,
        k,
        v,
        mask=mask,
        causal=causal,
        dropout_p=dropout_p,
        scale=s,
        return_weights=return_weights,
        module=module,
        **options,
    )
    if return_weights:
        if weights is None:
            raise ValueError(f"backend {spec.name!r} cannot return its attention weights")
        return out, weights
    return out


def attention_weights(
    q: Tensor,
    k: Tensor,
    *,
    mask: Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
    backend: str = "auto",
    module: nn.Module | None = None,
    **backend_kwargs: Any,
) -> Tensor:
    """The (B, H, Lq, Lk) attention probabilities the given backend applies, without dropout.

    For the exact backends this is softmax(q k^T * scale + mask); for ``local`` the same inside
    the window (and over the global tokens); for ``linear`` the normalized kernel
    phi(q) phi(k)^T; for ``linformer`` the weights over its projected keys. Used to draw
    attention maps of models that run a fused kernel.
    """
    spec = get_backend(backend)
    v = q.new_zeros(k.shape[0], k.shape[1], k.shape[2], 1)
    result = attention(
        q,
        k,
        v,
        mask=mask,
        causal=causal,
        scale=scale,
        backend="math" if spec.exact else backend,
        return_weights=True,
        module=module,
        **({} if spec.exact else backend_kwargs),
    )
    assert isinstance(result, tuple)
    return result[1]
